"""The decision memo of a study, as Markdown or as one standalone HTML page.

Sections, in order: status (read this first), question, estimand and design, evidence, key
diagnostics, diagnostic checklist, assumptions, sensitivity to an unmeasured confounder
(:mod:`assimilate.report.confounding`), interpretation under the stated assumptions,
limitations, recommendation, and an appendix mapping the checks' titles to their technical names.
The memo never says more than the evidence does: its first section names every excluded batch
with its reason (once) and acknowledgement, and states why the status is provisional when it is
(rule in :mod:`assimilate.report.decision`). Two intervals are shown and named: the always-valid
interval (a confidence sequence, valid however often the memo is read) decides; the posterior's
credible interval describes where the effect stands now. The recommendation acts only when the
status is pass and the always-valid interval excludes 0; it is inconclusive when that interval
includes 0, and says fix or verify first while provisional. Effects are written on the outcome's
scale, in percentage points for a binary outcome or the study's unit per unit
of analysis (:mod:`assimilate.report.units`); whether an increase is good is the caller's
``desired_direction``. With :class:`~assimilate.report.figures.MemoFigures` the HTML embeds the fan
chart, the causal graph and the sensitivity contour plot and the Markdown links them.

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

from assimilate.estimators.result import ESTIMAND_WORDS
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
from assimilate.report._memo_decision import (
    Numbers,
    baseline_text,
    intervals,
    numbers,
    recommendation,
    status,
)
from assimilate.report._words import check_name, check_question, drift_model, stable
from assimilate.report.checklist import estimator_agreement
from assimilate.report.confounding import sensitivity_image, sensitivity_section
from assimilate.report.did_memo import did_blocks
from assimilate.report.figures import MemoFigures, causal_dag_image, fan_chart_image
from assimilate.report.guardrails import guardrail_caveats, guardrails_section, read_guardrails
from assimilate.report.instrument import instrument_blocks
from assimilate.report.memo_inputs import MemoInputs, format_statistic
from assimilate.report.who_benefits import who_benefits_section


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
    found = {
        "novelty": "the effect shrinks toward zero over the batches (a novelty effect)",
        "primacy": "the effect grows over the batches (a primacy effect)",
        "none": "no trend in the effect over the batches",
    }[trend.direction]
    text = f"{found} (trend test p = {_probability(trend.p_value)}, {trend.n_batches} batches"
    text += ", given the filter's process variance)." if trend.process_var > 0 else ")."
    if trend.process_var > 0 and inputs.process_var_source != "set":
        # An estimated drift variance absorbs a slow decay: the test then rarely sees one.
        text += (
            " That variance was estimated from these same batches, so a slow wearing off may read as drift "
            "instead, and this test rarely sees it."
            if inputs.process_var_source == "estimated"
            else " If that variance was estimated from these same batches (process_var: mle), a slow"
            " wearing off may read as drift instead, and this test rarely sees it."
        )
    blocks: list[Block] = [Heading("Does the effect wear off?"), Paragraph(text[0].upper() + text[1:])]
    steady = trend.steady_state
    if steady is not None:
        lower, upper = steady.conf_int
        blocks.append(
            Paragraph(
                f"{num.scale.effect(steady.estimate)} over batches {steady.first_batch} to {steady.last_batch} "
                f"(interval {num.scale.interval(lower, upper)}).",
                lead="Steady-state effect (the last third of the batches):",
            )
        )
    return blocks


def _latest_alone(inputs: MemoInputs, num: Numbers) -> list[Block]:
    result, latest, scale = inputs.result, inputs.latest, num.scale
    blocks: list[Block] = [Heading(f"Latest batch alone ({latest})")]
    if latest in inputs.excluded_batches():
        blocks.append(
            Paragraph(
                "This batch did not update the posterior (why is in the status section); its estimates are "
                "shown for information."
            )
        )
    if inputs.latest_estimates:
        rows = []
        for e in inputs.latest_estimates:
            lo, hi = e.conf_int(result.alpha)
            rows.append(
                (
                    e.method,
                    scale.number(e.estimate, signed=True),
                    scale.number(e.std_error),
                    scale.bounds(lo, hi),
                    f"{e.n_treated} / {e.n_control}",
                    "primary" if e.method == inputs.primary_estimator else "",
                )
            )
        header = (
            "estimator",
            scale.header("estimate"),
            scale.header("std error"),
            scale.header(f"{num.level} interval"),
            "n treated / control",
            "role",
        )
        blocks.append(Table(header, tuple(rows)))
    else:
        blocks.append(Paragraph("No estimate is available for the latest batch."))
    agreement = estimator_agreement(inputs)
    if agreement.compared:
        spread = f"Estimates range from {scale.number(agreement.low)} to {scale.size(agreement.high)}. "
        if agreement.disagreeing:
            verdict = f"{', '.join(agreement.disagreeing)} {_lie(agreement.disagreeing)} outside the primary estimate's interval: the estimators disagree, so the answer depends on modelling choices."
        else:
            verdict = f"{', '.join(agreement.compared)} {_lie(agreement.compared)} inside the primary estimate's interval."
        text = spread + verdict
        if agreement.naive_gap is not None:
            text += (
                f" Naive difference minus primary estimate: {scale.effect(agreement.naive_gap)}, "
                "how far adjusting for the measured covariates moves the estimate."
            )
    else:
        text = "Not assessed: fewer than two usable estimators in the latest batch."
    blocks.append(Paragraph(text, lead="Agreement between estimators:"))
    return blocks


def _evidence(inputs: MemoInputs, num: Numbers, figures: MemoFigures | None) -> Section:
    result = inputs.result
    opening = "Provisional: after batch" if inputs.status != "pass" else "After batch"
    blocks: list[Block] = [
        *intervals(inputs, num),
        Heading("Posterior after the latest batch"),
        Paragraph(
            f"{opening} {result.labels[-1]} ({inputs.n_used} of {result.n_batches} batches used), "
            f"the effect on {inputs.outcome_name} has posterior mean {num.mean}, posterior sd {num.sd}, "
            f"{num.level} credible interval {num.interval} ({result.backend} filter). "
            + drift_model(result.process_var, inputs.process_var_source, num.scale)
        ),
    ]
    baseline = baseline_text(inputs)
    if baseline:
        blocks.append(Paragraph(f"{baseline}.", lead="Baseline (the outcome without the treatment):"))
    chart = fan_chart_image(inputs, figures)
    if chart is not None:
        blocks.append(chart)
    blocks += _wear_off(inputs, num)
    if inputs.true_effect is not None:
        lower, upper = result.final_ci
        inside = "inside" if lower <= inputs.true_effect <= upper else "outside"
        blocks.append(
            Paragraph(
                f"{num.scale.effect(inputs.true_effect)}, {inside} the credible interval.",
                lead="True effect (simulation):",
            )
        )
    blocks += _latest_alone(inputs, num)
    blocks += instrument_blocks(inputs, num.scale)
    blocks += did_blocks(inputs)  # a did study's pre-trend test and event study
    blocks.append(Heading("Innovation and drift"))
    blocks.append(
        Bullets(
            tuple(
                f"{check_name(v.name)}: {sections.VERDICT_WORD[v.status]} (value {format_statistic(v.value)}; rule {v.rule})"
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
        word = ESTIMAND_WORDS[card.estimand]
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
    when = (
        "The filter models the effect as the same in every batch"
        if stable(result.process_var)
        else "This describes the average at the latest batch"
    )
    text = (
        f"{prefix} the assumptions above hold, {contrast} lies in {num.interval} with {num.level} posterior "
        f"probability, posterior mean {num.mean}. Posterior probability of an increase in {inputs.outcome_name}: "
        f"{_probability(up)}; of a decrease: {_probability(1 - up)}{approx}. {when}; "
        "individual units may respond differently."
    )
    return Section("Interpretation under stated assumptions", (Paragraph(text),))


def _recommendation_section(inputs: MemoInputs, num: Numbers) -> Section:
    headline, details = recommendation(inputs, num)
    details = (*details, *guardrail_caveats(inputs.guardrails, alpha=inputs.result.alpha))
    blocks: list[Block] = [Paragraph(headline)]
    if details:
        blocks.append(Bullets(details))
    return Section("Recommendation", tuple(blocks))


def _appendix(inputs: MemoInputs) -> Section:
    """Each check's title beside the technical name the pipeline and its UI use: the one place it appears."""
    names = dict.fromkeys(
        [v.name for b in inputs.batch_order() for v in inputs.verdicts.get(b, ())]
        + [v.name for v in inputs.posterior_verdicts()]
    )
    rows = tuple((check_name(name), name, check_question(name)) for name in names)
    return Section(
        "Appendix: check names",
        (
            Paragraph("The checks above by the names the pipeline, its alerts and the Dagster UI use."),
            Table(("check", "technical name", "what it asks"), rows),
        ),
    )


def _guardrails(inputs: MemoInputs) -> tuple[Section, ...]:
    """The guardrail outcomes' section, when the study has guardrails."""
    if not inputs.guardrails:
        return ()
    readings = read_guardrails(inputs.guardrails, alpha=inputs.result.alpha)
    per = inputs.card.unit if inputs.card is not None else None
    return (guardrails_section(readings, alpha=inputs.result.alpha, per=per),)


def _contour(figures: MemoFigures | None) -> tuple[bytes | None, str]:
    if figures is None:
        return None, "sensitivity_contour.png"
    return figures.sensitivity_contour, figures.sensitivity_contour_file


def _memo_document(inputs: MemoInputs, figures: MemoFigures | None) -> Document:
    num = numbers(inputs)
    dag = causal_dag_image(inputs, figures)
    return Document(
        f"Decision memo: {inputs.study}",
        (
            status(inputs, num),
            sections.question(inputs),
            sections.estimand_and_design(inputs, dag),
            _evidence(inputs, num, figures),
            *_guardrails(inputs),
            sections.key_diagnostics(inputs),
            sections.checklist(inputs),
            sections.assumptions(inputs),
            sensitivity_section(
                inputs,
                sensitivity_image(inputs, *_contour(figures)),
            ),
            # Only for a study with effect modifiers: the effect by segment, and who differs.
            *(s for s in (who_benefits_section(inputs),) if s is not None),
            _interpretation(inputs, num),
            sections.limitations(inputs),
            _recommendation_section(inputs, num),
            _appendix(inputs),
        ),
    )


def decision_memo_markdown(inputs: MemoInputs, *, figures: MemoFigures | None = None) -> str:
    """Render the decision memo as Markdown.

    Parameters
    ----------
    inputs : MemoInputs
        The study's card, design, posterior, latest estimates and check verdicts.
    figures : MemoFigures, optional
        Figures written beside the memo: each one given is linked by its file name.

    Returns
    -------
    str
        CommonMark with pipe tables; user-supplied text is escaped so it cannot add markup.
    """
    return to_markdown(_memo_document(inputs, figures))


def decision_memo_html(inputs: MemoInputs, *, figures: MemoFigures | None = None) -> str:
    """Render the decision memo as one standalone HTML page.

    Parameters
    ----------
    inputs : MemoInputs
        The study's card, design, posterior, latest estimates and check verdicts.
    figures : MemoFigures, optional
        Figures to embed (as ``data:`` URIs, with alt text).

    Returns
    -------
    str
        A complete HTML5 document with an inline style sheet, no scripts and no external resources;
        every piece of text is HTML-escaped.
    """
    return to_html(_memo_document(inputs, figures))
