"""Augmented IPW (doubly robust) with an influence-function SE and optional K-fold cross-fitting.

ATE: ``phi_i = mu1(x) - mu0(x) + d (y - mu1(x)) / e(x) - (1-d)(y - mu0(x)) / (1-e(x))``,
``tau = mean(phi)``, ``SE = sd(phi) / sqrt(n)``. ATT: ``tau = sum[d (y - mu0) - (1-d) e/(1-e)
(y - mu0)] / sum(d)`` with the score ``psi = [d (y - mu0) - (1-d) e/(1-e) (y - mu0) - tau d] / p``,
``p = mean(d)`` (Chernozhukov et al. 2018, section 5.1; Moodie & Stephens); the ATC swaps the arms.
Consistent when either the propensity or the outcome model is right; with cross-fitting each
unit's nuisances come from the other folds.

Sampling weights ``s``: both nuisance models are fitted survey-weighted (Ridgeway, Kovalchik,
Griffin & Kabeto 2015) and the scores are averaged with the weights, ``tau = sum s phi / sum s``
(ATE) or ``sum s num / sum s d`` (ATT), so the estimand is the population's; the influence values
are ``n s_i (phi_i - tau) / sum s`` (the ATT's likewise), ``SE^2 = sum psi^2 / n^2`` as without.

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(2)
>>> frame = pd.DataFrame({"x": rng.standard_normal(2000)})
>>> frame["d"] = rng.binomial(1, 1 / (1 + np.exp(-frame["x"])))
>>> frame["y"] = 2.0 * frame["d"] + frame["x"] + rng.standard_normal(2000)
>>> abs(aipw(frame, treatment="d", outcome="y", covariates=["x"]).estimate - 2.0) < 0.2
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import special

from assimilate._validation import check_choice
from assimilate.estimators._inputs import arm_counts, batch_arrays, check_arms, sampling_weights
from assimilate.estimators._threads import one_blas_thread
from assimilate.estimators.design_matrix import DesignMatrix
from assimilate.estimators.models import PropensityModel, PropensityPolicy, fit_propensity
from assimilate.estimators.outcome import OutcomeKind, OutcomeModel, fit_outcome_model, predict_outcome
from assimilate.estimators.passes import rowwise
from assimilate.estimators.result import ESTIMANDS, EffectEstimate, Estimand
from assimilate.estimators.weighting import SIDE_OF, Side, bounded_scores, check_same_weights

FloatArray = NDArray[np.float64]


def _bounded(
    scores: FloatArray, policy: PropensityPolicy, bounds: tuple[float, float]
) -> tuple[FloatArray, NDArray[np.bool_]]:
    low, high = bounds
    outside = (scores < low) | (scores > high)
    if policy == "clip":
        return np.clip(scores, low, high), np.ones(len(scores), dtype=bool)
    if policy == "trim":
        return scores, ~outside
    return scores, np.ones(len(scores), dtype=bool)


class Nuisances(NamedTuple):
    """Each unit's nuisance predictions (in-sample or cross-fitted) and how they were obtained."""

    scores: FloatArray  # bounded propensity scores (0.5 for trimmed units)
    mu0: FloatArray
    mu1: FloatArray
    keep: NDArray[np.bool_]
    n_outside: int  # scores outside the bounds (clipped or trimmed)
    outcome_fallbacks: list[dict[str, Any]]  # OutcomeFallback records, with their fold


def nuisances(
    design: DesignMatrix,
    d: NDArray[np.int64],
    y: FloatArray,
    *,
    n_folds: int | None = None,
    rng: np.random.Generator | None = None,
    outcome_kind: OutcomeKind = "auto",
    policy: PropensityPolicy = "clip",
    bounds: tuple[float, float] = (0.01, 0.99),
    side: Side = "both",
    propensity: PropensityModel | None = None,
    outcome_fit: OutcomeModel | None = None,
    weights: FloatArray | None = None,
) -> Nuisances:
    """Propensity scores and both arms' outcome predictions, in-sample or by K-fold cross-fitting.

    Parameters are those of :func:`aipw_from_arrays`. With ``n_folds``, the units are split into
    ``np.array_split(rng.permutation(n), n_folds)`` and each fold's predictions come from models
    fitted on the other folds only. ``side`` says which bound(s) ``policy`` applies to
    (:data:`~assimilate.estimators.weighting.SIDE_OF`: the upper one only for the ATT).
    ``propensity`` and ``outcome_fit``, models already fitted in-sample on these rows, are used
    instead of fitting them again (in-sample only: cross-fitting fits on each fold's complement).
    ``weights``: checked sampling weights, with which every model is fitted (the fitted ones given
    must have been fitted with them).
    """
    _check_fitted(len(y), n_folds, propensity, outcome_fit, outcome_kind)
    check_same_weights(propensity, weights)
    if n_folds is None and side != "both":
        # The raw scores do not depend on the policy: the model is bounded on one side here.
        if propensity is None:
            propensity = fit_propensity(design, d, policy="none", weights=weights)
        outcome = (
            fit_outcome_model(design, d, y, kind=outcome_kind, weights=weights)
            if outcome_fit is None
            else outcome_fit
        )
        used, keep, n_outside = bounded_scores(propensity.scores, policy, bounds, side=side)
        records = [fallback.as_dict() for fallback in outcome.fallbacks]
        return Nuisances(np.where(keep, used, 0.5), outcome.mu0, outcome.mu1, keep, n_outside, records)
    if n_folds is None:
        if propensity is not None and (propensity.policy, propensity.bounds) != (policy, _floats(bounds)):
            raise ValueError(
                f"propensity: the fitted model is bounded by policy {propensity.policy!r} and bounds "
                f"{list(propensity.bounds)}, not the {policy!r} and {list(bounds)} asked for"
            )
        if propensity is None:
            propensity = fit_propensity(design, d, policy=policy, bounds=bounds, weights=weights)
        outcome = (
            fit_outcome_model(design, d, y, kind=outcome_kind, weights=weights)
            if outcome_fit is None
            else outcome_fit
        )
        n_outside = propensity.n_clipped + propensity.n_trimmed
        keep = propensity.keep
        scores = propensity.used_scores if keep.all() else np.where(keep, propensity.used_scores, 0.5)
        records = [fallback.as_dict() for fallback in outcome.fallbacks]
        return Nuisances(scores, outcome.mu0, outcome.mu1, keep, n_outside, records)
    if rng is None:
        raise ValueError("cross-fitting (n_folds) needs rng: an explicit numpy.random.Generator")
    if int(n_folds) < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    n = len(y)
    folds = np.array_split(rng.permutation(n), int(n_folds))
    raw, mu0, mu1 = np.empty(n), np.empty(n), np.empty(n)
    records = []
    for number, fold in enumerate(folds):
        train = np.ones(n, dtype=bool)
        train[fold] = False
        check_arms(d[train], column="treatment (training folds)")
        sub = DesignMatrix(design.values[train], design.columns)
        fold_weights = None if weights is None else weights[train]
        propensity = fit_propensity(sub, d[train], policy="none", weights=fold_weights)
        raw[fold] = special.expit(design.values[fold] @ propensity.coefficients.to_numpy())
        outcome = fit_outcome_model(sub, d[train], y[train], kind=outcome_kind, weights=fold_weights)
        beta0, beta1 = outcome.coefficients_control.to_numpy(), outcome.coefficients_treated.to_numpy()
        mu0[fold] = predict_outcome(outcome.kind, design.values[fold] @ beta0)
        mu1[fold] = predict_outcome(outcome.kind, design.values[fold] @ beta1)
        records += [fallback.as_dict(fold=number) for fallback in outcome.fallbacks]
    if side != "both":
        scores, keep, n_outside = bounded_scores(raw, policy, bounds, side=side)
        return Nuisances(np.where(keep, scores, 0.5), mu0, mu1, keep, n_outside, records)
    scores, keep = _bounded(raw, policy, bounds)
    low, high = bounds
    n_outside = int(((raw < low) | (raw > high)).sum()) if policy != "none" else 0
    return Nuisances(np.where(keep, scores, 0.5), mu0, mu1, keep, n_outside, records)


def _floats(bounds: tuple[float, float]) -> tuple[float, float]:
    return float(bounds[0]), float(bounds[1])


def _check_fitted(
    n: int,
    n_folds: int | None,
    propensity: PropensityModel | None,
    outcome_fit: OutcomeModel | None,
    outcome_kind: OutcomeKind,
) -> None:
    """Fitted nuisance models apply to in-sample fits of these ``n`` rows with the same outcome model."""
    if propensity is None and outcome_fit is None:
        return
    if n_folds is not None:
        raise ValueError(
            "cross-fitting (n_folds) fits the nuisance models on each fold's complement: fitted models "
            "(propensity=, outcome_fit=) apply to in-sample fits only"
        )
    if propensity is not None and len(propensity.scores) != n:
        raise ValueError(f"propensity: the fitted model scores {len(propensity.scores)} rows, not these {n}")
    if outcome_fit is not None and len(outcome_fit.mu0) != n:
        raise ValueError(f"outcome_fit: the fitted model predicts {len(outcome_fit.mu0)} rows, not these {n}")
    if outcome_fit is not None and outcome_kind not in ("auto", outcome_fit.kind):
        raise ValueError(
            f"outcome_fit: the fitted model is {outcome_fit.kind}, not the {outcome_kind} asked for"
        )


def _influence(
    treatment: NDArray[np.int64], y: FloatArray, e: FloatArray, mu0: FloatArray, mu1: FloatArray
) -> FloatArray:
    """``phi = mu1 - mu0 + d (y - mu1) / e - (1 - d)(y - mu0) / (1 - e)``, without masks."""
    d = treatment.astype(np.float64)
    control = 1.0 - d
    residual = y - mu1 * d
    residual -= mu0 * control  # y - mu1 for treated units, y - mu0 for controls, exactly
    signed = d - 1.0
    signed += e  # e for treated units, -(1 - e) for controls, exactly
    residual /= signed
    residual += mu1 - mu0
    return residual


def _target_score(
    treatment: NDArray[np.int64],
    y: FloatArray,
    e: FloatArray,
    mu0: FloatArray,
    mu1: FloatArray,
    estimand: Estimand,
    weights: FloatArray | None = None,
) -> tuple[float, FloatArray]:
    """The ATT (or ATC) and its doubly robust score ``psi`` (mean exactly 0), one per unit.

    ATT: ``tau = sum[d (y - mu0) - (1-d) e/(1-e) (y - mu0)] / sum(d)`` and
    ``psi = [d (y - mu0) - (1-d) e/(1-e) (y - mu0) - tau d] / mean(d)``. ATC: ``tau =
    sum[(1-d)(mu1 - y) + d (1-e)/e (y - mu1)] / sum(1-d)``, ``psi = [... - tau (1-d)] / mean(1-d)``.
    With sampling ``weights`` every sum is weighted: ``num_i`` and the target indicator times ``s_i``.
    """
    d = treatment.astype(np.float64)
    target = d if estimand == "ATT" else 1.0 - d
    other = 1.0 - target
    reweighted = other == 1.0
    if estimand == "ATT":
        odds = e / np.where(reweighted, 1.0 - e, 1.0)
        numerator = (target - other * odds) * (y - mu0)
    else:
        odds = (1.0 - e) / np.where(reweighted, e, 1.0)
        numerator = (other * odds - target) * (y - mu1)
    if weights is not None:
        numerator *= weights
        target = target * weights
    total = float(target.sum())
    if total == 0 or not (other > 0).any():
        raise ValueError(f"after trimming, one arm has no units: the {estimand} is undefined")
    tau = float(numerator.sum()) / total
    psi = numerator - tau * target
    psi *= len(y) / total
    return tau, psi


@one_blas_thread
def aipw_from_arrays(
    design: DesignMatrix,
    treatment: NDArray[np.int64],
    outcome: FloatArray,
    *,
    n_folds: int | None = None,
    rng: np.random.Generator | None = None,
    outcome_kind: OutcomeKind = "auto",
    policy: PropensityPolicy = "clip",
    bounds: tuple[float, float] = (0.01, 0.99),
    estimand: Estimand = "ATE",
    propensity: PropensityModel | None = None,
    outcome_fit: OutcomeModel | None = None,
    weights: FloatArray | None = None,
) -> EffectEstimate:
    """AIPW on arrays (the core of :func:`aipw`); ``propensity``, ``outcome_fit``, ``weights`` as in :func:`nuisances`."""
    return aipw_with_influence(
        design,
        treatment,
        outcome,
        n_folds=n_folds,
        rng=rng,
        outcome_kind=outcome_kind,
        policy=policy,
        bounds=bounds,
        estimand=estimand,
        propensity=propensity,
        outcome_fit=outcome_fit,
        weights=weights,
    )[0]


@one_blas_thread
def aipw_with_influence(
    design: DesignMatrix,
    treatment: NDArray[np.int64],
    outcome: FloatArray,
    *,
    n_folds: int | None = None,
    rng: np.random.Generator | None = None,
    outcome_kind: OutcomeKind = "auto",
    policy: PropensityPolicy = "clip",
    bounds: tuple[float, float] = (0.01, 0.99),
    estimand: Estimand = "ATE",
    propensity: PropensityModel | None = None,
    outcome_fit: OutcomeModel | None = None,
    weights: FloatArray | None = None,
) -> tuple[EffectEstimate, FloatArray, NDArray[np.bool_]]:
    """:func:`aipw_from_arrays` with the influence values of the kept units and the kept-unit mask.

    The values are ``phi_i - tau`` for the ATE and the score ``psi_i`` of :func:`_target_score` for
    the ATT and ATC: in every case ``SE = |values| / n_kept``. ``propensity`` and ``outcome_fit``:
    models already fitted in-sample on these rows (:func:`nuisances`), so none is fitted again.
    ``weights``: checked sampling weights (module docstring).
    """
    check_choice("estimand", estimand, ESTIMANDS)
    e, mu0, mu1, keep, n_outside, fallbacks = nuisances(
        design,
        treatment,
        outcome,
        n_folds=n_folds,
        rng=rng,
        outcome_kind=outcome_kind,
        policy=policy,
        bounds=bounds,
        side=SIDE_OF[estimand],
        propensity=propensity,
        outcome_fit=outcome_fit,
        weights=weights,
    )
    if estimand == "ATE":
        phi = rowwise(_influence, treatment, outcome, e, mu0, mu1)
        if not keep.all():
            phi = phi[keep]
        n = len(phi)
        if weights is None:
            estimate = float(phi.mean())
            centred = phi - estimate
        else:
            s = weights if keep.all() else weights[keep]
            estimate = float(s @ phi) / float(s.sum())
            centred = s * (phi - estimate) * (n / float(s.sum()))
    else:
        kept = keep.all()
        estimate, centred = _target_score(
            treatment if kept else treatment[keep],
            outcome if kept else outcome[keep],
            e if kept else e[keep],
            mu0 if kept else mu0[keep],
            mu1 if kept else mu1[keep],
            estimand,
            None if weights is None else weights if kept else weights[keep],
        )
        n = len(centred)
    n_treated, n_control = arm_counts(treatment[keep])
    diagnostics: dict[str, Any] = {
        "propensity_policy": policy,
        "propensity_bounds": list(bounds),
        "n_clipped": n_outside if policy == "clip" else 0,
        "n_trimmed": n_outside if policy == "trim" else 0,
        "cross_fitting_folds": int(n_folds) if n_folds else 0,
        "outcome_model": outcome_kind,
        "outcome_fallbacks": fallbacks,
    }
    if estimand != "ATE":
        diagnostics["propensity_bounded_side"] = SIDE_OF[estimand]
    if weights is not None:
        diagnostics["sampling_weights"] = True
    result = EffectEstimate(
        estimate=estimate,
        std_error=math.sqrt(float(centred @ centred)) / n,
        n_treated=n_treated,
        n_control=n_control,
        method="aipw",
        se_method="influence_function",
        estimand=estimand,
        diagnostics=diagnostics,
    )
    return result, centred, keep


def aipw(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    n_folds: int | None = None,
    rng: np.random.Generator | None = None,
    outcome_kind: OutcomeKind = "auto",
    policy: PropensityPolicy = "clip",
    bounds: tuple[float, float] = (0.01, 0.99),
    categories: Mapping[str, Sequence[str]] | None = None,
    estimand: Estimand = "ATE",
    weights: ArrayLike | None = None,
) -> EffectEstimate:
    """Doubly robust ATE, ATT or ATC (augmented IPW) with an influence-function standard error.

    Parameters
    ----------
    data : DataFrame
        One row per unit.
    treatment, outcome : str
        Column names.
    covariates : sequence of str
        Covariates of both nuisance models.
    n_folds : int, optional
        K >= 2 for K-fold cross-fitting (needs ``rng``); None fits the nuisances in-sample.
    rng : numpy.random.Generator, optional
        Fold assignment for cross-fitting.
    outcome_kind : {"auto", "linear", "logistic"}
        Arm-wise outcome model; ``"auto"`` is logistic for a 0/1 outcome.
    policy : {"clip", "trim", "none"}
        What to do with propensity scores outside ``bounds`` (reported in ``diagnostics``); for
        the ATT only above the upper bound, for the ATC only below the lower one.
    bounds : (float, float)
        Propensity bounds.
    categories : mapping, optional
        Allowed levels of categorical covariates.
    estimand : {"ATE", "ATT", "ATC"}
        The ATT needs the control outcome model and the odds ``e/(1-e)`` only (module docstring);
        the ATC the treated outcome model and ``(1-e)/e``.
    weights : array_like, optional
        Sampling weights, one per row, positive: the population's estimand (module docstring).

    Returns
    -------
    EffectEstimate
        ``se_method="influence_function"``, ``estimand`` as asked. ``diagnostics["outcome_fallbacks"]`` lists each arm
        (and fold) whose outcome regression fell back to a minimum-norm or ridge fit because the
        arm's design is singular or separated, with the reason; it is empty when none did.
    """
    arrays = batch_arrays(
        data, treatment=treatment, outcome=outcome, covariates=covariates, categories=categories
    )
    return aipw_from_arrays(
        arrays.design,
        arrays.treatment,
        arrays.outcome,
        n_folds=n_folds,
        rng=rng,
        outcome_kind=outcome_kind,
        policy=policy,
        bounds=bounds,
        estimand=estimand,
        weights=sampling_weights(weights, len(arrays.outcome)),
    )
