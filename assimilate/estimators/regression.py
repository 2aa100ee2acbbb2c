"""Regression adjustment: OLS of the outcome on treatment and covariates, with HC3 standard errors.

Plain: ``y = a + tau d + x'b + e``. Interacted (Lin 2013): ``y = a + tau d + x_c'b + d x_c'g + e`` with
``x_c`` the covariates centred at their sample means, so ``tau`` is the ATE.
``HC3 = (X'X)^-1 X' diag(e_i^2 / (1 - h_ii)^2) X (X'X)^-1`` (MacKinnon & White 1985).

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> frame = pd.DataFrame({"d": rng.binomial(1, 0.5, 400), "x": rng.standard_normal(400)})
>>> frame["y"] = 1.0 * frame["d"] + frame["x"] + rng.standard_normal(400)
>>> abs(regression_adjustment(frame, treatment="d", outcome="y", covariates=["x"]).estimate - 1) < 0.3
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import linalg

from assimilate.estimators._inputs import batch_arrays
from assimilate.estimators.result import EffectEstimate

FloatArray = NDArray[np.float64]


def ols_hc3(X: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """OLS coefficients and their HC3 covariance matrix."""
    gram = X.T @ X
    try:
        factor = linalg.cho_factor(gram)
    except linalg.LinAlgError as error:
        raise ValueError("the regression design is singular (collinear or constant columns)") from error
    beta = linalg.cho_solve(factor, X.T @ y)
    gram_inv = linalg.cho_solve(factor, np.eye(X.shape[1]))
    residuals = y - X @ beta
    leverage = np.einsum("ij,ij->i", X @ gram_inv, X)
    if np.any(leverage >= 1.0 - 1e-12):
        raise ValueError("a unit has leverage 1 (it alone determines a coefficient): HC3 is undefined")
    weights = (residuals / (1.0 - leverage)) ** 2
    meat = X.T @ (weights[:, None] * X)
    return np.asarray(beta, dtype=np.float64), np.asarray(gram_inv @ meat @ gram_inv, dtype=np.float64)


def regression_adjustment(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    interacted: bool = False,
    categories: Mapping[str, Sequence[str]] | None = None,
) -> EffectEstimate:
    """Treatment coefficient of an OLS regression with covariates, HC3 standard error.

    Parameters
    ----------
    data : DataFrame
        One row per unit.
    treatment, outcome : str
        Column names.
    covariates : sequence of str
        Pre-treatment covariates (categoricals one-hot encoded).
    interacted : bool
        Lin's fully interacted regression with centred covariates (``method="lin_interacted"``).
    categories : mapping, optional
        Allowed levels of categorical covariates.

    Returns
    -------
    EffectEstimate
    """
    arrays = batch_arrays(
        data, treatment=treatment, outcome=outcome, covariates=covariates, categories=categories
    )
    d = arrays.treatment.astype(np.float64)[:, None]
    x = arrays.design.without_intercept()
    blocks = [np.ones_like(d), d]
    if interacted:
        centred = x - x.mean(axis=0)
        blocks += [centred, d * centred]
    else:
        blocks.append(x)
    beta, cov = ols_hc3(np.hstack(blocks), arrays.outcome)
    n_treated = int(arrays.treatment.sum())
    return EffectEstimate(
        estimate=float(beta[1]),
        std_error=math.sqrt(float(cov[1, 1])),
        n_treated=n_treated,
        n_control=len(arrays.treatment) - n_treated,
        method="lin_interacted" if interacted else "regression_adjustment",
        se_method="hc3",
        diagnostics={"n_covariate_terms": int(x.shape[1])},
    )
