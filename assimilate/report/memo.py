"""The decision memo of a study, as Markdown or as one standalone HTML page.

Sections, in order: status (read this first), question, estimand and design, evidence, key
diagnostics, diagnostic checklist, assumptions, interpretation under the stated assumptions,
limitations, recommendation. The memo never says more than the evidence does: when a check failed
or a batch was excluded, its first section says so, naming the batches and checks, and every
number after it is called provisional. The recommendation follows the posterior's credible
interval: act on the sign only when the interval excludes 0 and nothing failed; inconclusive when
it includes 0; fix or verify first when anything failed. Effects are named by the outcome, and
whether an increase is good is the caller's ``desired_direction``, never assumed.

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

from dataclasses import dataclass

from scipy import stats

from assimilate.diagnostics.verdict import Verdict
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
from assimilate.report.checklist import estimator_agreement
from assimilate.report.memo_inputs import MemoInputs, effect_decimals, format_effect, format_statistic


@dataclass(frozen=True)
class _Numbers:
    """The memo's numbers, each formatted once so every section shows the same text."""

    mean: str
    sd: str
    lower: str
    upper: str
    level: str
    decimals: int

    @property
    def interval(self) -> str:
        return f"[{self.lower}, {self.upper}]"


def _numbers(inputs: MemoInputs) -> _Numbers:
    result = inputs.result
    d = effect_decimals(result)
    lower, upper = result.final_ci
    return _Numbers(
        format_effect(result.final_mean, d),
        format_effect(result.final_sd, d),
        format_effect(lower, d),
        format_effect(upper, d),
        f"{100 * result.level:g}%",
        d,
    )


def _lie(methods: tuple[str, ...]) -> str:
    return "lies" if len(methods) == 1 else "lie"


def _probability(p: float) -> str:
    # Three significant digits would print 0.9999 as "1": a posterior is never certain.
    if p > 0.999:
        return "> 0.999"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.3g}"


def _verdict_text(verdict: Verdict) -> str:
    return (
        f"{verdict.name} {format_statistic(verdict.value)} vs threshold {format_statistic(verdict.threshold)}"
    )


def _recommendation(inputs: MemoInputs, num: _Numbers) -> tuple[str, tuple[str, ...]]:
    """The headline and its supporting sentences, hedged by the status and the interval."""
    status, outcome, treatment = inputs.status, inputs.outcome_name, inputs.treatment_name
    if status == "no evidence":
        return (
            "No decision: no batch has updated the posterior yet; fix the excluded batches and re-run.",
            (),
        )
    lower, upper = inputs.result.final_ci
    excludes_zero = lower > 0 or upper < 0
    if status == "provisional":
        problems = [f"{b}: {', '.join(names)}" for b, names in inputs.excluded_batches().items()]
        problems += [
            f"{b}: {', '.join(v.name for v in verdicts)}"
            for b, verdicts in inputs.failed_checks().items()
            if b not in inputs.excluded_batches()
        ]
        model = [f"posterior: {v.name}" for v in inputs.posterior_verdicts() if v.failed]
        steps = ["To resolve: " + "; ".join(problems + model) + "."]
        if problems:
            steps.append("A corrected, re-landed batch re-enters the posterior.")
        if model:
            steps.append(
                "A failed innovation or drift check means the filter's model lags the data: revisit its process variance."
            )
        side = "excludes 0" if excludes_zero else "includes 0"
        return (
            "Fix or verify first: do not act on this estimate until the failed checks and excluded "
            "batches are resolved.",
            (
                " ".join(steps),
                f"For orientation only, the provisional {num.level} credible interval {num.interval} {side}.",
            ),
        )
    if not excludes_zero:
        return (
            f"The evidence is inconclusive: the {num.level} credible interval {num.interval} includes 0, "
            f"so neither an increase nor a decrease in {outcome} is supported.",
            (
                "Do not decide on the sign yet: keep collecting batches, or decide on other grounds.",
                f"Changes in {outcome} outside {num.interval} are unlikely under the stated assumptions.",
            ),
        )
    sign = "increase" if inputs.result.final_mean > 0 else "decrease"
    size = format_effect(abs(inputs.result.final_mean), num.decimals)
    article = "an" if sign == "increase" else "a"
    evidence = f"{sign} in {outcome} of about {size} ({num.level} credible interval {num.interval})"
    desired = inputs.desired_direction
    if desired is None:
        headline = (
            f"Act on the sign: the evidence supports {article} {evidence} under {treatment}; whether {article} {sign} "
            "is wanted is for the decision owner (no desired direction was given)."
        )
    elif desired == sign:
        headline = f"Act: adopt {treatment}. The evidence supports the desired {evidence}."
    else:
        headline = f"Do not adopt {treatment}: the evidence supports {article} {evidence}, the opposite of the desired {desired}."
    near, far = sorted((abs(lower), abs(upper)))
    details = [
        f"Plan with the interval, not the point: the change consistent with the evidence ranges from "
        f"{format_effect(near, num.decimals)} to {format_effect(far, num.decimals)}.",
        "Keep monitoring: the effect may drift, and the posterior updates with every batch.",
    ]
    if inputs.design.kind == "observational":
        details.insert(1, "This rests on the untestable assumption of no unmeasured confounding.")
    return headline, tuple(details)


def _status(inputs: MemoInputs, num: _Numbers) -> Section:
    status, result = inputs.status, inputs.result
    outcome = inputs.outcome_name
    blocks: list[Block] = []
    excluded, failed = inputs.excluded_batches(), inputs.failed_checks()
    issues = []
    for batch in inputs.batch_order():
        parts = [f"excluded from the posterior ({', '.join(excluded[batch])})"] if batch in excluded else []
        if batch in failed:
            parts.append("failed check(s) " + "; ".join(_verdict_text(v) for v in failed[batch]))
        if parts:
            issues.append(f"Batch {batch}: " + "; ".join(parts) + ".")
    issues += [
        f"Posterior check failed: {_verdict_text(v)}." for v in inputs.posterior_verdicts() if v.failed
    ]
    n_results = sum(len(v) for v in inputs.verdicts.values())
    checked = (
        f"No check failed ({n_results} check results over the batches)"
        if n_results
        else "No assumption check results were reported, so none could fail"
    )
    n_failed = sum(len(v) for v in failed.values()) + sum(v.failed for v in inputs.posterior_verdicts())
    problems = [f"{n_failed} check(s) failed"] if n_failed else []
    if excluded:
        problems.append(f"{len(excluded)} of {result.n_batches} batches were excluded from the posterior")
    if status == "pass":
        blocks.append(
            Paragraph(
                f"{checked}; all {result.n_batches} batches updated the posterior. "
                f"Posterior mean of the effect on {outcome} after batch {result.labels[-1]}: {num.mean} "
                f"({num.level} credible interval {num.interval}).",
                lead="Status: pass.",
            )
        )
    elif status == "no evidence":
        blocks.append(
            Paragraph(
                f"None of the {result.n_batches} batches updated the posterior; every number below is the prior.",
                lead="Status: no evidence.",
            )
        )
    else:
        blocks.append(
            Paragraph(
                f"{' and '.join(problems)}, so every number below is provisional. "
                f"Provisional posterior mean of the effect on {outcome} {num.mean} ({num.level} credible interval "
                f"{num.interval}) from the {inputs.n_used} admitted batches.",
                lead="Status: provisional \u2014 do not act on these numbers yet.",
            )
        )
    if issues:
        blocks.append(Bullets(tuple(issues)))
    headline, _ = _recommendation(inputs, num)
    blocks.append(Paragraph(headline, lead="Bottom line:"))
    return Section(
        "Status \u2014 read this first", tuple(blocks), css_class=f"status status-{status.replace(' ', '-')}"
    )


def _evidence(inputs: MemoInputs, num: _Numbers) -> Section:
    result, latest, d = inputs.result, inputs.latest, num.decimals
    prefix = "Provisional: " if inputs.status != "pass" else ""
    blocks: list[Block] = [
        Heading("Posterior after the latest batch"),
        Paragraph(
            f"{prefix}after batch {result.labels[-1]} ({inputs.n_used} of {result.n_batches} batches used), "
            f"posterior mean of the effect on {inputs.outcome_name} {num.mean}, posterior sd {num.sd}, "
            f"{num.level} credible interval {num.interval} ({result.backend} filter, process variance "
            f"{format_statistic(result.process_var)} per batch)."
        ),
    ]
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


def _interpretation(inputs: MemoInputs, num: _Numbers) -> Section:
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


def _recommendation_section(inputs: MemoInputs, num: _Numbers) -> Section:
    headline, details = _recommendation(inputs, num)
    blocks: list[Block] = [Paragraph(headline)]
    if details:
        blocks.append(Bullets(details))
    return Section("Recommendation", tuple(blocks))


def _memo_document(inputs: MemoInputs) -> Document:
    num = _numbers(inputs)
    return Document(
        f"Decision memo: {inputs.study}",
        (
            _status(inputs, num),
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
