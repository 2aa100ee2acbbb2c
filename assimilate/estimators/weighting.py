"""Inverse probability weighting with normalized (Hajek) weights and an M-estimation standard error.

``mu_1 = sum(d y / e) / sum(d / e)``, ``mu_0 = sum((1-d) y / (1-e)) / sum((1-d) / (1-e))``,
``tau = mu_1 - mu_0``. The standard error stacks the two weighted means with the logistic score
equations of the propensity model, so it accounts for the propensity being estimated
(Lunceford & Davidian 2004); it is never a bootstrap.

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(1)
>>> frame = pd.DataFrame({"x": rng.standard_normal(2000)})
>>> frame["d"] = rng.binomial(1, 1 / (1 + np.exp(-frame["x"])))
>>> frame["y"] = 2.0 * frame["d"] + frame["x"] + rng.standard_normal(2000)
>>> abs(ipw(frame, treatment="d", outcome="y", covariates=["x"]).estimate - 2.0) < 0.3
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import linalg

from assimilate.estimators._inputs import arm_counts, batch_arrays
from assimilate.estimators._threads import one_blas_thread
from assimilate.estimators.design_matrix import DesignMatrix
from assimilate.estimators.models import PropensityModel, PropensityPolicy, fit_propensity
from assimilate.estimators.passes import times, transpose_times
from assimilate.estimators.result import EffectEstimate

FloatArray = NDArray[np.float64]


@one_blas_thread
def ipw_influence(
    X: FloatArray, d: NDArray[np.int64], y: FloatArray, propensity: PropensityModel
) -> tuple[float, FloatArray]:
    """Hajek IPW estimate and its influence function (accounting for the estimated propensity).

    Notes
    -----
    Estimating equations: ``d (y - mu_1) / e``, ``(1-d)(y - mu_0) / (1-e)``, ``x (d - e)``. The
    influence of ``mu_a`` is ``(psi_a - A_ab' H^-1 x (d - e)) / A_aa``, with ``H = E[e (1-e) x x']``
    and ``A_ab`` the derivative of ``psi_a`` in ``beta``; clipped scores have zero derivative.
    """
    keep = propensity.keep
    trimmed = not bool(keep.all())
    treated = d.astype(np.float64)
    control = 1.0 - treated
    e = np.where(keep, propensity.used_scores, 0.5) if trimmed else propensity.used_scores
    # (d - 1) + e is e for treated units and -(1 - e) for controls, both exactly.
    inverse = treated - 1.0
    inverse += e
    np.abs(inverse, out=inverse)
    np.divide(keep if trimmed else 1.0, inverse, out=inverse)  # 1/e, 1/(1-e), 0 if trimmed
    total1, total0 = float(inverse @ treated), float(inverse @ control)
    if total1 == 0 or total0 == 0:
        raise ValueError("after trimming, one arm has no units: IPW is undefined")
    psi = inverse * y
    mu1, mu0 = float(psi @ treated) / total1, float(psi @ control) / total0
    np.subtract(y, mu1 * treated + mu0 * control, out=psi)
    psi *= inverse  # psi_1 on treated units, psi_0 on controls
    n = len(y)
    a11, a00 = total1 / n, total0 / n
    raw = propensity.scores
    # d psi_a / d beta = x psi de/d(eta) / e_a (negated for controls); clipped scores do not move.
    derivative = raw * (1.0 - raw)
    derivative *= (propensity.used_scores == raw) & keep
    derivative *= psi
    derivative *= inverse
    derivative *= treated / a11 + control / a00
    # The two correction columns enter only as correction_1 / a11 - correction_0 / a00: one solve.
    direction = linalg.solve(propensity.information, transpose_times(X, derivative), assume_a="pos")
    influence = psi * (treated / a11 - control / a00)
    influence -= (treated - raw) * times(X, direction)
    return mu1 - mu0, influence


@one_blas_thread
def ipw_from_arrays(
    design: DesignMatrix,
    treatment: NDArray[np.int64],
    outcome: FloatArray,
    *,
    policy: PropensityPolicy = "clip",
    bounds: tuple[float, float] = (0.01, 0.99),
    propensity: PropensityModel | None = None,
) -> EffectEstimate:
    """IPW on arrays (the core of :func:`ipw`)."""
    return ipw_with_influence(
        design, treatment, outcome, policy=policy, bounds=bounds, propensity=propensity
    )[0]


@one_blas_thread
def ipw_with_influence(
    design: DesignMatrix,
    treatment: NDArray[np.int64],
    outcome: FloatArray,
    *,
    policy: PropensityPolicy = "clip",
    bounds: tuple[float, float] = (0.01, 0.99),
    propensity: PropensityModel | None = None,
) -> tuple[EffectEstimate, FloatArray]:
    """:func:`ipw_from_arrays` with the influence function of every row (``SE = |psi| / n``)."""
    model = propensity or fit_propensity(design, treatment, policy=policy, bounds=bounds)
    estimate, influence = ipw_influence(design.values, treatment, outcome, model)
    n = len(outcome)
    n_treated, n_control = arm_counts(treatment[model.keep])
    result = EffectEstimate(
        estimate=estimate,
        std_error=math.sqrt(float(influence @ influence)) / n,
        n_treated=n_treated,
        n_control=n_control,
        method="ipw",
        se_method="sandwich_estimated_propensity",
        diagnostics=model.report(),
    )
    return result, influence


def ipw(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    policy: PropensityPolicy = "clip",
    bounds: tuple[float, float] = (0.01, 0.99),
    propensity: PropensityModel | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
) -> EffectEstimate:
    """Normalized inverse-probability-weighted ATE with a sandwich standard error.

    Parameters
    ----------
    data : DataFrame
        One row per unit.
    treatment, outcome : str
        Column names.
    covariates : sequence of str
        Covariates of the logistic propensity model.
    policy : {"clip", "trim", "none"}
        What to do with scores outside ``bounds`` (reported in ``diagnostics``).
    bounds : (float, float)
        Propensity bounds.
    propensity : PropensityModel, optional
        An already fitted propensity model for these rows (reused, not refitted).
    categories : mapping, optional
        Allowed levels of categorical covariates.

    Returns
    -------
    EffectEstimate
        ``se_method="sandwich_estimated_propensity"``.
    """
    arrays = batch_arrays(
        data, treatment=treatment, outcome=outcome, covariates=covariates, categories=categories
    )
    return ipw_from_arrays(
        arrays.design, arrays.treatment, arrays.outcome, policy=policy, bounds=bounds, propensity=propensity
    )
