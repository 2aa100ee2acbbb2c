"""A study's calibration audit: its plan's primary estimator audited on its admitted batches.

:func:`~assimilate.diagnostics.calibration_audit.calibration_audit` asks whether an estimator's
``1 - alpha`` intervals cover zero at their nominal rate under placebo treatments (permuted within
the design's strata, so their effect is zero). :func:`audit_plan` runs it the way the study
estimates: the plan's primary estimator (built-in, with the plan's covariates, categorical levels,
estimand, propensity policy and cross-fitting folds; or the team's own function), on the valid rows
of every admitted batch. Each batch draws from its own generator seeded by the plan's seed and the
batch's label (:func:`batch_generator`), so a batch's count never depends on which other batches
exist, and an unchanged history gives the same verdict.

Below ``min_batches`` admitted batches the audit is undefined (not assessed). With ``refuse: true``,
a failed audit keeps every batch of the primary estimator out of the posterior
(:meth:`StudyAudit.admitted`): the posterior then has no admitted batch, each period a predict-only
step whose reason names the audit, rather than a fusion of intervals known to be too narrow.

Example
-------
>>> import numpy as np, pandas as pd
>>> from assimilate.design.plan import AnalysisPlan
>>> rng = np.random.default_rng(0)
>>> def batch(n):
...     frame = pd.DataFrame({"d": rng.binomial(1, 0.5, n), "x": rng.standard_normal(n)})
...     return frame.assign(y=frame["d"] + frame["x"] + rng.standard_normal(n))
>>> plan = AnalysisPlan(unit_id="id", treatment="d", outcome="y", outcome_type="continuous",
...     design={"kind": "randomized"}, covariates=["x"], primary_estimator="regression_adjustment",
...     process_var=0.0, calibration_audit={"placebos": 10, "min_batches": 3})
>>> found = audit_plan({f"2025-0{m}-01": batch(300) for m in range(1, 5)}, plan)
>>> found.verdict.status, found.audit.n_intervals, found.refused
('pass', 40, False)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from assimilate.diagnostics.calibration_audit import CalibrationAudit, audit_from_counts, calibration_audit
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators.custom import CustomEstimator, run_custom_estimator
from assimilate.estimators.result import EffectEstimate

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan

NAME = "calibration_audit"
ALPHA = 0.05
"""The nominal miss rate audited: the pipeline's intervals are 95%."""
AUDIT_COLUMNS = [
    "method",
    "status",
    "coverage",
    "level",
    "misses",
    "n_intervals",
    "miss_rate",
    "statistic",
    "p_value",
    "batches",
    "refused",
    "reason",
]


def batch_generator(seed: int, batch: str) -> np.random.Generator:
    """The audit's generator for one batch: seeded by the plan's seed and the batch's label."""
    digest = hashlib.sha256(f"{seed}:{NAME}:{batch}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@dataclass(frozen=True)
class StudyAudit:
    """The calibration audit of a study's primary estimator, and whether its batches are refused.

    Attributes
    ----------
    method : str
        The primary estimator audited.
    verdict : Verdict
        ``name="calibration_audit"``: the audit's verdict, or undefined (too few admitted batches,
        no placebo estimable) with the reason.
    audit : CalibrationAudit, optional
        The counts and the test (None when undefined for too few batches).
    refuse : bool
        The study's ``refuse`` setting.
    """

    method: str
    verdict: Verdict
    audit: CalibrationAudit | None
    refuse: bool

    @property
    def refused(self) -> bool:
        """Whether the estimator's batches are kept out: the audit failed and the study refuses."""
        return self.refuse and self.verdict.failed

    @property
    def refusal(self) -> str:
        """The exclusion reason of a refused batch ('' when nothing is refused)."""
        if not self.refused:
            return ""
        return f"calibration audit of {self.method} failed ({self.verdict.reason}); the study refuses it"

    def admitted(self, observed: pd.DataFrame) -> pd.DataFrame:
        """``observed`` with every admitted batch excluded when the audit refuses the estimator.

        Parameters
        ----------
        observed : DataFrame
            :func:`assimilate.admission.observations` of every period.

        Returns
        -------
        DataFrame
            Unchanged unless :attr:`refused`; then each admitted period is a predict-only step
            whose ``exclusion_reason`` is :attr:`refusal` (periods excluded for their own reasons keep them).
        """
        if not self.refused or observed.empty:
            return observed
        out = observed.copy()
        admitted = ~out["excluded"].astype(bool)
        out.loc[admitted, "excluded"] = True
        out.loc[admitted, "exclusion_reason"] = self.refusal
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row (:data:`AUDIT_COLUMNS`) for the warehouse, read back by the memo."""
        audit = self.audit

        def number(value: float | None) -> float:
            return math.nan if value is None else float(value)

        misses = sum(n - c for _, n, c in audit.per_batch) if audit is not None else 0
        row = {
            "method": self.method,
            "status": self.verdict.status,
            "coverage": number(audit.coverage if audit else None),
            "level": 1 - ALPHA,
            "misses": int(misses),
            "n_intervals": int(audit.n_intervals if audit else 0),
            "miss_rate": number(1 - audit.coverage if audit else None),
            "statistic": number(audit.statistic if audit else None),
            "p_value": number(audit.p_value if audit else None),
            "batches": int(sum(1 for _, n, _ in audit.per_batch if n > 0) if audit else 0),
            "refused": self.refused,
            "reason": self.verdict.reason,
        }
        return pd.DataFrame([row], columns=AUDIT_COLUMNS)


@dataclass(frozen=True)
class StoredAudit:
    """A study's latest calibration audit as the warehouse keeps it (one :data:`AUDIT_COLUMNS` row)."""

    method: str
    status: str
    coverage: float
    level: float
    misses: int
    n_intervals: int
    p_value: float
    batches: int
    refused: bool
    reason: str

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> StoredAudit | None:
        """The audit in ``frame`` (the stored table), or None when none is stored."""
        if frame.empty or not set(AUDIT_COLUMNS) <= set(frame.columns):
            return None
        row = frame.iloc[-1]
        return cls(
            method=str(row["method"]),
            status=str(row["status"]),
            coverage=float(row["coverage"]),
            level=float(row["level"]),
            misses=int(row["misses"]),
            n_intervals=int(row["n_intervals"]),
            p_value=float(row["p_value"]),
            batches=int(row["batches"]),
            refused=bool(row["refused"]),
            reason=str(row["reason"]),
        )

    def sentence(self) -> str:
        """What the audit found, in words (numbers, and whether the estimator was refused)."""
        if self.status == "undefined":
            return f"not assessed: {self.reason}"
        found = (
            f"{self.method}'s placebo intervals covered zero {self.coverage:.1%} of {self.n_intervals} times "
            f"in {self.batches} admitted batches ({self.misses} misses; nominal {self.level:.0%}, one-sided "
            f"p = {self.p_value:.3g})"
        )
        if self.status == "pass":
            return found
        if self.refused:
            return f"{found}: the study refuses the estimator, so none of its batches updated the posterior"
        return f"{found}: its intervals are too narrow, yet its batches still updated the posterior (refuse: false)"


def audit_plan(
    batches: Mapping[str, pd.DataFrame],
    plan: AnalysisPlan,
    *,
    custom: Mapping[str, CustomEstimator] | None = None,
) -> StudyAudit:
    """Audit the plan's primary estimator on the valid rows of its admitted batches.

    Parameters
    ----------
    batches : mapping of str to DataFrame
        Each admitted batch's valid rows, by label (the plan's columns).
    plan : AnalysisPlan
        The study's plan; its ``calibration_audit`` section sets placebos, ``min_batches``, the
        audit's level and tolerance and ``refuse``.
    custom : mapping of str to callable, optional
        The team's estimators by name (needed when the primary estimator is one).

    Returns
    -------
    StudyAudit
        Undefined with the reason below ``min_batches`` batches (or without the section).

    Raises
    ------
    ValueError
        When the primary estimator is a custom one that ``custom`` does not hold.
    """
    settings, method = plan.calibration_audit, plan.primary_estimator
    rule = "placebo intervals of the primary estimator cover zero at their nominal rate"
    if settings is None:
        reason = "the study configures no calibration_audit"
        return StudyAudit(
            method, Verdict.undefined(NAME, threshold=None, rule=rule, reason=reason), None, False
        )
    if plan.design.kind not in ("randomized", "observational") or plan.single_subject:
        named = {"iv": "an instrumental-variables", "did": "a difference-in-differences"}
        kind = "an N-of-1" if plan.single_subject else named.get(plan.design.kind, f"a {plan.design.kind}")
        reason = (
            f"{kind} design: its placebo would have to keep the design's structure (blocks of days, an "
            "instrument, adoption cohorts), which a permuted treatment does not"
        )
        verdict = Verdict.undefined(NAME, threshold=None, rule=rule, reason=reason)
        return StudyAudit(method, verdict, None, settings.refuse)
    if len(batches) < settings.min_batches:
        reason = (
            f"{len(batches)} admitted batch(es); the audit needs at least {settings.min_batches} "
            "(calibration_audit.min_batches)"
        )
        verdict = Verdict.undefined(NAME, threshold=1 - ALPHA - settings.tolerance, rule=rule, reason=reason)
        return StudyAudit(method, verdict, None, settings.refuse)
    observational = plan.design.kind == "observational"
    counts: list[tuple[str, int, int]] = []
    for label, rows in batches.items():
        if rows.empty:  # no stored rows (withdrawn meanwhile): the batch adds no placebo
            counts.append((label, 0, 0))
            continue
        rng = batch_generator(plan.seed, label)
        one = calibration_audit(
            {label: rows},
            treatment=plan.treatment,
            outcome=plan.outcome,
            rng=rng,
            design="observational" if observational else "randomized",
            units_per_stratum=settings.units_per_stratum,
            n_placebos=settings.placebos,
            alpha=ALPHA,
            **_estimator(plan, custom or {}, rng),
        )
        counts.extend(one.per_batch)
    audit = audit_from_counts(
        method, counts, alpha=ALPHA, audit_alpha=settings.audit_alpha, tolerance=settings.tolerance
    )
    return StudyAudit(method, _named(audit.verdict), audit, settings.refuse)


def _named(verdict: Verdict) -> Verdict:
    """The audit's verdict under the check's name (the library names it ``calibration``)."""
    return replace(verdict, name=NAME)


def _estimator(
    plan: AnalysisPlan, custom: Mapping[str, CustomEstimator], rng: np.random.Generator
) -> dict[str, Any]:
    """``calibration_audit``'s estimator arguments: the built-in one with the plan's options, or the team's."""
    method, covariates = plan.primary_estimator, tuple(plan.model_columns)
    if method in custom:
        function = custom[method]

        def team(frame: pd.DataFrame, placebo: str) -> EffectEstimate:
            estimate, _ = run_custom_estimator(
                function,
                method,
                frame,
                treatment=placebo,
                outcome=plan.outcome,
                covariates=(*covariates, plan.treatment),  # the real treatment carries its effect
                estimand=plan.estimand,
                rng=rng,
            )
            return estimate

        team.__name__ = method
        return {"estimate": team, "covariates": covariates}
    if method in plan.custom_estimators:
        raise ValueError(f"primary_estimator: custom estimator {method!r} was not resolved (custom=)")
    options: dict[str, Any] = {"method": method, "covariates": covariates, "estimand": plan.estimand}
    if plan.categorical and method != "difference_in_means":
        options["categories"] = {k: list(v) for k, v in plan.categorical.items()}
    if method in ("ipw", "aipw"):
        options |= {"policy": plan.propensity.policy, "bounds": tuple(plan.propensity.bounds)}
    if method == "aipw" and plan.cross_fitting_folds:
        options["n_folds"] = plan.cross_fitting_folds
    return options


__all__ = ["ALPHA", "AUDIT_COLUMNS", "StoredAudit", "StudyAudit", "audit_plan", "batch_generator"]
