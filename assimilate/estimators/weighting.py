"""Inverse probability weighting with normalized (Hajek) weights and an M-estimation standard error.

ATE: ``mu_1 = sum(d y / e) / sum(d / e)``, ``mu_0 = sum((1-d) y / (1-e)) / sum((1-d) / (1-e))``,
``tau = mu_1 - mu_0``. ATT (odds weights): treated weight 1, control weight ``e / (1-e)``; ATC:
control weight 1, treated weight ``(1-e) / e`` (Hirano, Imbens & Ridder 2003; Imbens 2004). The
standard error stacks the two weighted means with the logistic score equations of the propensity
model, so it accounts for the propensity being estimated (Lunceford & Davidian 2004); it is never
a bootstrap.

Sampling weights ``s`` (each row stands for ``s_i`` units of the population): every estimating
equation, the propensity model's score included, is multiplied by ``s_i``. The propensity model is
the survey-weighted logistic regression and each unit's final weight is ``s_i`` times its inverse
propensity (or odds) weight, so the estimand is the population's ATE, ATT or ATC (Ridgeway,
Kovalchik, Griffin & Kabeto 2015; DuGoff, Schuler & Stuart 2014). The influence values are the
weighted equations' (``SE^2 = sum psi^2 / n^2`` as without weights): the linearization variance
of a with-replacement sample, which clusters on primary sampling units as any other (CR1).

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
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import linalg

from assimilate._validation import check_choice
from assimilate.estimators._inputs import arm_counts, batch_arrays, sampling_weights
from assimilate.estimators._pass_kernels import kernel_weights
from assimilate.estimators._threads import one_blas_thread
from assimilate.estimators._weighting_kernels import hajek_scores, hajek_sums, subtract_correction
from assimilate.estimators.design_matrix import DesignMatrix
from assimilate.estimators.models import PropensityModel, PropensityPolicy, fit_propensity
from assimilate.estimators.passes import in_chunks, sum_in_order, times, transpose_times
from assimilate.estimators.result import ESTIMANDS, EffectEstimate, Estimand

FloatArray = NDArray[np.float64]
Side = Literal["both", "upper", "lower"]
SIDE_OF: dict[str, Side] = {"ATE": "both", "ATT": "upper", "ATC": "lower"}
"""Which propensity bound(s) an estimand needs: a control with a tiny score is harmless to the ATT
(its odds weight is tiny), and clipping it up to the lower bound would give it weight it lacks."""


def bounded_scores(
    raw: FloatArray, policy: PropensityPolicy, bounds: tuple[float, float], *, side: Side = "both"
) -> tuple[FloatArray, NDArray[np.bool_], int]:
    """Scores clipped into ``bounds`` (or units outside them trimmed) on one side or both.

    Returns
    -------
    used : ndarray
        Scores after clipping (the raw ones under ``"trim"`` and ``"none"``).
    keep : ndarray of bool
        False for trimmed units.
    n_outside : int
        Units outside the bound(s) of ``side`` that were clipped or trimmed (0 under ``"none"``).
    """
    low, high = bounds
    outside = np.zeros(len(raw), dtype=bool)
    if side != "lower":
        outside |= raw > high
    if side != "upper":
        outside |= raw < low
    keep = np.ones(len(raw), dtype=bool)
    if policy == "clip":
        used = np.clip(raw, None if side == "upper" else low, None if side == "lower" else high)
        return np.asarray(used, dtype=np.float64), keep, int(outside.sum())
    if policy == "trim":
        return raw, ~outside, int(outside.sum())
    return raw, keep, 0


def ipw_influence(
    X: FloatArray, d: NDArray[np.int64], y: FloatArray, propensity: PropensityModel
) -> tuple[float, FloatArray]:
    """Hajek IPW estimate and its influence function (accounting for the estimated propensity).

    Notes
    -----
    Estimating equations: ``d (y - mu_1) / e``, ``(1-d)(y - mu_0) / (1-e)``, ``x (d - e)``. The
    influence of ``mu_a`` is ``(psi_a - A_ab' H^-1 x (d - e)) / A_aa``, with ``H = E[e (1-e) x x']``
    and ``A_ab`` the derivative of ``psi_a`` in ``beta``; clipped scores have zero derivative.
    With the model's sampling weights ``s`` every equation is multiplied by ``s_i`` (and ``H`` is
    the weighted information the model holds). Three passes over the rows, each a compiled loop
    per chunk (:mod:`~assimilate.estimators._weighting_kernels`).
    """
    n, p = X.shape
    d = np.asarray(d, dtype=np.int64)
    y, raw, used = (np.asarray(v, dtype=np.float64) for v in (y, propensity.scores, propensity.used_scores))
    keep = np.asarray(propensity.keep, dtype=np.bool_)
    sampling = kernel_weights(propensity.weights)
    inverse, weight = np.empty(n), np.empty(n)  # 1/e or 1/(1-e) (0 if trimmed); times s
    totals = sum_in_order(
        in_chunks(
            lambda rows: hajek_sums(d, y, used, keep, sampling, rows.start, rows.stop, inverse, weight), n, p
        )
    )
    total1, total0 = float(totals[0]), float(totals[1])
    if total1 == 0 or total0 == 0:
        raise ValueError("after trimming, one arm has no units: IPW is undefined")
    mu1, mu0 = float(totals[2]) / total1, float(totals[3]) / total0
    means = np.array([mu1, mu0, n / total1, n / total0])
    influence, score = np.empty(n), np.empty(n)

    def scores(rows: slice) -> FloatArray:
        return hajek_scores(
            X,
            d,
            y,
            raw,
            used,
            keep,
            sampling,
            inverse,
            weight,
            means,
            rows.start,
            rows.stop,
            influence,
            score,
        )

    # The two correction columns enter only as correction_1 / a11 - correction_0 / a00: one solve.
    derivative = sum_in_order(in_chunks(scores, n, p))
    direction = linalg.solve(propensity.information, derivative, assume_a="pos")
    in_chunks(lambda rows: subtract_correction(X, direction, score, rows.start, rows.stop, influence), n, p)
    return mu1 - mu0, influence


@one_blas_thread
def ipw_target_influence(
    X: FloatArray,
    d: NDArray[np.int64],
    y: FloatArray,
    propensity: PropensityModel,
    *,
    estimand: Literal["ATT", "ATC"],
) -> tuple[float, FloatArray, NDArray[np.bool_], int]:
    """Hajek IPW of the ATT (odds weights) or ATC, its influence function, kept units and bounded count.

    Notes
    -----
    ATT: the target arm ``t`` is the treated (weight 1), the other arm ``o`` the controls, weighted
    by the odds ``w = e / (1-e)``; ATC swaps the arms with ``w = (1-e) / e``. Estimating equations
    ``1{t} (y - mu_t)``, ``1{o} w (y - mu_o)``, ``x (d - e)``. Since ``log w = ±x'beta``, the
    derivative of the second in ``beta`` is ``±1{o} w (y - mu_o) x`` (0 for clipped scores), and
    ``psi_tau = ±[1{t} (y - mu_t) / A_t - (1{o} w (y - mu_o) + G' H^-1 x (d - e)) / A_o]`` with
    ``A_a`` the mean weight of arm ``a``, ``G`` the mean derivative, ``H = E[e (1-e) x x']``; the
    sign is + for the ATT (``mu_t - mu_o``), - for the ATC (``mu_o - mu_t``). The model's policy
    bounds one side only (:data:`SIDE_OF`): the ATT the upper, the ATC the lower.
    """
    raw = propensity.scores
    used, keep, n_outside = bounded_scores(raw, propensity.policy, propensity.bounds, side=SIDE_OF[estimand])
    trimmed = not bool(keep.all())
    treated = d.astype(np.float64)
    target = treated if estimand == "ATT" else 1.0 - treated
    other = 1.0 - target
    e = np.where(keep, used, 0.5) if trimmed else used
    # The odds of the other arm only: a target unit's score may be 0 or 1 without harm.
    reweighted = other == 1.0
    if estimand == "ATT":
        odds = e / np.where(reweighted, 1.0 - e, 1.0)
    else:
        odds = (1.0 - e) / np.where(reweighted, e, 1.0)
    weight = np.where(reweighted, odds, 1.0)
    if trimmed:
        weight *= keep
    s = propensity.weights
    if s is not None:  # the final weight: sampling x odds (every equation times s_i)
        weight *= s
    total_t, total_o = float(weight @ target), float(weight @ other)
    if total_t == 0 or total_o == 0:
        raise ValueError("after trimming, one arm has no units: IPW is undefined")
    mu_t, mu_o = float((weight * y) @ target) / total_t, float((weight * y) @ other) / total_o
    n = len(y)
    a_t, a_o = total_t / n, total_o / n
    residual = y - mu_t * target - mu_o * other
    psi = weight * residual  # psi_t on the target arm, psi_o on the other
    sign = 1.0 if estimand == "ATT" else -1.0
    moves = (used == raw) & keep
    derivative = sign * other * moves * psi  # d psi_o / d eta
    direction = linalg.solve(propensity.information, transpose_times(X, derivative), assume_a="pos")
    influence = psi * (target / a_t - other / a_o)
    score = treated - raw if s is None else s * (treated - raw)  # the propensity model's own equation
    influence -= score * times(X, direction) / a_o
    influence *= sign
    return sign * (mu_t - mu_o), influence, keep, n_outside


@one_blas_thread
def ipw_from_arrays(
    design: DesignMatrix,
    treatment: NDArray[np.int64],
    outcome: FloatArray,
    *,
    policy: PropensityPolicy = "clip",
    bounds: tuple[float, float] = (0.01, 0.99),
    propensity: PropensityModel | None = None,
    estimand: Estimand = "ATE",
    weights: FloatArray | None = None,
) -> EffectEstimate:
    """IPW on arrays (the core of :func:`ipw`; ``weights`` checked, as :func:`ipw_with_influence`)."""
    return ipw_with_influence(
        design,
        treatment,
        outcome,
        policy=policy,
        bounds=bounds,
        propensity=propensity,
        estimand=estimand,
        weights=weights,
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
    estimand: Estimand = "ATE",
    weights: FloatArray | None = None,
) -> tuple[EffectEstimate, FloatArray]:
    """:func:`ipw_from_arrays` with the influence function of every row (``SE = |psi| / n``).

    ``weights``: sampling weights already checked (:func:`~assimilate.estimators._inputs.sampling_weights`);
    a fitted ``propensity`` must have been fitted with the same ones.
    """
    check_choice("estimand", estimand, ESTIMANDS)
    check_same_weights(propensity, weights)
    model = propensity or fit_propensity(design, treatment, policy=policy, bounds=bounds, weights=weights)
    diagnostics = model.report() | ({} if weights is None else {"sampling_weights": True})
    if estimand == "ATE":
        estimate, influence = ipw_influence(design.values, treatment, outcome, model)
        keep = model.keep
    else:
        estimate, influence, keep, n_outside = ipw_target_influence(
            design.values, treatment, outcome, model, estimand=estimand
        )
        diagnostics |= {
            "propensity_bounded_side": SIDE_OF[estimand],
            "n_clipped": n_outside if model.policy == "clip" else 0,
            "n_trimmed": n_outside if model.policy == "trim" else 0,
        }
    n = len(outcome)
    n_treated, n_control = arm_counts(treatment[keep])
    result = EffectEstimate(
        estimate=estimate,
        std_error=math.sqrt(float(influence @ influence)) / n,
        n_treated=n_treated,
        n_control=n_control,
        method="ipw",
        se_method="sandwich_estimated_propensity",
        estimand=estimand,
        diagnostics=diagnostics,
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
    estimand: Estimand = "ATE",
    weights: ArrayLike | None = None,
) -> EffectEstimate:
    """Normalized inverse-probability-weighted ATE, ATT or ATC with a sandwich standard error.

    Parameters
    ----------
    data : DataFrame
        One row per unit.
    treatment, outcome : str
        Column names.
    covariates : sequence of str
        Covariates of the logistic propensity model.
    policy : {"clip", "trim", "none"}
        What to do with scores outside ``bounds`` (reported in ``diagnostics``); for the ATT only
        above the upper bound, for the ATC only below the lower one (:data:`SIDE_OF`).
    bounds : (float, float)
        Propensity bounds.
    propensity : PropensityModel, optional
        An already fitted propensity model for these rows (reused, not refitted).
    categories : mapping, optional
        Allowed levels of categorical covariates.
    estimand : {"ATE", "ATT", "ATC"}
        ``"ATE"``: weights ``1/e`` and ``1/(1-e)``; ``"ATT"``: treated 1, controls the odds
        ``e/(1-e)``; ``"ATC"``: controls 1, treated ``(1-e)/e``. Each arm's weights are normalized.
    weights : array_like, optional
        Sampling weights, one per row, positive: the population's estimand (module docstring).

    Returns
    -------
    EffectEstimate
        ``se_method="sandwich_estimated_propensity"``, ``estimand`` as asked.
    """
    arrays = batch_arrays(
        data, treatment=treatment, outcome=outcome, covariates=covariates, categories=categories
    )
    return ipw_from_arrays(
        arrays.design,
        arrays.treatment,
        arrays.outcome,
        policy=policy,
        bounds=bounds,
        propensity=propensity,
        estimand=estimand,
        weights=sampling_weights(weights, len(arrays.outcome)),
    )


def check_same_weights(propensity: PropensityModel | None, weights: FloatArray | None) -> None:
    """A fitted propensity model serves only the sampling weights it was fitted with (or none)."""
    if propensity is None:
        return
    fitted = propensity.weights
    if (fitted is None) != (weights is None) or (
        fitted is not None and weights is not None and not np.array_equal(fitted, weights)
    ):
        raise ValueError(
            "propensity: the fitted model was fitted with other sampling weights than the weights given "
            "(fit it with fit_propensity(..., weights=...))"
        )
