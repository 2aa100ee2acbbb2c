"""Calibration audit: whether an estimator's intervals cover at their nominal rate on a study's data.

Before an estimator's batches are fused, the audit re-estimates each batch of the study's history
with placebo treatments, permuted within the design's strata, whose effect is zero by construction
(as :func:`assimilate.diagnostics.refuters.placebo_treatment`). A calibrated ``1 - alpha`` interval
covers zero in a share ``1 - alpha`` of them; the audit pools the placebo intervals over batches and
tests whether they miss more often than ``alpha``:

    m = misses / N,   z = (m - alpha) / SE(m),   fail when  P(Z > z) < audit_alpha  and  m > alpha + tolerance

``SE(m)`` is cluster-robust by batch (the placebos of one batch share its rows), never below the
binomial ``sqrt(alpha (1 - alpha) / N)`` of independent draws. The tolerance keeps a practically
negligible miscalibration from failing a long history. An estimator whose standard error is too
small (a variance formula that ignores clustering, a custom estimator's plug-in variance) fails;
one whose intervals are valid fails at a rate of at most ``audit_alpha`` (docs/GATES.md has the
simulated rates).

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> def batch(n):
...     frame = pd.DataFrame({"d": rng.binomial(1, 0.5, n), "x": rng.standard_normal(n)})
...     return frame.assign(y=frame["d"] + frame["x"] + rng.standard_normal(n))
>>> history = {f"2025-0{m}-01": batch(300) for m in range(1, 7)}
>>> audit = calibration_audit(history, method="regression_adjustment", treatment="d", outcome="y",
...                           covariates=["x"], rng=np.random.default_rng(1))
>>> audit.verdict.status, audit.n_intervals
('pass', 120)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from assimilate._validation import check_alpha, check_choice
from assimilate.diagnostics.calibration import GateVerdict, stating_rate
from assimilate.diagnostics.refuters import (
    Design,
    check_count,
    check_rng,
    fresh_column,
    permute_within,
    placebo_strata,
    refit_options,
)
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators import EffectEstimate, EstimatorName, estimate_effect
from assimilate.estimators.variance import t_conf_int

Estimate = Callable[[pd.DataFrame, str], EffectEstimate]
"""An estimator under audit: ``(batch, treatment column) -> EffectEstimate``."""


@dataclass(frozen=True)
class CalibrationAudit:
    """The audit of one estimator over a study's batches: placebo coverage against the nominal level.

    Attributes
    ----------
    method : str
        The estimator audited.
    level : float
        The nominal coverage ``1 - alpha`` of its intervals.
    coverage : float
        The share of placebo intervals that cover zero (NaN when none could be estimated).
    std_error : float
        The standard error of the miss share (cluster-robust by batch, floored at the binomial one).
    statistic : float
        ``z = (miss share - alpha) / std_error``.
    p_value : float or None
        One-sided: the chance of missing this often with calibrated intervals.
    n_intervals : int
        Placebo intervals estimated.
    per_batch : tuple of (str, int, int)
        ``(batch, placebo intervals, covering zero)`` per batch, in the order given.
    verdict : GateVerdict
        ``name="calibration"``; fails when the intervals miss significantly (``audit_alpha``) and
        practically (``tolerance``) more often than ``alpha``; states ``audit_alpha`` as its
        false-alarm rate.
    """

    method: str
    level: float
    coverage: float
    std_error: float
    statistic: float
    p_value: float | None
    n_intervals: int
    per_batch: tuple[tuple[str, int, int], ...]
    verdict: GateVerdict

    def to_frame(self) -> pd.DataFrame:
        """One row per batch: ``batch``, ``placebos``, ``covered``, ``coverage``."""
        frame = pd.DataFrame(list(self.per_batch), columns=["batch", "placebos", "covered"])
        return frame.assign(coverage=frame["covered"] / frame["placebos"].where(frame["placebos"] > 0))

    def summary(self) -> str:
        """One line: coverage against the level, and the verdict."""
        return (
            f"calibration audit ({self.method}): placebo intervals cover zero {self.coverage:.1%} of "
            f"{self.n_intervals} times (nominal {self.level:.0%}); {self.verdict.status}"
        )

    def __str__(self) -> str:
        return self.summary()


def calibration_audit(
    batches: Mapping[str, pd.DataFrame],
    *,
    treatment: str,
    outcome: str,
    rng: np.random.Generator,
    method: EstimatorName | None = None,
    estimate: Estimate | None = None,
    covariates: Sequence[str] = (),
    design: Design = "randomized",
    strata: str | None = None,
    units_per_stratum: int = 50,
    n_placebos: int = 20,
    alpha: float = 0.05,
    audit_alpha: float = 0.01,
    tolerance: float = 0.02,
    **options: Any,
) -> CalibrationAudit:
    """Audit an estimator's intervals with placebo treatments over a study's batches.

    Parameters
    ----------
    batches : mapping of str to DataFrame
        The study's batches by name (e.g. the batch's start date), one row per unit.
    treatment, outcome : str
        Column names.
    rng : numpy.random.Generator
        Draws the permutations (and cross-fitting folds).
    method : str, optional
        A built-in estimator's name (:func:`~assimilate.estimators.estimate_effect`), with
        ``covariates`` and ``options``; the real treatment joins the placebo's covariates (the
        outcome carries its effect).
    estimate : callable, optional
        Instead of ``method``: any estimator ``(batch, treatment column) -> EffectEstimate`` (a
        team's own); its interval is ``estimate ± t SE`` with the df it states.
    covariates : sequence of str
        The estimator's covariates (with ``method``), and of the propensity strata.
    design : {"randomized", "observational"}
        How placebos are permuted: within ``strata`` (randomized), or within strata of about
        ``units_per_stratum`` units of the fitted propensity (observational).
    strata : str, optional
        A column of design strata (blocks).
    units_per_stratum : int
        Units per propensity stratum (observational design).
    n_placebos : int
        Placebos per batch (>= 2).
    alpha : float
        The intervals' nominal miss rate (``1 - alpha`` coverage).
    audit_alpha : float
        The audit's false-alarm rate: the chance that calibrated intervals fail it.
    tolerance : float
        How much more often than ``alpha`` the intervals must miss to fail (practical floor).
    **options
        Passed to the estimator with ``method``.

    Returns
    -------
    CalibrationAudit
        Undefined verdict when no placebo could be estimated.
    """
    if (method is None) == (estimate is None):
        raise ValueError("give exactly one of method= (a built-in estimator) or estimate= (a callable)")
    check_choice("design", design, ("randomized", "observational"))
    check_rng(rng)
    alpha = check_alpha(alpha)
    if not 0 < audit_alpha < 1:
        raise ValueError(f"audit_alpha must lie strictly between 0 and 1, got {audit_alpha!r}")
    placebos = check_count("n_placebos", n_placebos, minimum=2)
    if not 0 <= tolerance < 1 - alpha:
        raise ValueError(f"tolerance must be in [0, 1 - alpha), got {tolerance!r}")
    if not batches:
        raise ValueError("batches is empty: the audit needs at least one batch")
    name = method if method is not None else getattr(estimate, "__name__", "estimator")
    fit = estimate if estimate is not None else _named(method, outcome, covariates, treatment, options, rng)
    per_batch = tuple(
        (str(label), *_covered(frame, fit, treatment, covariates, rng, design, strata, units_per_stratum, placebos, alpha))
        for label, frame in batches.items()
    )  # fmt: skip
    return _judged(str(name), per_batch, alpha=alpha, audit_alpha=audit_alpha, tolerance=tolerance)


def _named(
    method: EstimatorName | None,
    outcome: str,
    covariates: Sequence[str],
    treatment: str,
    options: Mapping[str, Any],
    rng: np.random.Generator,
) -> Estimate:
    def fit(frame: pd.DataFrame, placebo: str) -> EffectEstimate:
        return estimate_effect(
            frame,
            method=method,  # type: ignore[arg-type]
            treatment=placebo,
            outcome=outcome,
            covariates=[*covariates, treatment],
            **refit_options(options, rng),
        )

    return fit


def _covered(
    frame: pd.DataFrame,
    fit: Estimate,
    treatment: str,
    covariates: Sequence[str],
    rng: np.random.Generator,
    design: Design,
    strata: str | None,
    units_per_stratum: int,
    placebos: int,
    alpha: float,
) -> tuple[int, int]:
    """Placebo intervals estimated in one batch, and how many cover zero (a failed fit counts neither)."""
    try:
        labels, _ = placebo_strata(frame, design, treatment, strata, covariates, None, units_per_stratum)
    except ValueError:  # no propensity strata (separation): the batch cannot be audited
        return 0, 0
    column, d = fresh_column(frame, f"{treatment}_placebo"), frame[treatment].to_numpy()
    done = covered = 0
    for _ in range(placebos):
        try:
            result = fit(frame.assign(**{column: permute_within(d, labels, rng)}), column)
        except ValueError:
            continue
        if not (math.isfinite(result.estimate) and math.isfinite(result.std_error) and result.std_error > 0):
            continue
        lower, upper = t_conf_int(result, alpha=alpha)
        done += 1
        covered += int(lower <= 0.0 <= upper)
    return done, covered


def audit_from_counts(
    method: str,
    per_batch: Sequence[tuple[str, int, int]],
    *,
    alpha: float = 0.05,
    audit_alpha: float = 0.01,
    tolerance: float = 0.02,
) -> CalibrationAudit:
    """The audit's verdict from per-batch counts ``(batch, placebo intervals, covering zero)``.

    :func:`calibration_audit` counts and judges in one call; a pipeline that counts each batch once
    (with the batch's own seeded generator, so a batch's count never depends on the others) and
    judges the study's history with this function reaches the same verdict from the same counts.
    """
    alpha = check_alpha(alpha)
    rows = tuple((str(b), int(n), int(c)) for b, n, c in per_batch)
    if any(n < 0 or not 0 <= c <= n for _, n, c in rows):
        raise ValueError("per_batch counts must satisfy 0 <= covered <= placebos")
    if not rows:
        raise ValueError("per_batch is empty: the audit needs at least one batch")
    return _judged(method, rows, alpha=alpha, audit_alpha=audit_alpha, tolerance=tolerance)


def _judged(
    method: str,
    per_batch: tuple[tuple[str, int, int], ...],
    *,
    alpha: float,
    audit_alpha: float,
    tolerance: float,
) -> CalibrationAudit:
    counts = np.array([[n, c] for _, n, c in per_batch], dtype=np.float64).reshape(-1, 2)
    total = int(counts[:, 0].sum())
    rule = (
        f"placebo intervals miss zero no more than {alpha:g} + {tolerance:g} of the time, "
        f"beyond chance at {audit_alpha:g}"
    )
    if total == 0:
        reason = "no placebo could be estimated in any batch"
        verdict = Verdict.undefined("calibration", threshold=alpha + tolerance, rule=rule, reason=reason)
        return CalibrationAudit(
            method, 1 - alpha, math.nan, math.nan, math.nan, None, 0, per_batch,
            stating_rate(verdict, audit_alpha),
        )  # fmt: skip
    misses = counts[:, 0] - counts[:, 1]
    miss = float(misses.sum() / total)
    used = counts[:, 0] > 0
    groups = int(used.sum())
    # Cluster-robust by batch: sum over batches of (misses_g - miss * n_g)^2, G/(G-1) small-sample factor.
    residual = misses[used] - miss * counts[used, 0]
    clustered = float(np.sum(residual**2)) / total**2 * (groups / (groups - 1) if groups > 1 else 1.0)
    std_error = math.sqrt(max(clustered, alpha * (1 - alpha) / total))
    z = (miss - alpha) / std_error
    p_value = float(stats.norm.sf(z))
    failed = p_value < audit_alpha and miss > alpha + tolerance
    verdict = Verdict.evaluate(
        "calibration",
        value=1 - miss,
        threshold=1 - alpha - tolerance,
        rule=rule,
        passed=not failed,
        reason=(
            f"placebo intervals cover zero {1 - miss:.1%} of {total} times against a nominal "
            f"{1 - alpha:.0%} (one-sided p = {p_value:.3g})"
        ),
    )
    return CalibrationAudit(
        method,
        1 - alpha,
        1 - miss,
        std_error,
        z,
        p_value,
        total,
        per_batch,
        stating_rate(verdict, audit_alpha),
    )
