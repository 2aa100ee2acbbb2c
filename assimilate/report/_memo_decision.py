"""The memo's verdict sections: its numbers, the status it leads with, the two intervals and the
recommendation (the rules themselves live in :mod:`assimilate.report.decision`)."""

from __future__ import annotations

from dataclasses import dataclass

from assimilate.diagnostics.verdict import Verdict
from assimilate.report._document import Block, Bullets, Heading, Paragraph, Section, Table
from assimilate.report.memo_inputs import MemoInputs, effect_decimals, format_effect, format_statistic


@dataclass(frozen=True)
class Numbers:
    """The memo's numbers, each formatted once so every section shows the same text."""

    mean: str
    sd: str
    lower: str
    upper: str
    level: str
    decimals: int
    cs_estimate: str
    cs_lower: str
    cs_upper: str

    @property
    def interval(self) -> str:
        return f"[{self.lower}, {self.upper}]"

    @property
    def cs_interval(self) -> str:
        return f"[{self.cs_lower}, {self.cs_upper}]"


def _bound(value: float, decimals: int) -> str:
    return format_effect(value, decimals) if abs(value) < float("inf") else ("-inf" if value < 0 else "inf")


def numbers(inputs: MemoInputs) -> Numbers:
    result, cs = inputs.result, inputs.decision_interval
    d = effect_decimals(result)
    lower, upper = result.final_ci
    cs_lower, cs_upper = cs.conf_int()
    return Numbers(
        format_effect(result.final_mean, d),
        format_effect(result.final_sd, d),
        format_effect(lower, d),
        format_effect(upper, d),
        f"{100 * result.level:g}%",
        d,
        format_effect(cs.final_estimate, d),
        _bound(cs_lower, d),
        _bound(cs_upper, d),
    )


def verdict_text(verdict: Verdict) -> str:
    return (
        f"{verdict.name} {format_statistic(verdict.value)} vs threshold {format_statistic(verdict.threshold)}"
    )


def _fix_first(inputs: MemoInputs, num: Numbers) -> tuple[str, tuple[str, ...]]:
    excluded, acknowledged = inputs.excluded_batches(), inputs.acknowledged()
    problems = [f"{b}: {', '.join(names)}" for b, names in excluded.items() if b not in acknowledged]
    model = [f"posterior: {v.name}" for v in inputs.posterior_verdicts() if v.failed]
    steps = ["Provisional because " + "; ".join(inputs.status_reasons()) + "."]
    if problems:
        steps.append(
            "To resolve: " + "; ".join(problems) + ". A corrected, re-landed batch re-enters the posterior; "
            "an exclusion that should stand can be acknowledged with a reason in the study file "
            "(acknowledged_exclusions)."
        )
    if model:
        steps.append(
            "A failed innovation or drift check means the filter's model lags the data: revisit its process variance."
        )
    cs_side = "excludes 0" if inputs.decision_interval.excludes(0.0)[-1] else "includes 0"
    steps.append(
        f"For orientation only, the provisional always-valid {num.level} interval {num.cs_interval} {cs_side}."
    )
    return (
        "Fix or verify first: do not act on this estimate until the failed checks and excluded "
        "batches are resolved or acknowledged.",
        tuple(steps),
    )


def recommendation(inputs: MemoInputs, num: Numbers) -> tuple[str, tuple[str, ...]]:
    """The headline and its supporting sentences, from :attr:`MemoInputs.decision`."""
    decision, outcome, treatment = inputs.decision, inputs.outcome_name, inputs.treatment_name
    if decision == "no decision":
        return (
            "No decision: no batch has updated the posterior yet; fix the excluded batches and re-run.",
            (),
        )
    if decision == "fix first":
        return _fix_first(inputs, num)
    lower, upper = inputs.result.final_ci
    if decision == "inconclusive":
        details = [
            "Do not decide on the sign yet: keep collecting batches, or decide on other grounds.",
        ]
        if lower > 0 or upper < 0:
            details.insert(
                0,
                f"The posterior's {num.level} credible interval {num.interval} excludes 0, but it is not "
                "corrected for reading the memo after every batch: chance alone produces such excursions. "
                "Wait until the always-valid interval excludes 0 too.",
            )
        return (
            f"The evidence is inconclusive: the always-valid {num.level} interval {num.cs_interval} includes 0, "
            f"so neither an increase nor a decrease in {outcome} is supported yet.",
            tuple(details),
        )
    cs_lower, cs_upper = inputs.decision_interval.conf_int()
    sign = "increase" if cs_lower > 0 else "decrease"
    article = "an" if sign == "increase" else "a"
    evidence = (
        f"{sign} in {outcome} (always-valid {num.level} interval {num.cs_interval} for the average effect "
        f"over the admitted batches)"
    )
    if decision == "act on the sign":
        headline = (
            f"Act on the sign: the evidence supports {article} {evidence} under {treatment}; whether {article} "
            f"{sign} is wanted is for the decision owner (no desired direction was given)."
        )
    elif decision == "act":
        headline = f"Act: adopt {treatment}. The evidence supports the desired {evidence}."
    else:
        headline = (
            f"Do not adopt {treatment}: the evidence supports {article} {evidence}, the opposite of the "
            f"desired {inputs.desired_direction}."
        )
    near, far = sorted((abs(cs_lower), abs(cs_upper)))
    details = [
        f"Plan with the interval, not the point: the average change consistent with the evidence ranges "
        f"from {format_effect(near, num.decimals)} to {format_effect(far, num.decimals)}.",
        f"Where the effect stands now: posterior mean {num.mean} ({num.level} credible interval {num.interval}). "
        "Keep monitoring: the effect may drift, and the posterior updates with every batch.",
    ]
    if inputs.design.kind == "observational":
        details.insert(1, "This rests on the untestable assumption of no unmeasured confounding.")
    return headline, tuple(details)


REPEATED_WARNING = 3  # a warning on this many admitted batches is one line, not one per batch


def _repeated_warnings(inputs: MemoInputs, failed: dict[str, tuple[Verdict, ...]]) -> dict[str, list[str]]:
    """Check name -> the admitted batches it warned on, for checks that warned on many of them."""
    excluded = inputs.excluded_batches()
    batches: dict[str, list[str]] = {}
    for batch, verdicts in failed.items():
        if batch not in excluded:
            for verdict in verdicts:
                batches.setdefault(verdict.name, []).append(batch)
    return {name: found for name, found in batches.items() if len(found) >= REPEATED_WARNING}


def _batch_issues(inputs: MemoInputs) -> list[str]:
    excluded, failed, acknowledged = inputs.excluded_batches(), inputs.failed_checks(), inputs.acknowledged()
    repeated = _repeated_warnings(inputs, failed)
    issues = [
        f"Warning on {len(batches)} batches ({batches[0]} to {batches[-1]}): {name}, latest "
        f"{verdict_text(next(v for v in failed[batches[-1]] if v.name == name))}; they still updated the posterior."
        for name, batches in repeated.items()
    ]
    failed = {
        b: kept
        for b, verdicts in failed.items()
        if (kept := tuple(v for v in verdicts if b in excluded or v.name not in repeated))
    }
    for batch in inputs.batch_order():
        parts = [f"excluded from the posterior ({', '.join(excluded[batch])})"] if batch in excluded else []
        if batch in failed:
            parts.append("failed check(s) " + "; ".join(verdict_text(v) for v in failed[batch]))
        if batch in acknowledged:
            parts.append(f"acknowledged: {acknowledged[batch]}")
        elif batch in excluded:
            parts.append("not acknowledged")
        elif batch in failed:
            parts.append("it still updated the posterior (a warning)")
        if parts:
            issues.append(f"Batch {batch}: " + "; ".join(parts) + ".")
    issues += [
        f"Acknowledgement of batch {b} not applied: the batch was not excluded."
        for b in inputs.unmatched_acknowledgements()
    ]
    issues += [f"Posterior check failed: {verdict_text(v)}." for v in inputs.posterior_verdicts() if v.failed]
    return issues


def status(inputs: MemoInputs, num: Numbers) -> Section:
    state, result, outcome = inputs.status, inputs.result, inputs.outcome_name
    excluded, failed = inputs.excluded_batches(), inputs.failed_checks()
    n_results = sum(len(v) for v in inputs.verdicts.values())
    n_failed = sum(len(v) for v in failed.values())
    if n_failed:
        checked = f"{n_failed} of {n_results} check results failed"
    elif n_results:
        checked = f"No check failed ({n_results} check results over the batches)"
    else:
        checked = "No assumption check results were reported, so none could fail"
    numbers_text = (
        f"always-valid {num.level} interval for the average effect so far {num.cs_interval}; "
        f"posterior mean of the effect on {outcome} after batch {result.labels[-1]} {num.mean} "
        f"({num.level} credible interval {num.interval})."
    )
    blocks: list[Block] = []
    if state == "pass":
        acknowledged = len(inputs.acknowledged())
        used = f"{inputs.n_used} of {result.n_batches} batches updated the posterior"
        if excluded:
            used += f" ({len(excluded)} excluded, {acknowledged} of them acknowledged)"
        blocks.append(Paragraph(f"{checked}; {used}. Numbers: {numbers_text}", lead="Status: pass."))
    elif state == "no evidence":
        blocks.append(
            Paragraph(
                f"None of the {result.n_batches} batches updated the posterior; every number below is the prior.",
                lead="Status: no evidence.",
            )
        )
    else:
        blocks.append(
            Paragraph(
                f"Provisional because {'; '.join(inputs.status_reasons())}. {checked}; {inputs.n_used} of "
                f"{result.n_batches} batches updated the posterior. Provisional numbers: {numbers_text}",
                lead="Status: provisional \u2014 do not act on these numbers yet.",
            )
        )
    issues = _batch_issues(inputs)
    if issues:
        blocks.append(Bullets(tuple(issues)))
    if excluded or state == "provisional":
        blocks.append(
            Paragraph(
                "provisional while the latest batch is excluded without acknowledgement, while more than "
                f"{inputs.max_unacknowledged_share:.0%} of the batches are excluded without acknowledgement, or "
                "while a check of the posterior fails. An exclusion is cleared by fixing and re-landing the batch, "
                "or acknowledged with a reason in the study file (acknowledged_exclusions).",
                lead="How the status is set:",
            )
        )
    headline, _ = recommendation(inputs, num)
    blocks.append(Paragraph(headline, lead="Bottom line:"))
    return Section(
        "Status \u2014 read this first", tuple(blocks), css_class=f"status status-{state.replace(' ', '-')}"
    )


def intervals(inputs: MemoInputs, num: Numbers) -> tuple[Block, ...]:
    """Which interval is which, and what each promises, in a data team's words."""
    cs, result = inputs.decision_interval, inputs.result
    level = num.level
    rows = (
        (
            f"always-valid {level} interval (confidence sequence)",
            num.cs_interval,
            f"the average effect over the {cs.n_used} admitted batches so far, "
            + (
                "weighted for the units they share (GLS) "
                if cs.correlated
                else "each weighted by its precision "
            )
            + f"(estimate {num.cs_estimate})",
            f"stays valid however often the memo is read: the chance that it ever, at any batch, excludes the "
            f"true average is at most {100 * result.alpha:g}%",
            "decide: the recommendation reads this interval",
        ),
        (
            f"{level} credible interval (posterior)",
            num.interval,
            f"the effect at the latest batch, allowing it to drift by a variance of "
            f"{format_statistic(result.process_var)} per batch (estimate {num.mean})",
            f"{level} probability under the filter's model and prior, read once; read after every batch it "
            "will sometimes exclude 0 by chance even when there is no effect",
            "see where the effect stands now and whether it drifts; not to decide",
        ),
    )
    return (
        Heading("Which interval is which"),
        Table(("interval", "range", "describes", "promise", "use it to"), rows),
        Paragraph(cs.promise, lead="The always-valid interval, precisely:"),
    )
