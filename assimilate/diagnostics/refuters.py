"""Refuters of one batch's effect estimate: their result, and the placebo treatment.

Each refuter re-runs the batch's estimator (by name, through
:func:`assimilate.estimators.estimate_effect`) on a version of the batch whose answer is known,
and tests it at a stated level ``alpha`` (its false-alarm rate). For a placebo ``P`` permuted
within strata ``S``, ``P ⟂ (X, Y) | S``, so its effect is zero; the statistic is
``z = mean_b(θ_b) / sqrt(mean_b(SE_b²))`` over ``B`` placebos. The negative-control outcome, the
random common cause and the data subsets are in :mod:`assimilate.diagnostics.robustness`.

After DoWhy's refuters (Sharma & Kiciman 2020, "DoWhy: an end-to-end library for causal
inference", arXiv:2011.04216).

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> batch = pd.DataFrame({"d": rng.binomial(1, 0.5, 400), "x": rng.standard_normal(400)})
>>> batch["y"] = batch["d"] + batch["x"] + rng.standard_normal(400)
>>> result = placebo_treatment(batch, method="regression_adjustment", treatment="d", outcome="y",
...                            covariates=["x"], rng=np.random.default_rng(1))
>>> result.verdict.status, result.verdict.false_alarm_rate
('pass', 0.05)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from assimilate._frozen import FrozenDict, to_jsonable
from assimilate._validation import check_alpha, check_choice
from assimilate.diagnostics.calibration import GateVerdict, stating_rate
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators import ESTIMATORS, EffectEstimate, EstimatorName, estimate_effect
from assimilate.estimators.design_matrix import encode_covariates
from assimilate.estimators.models import fit_propensity

RefuterName = Literal["placebo_treatment", "negative_control_outcome", "random_common_cause", "data_subsets"]
REFUTERS: tuple[RefuterName, ...] = (
    "placebo_treatment",
    "negative_control_outcome",
    "random_common_cause",
    "data_subsets",
)
Design = Literal["randomized", "observational"]
NEGATIVE_CONTROL_ROLE = "negative_control"
ROW_BOUND_OPTIONS = ("propensity",)
"""Estimator options that describe a fit of the batch's own rows and treatment: never passed to a
refit on other rows, another treatment or other covariates."""


@dataclass(frozen=True)
class Refutation:
    """One refuter's test of a batch's estimate: the null as a sentence, its numbers and verdict.

    Attributes
    ----------
    refuter : str
        Which refuter (:data:`REFUTERS`).
    method : str
        The estimator refuted.
    null_hypothesis : str
        The null tested, one sentence; a failed verdict rejects it.
    effect : float
        The refuter's effect: the mean placebo effect, the effect on the negative control, the
        largest move under a random common cause, the root-mean-square subset difference.
    std_error : float
        The scale ``effect`` is judged against (see each refuter).
    statistic : float
        The test statistic (z, chi-square or scaled move; see each refuter).
    p_value : float or None
        Its p-value (None when undefined).
    alpha : float
        The level: the stated false-alarm rate of the verdict.
    verdict : GateVerdict
        Pass, fail or undefined, carrying ``false_alarm_rate = alpha``.
    replicates : tuple of float
        The refitted estimates (placebos, subsets, random common causes; one for the control).
    n_failed : int
        Refits that raised an error (their messages in ``details["errors"]``).
    interval : (float, float) or None
        A ``1 - alpha`` interval for ``effect`` when the refuter has one.
    details : Mapping
        Refuter-specific numbers, JSON-serialisable and read-only.
    """

    refuter: RefuterName
    method: str
    null_hypothesis: str
    effect: float
    std_error: float
    statistic: float
    p_value: float | None
    alpha: float
    verdict: GateVerdict
    replicates: tuple[float, ...] = ()
    n_failed: int = 0
    interval: tuple[float, float] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "replicates", tuple(float(v) for v in self.replicates))
        object.__setattr__(self, "details", FrozenDict(self.details))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (NaN as None, the verdict as its own dict)."""
        return {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self)}

    def summary(self) -> str:
        """A short human-readable report."""
        p = "n/a" if self.p_value is None else f"{self.p_value:.4g}"
        lines = [
            f"{self.refuter} ({self.method}): {self.verdict.status}",
            f"  null       {self.null_hypothesis}",
            f"  effect     {self.effect:.6g} (scale {self.std_error:.6g})",
            f"  statistic  {self.statistic:.4g}, p-value {p}, level {self.alpha:g}",
            f"  refits     {len(self.replicates)} ok, {self.n_failed} failed",
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def check_rng(rng: object) -> np.random.Generator:
    """``rng`` if it is a ``numpy.random.Generator``."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def check_method(method: str) -> EstimatorName:
    """``method`` if it is a unit-level estimator (``n_of_1`` permutes days, not units: refused)."""
    return check_choice("method", method, ESTIMATORS)


def check_count(name: str, value: int, *, minimum: int) -> int:
    """``value`` if it is a whole number >= ``minimum``."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def refit_options(
    options: Mapping[str, Any], rng: np.random.Generator, *, same_rows: bool = False
) -> dict[str, Any]:
    """Options for a refit: ``rng`` for cross-fitting; row-bound fits only for the same rows (``same_rows``)."""
    kept = {k: v for k, v in options.items() if same_rows or k not in ROW_BOUND_OPTIONS}
    if kept.get("n_folds"):
        kept["rng"] = rng
    return kept


def fresh_column(data: pd.DataFrame, stem: str) -> str:
    """A column name not in ``data``: ``stem``, or ``stem`` with a number."""
    name, number = stem, 1
    while name in data.columns:
        name, number = f"{stem}_{number}", number + 1
    return name


def try_estimate(data: pd.DataFrame, **arguments: Any) -> EffectEstimate | str:
    """The estimate, or the error message when the estimator cannot estimate on these rows."""
    try:
        result = estimate_effect(data, **arguments)
    except ValueError as error:  # separation, singular design, an empty arm: named by the estimator
        return f"{type(error).__name__}: {error}"
    return result if result.is_finite else "non-finite estimate or standard error"


def verdict_of(
    name: str, *, p_value: float | None, alpha: float, rule: str, reason: str = "", passed: bool | None = None
) -> GateVerdict:
    """Fail when ``p_value < alpha`` (or as ``passed`` says); undefined, with ``reason``, without a p-value."""
    if p_value is None:
        verdict = Verdict.undefined(name, threshold=alpha, rule=rule, reason=reason or "no refit succeeded")
    else:
        ok = p_value >= alpha if passed is None else passed
        verdict = Verdict.evaluate(name, value=p_value, threshold=alpha, rule=rule, passed=ok, reason=reason)
    return stating_rate(verdict, alpha)


def failed_refits(name: str, *, alpha: float, rule: str, errors: Sequence[str], tries: int) -> GateVerdict:
    """A failed verdict: some refits raised (the estimate needs rows or a fit the refit lacks)."""
    reason = f"{len(errors)} of {tries} refits failed ({errors[0]})"
    return stating_rate(Verdict(name, float(len(errors)), 0.0, rule, "fail", reason), alpha)


def undefined(
    refuter: RefuterName, method: str, null: str, alpha: float, reason: str, **extra: Any
) -> Refutation:
    """A refutation that does not apply to this batch, with the reason."""
    verdict = verdict_of(refuter, p_value=None, alpha=alpha, rule=f"p-value >= {alpha:g}", reason=reason)
    return Refutation(refuter, method, null, math.nan, math.nan, math.nan, None, alpha, verdict, **extra)


def negative_controls(roles: Mapping[str, str]) -> tuple[str, ...]:
    """The columns a study's causal graph declares with role ``negative_control``, sorted."""
    return tuple(sorted(v for v, role in roles.items() if role == NEGATIVE_CONTROL_ROLE))


def propensity_strata(scores: ArrayLike, *, units_per_stratum: int) -> NDArray[np.int64]:
    """Strata of about ``units_per_stratum`` units each by rank of the score (at least 1 stratum)."""
    values = np.asarray(scores, dtype=np.float64)
    n = len(values)
    k = max(1, n // check_count("units_per_stratum", units_per_stratum, minimum=2))
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(values, kind="stable")] = np.arange(n)
    return (ranks * k) // n


def permute_within(values: NDArray[Any], labels: NDArray[Any], rng: np.random.Generator) -> NDArray[Any]:
    """``values`` permuted independently within each level of ``labels``."""
    out = values.copy()
    codes = pd.factorize(pd.Series(labels), sort=True)[0]
    order = np.argsort(codes, kind="stable")
    for block in np.split(order, np.flatnonzero(np.diff(codes[order])) + 1):
        out[block] = values[block[rng.permutation(len(block))]]
    return out


def placebo_strata(
    data: pd.DataFrame,
    design: Design,
    treatment: str,
    strata: str | None,
    propensity_covariates: Sequence[str],
    propensity_scores: ArrayLike | None,
    units_per_stratum: int,
) -> tuple[NDArray[Any], str]:
    """Each unit's placebo stratum and the stratification in words."""
    n = len(data)
    column = np.zeros(n, dtype=np.int64) if strata is None else data[strata].astype(str).to_numpy()
    if design == "randomized":
        return column, "the whole batch" if strata is None else f"the levels of {strata!r}"
    if propensity_scores is None:
        d = data[treatment].to_numpy()
        scores = fit_propensity(encode_covariates(data, list(propensity_covariates)), d, policy="none").scores
    else:
        scores = np.asarray(propensity_scores, dtype=np.float64)
        if scores.shape != (n,):
            raise ValueError(f"propensity_scores must have one score per row ({n}), got shape {scores.shape}")
    bins = propensity_strata(scores, units_per_stratum=units_per_stratum)
    labels = np.char.add(np.char.add(column.astype(str), "|"), bins.astype(str))
    words = f"{bins.max() + 1} strata of about {units_per_stratum} units by fitted propensity"
    return labels, words if strata is None else f"{words}, within the levels of {strata!r}"


def placebo_treatment(
    data: pd.DataFrame,
    *,
    method: EstimatorName,
    treatment: str,
    outcome: str,
    covariates: Sequence[str] = (),
    rng: np.random.Generator,
    design: Design = "randomized",
    strata: str | None = None,
    propensity_covariates: Sequence[str] | None = None,
    propensity_scores: ArrayLike | None = None,
    units_per_stratum: int = 50,
    n_placebos: int = 10,
    alpha: float = 0.05,
    **options: Any,
) -> Refutation:
    """Re-estimate with the treatment permuted within the design's strata: the effect should vanish.

    Parameters
    ----------
    data : DataFrame
        The batch, one row per unit.
    method : str
        The estimator's name (as :func:`~assimilate.estimators.estimate_effect`).
    treatment, outcome : str
        Column names.
    covariates : sequence of str
        The estimator's covariates.
    rng : numpy.random.Generator
        Draws the permutations (and cross-fitting folds).
    design : {"randomized", "observational"}
        Randomized: permute within the levels of ``strata`` (or the whole batch). Observational:
        permute within strata of about ``units_per_stratum`` units of the fitted propensity (see Notes).
    strata : str, optional
        A column of design strata (blocks); permutation never crosses its levels.
    propensity_covariates : sequence of str, optional
        Covariates of the logistic propensity that defines the observational strata (default
        ``covariates``; give the design's full list of measured confounders to check that the
        estimator's covariates remove their confounding).
    propensity_scores : array_like, optional
        Fitted propensity scores of these rows (reused instead of a fit).
    units_per_stratum : int
        Units per propensity stratum (observational design).
    n_placebos : int
        Placebos ``B`` (>= 2).
    alpha : float
        Level of the test: the stated false-alarm rate.
    **options
        Passed to the estimator (e.g. ``estimand``, ``n_folds``, ``bounds``); ``propensity`` is not.

    Returns
    -------
    Refutation
        ``effect`` the mean placebo estimate, ``std_error`` ``sqrt(mean(SE_b²))``, ``statistic``
        ``z = effect / std_error``; fails when the two-sided normal p-value is below ``alpha``.

    Notes
    -----
    A placebo ``P`` permuted within strata ``S`` is independent of ``(X, Y)`` given ``S``, so its
    effect is zero. In a randomized design ``S`` is the design's blocks. In an observational design
    a placebo permuted over the whole batch would be unconfounded and test nothing about the
    adjustment; permuted within narrow strata of the fitted propensity ``ê(X)`` it is confounded by
    ``X`` as the real treatment is (``P(P = 1 | X) ≈ ê(X)``), so the estimate is zero only if the
    estimator removes that confounding: a measured confounder left out of ``covariates`` (but in
    ``propensity_covariates``) biases the placebo as it biases the estimate. Narrow strata keep the
    placebo's propensity close to the logistic ``ê`` the estimators fit (quintiles would leave a
    step function no logistic model follows). The real treatment is added to the placebo's
    covariates: the outcome carries the real effect, and without it an outcome model right for the
    real problem would be wrong for the placebo one. An unmeasured confounder leaves the placebo
    unbiased: no placebo can see it (the negative control can).

    The ``B`` placebos share the batch, so their mean varies by at most one placebo's standard
    error: ``z`` has variance at most 1 under the null and the level is at most ``alpha``
    (conservative; the averaging removes the permutation noise, which gains power against a bias
    beyond about two standard errors). Cost: ``B`` estimator fits plus one propensity fit (AIPW on
    10,000 rows: about 0.2 s with ``B = 10``).
    """
    check_choice("design", design, ("randomized", "observational"))
    check_method(method)
    check_rng(rng)
    alpha = check_alpha(alpha)
    b = check_count("n_placebos", n_placebos, minimum=2)
    covariates = list(covariates)
    chosen = covariates if propensity_covariates is None else list(propensity_covariates)
    try:
        labels, words = placebo_strata(
            data, design, treatment, strata, chosen, propensity_scores, units_per_stratum
        )
    except ValueError as error:  # the propensity fit separates or is singular
        null = f"With the treatment permuted within propensity strata, the {method} estimate is zero."
        return undefined(
            "placebo_treatment", method, null, alpha, f"no propensity strata: {type(error).__name__}: {error}"
        )
    null = f"With the treatment permuted within {words}, the {method} estimate is zero."
    placebo, d = fresh_column(data, f"{treatment}_placebo"), data[treatment].to_numpy()
    arguments = {
        "method": method,
        "treatment": placebo,
        "outcome": outcome,
        "covariates": [*covariates, treatment],
    }
    fits = [
        try_estimate(
            data.assign(**{placebo: permute_within(d, labels, rng)}),
            **arguments,
            **refit_options(options, rng),
        )
        for _ in range(b)
    ]
    errors = [fit for fit in fits if isinstance(fit, str)]
    done = [fit for fit in fits if not isinstance(fit, str)]
    estimates = tuple(fit.estimate for fit in done)
    details: dict[str, Any] = {"strata": words, "design": design, "n_placebos": b, "errors": errors[:3]}
    if not done:
        reason = f"no placebo could be estimated: {errors[0]}"
        return undefined("placebo_treatment", method, null, alpha, reason, n_failed=b, details=details)
    effect = float(np.mean(estimates))
    scale = math.sqrt(float(np.mean([fit.std_error**2 for fit in done])))
    z = effect / scale
    p = float(2.0 * stats.norm.sf(abs(z)))
    crit = float(stats.norm.isf(alpha / 2))
    rule = f"two-sided p-value of the mean placebo effect >= {alpha:g}"
    verdict = verdict_of("placebo_treatment", p_value=p, alpha=alpha, rule=rule)
    interval = (effect - crit * scale, effect + crit * scale)
    return Refutation(
        "placebo_treatment", method, null, effect, scale, z, p, alpha, verdict,
        replicates=estimates, n_failed=len(errors), interval=interval, details=details,
    )  # fmt: skip
