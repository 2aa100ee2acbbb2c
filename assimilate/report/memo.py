"""The decision memo of a study, as Markdown or as one standalone HTML page.

Sections, in order: status (read this first), question, estimand and design, evidence, key
diagnostics, diagnostic checklist, assumptions, interpretation under the stated assumptions,
limitations, recommendation. The memo never says more than the evidence does: its first section
names every excluded batch with its reason and acknowledgement, and states why the status is
provisional when it is (rule in :mod:`assimilate.report.decision`). Two intervals are shown and
named: the always-valid interval (a confidence sequence, valid however often the memo is read)
decides; the posterior's credible interval describes where a drifting effect is now. The
recommendation acts only when the status is pass and the always-valid interval excludes 0; it is
inconclusive when that interval includes 0, and says fix or verify first while provisional. Effects
are named by the outcome, and whether an increase is good is the caller's ``desired_direction``.

Example
-------
>>> from assimilate import causal_kalman
>>> from assimilate.report.memo_inputs import DesignSummary, MemoInputs
>>> res = causal_kalman([0.5, 0.6], [0.1, 0.1], labels=["m1", "m2"], prior_mean=0.0, prior_var=1.0)
>>> inputs = MemoInputs(study="demo", result=res, design=DesignSummary(kind="randomized"),
...                     latest_estimates=(), primary_estimator="difference_in_means")
>>> decision_memo_markdown(inputs).splitlines()[2]
'## Status \u2014 read this first'
"""

from __future__ import annotations

from scipy import stats

from assimilate.report import _memo_sections as sections
from assimilate.report._document import (
    Block,
    Bullets,
    Document,
    Heading,
    Paragraph,
    Section,
    Table,
    to_html,
    to_markdown,
)
from assimilate.report._memo_decision import Numbers, intervals, numbers, recommendation, status
from assimilate.report.checklist import estimator_agreement
from assimilate.report.memo_inputs import MemoInputs, format_effect, format_statistic


def _lie(methods: tuple[str, ...]) -> str:
    return "lies" if len(methods) == 1 else "lie"


def _probability(p: float) -> str:
    # Three significant digits would print 0.9999 as "1": a posterior is never certain.
    if p > 0.999:
        return "> 0.999"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3g}"


def _wear_off(inputs: MemoInputs, num: Numbers) -> list[Block]:
    """Does the effect wear off (novelty) or grow (primacy)? The trend test, in words."""
    trend = inputs.trend
    if trend is None or trend.p_value is None:
        return []
    d = num.decimals
    found = {
        "novelty": "the effect shrinks toward zero over the batches (a novelty effect)",
        "primacy": "the effect grows over the batches (a primacy effect)",
        "none": "no trend in the effect over the batches",
    }[trend.direction]
    text = f"{found} (trend test p = {_probability(trend.p_value)}, {trend.n_batches} batches"
    text += ", given the filter's process variance)." if trend.process_var > 0 else ")."
    if trend.process_var > 0:
        # An estimated drift variance absorbs a slow decay: the test then rarely sees one.
        text += (
            " If that variance was estimated from these same batches (process_var: mle), a slow"
            " wearing off may read as drift instead, and this test rarely sees it."
        )
    blocks: list[Block] = [Heading("Does the effect wear off?"), Paragraph(text[0].upper() + text[1:])]
    steady = trend.steady_state
    if steady is not None:
        lower, upper = steady.conf_int
        blocks.append(
            Paragraph(
                f"{format_effect(steady.estimate, d)} over batches {steady.first_batch} to {steady.last_batch} "
                f"(interval [{format_effect(lower, d)}, {format_effect(upper, d)}]).",
                lead="Steady-state effect (the last third of the batches):",
            )
        )
    return blocks


def _evidence(inputs: MemoInputs, num: Numbers) -> Section:
    result, latest, d = inputs.result, inputs.latest, num.decimals
    prefix = "Provisional: " if inputs.status != "pass" else ""
    blocks: list[Block] = [
        *intervals(inputs, num),
        Heading("Posterior after the latest batch"),
        Paragraph(
            f"{prefix}after batch {result.labels[-1]} ({inputs.n_used} of {result.n_batches} batches used), "
            f"posterior mean of the effect on {inputs.outcome_name} {num.mean}, posterior sd {num.sd}, "
            f"{num.level} credible interval {num.interval} ({result.backend} filter, process variance "
            f"{format_statistic(result.process_var)} per batch)."
        ),
    ]
    blocks += _wear_off(inputs, num)
    if inputs.true_effect is not None:
        lower, upper = result.final_ci
        inside = "inside" if lower <= inputs.true_effect <= upper else "outside"
        blocks.append(
            Paragraph(
                f"{format_effect(inputs.true_effect, d)}, {inside} the credible interval.",
                lead="True effect (simulation):",
            )
        )
    blocks.append(Heading(f"Latest batch alone ({latest})"))
    excluded = inputs.excluded_batches()
    if latest in excluded:
        blocks.append(
            Paragraph(
                f"This batch did not update the posterior ({', '.join(excluded[latest])}); its estimates are shown for information."
            )
        )
    if inputs.latest_estimates:
        rows = []
        for e in inputs.latest_estimates:
            lo, hi = e.conf_int(result.alpha)
            role = "primary" if e.method == inputs.primary_estimator else ""
            rows.append(
                (
                    e.method,
                    format_effect(e.estimate, d),
                    format_effect(e.std_error, d),
                    f"[{format_effect(lo, d)}, {format_effect(hi, d)}]",
                    f"{e.n_treated} / {e.n_control}",
                    role,
                )
            )
        blocks.append(
            Table(
                (
                    "estimator",
                    "estimate",
                    "std error",
                    f"{num.level} interval",
                    "n treated / control",
                    "role",
                ),
                tuple(rows),
            )
        )
    else:
        blocks.append(Paragraph("No estimate is available for the latest batch."))
    agreement = estimator_agreement(inputs)
    if agreement.compared:
        spread = (
            f"Estimates range from {format_effect(agreement.low, d)} to {format_effect(agreement.high, d)}. "
        )
        if agreement.disagreeing:
            verdict = f"{', '.join(agreement.disagreeing)} {_lie(agreement.disagreeing)} outside the primary estimate's interval: the estimators disagree, so the answer depends on modelling choices."
        else:
            verdict = f"{', '.join(agreement.compared)} {_lie(agreement.compared)} inside the primary estimate's interval."
        text = spread + verdict
        if agreement.naive_gap is not None:
            text += (
                f" Naive difference minus primary estimate: {format_effect(agreement.naive_gap, d)}, "
                "how far adjusting for the measured covariates moves the estimate."
            )
    else:
        text = "Not assessed: fewer than two usable estimators in the latest batch."
    blocks += [Paragraph(text, lead="Agreement between estimators:"), Heading("Innovation and drift")]
    blocks.append(
        Bullets(
            tuple(
                f"{v.name}: {sections.VERDICT_WORD[v.status]} (value {format_statistic(v.value)}; rule {v.rule})"
                + (f" \u2014 {v.reason}" if v.reason else "")
                for v in inputs.posterior_verdicts()
            )
        )
    )
    return Section("Evidence", tuple(blocks))


def _interpretation(inputs: MemoInputs, num: Numbers) -> Section:
    if inputs.status == "no evidence":
        text = "No batch has updated the posterior: there is nothing to interpret beyond the prior."
        return Section("Interpretation under stated assumptions", (Paragraph(text),))
    card, result = inputs.card, inputs.result
    if card is not None:
        word = {"ATE": "average effect", "ATT": "average effect on the treated"}[card.estimand]
        contrast = (
            f"the {word} of {card.treatment} versus {card.control_condition} on {card.outcome}, per {card.unit}, "
            f"in {card.target_population} over {card.time_window},"
        )
    else:
        contrast = (
            "the average difference in the outcome between treated and control units (estimand not stated)"
        )
    up = (
        float(stats.norm.sf(0.0, loc=result.final_mean, scale=result.final_sd))
        if result.final_sd > 0
        else float(result.final_mean > 0)
    )
    approx = " (normal approximation)" if result.backend == "particle" else ""
    prefix = "Provisional, pending the failures above: if" if inputs.status == "provisional" else "If"
    text = (
        f"{prefix} the assumptions above hold, {contrast} lies in {num.interval} with {num.level} posterior "
        f"probability, posterior mean {num.mean}. Posterior probability of an increase in {inputs.outcome_name}: "
        f"{_probability(up)}; of a decrease: {_probability(1 - up)}{approx}. This describes the average at the latest batch; "
        "individual units may respond differently."
    )
    return Section("Interpretation under stated assumptions", (Paragraph(text),))


def _recommendation_section(inputs: MemoInputs, num: Numbers) -> Section:
    headline, details = recommendation(inputs, num)
    blocks: list[Block] = [Paragraph(headline)]
    if details:
        blocks.append(Bullets(details))
    return Section("Recommendation", tuple(blocks))


def _memo_document(inputs: MemoInputs) -> Document:
    num = numbers(inputs)
    return Document(
        f"Decision memo: {inputs.study}",
        (
            status(inputs, num),
            sections.question(inputs),
            sections.estimand_and_design(inputs),
            _evidence(inputs, num),
            sections.key_diagnostics(inputs),
            sections.checklist(inputs),
            sections.assumptions(inputs),
            _interpretation(inputs, num),
            sections.limitations(inputs),
            _recommendation_section(inputs, num),
        ),
    )


def decision_memo_markdown(inputs: MemoInputs) -> str:
    """Render the decision memo as Markdown.

    Parameters
    ----------
    inputs : MemoInputs
        The study's card, design, posterior, latest estimates and check verdicts.

    Returns
    -------
    str
        CommonMark with pipe tables; user-supplied text is escaped so it cannot add markup.
    """
    return to_markdown(_memo_document(inputs))


def decision_memo_html(inputs: MemoInputs) -> str:
    """Render the decision memo as one standalone HTML page.

    Parameters
    ----------
    inputs : MemoInputs
        The study's card, design, posterior, latest estimates and check verdicts.

    Returns
    -------
    str
        A complete HTML5 document with an inline style sheet, no scripts and no external resources;
        every piece of text is HTML-escaped.
    """
    return to_html(_memo_document(inputs))
