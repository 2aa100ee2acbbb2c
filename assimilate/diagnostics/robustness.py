"""Refuters of one batch's estimate: a negative-control outcome, a random common cause, data subsets.

The negative control is an outcome the treatment cannot affect: its estimated effect should be
zero (Lipsitch, Tchetgen Tchetgen & Cohen 2010, "Negative controls", Epidemiology 21(3)). The
other two ask whether the estimate behaves like a smooth average of the units' contributions, as its
normal interval assumes, or leans on a few heavily weighted or influential rows. Subsets of
``m`` of the ``n`` rows: for an asymptotically linear estimator ``θ̂ = mean(φ_i)``,
``Var(θ̂_sub − θ̂ | batch) = (1/m − 1/n) S²_φ = (n/m − 1) SE²``. A random common cause ``W``:
``√n (θ̂_W − θ̂) / SE ≈ c Z₁ Z₂``, a product of independent normals (``c = 1`` for regression).

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> batch = pd.DataFrame({"d": rng.binomial(1, 0.5, 400), "x": rng.standard_normal(400)})
>>> batch["y"] = batch["d"] + batch["x"] + rng.standard_normal(400)
>>> data_subsets(batch, method="regression_adjustment", treatment="d", outcome="y",
...              covariates=["x"], rng=np.random.default_rng(1)).verdict.status
'pass'
>>> round(product_normal_tail(2.18), 3)  # P(|Z1 Z2| > 2.18)
0.05
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from assimilate._validation import check_alpha, check_positive
from assimilate.diagnostics.refuters import (
    Refutation,
    check_count,
    check_method,
    check_rng,
    failed_refits,
    fresh_column,
    refit_options,
    try_estimate,
    undefined,
    verdict_of,
)
from assimilate.estimators import EffectEstimate, EstimatorName

COMMON_CAUSE_SCALE = 2.5
"""``c`` of the random-common-cause rule: regression has ``c = 1`` exactly; IPW and AIPW measured
1.4–1.7 with propensities within [0.1, 0.9] (docs/GATES.md); a well-conditioned estimator stays under 2.5."""
SUBSET_ALLOWANCE = 1.5
"""``r₀`` of the data-subsets rule: IPW and AIPW at 200 units vary 1.10–1.18 times the linear variance,
with tails heavier than a scaled chi-square (docs/GATES.md)."""


def product_normal_tail(x: float) -> float:
    """``P(|Z₁ Z₂| > x)`` for independent standard normals: ``1 − (2/π) ∫₀ˣ K₀(t) dt``."""
    if x <= 0:
        return 1.0
    return float(min(1.0, max(0.0, 1.0 - 2.0 / math.pi * special.iti0k0(x)[1])))


def product_normal_isf(p: float) -> float:
    """The ``x`` with ``P(|Z₁ Z₂| > x) = p``."""
    check_alpha(p)
    return float(optimize.brentq(lambda x: product_normal_tail(x) - p, 1e-12, 60.0, xtol=1e-12))


def _full(
    data: pd.DataFrame, estimate: EffectEstimate | None, arguments: dict[str, Any], options: dict[str, Any]
) -> EffectEstimate | str:
    return estimate if estimate is not None else try_estimate(data, **arguments, **options)


def random_common_cause(
    data: pd.DataFrame,
    *,
    method: EstimatorName,
    treatment: str,
    outcome: str,
    covariates: Sequence[str] = (),
    rng: np.random.Generator,
    estimate: EffectEstimate | None = None,
    n_draws: int = 5,
    scale: float = COMMON_CAUSE_SCALE,
    tolerance: float = 0.1,
    alpha: float = 0.05,
    **options: Any,
) -> Refutation:
    """Add an independent standard-normal covariate and re-estimate: the estimate should barely move.

    Parameters
    ----------
    data : DataFrame
        The batch.
    method : str
        The estimator's name.
    treatment, outcome : str
        Column names.
    covariates : sequence of str
        The estimator's covariates (the random one is added to them).
    rng : numpy.random.Generator
        Draws the random covariates (and cross-fitting folds).
    estimate : EffectEstimate, optional
        The batch's estimate with this estimator (refitted when not given).
    n_draws : int
        Random covariates ``K``, each added alone.
    scale : float
        ``c``: the largest ``√n · rms(move) / SE`` of a well-conditioned estimator.
    tolerance : float
        Moves below ``tolerance · SE`` never fail: too small to matter.
    alpha : float
        Level: the stated false-alarm rate.
    **options
        Passed to the estimator (``propensity`` is not).

    Returns
    -------
    Refutation
        ``effect`` the largest move ``max_k |θ̂_k − θ̂|``, ``std_error`` the batch's SE, ``statistic``
        ``M = √n · effect / SE``; fails when ``1 − (1 − T(M / c))^K < alpha`` and ``effect > tolerance · SE``,
        ``T`` the tail of ``|Z₁ Z₂|`` (:func:`product_normal_tail`).

    Notes
    -----
    For regression (Frisch–Waugh–Lovell; the omitted-variable formula) adding ``W`` moves the
    estimate by ``−β̂_W δ̂``, ``β̂_W`` the coefficient of ``W`` and ``δ̂`` that of the treatment in
    the regression of ``W`` on treatment and covariates. Given the batch, both are normal in ``W``
    and independent (they project ``W`` on orthogonal residuals), so
    ``√n (θ̂_W − θ̂) / SE → Z₁ Z₂`` exactly. An estimator with several nuisance fits (IPW, AIPW)
    moves by a sum of such products, with a scale ``c`` that grows with the spread of its weights:
    measured 1.4–1.7 for propensities in [0.1, 0.9] and up to 3 when they reach [0.02, 0.98]. The
    rule fails a move beyond ``c = 2.5`` times the regular noise at level ``alpha`` (max of ``K``
    independent draws): an estimate carried by a few heavily weighted rows. Cost: ``K`` fits
    (AIPW on 10,000 rows: about 0.07 s with ``K = 5``).
    """
    check_method(method)
    check_rng(rng)
    alpha = check_alpha(alpha)
    k = check_count("n_draws", n_draws, minimum=1)
    c = check_positive("scale", scale)
    null = (
        f"Adding an independent standard-normal covariate moves the {method} estimate by no more than "
        f"a well-conditioned estimator's noise (scale {c:g} SE/sqrt(n))."
    )
    covariates = list(covariates)
    arguments = {"method": method, "treatment": treatment, "outcome": outcome, "covariates": covariates}
    if method == "difference_in_means":
        return undefined(
            "random_common_cause", method, null, alpha, f"{method} does not adjust for covariates"
        )
    full = _full(data, estimate, arguments, refit_options(options, rng, same_rows=True))
    if isinstance(full, str):
        return undefined("random_common_cause", method, null, alpha, f"the batch has no estimate: {full}")
    column, fitted = fresh_column(data, "random_common_cause"), refit_options(options, rng)
    fits = [
        try_estimate(
            data.assign(**{column: rng.standard_normal(len(data))}),
            **arguments | {"covariates": [*covariates, column]},
            **fitted,
        )
        for _ in range(k)
    ]
    errors = [fit for fit in fits if isinstance(fit, str)]
    estimates = tuple(fit.estimate for fit in fits if not isinstance(fit, str))
    n, se = full.n, full.std_error
    bound = max(tolerance, c * product_normal_isf(-math.expm1(math.log1p(-alpha) / k)) / math.sqrt(n))
    rule = (
        f"largest move <= {bound:.3g} SE (the larger of {tolerance:g} SE and {c:g} x the noise at {alpha:g})"
    )
    details = {
        "estimate": full.estimate,
        "n": n,
        "n_draws": k,
        "scale": c,
        "bound_in_se": bound,
        "errors": errors[:3],
    }
    largest = float(np.max(np.abs(np.subtract(estimates, full.estimate)))) if estimates else math.nan
    m_stat = math.sqrt(n) * largest / se
    p = None if errors else float(-math.expm1(k * math.log1p(-product_normal_tail(m_stat / c))))
    verdict = (
        failed_refits("random_common_cause", alpha=alpha, rule=rule, errors=errors, tries=k)
        if errors  # a random covariate broke the fit: the estimate hangs on a near-singular design
        else verdict_of("random_common_cause", p_value=p, alpha=alpha, rule=rule,
                        passed=p is not None and (p >= alpha or largest <= tolerance * se))
    )  # fmt: skip
    return Refutation(
        "random_common_cause", method, null, largest, se, m_stat, p, alpha, verdict,
        replicates=estimates, n_failed=len(errors), details=details,
    )  # fmt: skip


def data_subsets(
    data: pd.DataFrame,
    *,
    method: EstimatorName,
    treatment: str,
    outcome: str,
    covariates: Sequence[str] = (),
    rng: np.random.Generator,
    estimate: EffectEstimate | None = None,
    fraction: float = 0.8,
    n_subsets: int = 10,
    allowance: float = SUBSET_ALLOWANCE,
    alpha: float = 0.05,
    **options: Any,
) -> Refutation:
    """Re-estimate on random subsets of the rows: they should differ from the whole only by subsampling.

    Parameters
    ----------
    data : DataFrame
        The batch.
    method : str
        The estimator's name.
    treatment, outcome : str
        Column names.
    covariates : sequence of str
        The estimator's covariates.
    rng : numpy.random.Generator
        Draws the subsets (and cross-fitting folds).
    estimate : EffectEstimate, optional
        The batch's estimate with this estimator (refitted when not given).
    fraction : float
        Share ``m / n`` of rows in each subset, in (0, 1).
    n_subsets : int
        Subsets ``K``.
    allowance : float
        ``r₀ >= 1``: subsets may vary up to ``r₀`` times the linear variance before the test counts.
    alpha : float
        Level: the stated false-alarm rate.
    **options
        Passed to the estimator (``propensity`` is not).

    Returns
    -------
    Refutation
        ``statistic`` ``Q = Σ_k z_k²`` with ``z_k = (θ̂_k − θ̂) / (SE √(n/m − 1))``, ``p_value``
        ``P(χ²_K > Q / r₀)``; ``effect`` the root-mean-square difference, ``std_error`` its null scale
        ``SE √(n/m − 1)``. A subset where the estimator fails also fails the refuter: the estimate
        then needs rows a fifth of the batch can lack.

    Notes
    -----
    A simple random sample of ``m`` of ``n`` values ``φ_i`` has
    ``Var(mean_sub | batch) = (1 − m/n) S²/m = (1/m − 1/n) S²`` (``S²`` with divisor ``n − 1``;
    Cochran 1977, Thm 2.2), and ``θ̂`` is fixed given the batch, so
    ``Var(θ̂_sub − θ̂) = (1/m − 1/n) S² = (n/m − 1) SE²`` with ``SE² = S²/n``: a quarter of ``SE²``
    at 80%. The ``K`` subsets are independent given the batch, so ``Q ~ χ²_K`` for a linear
    estimator (up to the normal approximation of each subset mean). For a linear estimator this
    holds whatever the data; the refuter fails when refitting the nuisance models on subsets moves
    the estimate beyond its linear approximation, as when a few rows carry the weights. An SE
    above the influence-function one (HC3) makes it conservative. At 200 units IPW and AIPW are
    not yet linear: their subsets vary 1.10–1.18 times the linear variance on correct designs, with
    heavier tails, and the test (``H₀: variance ratio <= r₀``) allows ``r₀ = 1.5``. Cost: ``K`` fits on ``m`` rows
    (AIPW on 10,000 rows: about 0.09 s with ``K = 10``).
    """
    check_method(method)
    check_rng(rng)
    alpha = check_alpha(alpha)
    k = check_count("n_subsets", n_subsets, minimum=1)
    r0 = float(allowance)
    if not r0 >= 1.0:
        raise ValueError(f"allowance must be >= 1, got {allowance!r}")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction!r}")
    n = len(data)
    m = round(float(fraction) * n)
    null = (
        f"On random {fraction:.0%} subsets of the rows the {method} estimate differs from the batch's "
        "only by subsampling noise, variance (n/m - 1) SE^2."
    )
    if not 2 <= m < n:
        return undefined(
            "data_subsets", method, null, alpha, f"a {fraction:.0%} subset of {n} rows is too small"
        )
    arguments = {"method": method, "treatment": treatment, "outcome": outcome, "covariates": list(covariates)}
    full = _full(data, estimate, arguments, refit_options(options, rng, same_rows=True))
    if isinstance(full, str):
        return undefined("data_subsets", method, null, alpha, f"the batch has no estimate: {full}")
    scale, fitted = full.std_error * math.sqrt(n / m - 1.0), refit_options(options, rng)
    fits = [
        try_estimate(data.iloc[np.sort(rng.choice(n, size=m, replace=False))], **arguments, **fitted)
        for _ in range(k)
    ]
    errors = [fit for fit in fits if isinstance(fit, str)]
    estimates = tuple(fit.estimate for fit in fits if not isinstance(fit, str))
    rule = f"p-value of subset variance <= {r0:g} x linear >= {alpha:g}; every subset estimable"
    details = {
        "estimate": full.estimate,
        "n": n,
        "m": m,
        "n_subsets": k,
        "allowance": r0,
        "errors": errors[:3],
    }
    diffs = np.subtract(estimates, full.estimate)
    rms = float(math.sqrt(np.mean(diffs**2))) if estimates else math.nan
    q = float(np.sum((diffs / scale) ** 2))
    p = None if errors else float(stats.chi2.sf(q / r0, df=k))
    verdict = (
        failed_refits("data_subsets", alpha=alpha, rule=rule, errors=errors, tries=k)
        if errors  # the estimator cannot estimate without some rows a fifth of the batch can lack
        else verdict_of("data_subsets", p_value=p, alpha=alpha, rule=rule)
    )
    return Refutation(
        "data_subsets", method, null, rms, scale, q, p, alpha, verdict,
        replicates=estimates, n_failed=len(errors), details=details,
    )  # fmt: skip


def negative_control_outcome(
    data: pd.DataFrame,
    *,
    method: EstimatorName,
    treatment: str,
    negative_control: str,
    covariates: Sequence[str] = (),
    rng: np.random.Generator,
    alpha: float = 0.05,
    **options: Any,
) -> Refutation:
    """The effect on a declared negative-control outcome, which the treatment cannot affect.

    Parameters
    ----------
    data : DataFrame
        The batch.
    method : str
        The estimator's name.
    treatment : str
        The treatment column.
    negative_control : str
        A column the treatment cannot affect but an unmeasured confounder of the real outcome
        would (graph role ``negative_control``; see :func:`~assimilate.diagnostics.refuters.negative_controls`).
    covariates : sequence of str
        The estimator's covariates (the same as for the real outcome; never the control itself).
    rng : numpy.random.Generator
        Used for cross-fitting folds only (with ``n_folds``).
    alpha : float
        Level: the stated false-alarm rate.
    **options
        Passed to the estimator; a fitted ``propensity`` of these rows is reused (same rows,
        treatment and covariates).

    Returns
    -------
    Refutation
        ``effect`` the estimate on the control with its ``std_error``; fails when the ``1 - alpha``
        interval excludes zero. Its level is that of the estimator's interval; its power is against
        an unmeasured confounder that moves the control (Lipsitch et al. 2010). Cost: one fit.
    """
    check_method(method)
    check_rng(rng)
    alpha = check_alpha(alpha)
    null = f"The treatment has no effect on the negative-control outcome {negative_control!r} given the covariates."
    if negative_control in covariates:
        raise ValueError(
            f"negative_control {negative_control!r} is among the covariates: it cannot be adjusted for"
        )
    if negative_control not in data.columns:
        raise ValueError(f"negative_control column {negative_control!r} not in the data")
    result = try_estimate(
        data,
        method=method,
        treatment=treatment,
        outcome=negative_control,
        covariates=list(covariates),
        **refit_options(options, rng, same_rows=True),
    )
    if isinstance(result, str):
        return undefined("negative_control_outcome", method, null, alpha, result, n_failed=1)
    lower, upper = result.conf_int(alpha)
    rule = f"the {1 - alpha:.0%} interval of the effect on the control contains 0"
    verdict = verdict_of("negative_control_outcome", p_value=result.p_value, alpha=alpha, rule=rule)
    return Refutation(
        "negative_control_outcome",
        method,
        null,
        result.estimate,
        result.std_error,
        result.z_statistic,
        result.p_value,
        alpha,
        verdict,
        replicates=(result.estimate,),
        interval=(lower, upper),
        details={"negative_control": negative_control, "n": result.n},
    )
