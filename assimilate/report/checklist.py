"""The diagnostic checklist of a decision memo, filled from the study's actual check results.

Each row is one question a reviewer asks before trusting a causal estimate, with a status:
``pass`` / ``fail`` (a check ran), ``not assessed`` (no check applied), ``assumption`` (cannot be
tested from the data, only stated) or ``by design`` (randomization makes it hold). Checks are
matched to rows by name (``balance`` or ``smd``, ``overlap``, ``post_treatment``, ``timing``), so
both the library's verdict names and the pipeline's ``check_<asset>_<property>`` names work.

Example
-------
>>> from assimilate import causal_kalman
>>> from assimilate.report.memo_inputs import DesignSummary, MemoInputs
>>> res = causal_kalman([0.5, 0.6], [0.1, 0.1], labels=["m1", "m2"], prior_mean=0.0, prior_var=1.0)
>>> inputs = MemoInputs(study="demo", result=res, design=DesignSummary(kind="observational"),
...                     latest_estimates=(), primary_estimator="aipw")
>>> [(row.item, row.status) for row in diagnostic_checklist(inputs)][-2]
('unobserved confounding', 'assumption')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from scipy import stats

from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators.result import EffectEstimate
from assimilate.report._words import check_name
from assimilate.report.memo_inputs import NAIVE_METHODS, MemoInputs, format_statistic

ChecklistStatus = Literal["pass", "fail", "not assessed", "assumption", "by design"]


@dataclass(frozen=True)
class ChecklistRow:
    """One checklist item: what is asked, its status and a short note saying why."""

    item: str
    status: ChecklistStatus
    note: str


@dataclass(frozen=True)
class EstimatorAgreement:
    """Whether the latest batch's estimators tell the same story as the primary one.

    An estimator agrees when its estimate lies inside the primary estimate's interval (level
    ``1 - alpha`` of the result). In an observational design the naive difference is left out of
    the comparison (it is not meant to be unconfounded); its gap to the primary is reported.
    """

    primary: EffectEstimate | None
    compared: tuple[str, ...]
    disagreeing: tuple[str, ...]
    low: float
    high: float
    naive_gap: float | None


def estimator_agreement(inputs: MemoInputs) -> EstimatorAgreement:
    """Compare the latest batch's finite estimates with the primary estimate."""
    primary = inputs.primary
    finite = [e for e in inputs.latest_estimates if e.is_finite]
    values = [e.estimate for e in finite]
    low, high = (min(values), max(values)) if values else (float("nan"), float("nan"))
    if primary is None or not primary.is_finite:
        return EstimatorAgreement(primary, (), (), low, high, None)
    observational = inputs.design.kind == "observational"
    others = [e for e in finite if e.method != primary.method]
    compared = [e for e in others if not (observational and e.method in NAIVE_METHODS)]
    half_width = float(stats.norm.ppf(1 - inputs.result.alpha / 2)) * primary.std_error
    disagreeing = [e.method for e in compared if abs(e.estimate - primary.estimate) > half_width]
    naive = next((e for e in others if e.method in NAIVE_METHODS), None)
    gap = naive.estimate - primary.estimate if observational and naive is not None else None
    return EstimatorAgreement(primary, tuple(e.method for e in compared), tuple(disagreeing), low, high, gap)


def _matches(*words: str) -> Callable[[Verdict], bool]:
    return lambda verdict: any(word in verdict.name.lower() for word in words)


def _from_checks(inputs: MemoInputs, matches: Callable[[Verdict], bool]) -> ChecklistRow | None:
    """Pass, fail or not assessed over every batch's matching verdicts; None when no check ran."""
    found = [(b, v) for b in inputs.batch_order() for v in inputs.verdicts.get(b, ()) if matches(v)]
    if not found:
        return None
    failed = [(b, v) for b, v in found if v.failed]
    defined = [v for _, v in found if v.status != "undefined"]
    batches = {b for b, _ in found}
    if failed:
        shown = "; ".join(
            f"{b}: {check_name(v.name)}"
            + (
                ""
                if v.value is None
                else f" {format_statistic(v.value)} vs threshold {format_statistic(v.threshold)}"
            )
            for b, v in failed
        )
        return ChecklistRow(
            "", "fail", f"failed in {len({b for b, _ in failed})} of {len(batches)} batches ({shown})"
        )
    if not defined:
        return ChecklistRow(
            "", "not assessed", f"the check did not apply: {found[-1][1].reason or 'undefined'}"
        )
    return ChecklistRow(
        "", "pass", f"passed in every batch where it applied ({len(defined)} of {len(found)})"
    )


def _row(item: str, found: ChecklistRow | None, fallback: ChecklistRow) -> ChecklistRow:
    chosen = found if found is not None else fallback
    return ChecklistRow(item, chosen.status, chosen.note)


def _estimators_row(inputs: MemoInputs) -> ChecklistRow:
    agreement = estimator_agreement(inputs)
    item = "several estimators compared"
    if not agreement.compared:
        return ChecklistRow(item, "not assessed", "fewer than two usable estimators in the latest batch")
    names = ", ".join(agreement.compared)
    if agreement.disagreeing:
        outside = ", ".join(agreement.disagreeing)
        return ChecklistRow(
            item, "fail", f"{outside} outside the primary estimate's interval (compared: {names})"
        )
    return ChecklistRow(item, "pass", f"{names} inside the primary estimate's interval")


def _calibration_rows(inputs: MemoInputs) -> tuple[ChecklistRow, ...]:
    """The calibration audit's row (only for a study that configures the audit)."""
    audit = inputs.calibration_audit
    if audit is None:
        return ()
    status: ChecklistStatus = (
        "pass" if audit.status == "pass" else "fail" if audit.status == "fail" else "not assessed"
    )
    return (ChecklistRow("intervals calibrated (placebo audit)", status, audit.sentence()),)


def _caveats_row(inputs: MemoInputs) -> ChecklistRow:
    listed = {"balance", "smd", "overlap", "post_treatment", "timing", "temporal"}
    batches: dict[str, list[str]] = {}
    for b, verdicts in inputs.failed_checks().items():
        for v in verdicts:
            if not any(word in v.name.lower() for word in listed):
                batches.setdefault(check_name(v.name), []).append(b)
    other = [
        f"{title} in {found[0]}"
        if len(found) == 1
        else f"{title} in {len(found)} batches ({found[0]} to {found[-1]})"
        for title, found in batches.items()
    ]
    other += [f"{check_name(v.name)} (posterior)" for v in inputs.posterior_verdicts() if v.failed]
    acknowledged = inputs.acknowledged()
    excluded = [b for b in inputs.excluded_batches() if b not in acknowledged]
    notes = []
    if other:
        notes.append("other failed checks: " + "; ".join(other))
    if excluded:
        notes.append("excluded batches: " + ", ".join(excluded))
    threats = len(inputs.card.likely_threats) if inputs.card is not None else 0
    if notes:
        return ChecklistRow("caveats", "fail", "; ".join(notes))
    known = (
        "excluded batches acknowledged: " + "; ".join(f"{b} ({why})" for b, why in acknowledged.items())
        if acknowledged
        else "no batch was excluded"
    )
    return ChecklistRow(
        "caveats", "pass", f"no other check failed and {known}; {threats} threat(s) stated on the card"
    )


def diagnostic_checklist(inputs: MemoInputs) -> tuple[ChecklistRow, ...]:
    """The checklist rows, in a fixed order, from the inputs' verdicts, card, design and estimates.

    Parameters
    ----------
    inputs : MemoInputs
        The memo's inputs.

    Returns
    -------
    tuple of ChecklistRow
        Rows: estimand stated, treatment precedes outcome, adjustment set pre-treatment, balance,
        overlap, several estimators compared, intervals calibrated (a study with a calibration
        audit), unobserved confounding, caveats.
    """
    card, design = inputs.card, inputs.design
    randomized = design.kind == "randomized"
    estimand = (
        ChecklistRow(
            "estimand stated", "pass", f"{card.estimand} of {card.treatment} vs {card.control_condition}"
        )
        if card is not None
        else ChecklistRow("estimand stated", "fail", "no estimand card: the estimand was not stated")
    )
    window = f"time window: {card.time_window}" if card is not None else "no time window stated"
    timing = (
        ChecklistRow("", "by design", f"treatment assigned before the outcome is measured; {window}")
        if randomized
        else ChecklistRow("", "assumption", f"not testable from the data; {window}")
    )
    adjustment = (
        ChecklistRow(
            "", "assumption", "declared pre-treatment, not checked: " + ", ".join(design.adjustment_set)
        )
        if design.adjustment_set
        else ChecklistRow("", "pass", "no adjustment set: nothing to verify")
    )
    no_check = ChecklistRow("", "not assessed", "no check reported")
    overlap_default = (
        ChecklistRow("", "by design", f"designed treated share {design.treated_share}")
        if randomized and design.treated_share is not None
        else no_check
    )
    adjusted = ", ".join(design.adjustment_set) or "nothing"
    if randomized:
        confounding = ChecklistRow("unobserved confounding", "by design", "randomized assignment")
    elif design.kind == "iv":
        instruments = ", ".join(design.instruments)
        confounding = ChecklistRow(
            "unobserved confounding",
            "assumption",
            f"allowed between treatment and outcome; assumes none between the instrument ({instruments}) and "
            f"the outcome given {adjusted}, and no path from it to the outcome but through the treatment",
        )
    else:
        confounding = ChecklistRow(
            "unobserved confounding",
            "assumption",
            f"not testable: assumes no unmeasured confounder given {adjusted}",
        )
    return (
        estimand,
        _row("treatment precedes outcome", _from_checks(inputs, _matches("timing", "temporal")), timing),
        _row("adjustment set pre-treatment", _from_checks(inputs, _matches("post_treatment")), adjustment),
        _row("balance", _from_checks(inputs, _matches("balance", "smd")), no_check),
        _row("overlap", _from_checks(inputs, _matches("overlap")), overlap_default),
        *(
            (_row("instrument strength", _from_checks(inputs, _matches("weak_instrument")), no_check),)
            if design.kind == "iv"
            else ()
        ),
        _estimators_row(inputs),
        *_calibration_rows(inputs),
        confounding,
        _caveats_row(inputs),
    )
