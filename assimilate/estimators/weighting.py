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
from assimilate.estimators.design_matrix import DesignMatrix
from assimilate.estimators.models import PropensityModel, PropensityPolicy, fit_propensity
from assimilate.estimators.result import EffectEstimate

FloatArray = NDArray[np.float64]


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
    e = np.where(keep, propensity.used_scores, 0.5)
    treated = (d == 1) & keep
    control = (d == 0) & keep
    w1 = np.where(treated, 1.0 / e, 0.0)
    w0 = np.where(control, 1.0 / (1.0 - e), 0.0)
    if w1.sum() == 0 or w0.sum() == 0:
        raise ValueError("after trimming, one arm has no units: IPW is undefined")
    mu1 = float(w1 @ y / w1.sum())
    mu0 = float(w0 @ y / w0.sum())
    n = len(y)
    psi1 = w1 * (y - mu1)
    psi0 = w0 * (y - mu0)
    raw = propensity.scores
    slope = np.where((propensity.used_scores == raw) & keep, raw * (1.0 - raw), 0.0)  # de/d(eta)
    a11, a00 = w1.sum() / n, w0.sum() / n
    a1b = X.T @ (psi1 * slope / e) / n  # psi1 * slope / e = d (y - mu1) slope / e^2
    a0b = -X.T @ (psi0 * slope / (1.0 - e)) / n
    information = propensity.information / n
    score = X * (d - raw)[:, None]
    correction = linalg.solve(information, np.column_stack([a1b, a0b]), assume_a="pos")
    influence1 = (psi1 - score @ correction[:, 0]) / a11
    influence0 = (psi0 - score @ correction[:, 1]) / a00
    return mu1 - mu0, np.asarray(influence1 - influence0, dtype=np.float64)


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
    model = propensity or fit_propensity(design, treatment, policy=policy, bounds=bounds)
    estimate, influence = ipw_influence(design.values, treatment, outcome, model)
    n = len(outcome)
    n_treated, n_control = arm_counts(treatment[model.keep])
    return EffectEstimate(
        estimate=estimate,
        std_error=math.sqrt(float(influence @ influence)) / n,
        n_treated=n_treated,
        n_control=n_control,
        method="ipw",
        se_method="sandwich_estimated_propensity",
        diagnostics=model.report(),
    )


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
