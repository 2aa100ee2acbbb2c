"""Effects by segment fused over time with partial pooling: a hierarchical random-walk model.

``theta_st = mu_t + delta_st``; ``mu_t = mu_{t-1} + N(0, q_common)``, ``delta_st = delta_s,t-1 +
N(0, q_segment)``, ``delta_s0 ~ N(0, tau^2)``; ``y_st = theta_st + N(0, se_st^2)``. The segments share a
common mean ``mu`` and scatter around it with between-segment variance ``tau^2``, so a segment with
little data (a large ``se``) is pulled towards ``mu``: it borrows strength. ``tau^2 -> 0`` pools the
segments completely; ``tau^2 -> inf`` leaves each segment its own estimates.

Example
-------
>>> res = segment_filter([[0.5, 0.3, 0.9]], [[0.1, 0.1, 0.4]], segments=["a", "b", "c"],
...                      between_var=0.01)
>>> res.mean[-1].round(3).tolist(), round(float(res.borrowed_share[-1, 2]), 2)
([0.464, 0.364, 0.456], 0.89)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from assimilate._frozen import FrozenDict, ReadOnlyArrays
from assimilate._validation import check_alpha, check_choice, check_finite, check_non_negative, check_positive
from assimilate.filters._segment_pass import SegmentPass, segment_pass

FloatArray = NDArray[np.float64]
BetweenVarMethod = Literal["reml", "integrated"]
BETWEEN_VAR_METHODS: tuple[BetweenVarMethod, ...] = ("reml", "integrated")
GRID_POINTS = 41


@dataclass(frozen=True)
class SegmentPosterior(ReadOnlyArrays):
    """The filtered belief about every segment's effect after each batch (frozen, arrays read-only).

    Attributes
    ----------
    segments, labels : tuple of str
        The segments (columns) and the batches (rows).
    alpha : float
        Intervals at level ``1 - alpha``.
    estimates, standard_errors : ndarray
        ``T x S`` inputs (NaN: the segment had no estimate in that batch).
    mean, sd, lower, upper : ndarray
        ``T x S`` posterior mean, SD and equal-tailed interval of each segment's effect. Before the
        first estimate under a flat common mean: mean ``prior_mean``, SD ``inf``, interval ``(-inf, inf)``.
    covariance : ndarray
        ``T x S x S`` posterior covariance of the segment effects.
    common_mean, common_sd : ndarray
        ``T``: the posterior of the common mean ``mu_t`` (the overall effect segments shrink to).
    borrowed_share : ndarray
        ``T x S``: ``1 -`` the weight of the segment's own estimates in its posterior mean (0: no
        pooling, 1: all borrowed). Grows as the segment's standard errors grow.
    between_var : ndarray
        ``T``: the ``tau^2`` used at each batch (fixed or REML: one value; integrated: its posterior mean).
    between_var_method : str
        ``"fixed"``, ``"reml"`` or ``"integrated"``.
    common_process_var, segment_process_var : float
        The random-walk variances per batch.
    log_likelihood : float
        Of all estimates (restricted under a flat common mean; integrated: the log marginal over ``tau``).
    details : Mapping
        The ``tau`` grid and its posterior weights after the last batch (integrated), the REML
        profile (reml), as tuples.
    """

    segments: tuple[str, ...]
    labels: tuple[str, ...]
    alpha: float
    estimates: FloatArray
    standard_errors: FloatArray
    mean: FloatArray
    sd: FloatArray
    lower: FloatArray
    upper: FloatArray
    covariance: FloatArray
    common_mean: FloatArray
    common_sd: FloatArray
    borrowed_share: FloatArray
    between_var: FloatArray
    between_var_method: str
    common_process_var: float
    segment_process_var: float
    log_likelihood: float
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for value in vars(self).values():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
        object.__setattr__(self, "details", FrozenDict(self.details))

    @property
    def n_batches(self) -> int:
        """Batches filtered."""
        return len(self.labels)

    def to_frame(self) -> pd.DataFrame:
        """One tidy row per batch and segment: inputs, posterior, interval, borrowed share."""
        n_batches, n_seg = self.mean.shape
        return pd.DataFrame(
            {
                "batch": np.repeat(self.labels, n_seg),
                "segment": np.tile(self.segments, n_batches),
                "estimate": self.estimates.ravel(),
                "std_error": self.standard_errors.ravel(),
                "mean": self.mean.ravel(),
                "sd": self.sd.ravel(),
                "lower": self.lower.ravel(),
                "upper": self.upper.ravel(),
                "borrowed_share": self.borrowed_share.ravel(),
                "common_mean": np.repeat(self.common_mean, n_seg),
                "common_sd": np.repeat(self.common_sd, n_seg),
                "between_var": np.repeat(self.between_var, n_seg),
                "alpha": self.alpha,
            }
        )


def _inputs(
    estimates: ArrayLike,
    standard_errors: ArrayLike,
    segments: Sequence[str] | None,
    labels: Sequence[str] | None,
) -> tuple[FloatArray, FloatArray, tuple[str, ...], tuple[str, ...]]:
    y = np.array(estimates, dtype=np.float64, ndmin=2)
    se = np.array(standard_errors, dtype=np.float64, ndmin=2)
    if y.ndim != 2 or y.shape != se.shape:
        raise ValueError(
            f"estimates and standard_errors must be T x S of one shape, got {y.shape} and {se.shape}"
        )
    n_steps, n_seg = y.shape
    if n_seg < 2:
        raise ValueError(f"segment_filter needs at least 2 segments (columns), got {n_seg}")
    used = np.isfinite(y)
    bad = used & ~(np.isfinite(se) & (se > 0))
    if bad.any():
        t, s = np.argwhere(bad)[0]
        raise ValueError(
            f"batch {t}, segment {s}: an estimate needs a finite standard error > 0, got {se[t, s]!r}"
        )
    names = (
        tuple(str(s) for s in segments)
        if segments is not None
        else tuple(f"segment_{j + 1}" for j in range(n_seg))
    )
    steps = (
        tuple(str(s) for s in labels)
        if labels is not None
        else tuple(f"batch_{t + 1}" for t in range(n_steps))
    )
    if len(names) != n_seg or len(set(names)) != n_seg:
        raise ValueError(f"segments must be {n_seg} distinct names (one per column), got {list(names)}")
    if len(steps) != n_steps:
        raise ValueError(f"labels must name the {n_steps} batches, got {len(steps)}")
    return np.where(used, y, math.nan), np.where(used, se, math.nan), names, steps


def _segment_averages(y: FloatArray, se: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Each observed segment's precision-weighted mean over the stream and its SE (the ``tau`` scale)."""
    w = np.where(np.isfinite(y), 1.0 / np.where(np.isfinite(se), se, 1.0) ** 2, 0.0)
    total = w.sum(axis=0)
    seen = total > 0
    means = (w * np.nan_to_num(y)).sum(axis=0)[seen] / total[seen]
    return means, 1.0 / np.sqrt(total[seen])


def _reml(run: Any, y: FloatArray, se: FloatArray) -> tuple[float, dict[str, Any]]:
    """``tau^2`` maximizing the final (restricted) log-likelihood: a log grid, then a bounded search."""
    means, errors = _segment_averages(y, se)
    scale = max(float(np.var(means)), float(np.median(errors)) ** 2)
    grid = np.concatenate(
        [[0.0], np.exp(np.linspace(math.log(scale * 1e-4), math.log(scale * 1e2), GRID_POINTS))]
    )
    profile = run(grid).log_likelihood[:, -1]
    best = int(np.argmax(profile))
    tau2, value = float(grid[best]), float(profile[best])
    if best > 0:
        low, high = math.log(grid[max(best - 1, 1)]), math.log(grid[min(best + 1, len(grid) - 1)])
        found = optimize.minimize_scalar(
            lambda g: -float(run(np.array([math.exp(g)])).log_likelihood[0, -1]),
            bounds=(low, high),
            method="bounded",
            options={"xatol": 1e-6},
        )
        if -float(found.fun) > value:
            tau2, value = math.exp(float(found.x)), -float(found.fun)
    return tau2, {
        "profile_between_var": tuple(grid.tolist()),
        "profile_log_likelihood": tuple(profile.tolist()),
        "log_likelihood": value,
    }


def _mixture_quantiles(weights: FloatArray, mean: FloatArray, sd: FloatArray, p: float) -> FloatArray:
    """``p``-quantile of ``sum_g w_g N(mean_g, sd_g^2)`` for every (t, s), by bisection (60 halvings)."""
    low = np.min(mean - 10.0 * sd, axis=0)
    high = np.max(mean + 10.0 * sd, axis=0)
    w = weights[:, :, None]
    for _ in range(60):
        middle = 0.5 * (low + high)
        below = np.sum(w * special.ndtr((middle - mean) / sd), axis=0) < p
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return np.asarray(0.5 * (low + high), dtype=np.float64)


def segment_filter(
    estimates: ArrayLike,
    standard_errors: ArrayLike,
    *,
    segments: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    between_var: float | BetweenVarMethod = "integrated",
    common_process_var: float = 0.0,
    segment_process_var: float = 0.0,
    prior_mean: float = 0.0,
    prior_var: float = math.inf,
    alpha: float = 0.05,
    between_sd_max: float | None = None,
) -> SegmentPosterior:
    """Fuse per-segment batch estimates over time, pooling the segments partially.

    Parameters
    ----------
    estimates, standard_errors : array_like
        ``T x S``: batch ``t``'s estimate of segment ``s`` and its SE (NaN estimate: no observation,
        e.g. a segment not assessed; a whole NaN row is a predict-only batch).
    segments, labels : sequence of str, optional
        Names of the segments (columns) and the batches (rows).
    between_var : float or {"reml", "integrated"}
        ``tau^2``: a number; ``"reml"``, the value maximizing the restricted likelihood of the whole
        stream (the common mean integrated out; for one batch this is REML of the random-effects
        model); ``"integrated"``, averaged over its posterior under a uniform prior on ``tau`` in
        ``[0, between_sd_max]`` given the estimates up to each batch (so the intervals carry the
        uncertainty about ``tau``, which a plug-in value ignores when segments are few).
    common_process_var, segment_process_var : float
        Random-walk variance per batch of the common mean and of each segment's deviation.
    prior_mean, prior_var : float
        Prior of the common mean before batch 1; ``prior_var=inf`` (default) is flat.
    alpha : float
        Intervals at level ``1 - alpha``.
    between_sd_max : float, optional
        Upper bound of ``tau`` for ``"integrated"``. Default: twice the range of the segments'
        stream averages plus twice their median SE (a bound read from the whole stream).

    Returns
    -------
    SegmentPosterior

    Notes
    -----
    Exact Kalman filtering of the state ``(mu, delta_1 .. delta_S)`` with the common mean's start
    as a coefficient (augmented filter, de Jong 1991). For one batch with a flat common mean and
    fixed ``tau^2`` the posterior is the textbook normal-normal shrinkage: ``theta_s | y ~
    N((1 - B_s) y_s + B_s mu_hat, (1 - B_s) se_s^2 + B_s^2 / W)`` with ``B_s = se_s^2 / (se_s^2 + tau^2)``,
    ``mu_hat = sum w_s y_s / W``, ``w_s = 1 / (se_s^2 + tau^2)``, ``W = sum w_s`` (Gelman et al.
    2013, *Bayesian Data Analysis*, 3rd ed., sec. 5.4 and 5.5). ``"integrated"`` evaluates the
    filter on a grid of ``tau`` (41 points) and mixes the Gaussian beliefs with weights
    ``L_t(tau)`` (the restricted likelihood of the estimates up to batch ``t``); its intervals are
    the mixture's quantiles.
    """
    check_alpha(alpha)
    check_finite("prior_mean", prior_mean)
    check_positive("prior_var", prior_var, allow_inf=True)
    q_common = check_non_negative("common_process_var", common_process_var)
    q_segment = check_non_negative("segment_process_var", segment_process_var)
    y, se, names, steps = _inputs(estimates, standard_errors, segments, labels)

    def run(tau2: FloatArray) -> SegmentPass:
        return segment_pass(
            y,
            se,
            tau2,
            common_process_var=q_common,
            segment_process_var=q_segment,
            prior_mean=float(prior_mean),
            prior_var=float(prior_var),
        )

    details: dict[str, Any] = {}
    method: str = "fixed"
    if isinstance(between_var, str):
        method = check_choice("between_var", between_var, BETWEEN_VAR_METHODS)
        if not np.isfinite(y).any():
            raise ValueError(f"between_var={method!r} needs at least one estimate")
        if method == "reml":
            tau2, details = _reml(run, y, se)
            grid = np.array([tau2])
        else:
            means, errors = _segment_averages(y, se)
            top = between_sd_max
            if top is None:
                top = 2.0 * (float(np.ptp(means)) + float(np.median(errors)))
            tau = np.linspace(0.0, check_positive("between_sd_max", top), GRID_POINTS)
            grid = tau * tau
            details = {"between_sd_grid": tuple(tau.tolist()), "between_sd_max": float(top)}
    else:
        grid = np.array([check_non_negative("between_var", between_var)])
    fit = run(grid)
    n_steps = len(steps)
    if len(grid) == 1:
        weights = np.ones((1, n_steps))
        log_likelihood = float(fit.log_likelihood[0, -1])
    else:
        prior = np.full(len(grid), 1.0 / (len(grid) - 1))  # trapezoid rule: uniform on tau
        prior[[0, -1]] *= 0.5
        log_w = np.log(prior)[:, None] + fit.log_likelihood
        top_w = log_w.max(axis=0)
        weights = np.exp(log_w - top_w)
        log_likelihood = float(top_w[-1] + np.log(weights[:, -1].sum()))
        weights /= weights.sum(axis=0)
        details["between_sd_weights"] = tuple(weights[:, -1].tolist())
    w3 = weights[:, :, None]
    known = np.isfinite(fit.common_var[0])
    mean = np.sum(w3 * fit.mean, axis=0)
    centred = fit.mean - mean[None]
    second = np.where(known[None, :, None, None], fit.cov, 0.0) + np.einsum("gts,gtr->gtsr", centred, centred)
    covariance = np.sum(weights[:, :, None, None] * second, axis=0)
    covariance[~known] = math.inf
    sd = np.sqrt(np.diagonal(covariance, axis1=1, axis2=2))
    z = float(special.ndtri(1.0 - alpha / 2.0))
    if len(grid) == 1:
        lower, upper = mean - z * sd, mean + z * sd
    else:
        spread = np.sqrt(np.where(known[None, :, None], np.diagonal(fit.cov, axis1=2, axis2=3), 1.0))
        lower = _mixture_quantiles(weights, fit.mean, spread, alpha / 2.0)
        upper = _mixture_quantiles(weights, fit.mean, spread, 1.0 - alpha / 2.0)
        lower[~known], upper[~known] = -math.inf, math.inf
    common_mean = np.sum(weights * fit.common_mean, axis=0)
    common_var = np.sum(
        weights * (np.where(known, fit.common_var, 0.0) + (fit.common_mean - common_mean) ** 2), axis=0
    )
    return SegmentPosterior(
        segments=names,
        labels=steps,
        alpha=alpha,
        estimates=y,
        standard_errors=se,
        mean=mean,
        sd=sd,
        lower=lower,
        upper=upper,
        covariance=covariance,
        common_mean=common_mean,
        common_sd=np.where(known, np.sqrt(common_var), math.inf),
        borrowed_share=1.0 - np.sum(w3 * fit.own_weight, axis=0),
        between_var=np.sum(weights * grid[:, None], axis=0),
        between_var_method=method,
        common_process_var=q_common,
        segment_process_var=q_segment,
        log_likelihood=log_likelihood,
        details=details,
    )
