"""Fusion of batch estimates with correlated errors (batches that share units) by exact conditioning.

``theta_t = theta_{t-1} + w_t``, ``w_t ~ N(0, q)``; ``y = theta + e``, ``e ~ N(0, R)`` with
``R = D C D``, ``D = diag(se_t)`` and ``C`` the correlation of the estimates (for instance from the
units the batches share, :func:`assimilate.filters.shared_units.shared_unit_covariance`). The
filtered, forecast and smoothed beliefs are the exact Gaussian conditionals given the used
estimates; an excluded batch is a missing observation. With independent errors (``C`` diagonal
over the used batches) this is :func:`causal_kalman` itself, called as it is: bit-identical.

Example
-------
>>> import numpy as np
>>> corr = np.full((3, 3), 0.5) + 0.5 * np.eye(3)
>>> res = correlated_kalman([0.5, 0.52, 0.49], [0.1, 0.1, 0.1], correlation=corr,
...                         prior_mean=0.0, prior_var=1.0, process_var=0.0)
>>> round(res.final_sd, 4)  # sqrt(0.01 * (1 + 2 * 0.5) / 3), a little shrunk by the prior
0.0814
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import linalg, optimize, special, stats

from assimilate._validation import check_alpha, check_non_negative
from assimilate.filters._kalman_loop import (
    FORECAST_MEAN,
    FORECAST_VAR,
    INNOVATION,
    INNOVATION_VAR,
    LOWER,
    MEAN,
    UPPER,
    VAR,
)
from assimilate.filters.kalman import causal_kalman
from assimilate.filters.mle import PROFILE_POINTS, ProcessVarianceFit
from assimilate.filters.model import LOG_2PI
from assimilate.filters.shared_units import EIGENVALUE_FLOOR, psd_correlation
from assimilate.filters.stream import prepare_inputs, resolve_prior
from assimilate.result import AssimilationResult

FloatArray = NDArray[np.float64]
TOLERANCE = 1e-9


class _Observations(NamedTuple):
    """The used batches: their time indices, estimates, SEs and error correlation."""

    times: NDArray[np.int64]
    estimates: FloatArray
    standard_errors: FloatArray
    correlation: FloatArray
    n_batches: int


class _Pass(NamedTuple):
    table: FloatArray  # 8 x T rows as in _kalman_loop
    smoothed_mean: FloatArray
    smoothed_var: FloatArray
    log_likelihood: float


def correlated_kalman(
    estimates: ArrayLike,
    standard_errors: ArrayLike,
    *,
    correlation: ArrayLike | None = None,
    prior_mean: float | None = None,
    prior_var: float | None = None,
    process_var: float | Literal["mle"] = 0.0,
    alpha: float = 0.05,
    labels: Sequence[str] | None = None,
    excluded: Sequence[bool] | None = None,
    exclusion_reasons: Sequence[str] | None = None,
    diffuse: bool = False,
    smooth: bool = True,
    eigenvalue_floor: float = EIGENVALUE_FLOOR,
) -> AssimilationResult:
    """Fuse a stream of batch estimates whose errors are correlated across batches.

    Parameters
    ----------
    estimates, standard_errors : array_like
        One estimate and its standard error per batch, in time order (NaN estimate: no observation).
    correlation : array_like, optional
        ``T x T`` correlation of the estimates' errors (unit diagonal). None, or a matrix that is
        diagonal over the used batches, runs :func:`causal_kalman` unchanged.
    prior_mean, prior_var, process_var, alpha, labels, excluded, exclusion_reasons, diffuse, smooth
        As in :func:`causal_kalman` (``process_var="mle"`` maximizes this model's likelihood).
    eigenvalue_floor : float
        A correlation of the used batches with an eigenvalue below it is repaired first
        (:func:`assimilate.filters.shared_units.psd_correlation`; reported in ``details``).

    Returns
    -------
    AssimilationResult
        ``details["error_correlation"]`` is the correlation used. ``innovations`` are each estimate
        minus its predictive mean given the earlier estimates, which includes the part of its error
        expected from the errors of earlier batches, so with correlated errors they differ from
        ``estimate - forecast_mean``; ``innovation_var`` is their variance, and the standardized
        innovations are independent N(0, 1) under the model.

    Notes
    -----
    With ``theta_t = theta_0 + W_t`` and ``K = q min(s, t) + R`` the covariance of ``W + e`` over
    the used batches, ``K = L L'``: the whitened ``L^-1 (y - theta_0 1)`` are independent N(0, 1),
    so the first k of them (the first k estimates) give the GLS posterior of ``theta_0`` (precision
    ``1/P_0 + |L_k^-1 1|^2``) and, given ``theta_0``, the conditional of each ``W_t``; the belief
    about ``theta_t`` combines both exactly. A diffuse start is a flat prior on ``theta_0`` (the first
    estimate has no innovation, as in :func:`causal_kalman`). Cost ``O(T^3)`` in the used batches.
    Conditioning on correlated observation errors: Rasmussen & Williams (2006), ch. 2; the prior
    on ``theta_0`` integrated out as in universal kriging.
    """
    check_alpha(alpha)
    kalman_options: dict[str, Any] = {
        "prior_mean": prior_mean,
        "prior_var": prior_var,
        "process_var": process_var,
        "alpha": alpha,
        "labels": labels,
        "excluded": excluded,
        "exclusion_reasons": exclusion_reasons,
        "diffuse": diffuse,
        "smooth": smooth,
    }
    inputs = prepare_inputs(
        estimates, standard_errors, labels=labels, excluded=excluded, exclusion_reasons=exclusion_reasons
    )
    if correlation is None:
        return causal_kalman(estimates, standard_errors, **kalman_options)
    used = ~inputs.excluded
    block = _used_block(correlation, used)
    if not np.any(block[~np.eye(len(block), dtype=bool)]):
        return causal_kalman(estimates, standard_errors, **kalman_options)
    block, smallest, adjusted = psd_correlation(block, eigenvalue_floor=eigenvalue_floor)
    observed = _Observations(
        np.flatnonzero(used).astype(np.int64),
        inputs.estimates[used],
        inputs.standard_errors[used],
        np.asarray(block, dtype=np.float64),
        len(used),
    )
    mean0, var0 = resolve_prior(inputs, prior_mean, prior_var, diffuse)
    full = np.eye(len(used))
    full[np.ix_(used, used)] = block
    full.setflags(write=False)
    details: dict[str, Any] = {
        "observation": "gaussian",
        "diffuse": diffuse,
        "correlated_errors": True,
        "error_correlation": full,
        "psd_adjusted": adjusted,
        "min_eigenvalue": smallest,
    }
    if process_var == "mle":
        fit = fit_correlated_process_variance(observed, prior_mean=mean0, prior_var=var0)
        q = fit.process_var
        details["process_var_fit"] = fit
    elif isinstance(process_var, str):
        raise ValueError(f"process_var must be a number >= 0 or 'mle', got {process_var!r}")
    else:
        q = check_non_negative("process_var", process_var)
    result = _condition(observed, prior_mean=mean0, prior_var=var0, process_var=q)
    table = result.table
    half = float(special.ndtri(1.0 - alpha / 2.0)) * np.sqrt(table[VAR])
    table[LOWER] = table[MEAN] - half
    table[UPPER] = table[MEAN] + half
    return AssimilationResult(
        backend="kalman",
        alpha=alpha,
        labels=inputs.labels,
        estimates=inputs.estimates,
        standard_errors=inputs.standard_errors,
        excluded=inputs.excluded,
        exclusion_reasons=inputs.reasons,
        forecast_mean=table[FORECAST_MEAN],
        forecast_var=table[FORECAST_VAR],
        posterior_mean=table[MEAN],
        posterior_var=table[VAR],
        posterior_lower=table[LOWER],
        posterior_upper=table[UPPER],
        innovations=table[INNOVATION],
        innovation_var=table[INNOVATION_VAR],
        process_var=q,
        log_likelihood=result.log_likelihood,
        prior_mean=mean0,
        prior_var=var0,
        smoothed_mean=result.smoothed_mean if smooth else None,
        smoothed_var=result.smoothed_var if smooth else None,
        details=details,
    )


def _used_block(correlation: ArrayLike, used: NDArray[np.bool_]) -> FloatArray:
    """The correlation among the used batches, checked: square, symmetric, unit diagonal, in [-1, 1]."""
    matrix = np.asarray(correlation, dtype=np.float64)
    n = len(used)
    if matrix.shape != (n, n):
        raise ValueError(f"correlation must be {n} x {n} (one row per batch), got shape {matrix.shape}")
    block = matrix[np.ix_(used, used)]
    if not np.all(np.isfinite(block)):
        raise ValueError("correlation must be finite among the used batches")
    if np.any(np.abs(block - block.T) > TOLERANCE):
        raise ValueError("correlation must be symmetric")
    if np.any(np.abs(np.diagonal(block) - 1.0) > TOLERANCE):
        raise ValueError("correlation must have a unit diagonal")
    if np.any(np.abs(block) > 1.0 + TOLERANCE):
        raise ValueError("correlation entries must lie in [-1, 1]")
    return block


def _condition(observed: _Observations, *, prior_mean: float, prior_var: float, process_var: float) -> _Pass:
    """Forecast, filtered and smoothed beliefs, innovations and log-likelihood (see Notes above)."""
    times, y, se = observed.times, observed.estimates, observed.standard_errors
    n, n_batches, q = len(y), observed.n_batches, process_var
    covariance = observed.correlation * np.outer(se, se)
    if q > 0:
        covariance = covariance + q * (np.minimum.outer(times, times) + 1.0)
    try:
        factor = linalg.cholesky(covariance, lower=True)
    except linalg.LinAlgError as error:
        raise ValueError("the covariance of the used estimates is not positive definite") from error
    y_w = linalg.solve_triangular(factor, y, lower=True)
    one_w = linalg.solve_triangular(factor, np.ones(n), lower=True)
    # GLS information about theta_0 from the first k estimates, k = 0 .. n.
    prior_precision = 0.0 if math.isinf(prior_var) else 1.0 / prior_var
    precision = prior_precision + _cumsum0(one_w * one_w)
    known = precision > 0
    theta0 = np.full(n + 1, prior_mean)
    np.divide(prior_precision * prior_mean + _cumsum0(one_w * y_w), precision, out=theta0, where=known)
    theta0_var = np.full(n + 1, math.inf)
    np.divide(1.0, precision, out=theta0_var, where=known)
    steps = np.arange(n_batches)
    if q > 0:
        # Cov(W_t, y_j) = q (min(t, t_j) + 1), whitened; prefix sums over j for every t.
        c_w = linalg.solve_triangular(factor, q * (np.minimum.outer(times, steps) + 1.0), lower=True).T
        s_y, s_one, s_c = _cumsum0(c_w * y_w), _cumsum0(c_w * one_w), _cumsum0(c_w * c_w)
    else:
        s_y = s_one = s_c = np.zeros((n_batches, n + 1))

    def belief(k: NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
        g = 1.0 - s_one[steps, k]
        mean = g * theta0[k] + s_y[steps, k]
        spread = np.maximum(q * (steps + 1.0) - s_c[steps, k], 0.0)
        var = spread + np.where(known[k], g * g * np.where(known[k], theta0_var[k], 0.0), math.inf)
        return mean, var

    table = np.full((8, n_batches), math.nan)
    table[FORECAST_MEAN], table[FORECAST_VAR] = belief(np.searchsorted(times, steps, side="left"))
    table[MEAN], table[VAR] = belief(np.searchsorted(times, steps, side="right"))
    smoothed_mean, smoothed_var = belief(np.full(n_batches, n, dtype=np.intp))
    # Innovation j: y_j minus its predictive mean given the first j estimates.
    pivot = np.diagonal(factor)
    innovation = pivot * (y_w - theta0[:n] * one_w)
    innovation_var = pivot * pivot * (1.0 + one_w * one_w * np.where(known[:n], theta0_var[:n], 0.0))
    informative = known[:n]
    table[INNOVATION, times[informative]] = innovation[informative]
    table[INNOVATION_VAR, times[informative]] = innovation_var[informative]
    v, s = innovation[informative], innovation_var[informative]
    log_likelihood = float(-0.5 * np.sum(LOG_2PI + np.log(s) + v * v / s))
    return _Pass(table, smoothed_mean, smoothed_var, log_likelihood)


def _cumsum0(values: FloatArray) -> FloatArray:
    """Cumulative sums along the last axis with a leading 0 (sums of the first k terms, k = 0 .. n)."""
    out = np.zeros((*values.shape[:-1], values.shape[-1] + 1))
    np.cumsum(values, axis=-1, out=out[..., 1:])
    return out


def correlated_log_likelihood(
    observed: _Observations, *, prior_mean: float, prior_var: float
) -> Callable[[float], float]:
    """``q -> log L(q)``: the exact Gaussian log-likelihood of the used estimates."""

    def log_l(q: float) -> float:
        return _condition(observed, prior_mean=prior_mean, prior_var=prior_var, process_var=q).log_likelihood

    return log_l


def fit_correlated_process_variance(
    observed: _Observations, *, prior_mean: float, prior_var: float
) -> ProcessVarianceFit:
    """Maximum-likelihood process variance under correlated errors (the search of ``fit_process_variance``).

    A log-spaced profile grid, a bounded search around its best point, ``q = 0`` when the
    boundary is at least as likely; the LR test of a static effect uses the 50:50 chi-bar-square.
    """
    if len(observed.estimates) < 3:
        raise ValueError("process_var='mle' needs at least 3 used batches")
    log_l = correlated_log_likelihood(observed, prior_mean=prior_mean, prior_var=prior_var)
    scale = float(np.median(observed.standard_errors)) ** 2
    spread = float(np.var(observed.estimates))
    grid = np.linspace(math.log(scale * 1e-6), math.log(max(spread, scale) * 10.0), PROFILE_POINTS)
    values = np.array([log_l(math.exp(g)) for g in grid])
    best = int(np.argmax(values))
    bracket = (grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)])
    found = optimize.minimize_scalar(
        lambda g: -log_l(math.exp(g)), bounds=bracket, method="bounded", options={"xatol": 1e-6}
    )
    ll_static = log_l(0.0)
    q_hat, ll_hat = math.exp(float(found.x)), -float(found.fun)
    if ll_static >= ll_hat or (best == 0 and ll_hat - ll_static < 1e-9):
        q_hat, ll_hat = 0.0, ll_static
    profile = pd.DataFrame(
        {
            "process_var": np.concatenate([[0.0], np.exp(grid)]),
            "log_likelihood": np.concatenate([[ll_static], values]),
        }
    )
    statistic = max(0.0, 2.0 * (ll_hat - ll_static))
    inside = profile[profile["log_likelihood"] >= ll_hat - 0.5 * float(stats.chi2.ppf(0.95, 1))]
    std_error = math.nan
    if q_hat > 0:
        h = q_hat * 1e-3
        second = (log_l(q_hat + h) - 2 * ll_hat + log_l(q_hat - h)) / (h * h)
        std_error = math.sqrt(-1.0 / second) if second < 0 else math.nan
    return ProcessVarianceFit(
        process_var=q_hat,
        std_error=std_error,
        conf_int=(float(inside["process_var"].min()), float(inside["process_var"].max())),
        log_likelihood=ll_hat,
        log_likelihood_static=ll_static,
        lr_statistic=statistic,
        p_value_static=0.5 * float(stats.chi2.sf(statistic, 1)) if statistic > 0 else 1.0,
        profile=profile,
    )
