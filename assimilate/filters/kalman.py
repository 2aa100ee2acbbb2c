"""The exact filter for the Gaussian random-walk effect model: a pure step API and a batch call.

``theta_t = theta_{t-1} + w_t``, ``w_t ~ N(0, q)``; ``y_t = theta_t + e_t``, ``e_t ~ N(0, se_t^2)``.
Steps are pure functions over an immutable, JSON-serialisable ``KalmanState``, so appending a batch
costs O(1). A missing or excluded batch is a predict-only step: the mean stays, the variance grows.
The batch call runs the same arithmetic as a loop of steps in a compiled pass (bit-identical).

Example
-------
>>> state = initial_state(prior_mean=0.0, prior_var=1.0)
>>> state, record = step(state, 0.5, 0.1, process_var=0.0)
>>> round(state.mean, 4), record.excluded
(0.495, False)
>>> state, record = step(state, None, None, process_var=0.01)
>>> record.excluded
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from assimilate._validation import check_alpha, check_finite, check_non_negative, check_positive
from assimilate.filters._kalman_loop import (
    FORECAST_MEAN,
    FORECAST_VAR,
    INNOVATION,
    INNOVATION_VAR,
    LOWER,
    MEAN,
    UPPER,
    VAR,
    kalman_pass,
)
from assimilate.filters.mle import fit_process_variance_inputs
from assimilate.filters.model import LOG_2PI
from assimilate.filters.stream import StreamInputs as _Inputs
from assimilate.filters.stream import default_labels as default_labels  # re-exported
from assimilate.filters.stream import default_prior as default_prior  # re-exported
from assimilate.filters.stream import prepare_inputs
from assimilate.filters.stream import resolve_prior as _resolve_prior
from assimilate.result import AssimilationResult

FloatArray = NDArray[np.float64]


class KalmanState(NamedTuple):
    """Belief about the effect after ``n_steps`` batches (``var`` may be inf: diffuse)."""

    mean: float
    var: float
    n_steps: int
    log_likelihood: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (an infinite variance is written as the string ``"inf"``)."""
        return {
            "mean": self.mean,
            "var": "inf" if math.isinf(self.var) else self.var,
            "n_steps": self.n_steps,
            "log_likelihood": self.log_likelihood,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KalmanState:
        """Inverse of :meth:`to_dict`."""
        return cls(
            float(data["mean"]), float(data["var"]), int(data["n_steps"]), float(data["log_likelihood"])
        )


class KalmanStep(NamedTuple):
    """What one batch did to the belief (innovation NaN when the batch was not used)."""

    forecast_mean: float
    forecast_var: float
    innovation: float
    innovation_var: float
    posterior_mean: float
    posterior_var: float
    excluded: bool
    log_likelihood: float


def initial_state(*, prior_mean: float, prior_var: float) -> KalmanState:
    """The belief before the first batch; ``prior_var=inf`` is an exact diffuse start."""
    check_finite("prior_mean", prior_mean)
    check_positive("prior_var", prior_var, allow_inf=True)
    return KalmanState(float(prior_mean), float(prior_var), 0, 0.0)


def predict(state: KalmanState, *, process_var: float) -> KalmanState:
    """Advance one batch in time: the variance grows by ``process_var``."""
    return KalmanState(state.mean, state.var + process_var, state.n_steps, state.log_likelihood)


def update(
    state: KalmanState, estimate: float | None, std_error: float | None
) -> tuple[KalmanState, KalmanStep]:
    """Condition the (predicted) belief on one batch estimate; None or NaN means no observation.

    With a diffuse forecast (infinite variance) the estimate initializes the belief exactly
    (mean ``y``, variance ``se^2``); that step has no innovation and adds nothing to the likelihood.
    """
    m, p = state.mean, state.var
    if estimate is None or math.isnan(estimate):
        done = KalmanState(m, p, state.n_steps + 1, state.log_likelihood)
        return done, KalmanStep(m, p, math.nan, math.nan, m, p, True, 0.0)
    y = float(estimate)
    se = float(std_error) if std_error is not None else math.nan
    r = se * se
    if not (math.isfinite(y) and math.isfinite(r) and r > 0.0):
        raise ValueError(
            f"a used batch needs a finite estimate and a finite std_error > 0, got {estimate!r}, {std_error!r}"
        )
    if math.isinf(p):
        done = KalmanState(y, r, state.n_steps + 1, state.log_likelihood)
        return done, KalmanStep(m, p, math.nan, math.nan, y, r, False, 0.0)
    s = p + r
    v = y - m
    gain = p / s
    new_mean = m + gain * v
    new_var = gain * r
    increment = -0.5 * (LOG_2PI + math.log(s) + v * v / s)
    done = KalmanState(new_mean, new_var, state.n_steps + 1, state.log_likelihood + increment)
    return done, KalmanStep(m, p, v, s, new_mean, new_var, False, increment)


def step(
    state: KalmanState, estimate: float | None, std_error: float | None, *, process_var: float
) -> tuple[KalmanState, KalmanStep]:
    """Predict then update: one batch."""
    return update(predict(state, process_var=process_var), estimate, std_error)


def run_kalman(
    inputs: _Inputs, *, prior_mean: float, prior_var: float, process_var: float, alpha: float = 0.05
) -> tuple[FloatArray, KalmanState]:
    """Filter a validated stream: the step table (rows as in ``_kalman_loop``) and the final state."""
    table = np.empty((8, len(inputs.estimates)), dtype=np.float64)
    z = float(special.ndtri(1.0 - alpha / 2.0))  # norm.ppf without its argument checking
    mean, var, log_likelihood = kalman_pass(
        inputs.estimates,
        inputs.standard_errors,
        inputs.excluded,
        float(prior_mean),
        float(prior_var),
        float(process_var),
        z,
        table,
    )
    table.setflags(write=False)  # no writable reference is left: results may share its rows
    return table, KalmanState(mean, var, len(inputs.estimates), log_likelihood)


def causal_kalman(
    estimates: ArrayLike,
    standard_errors: ArrayLike,
    *,
    prior_mean: float | None = None,
    prior_var: float | None = None,
    process_var: float | Literal["mle"] = 0.0,
    alpha: float = 0.05,
    labels: Sequence[str] | None = None,
    excluded: Sequence[bool] | None = None,
    exclusion_reasons: Sequence[str] | None = None,
    diffuse: bool = False,
    smooth: bool = True,
) -> AssimilationResult:
    """Fuse a stream of batch estimates into a filtered (and smoothed) posterior of the effect.

    Parameters
    ----------
    estimates, standard_errors : array_like
        One estimate and its standard error per batch, in time order. A NaN estimate means no
        observation for that batch: a predict-only step, never a NaN posterior.
    prior_mean, prior_var : float, optional
        Belief before the first batch. Defaults: mean 0 and a scale-aware variance
        ``(10 * max(median |estimate|, median SE))^2``.
    process_var : float or "mle"
        Variance of the effect's random-walk step per batch; ``"mle"`` estimates it by maximum
        likelihood (see :func:`fit_process_variance`, reported in ``details["process_var_fit"]``).
    alpha : float
        Credible bands at level ``1 - alpha``.
    labels : sequence of str, optional
        Batch labels (default ``batch_1`` ...).
    excluded : sequence of bool, optional
        Batches that must not update the posterior (e.g. a failed assumption check), even when
        their estimate is finite.
    exclusion_reasons : sequence of str, optional
        Why each excluded batch was excluded.
    diffuse : bool
        Exact diffuse start: the first used estimate initializes the belief (mean ``y``,
        variance ``se^2``) and is left out of the likelihood.
    smooth : bool
        Also compute the RTS-smoothed path.

    Returns
    -------
    AssimilationResult

    Notes
    -----
    Predict ``m, P + q``; update with gain ``K = P / (P + se^2)``:
    ``m' = m + K (y - m)``, ``P' = K se^2 = P se^2 / (P + se^2)``. With ``q = 0`` the posterior is the
    precision-weighted mean of the prior and the estimates.
    """
    check_alpha(alpha)
    inputs = prepare_inputs(
        estimates, standard_errors, labels=labels, excluded=excluded, exclusion_reasons=exclusion_reasons
    )
    mean0, var0 = _resolve_prior(inputs, prior_mean, prior_var, diffuse)
    details: dict[str, Any] = {"observation": "gaussian", "diffuse": diffuse}
    if process_var == "mle":
        fit = fit_process_variance_inputs(inputs, prior_mean=mean0, prior_var=var0)
        q = fit.process_var
        details["process_var_fit"] = fit
    elif isinstance(process_var, str):
        raise ValueError(f"process_var must be a number >= 0 or 'mle', got {process_var!r}")
    else:
        q = check_non_negative("process_var", process_var)
    table, final = run_kalman(inputs, prior_mean=mean0, prior_var=var0, process_var=q, alpha=alpha)
    return _result(
        inputs,
        table,
        final,
        alpha=alpha,
        prior=(mean0, var0),
        process_var=q,
        smooth=smooth,
        details=details,
    )


def _result(
    inputs: _Inputs,
    table: FloatArray,
    final: KalmanState,
    *,
    alpha: float,
    prior: tuple[float, float],
    process_var: float,
    smooth: bool,
    details: dict[str, Any],
) -> AssimilationResult:
    mean, var = table[MEAN], table[VAR]
    smoothed_mean = smoothed_var = None
    if smooth:
        from assimilate.filters.smoother import rts_smooth

        smoothed_mean, smoothed_var = rts_smooth(mean, var, process_var=process_var)
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
        posterior_mean=mean,
        posterior_var=var,
        posterior_lower=table[LOWER],
        posterior_upper=table[UPPER],
        innovations=table[INNOVATION],
        innovation_var=table[INNOVATION_VAR],
        process_var=process_var,
        log_likelihood=final.log_likelihood,
        prior_mean=prior[0],
        prior_var=prior[1],
        smoothed_mean=smoothed_mean,
        smoothed_var=smoothed_var,
        details=details,
    )
