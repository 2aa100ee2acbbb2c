"""Compiled recursions of the scalar random-walk model: the Kalman filter pass and the RTS pass.

Each does exactly the floating-point operations of the Python step API (``kalman.update``,
``smoother.rts_smooth``'s formulas) in the same order, so a batch call equals a loop of steps bit
for bit; they exist only because a Python loop costs about half a microsecond per batch.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from assimilate._jit import jit

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
LOG_2PI = math.log(2.0 * math.pi)
# Rows of the filter's output table.
FORECAST_MEAN, FORECAST_VAR, INNOVATION, INNOVATION_VAR, MEAN, VAR, LOWER, UPPER = range(8)


@jit()
def kalman_pass(
    estimates: FloatArray,
    std_errors: FloatArray,
    excluded: BoolArray,
    prior_mean: float,
    prior_var: float,
    process_var: float,
    z: float,
    out: FloatArray,
) -> tuple[float, float, float]:
    """Filter the stream into ``out`` (8 x T rows above); returns the final mean, variance, log L."""
    m, p, log_likelihood = prior_mean, prior_var, 0.0
    for t in range(estimates.shape[0]):
        p = p + process_var
        out[FORECAST_MEAN, t] = m
        out[FORECAST_VAR, t] = p
        if excluded[t]:
            out[INNOVATION, t] = math.nan
            out[INNOVATION_VAR, t] = math.nan
        elif math.isinf(p):
            # diffuse forecast: the estimate initializes the belief and adds nothing to log L
            out[INNOVATION, t] = math.nan
            out[INNOVATION_VAR, t] = math.nan
            m = estimates[t]
            p = std_errors[t] * std_errors[t]
        else:
            r = std_errors[t] * std_errors[t]
            s = p + r
            v = estimates[t] - m
            gain = p / s
            m = m + gain * v
            p = gain * r
            log_likelihood = log_likelihood + -0.5 * (LOG_2PI + math.log(s) + v * v / s)
            out[INNOVATION, t] = v
            out[INNOVATION_VAR, t] = s
        out[MEAN, t] = m
        out[VAR, t] = p
        half = z * math.sqrt(p)
        out[LOWER, t] = m - half
        out[UPPER, t] = m + half
    return m, p, log_likelihood


@jit()
def rts_pass(
    filtered_mean: FloatArray, filtered_var: FloatArray, process_var: float, mean: FloatArray, var: FloatArray
) -> None:
    """Overwrite ``mean``/``var`` (copies of the filtered path) with the smoothed path."""
    for t in range(filtered_mean.shape[0] - 2, -1, -1):
        p = filtered_var[t]
        if math.isinf(p):
            mean[t] = mean[t + 1]
            var[t] = var[t + 1] + process_var
            continue
        p_next = p + process_var
        gain = p / p_next
        mean[t] = filtered_mean[t] + gain * (mean[t + 1] - filtered_mean[t])
        # P q / (P + q) + J^2 P^s: the textbook P + J^2 (P^s - P_next) cancels when P^s << P.
        var[t] = p * process_var / p_next + gain * gain * var[t + 1]
