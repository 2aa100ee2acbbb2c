"""The memo's verdict sections: its numbers, the status it leads with, the two intervals and the
recommendation (the rules themselves live in :mod:`assimilate.report.decision`)."""

from __future__ import annotations

from dataclasses import dataclass

from assimilate.diagnostics.verdict import Verdict
from assimilate.report._document import Block, Bullets, Heading, Paragraph, Section, Table
from assimilate.report._words import check_name, stable, without_batch
from assimilate.report.memo_inputs import MemoInputs, format_statistic
from assimilate.report.units import EffectScale


@dataclass(frozen=True)
class Numbers:
    """The memo's numbers, each written once (scaled, rounded, with the unit) so every section agrees."""

    scale: EffectScale
    mean: str
    sd: str
    interval: str
    bounds: str
    level: str
    cs_estimate: str
    cs_interval: str
    cs_bounds: str


def numbers(inputs: MemoInputs) -> Numbers:
    result, cs, scale = inputs.result, inputs.decision_interval, inputs.scale
    lower, upper = result.final_ci
    cs_lower, cs_upper = cs.conf_int()
    return Numbers(
        scale=scale,
        mean=scale.effect(result.final_mean),
        sd=scale.size(result.final_sd),
        interval=scale.interval(lower, upper),
        bounds=scale.bounds(lower, upper),
        level=f"{100 * result.level:g}%",
        cs_estimate=scale.effect(cs.final_estimate),
        cs_interval=scale.interval(cs_lower, cs_upper),
        cs_bounds=scale.bounds(cs_lower, cs_upper),
    )


def verdict_text(verdict: Verdict) -> str:
    """``Covariate balance (0.31 vs threshold 0.25)``: the title, and the numbers when there are any."""
    if verdict.value is None:
        return check_name(verdict.name)
    return (
        f"{check_name(verdict.name)} ({format_statistic(verdict.value)} vs threshold "
        f"{format_statistic(verdict.threshold)})"
    )


def failures(verdicts: tuple[Verdict, ...], batch: str) -> str:
    """Failed checks with their reasons, each reason once: checks that give the same reason share it."""
    groups: list[tuple[list[Verdict], list[str]]] = []
    for verdict in verdicts:
        reason = without_batch(verdict.reason, batch)
        for names, text in groups:
            if reason and text[0] and (reason in text[0] or text[0] in reason):
                names.append(verdict)
                text[0] = max(reason, text[0], key=len)
                break
        else:
            groups.append(([verdict], [reason]))
    parts = []
    for names, text in groups:
        said = " and ".join(verdict_text(v) for v in names)
        parts.append(f"{said} failed" + (f": {text[0]}" if text[0] else ""))
    return "; ".join(parts)


def _fix_first(inputs: MemoInputs, num: Numbers) -> tuple[str, tuple[str, ...]]:
    excluded, acknowledged = inputs.excluded_batches(), inputs.acknowledged()
    open_batches = [b for b in excluded if b not in acknowledged]
    model = [v for v in inputs.posterior_verdicts() if v.failed]
    steps = ["Provisional because " + "; ".join(inputs.status_reasons()) + "."]
    if open_batches:
        steps.append(
            f"To resolve: batch(es) {', '.join(open_batches)} (why each was excluded is in the status section). "
            "A corrected, re-landed batch re-enters the posterior; an exclusion that should stand can be "
            "acknowledged with a reason in the study file (acknowledged_exclusions)."
        )
    if model:
        steps.append(
            "A failed check of the posterior means the filter's model lags the data: revisit its process variance."
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
    scale = num.scale
    monitor = (
        "Keep monitoring: the posterior updates with every batch, and its checks warn if the effect starts to drift."
        if stable(inputs.result.process_var)
        else "Keep monitoring: the effect may drift, and the posterior updates with every batch."
    )
    details = [
        f"Plan with the interval, not the point: the average {sign} consistent with the evidence ranges "
        f"from {scale.number(near)} to {scale.size(far)}.",
        f"Where the effect stands now: posterior mean {num.mean} ({num.level} credible interval {num.interval}). "
        + monitor,
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


def _exclusion(inputs: MemoInputs, batch: str, failed: tuple[Verdict, ...]) -> list[str]:
    """Why an excluded batch is out, said once, then the checks that only warned on it."""
    named = inputs.exclusions.get(batch)
    gates = tuple(v for v in failed if named is None or v.name in named)
    others = tuple(v for v in failed if v not in gates)
    if gates:
        why = failures(gates, batch)
    elif named:
        why = " and ".join(check_name(name) for name in named) + " failed"
    else:
        index = inputs.result.labels.index(batch)
        why = inputs.result.exclusion_reasons[index] or "excluded"
    parts = [f"excluded from the posterior: {why}"]
    if others:
        parts.append(f"also {failures(others, batch)} (a warning)")
    return parts


def _batch_issues(inputs: MemoInputs) -> list[str]:
    excluded, failed, acknowledged = inputs.excluded_batches(), inputs.failed_checks(), inputs.acknowledged()
    repeated = _repeated_warnings(inputs, failed)
    issues = [
        f"Warning on {len(batches)} batches ({batches[0]} to {batches[-1]}): "
        f"{verdict_text(next(v for v in failed[batches[-1]] if v.name == name))} in the latest of them; "
        "they still updated the posterior."
        for name, batches in repeated.items()
    ]
    failed = {
        b: kept
        for b, verdicts in failed.items()
        if (kept := tuple(v for v in verdicts if b in excluded or v.name not in repeated))
    }
    for batch in inputs.batch_order():
        parts = _exclusion(inputs, batch, failed.get(batch, ())) if batch in excluded else []
        if batch in acknowledged:
            parts.append(f"acknowledged: {acknowledged[batch]}")
        elif batch in excluded:
            parts.append("not acknowledged")
        elif batch in failed:
            parts += [failures(failed[batch], batch), "it still updated the posterior (a warning)"]
        if parts:
            issues.append(f"Batch {batch}: " + "; ".join(parts) + ".")
    issues += [
        f"Acknowledgement of batch {b} not applied: the batch was not excluded."
        for b in inputs.unmatched_acknowledgements()
    ]
    issues += [
        f"Check of the posterior failed: {verdict_text(v)}." for v in inputs.posterior_verdicts() if v.failed
    ]
    return issues


def baseline_text(inputs: MemoInputs) -> str:
    """``15.2% among the 1,333 control units of batch 2025-12-01`` ('' without a baseline)."""
    base = inputs.baseline
    if base is None:
        return ""
    return f"{inputs.scale.level(base.mean)} among the {base.n_control:,} control units of batch {base.batch}"


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
    baseline = baseline_text(inputs)
    numbers_text = (
        f"always-valid {num.level} interval for the average effect so far {num.cs_interval}; "
        f"effect on {outcome} after batch {result.labels[-1]}: posterior mean {num.mean} "
        f"({num.level} credible interval {num.interval})" + (f"; baseline {baseline}." if baseline else ".")
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
    moves = (
        "with the effect modelled as stable (the same in every batch)"
        if stable(result.process_var)
        else f"allowing it to move by about {num.scale.sd(result.process_var)} per batch"
    )
    rows = (
        (
            f"always-valid {level} interval (confidence sequence)",
            num.cs_bounds,
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
            num.bounds,
            f"the effect at the latest batch, {moves} (estimate {num.mean})",
            f"{level} probability under the filter's model and prior, read once; read after every batch it "
            "will sometimes exclude 0 by chance even when there is no effect",
            "see where the effect stands now and whether it drifts; not to decide",
        ),
    )
    return (
        Heading("Which interval is which"),
        Table(("interval", num.scale.header("range"), "describes", "promise", "use it to"), rows),
        Paragraph(cs.promise, lead="The always-valid interval, precisely:"),
    )
