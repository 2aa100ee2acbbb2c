"""Regression adjustment: OLS of the outcome on treatment and covariates, with HC3 standard errors.

Plain: ``y = a + tau d + x'b + e``. Interacted (Lin 2013): ``y = a + tau d + x_c'b + d x_c'g + e`` with
``x_c`` the covariates centred at their sample means, so ``tau`` is the ATE.
``HC3 = (X'X)^-1 X' diag(e_i^2 / (1 - h_ii)^2) X (X'X)^-1`` (MacKinnon & White 1985).
ATT (ATC): the mean of ``m1(x) - m0(x)`` over the treated (controls). For the plain model it is
``tau`` itself; for the interacted one the covariates are centred at the treated (control) means,
and the influence values add the estimated means' part ``g' 1{arm} (x - xbar_arm) n / n_arm``.

Sampling weights ``w``: weighted least squares, computed as OLS of the whitened ``sqrt(w) y`` on
``sqrt(w) X``, with the HC3 of that fit (statsmodels' WLS ``cov_type="HC3"``: leverage
``h_ii = w_i x_i' (X'WX)^-1 x_i``); Lin's covariates are centred at the weighted means (of the
arm, for the ATT and ATC), and the means' part of the influence is ``w_i`` times the above with
``W_arm`` for ``n_arm``; weighted, the interacted ATE takes that part too (its arm is every row):
it estimates the population's mean effect, whose covariate means the sample only estimates
(without it, its interval covered a heterogeneous population ATE in 0.91 of datasets).

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
from numpy.typing import ArrayLike, NDArray
from scipy import linalg

from assimilate._validation import check_choice
from assimilate.estimators._inputs import batch_arrays, sampling_weights
from assimilate.estimators._threads import one_blas_thread
from assimilate.estimators.design_matrix import DesignMatrix
from assimilate.estimators.passes import (
    BlockWriter,
    block_size,
    blocks_of,
    gram_of_blocks,
    in_chunks,
    new_gram,
    rank_update,
    sum_in_order,
    symmetric,
    transposed_writer,
)
from assimilate.estimators.result import ESTIMANDS, EffectEstimate, Estimand

FloatArray = NDArray[np.float64]


@one_blas_thread
def ols_hc3(X: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """OLS coefficients and their HC3 covariance matrix."""
    return ols_hc3_blocks(transposed_writer(X), y, n_columns=X.shape[1])


@one_blas_thread
def ols_hc3_blocks(write: BlockWriter, y: FloatArray, *, n_columns: int) -> tuple[FloatArray, FloatArray]:
    """:func:`ols_hc3` of a design given block by block (``write(rows, out)`` fills its transposed rows).

    Notes
    -----
    Two passes over the rows, the design never held whole: the Gram matrix of ``[X, y]`` gives
    the coefficients; the second pass forms each block's residuals and leverages
    ``h_ii = x_i' (X'X)^-1 x_i`` and adds the block to the meat ``X' diag(e_i^2 / (1 - h_ii)^2) X``.
    """
    beta, cov, _ = ols_hc3_pass(write, y, n_columns=n_columns)
    return beta, cov


@one_blas_thread
def ols_hc3_pass(
    write: BlockWriter, y: FloatArray, *, n_columns: int, influence_of: int | None = None
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """:func:`ols_hc3_blocks`, and with ``influence_of = j`` each row's HC3 contribution to ``beta_j``.

    The contribution of row i is ``n [(X'X)^-1 x_i]_j e_i / (1 - h_ii)``: the sum of their squares
    over ``n^2`` is the HC3 variance of ``beta_j`` (the same arithmetic as the covariance).
    """
    n, p = len(y), n_columns
    influence = None if influence_of is None else np.empty(n)

    def with_outcome(rows: slice, out: FloatArray) -> None:
        write(rows, out[:p])
        out[p] = y[rows]

    moments = gram_of_blocks(with_outcome, n, p + 1)
    try:
        factor = linalg.cho_factor(moments[:p, :p])
    except linalg.LinAlgError as error:
        raise ValueError("the regression design is singular (collinear or constant columns)") from error
    beta = linalg.cho_solve(factor, moments[:p, p])
    gram_inv = linalg.cho_solve(factor, np.eye(p))

    def meat_of(chunk: slice) -> FloatArray:  # one chunk's rows, on the pass threads
        meat = new_gram(p)
        buffer = np.empty((p, block_size(p)))
        for rows in blocks_of(chunk, p):
            block = buffer[:, : rows.stop - rows.start]
            write(rows, block)
            residuals = y[rows] - beta @ block
            projected = gram_inv @ block
            leverage = np.einsum("ij,ij->j", projected, block)
            if np.any(leverage >= 1.0 - 1e-12):
                raise ValueError(
                    "a unit has leverage 1 (it alone determines a coefficient): HC3 is undefined"
                )
            residuals /= 1.0 - leverage
            if influence is not None:
                np.multiply(projected[influence_of], residuals, out=influence[rows])
            block *= residuals
            rank_update(meat, block)
        return meat

    meat = sum_in_order(in_chunks(meat_of, n, p))
    if influence is not None:
        influence *= n
    return (
        np.asarray(beta, dtype=np.float64),
        np.asarray(gram_inv @ symmetric(meat) @ gram_inv, dtype=np.float64),
        influence,
    )


@one_blas_thread
def regression_adjustment_from_arrays(
    design: DesignMatrix,
    treatment: NDArray[np.int64],
    outcome: FloatArray,
    *,
    interacted: bool = False,
    estimand: Estimand = "ATE",
    weights: FloatArray | None = None,
) -> EffectEstimate:
    """Regression adjustment on arrays (the core of :func:`regression_adjustment`; ``weights`` checked)."""
    return regression_with_influence(
        design, treatment, outcome, interacted=interacted, influence=False, estimand=estimand, weights=weights
    )[0]


@one_blas_thread
def regression_with_influence(
    design: DesignMatrix,
    treatment: NDArray[np.int64],
    outcome: FloatArray,
    *,
    interacted: bool = False,
    influence: bool = True,
    estimand: Estimand = "ATE",
    weights: FloatArray | None = None,
) -> tuple[EffectEstimate, FloatArray | None]:
    """:func:`regression_adjustment_from_arrays` with each row's HC3 contribution to ``tau``.

    Notes
    -----
    The interacted ATT (ATC) is the treatment coefficient with the covariates centred at the
    treated (control) means ``xbar_a``; its influence values are the HC3 contributions plus
    ``n 1{arm a} (x_i - xbar_a)' g / n_a`` for the estimated means (``g``: the interactions), and
    its standard error is theirs, ``sqrt(sum psi_i^2) / n``. With sampling ``weights`` (checked,
    mean 1) the same on the whitened regression (module docstring); the interacted ATE then takes the
    estimated means' part too (all rows being its arm), since it answers for the population's mean
    effect, not the sample's.
    """
    check_choice("estimand", estimand, ESTIMANDS)
    d = treatment.astype(np.float64)
    x = design.without_intercept()
    k = x.shape[1]
    arm = None if estimand == "ATE" or not interacted else (treatment == (1 if estimand == "ATT" else 0))
    if interacted and weights is not None and estimand == "ATE":
        # The population's ATE: the weighted covariate means are estimates of the population's, and
        # their noise, g' (xbar_w - mean), counts (an effect that varies with x; docs/INTERVALS.md).
        arm = np.ones(len(treatment), dtype=bool)
    if not interacted:
        centre = None
    elif arm is None:
        centre = _mean(x, weights)[:, None]
    else:
        centre = _mean(x[arm], None if weights is None else weights[arm])[:, None]
    root = None if weights is None else np.sqrt(weights)

    def regressors(rows: slice, out: FloatArray) -> None:
        # [1, d, x] or Lin's [1, d, x - mean, d (x - mean)], one block of rows at a time.
        out[0] = 1.0
        out[1] = d[rows]
        covariates = out[2 : 2 + k]
        np.copyto(covariates, x[rows].T)
        if centre is not None:
            covariates -= centre
            np.multiply(covariates, out[1], out=out[2 + k :])
        if root is not None:  # weighted least squares as OLS on the whitened rows
            out *= root[rows]

    n_columns = 2 + k * (2 if interacted else 1)
    beta, cov, contributions = ols_hc3_pass(
        regressors,
        outcome if root is None else outcome * root,
        n_columns=n_columns,
        influence_of=1 if influence or arm is not None else None,
    )
    std_error = math.sqrt(float(cov[1, 1]))
    if arm is not None and centre is not None and contributions is not None:
        # The arm's covariate means are estimated too: tau(xbar_a) moves by g' (xbar_a - mean).
        n = len(outcome)
        shift = (x[arm] - centre[:, 0]) @ beta[2 + k :]
        if weights is None:
            contributions[arm] += shift * (n / int(arm.sum()))
        else:
            contributions[arm] += weights[arm] * shift * (n / float(weights[arm].sum()))
        std_error = math.sqrt(float(contributions @ contributions)) / n
    n_treated = int(treatment.sum())
    result = EffectEstimate(
        estimate=float(beta[1]),
        std_error=std_error,
        n_treated=n_treated,
        n_control=len(treatment) - n_treated,
        method="lin_interacted" if interacted else "regression_adjustment",
        se_method="hc3" if arm is None else "hc3_with_covariate_means",
        estimand=estimand,
        diagnostics={"n_covariate_terms": int(k)} | ({} if weights is None else {"sampling_weights": True}),
    )
    return result, contributions if influence else None


def _mean(x: FloatArray, weights: FloatArray | None) -> FloatArray:
    """Column means, weighted by the sampling weights when there are some."""
    return np.asarray(x.mean(axis=0) if weights is None else weights @ x / weights.sum(), dtype=np.float64)


def regression_adjustment(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    interacted: bool = False,
    categories: Mapping[str, Sequence[str]] | None = None,
    estimand: Estimand = "ATE",
    weights: ArrayLike | None = None,
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
    estimand : {"ATE", "ATT", "ATC"}
        Mean of ``m1(x) - m0(x)`` over all units, the treated or the controls. The plain model's
        ``m1 - m0`` is the constant ``tau``, so its three estimands are one number; the interacted
        model's differ (``se_method="hc3_with_covariate_means"`` for the ATT and ATC).
    weights : array_like, optional
        Sampling weights, one per row, positive: weighted least squares (module docstring).

    Returns
    -------
    EffectEstimate
    """
    arrays = batch_arrays(
        data, treatment=treatment, outcome=outcome, covariates=covariates, categories=categories
    )
    return regression_adjustment_from_arrays(
        arrays.design,
        arrays.treatment,
        arrays.outcome,
        interacted=interacted,
        estimand=estimand,
        weights=sampling_weights(weights, len(arrays.outcome)),
    )
