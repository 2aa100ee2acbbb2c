"""The compiled particle-filter pass over a stream: propagate, reweight, summarize, resample, rejuvenate.

All randomness comes from the caller's ``numpy.random.Generator``, drawn inside the loop through
numba's support for Generator objects: the same seed gives the same numbers (numba reproduces
numpy's normal and uniform algorithms on the Generator's bit stream), without first drawing a
T x N block of normals in numpy, which alone would take longer than the whole filter.

Choices that make it fast and accurate, each an unbiased-weight (consistent) particle filter:

- antithetic propagation noise: particles ``2k`` and ``2k+1`` move by ``+z`` and ``-z``. Each
  particle still moves by the model's transition, so the weights are unchanged; copies of one
  parent, which systematic resampling places side by side, stay centred on it. Half the draws.
- Rao-Blackwellized summaries: the forecast is the previous posterior's mean with its variance
  grown by ``q`` (exact for a random walk), and with the locally optimal proposal the posterior
  moments use each particle's conditional mean instead of its noisy draw.
- weights through a branch-free exponential that the compiler vectorizes (``exp(u)``, ``u <= 0``,
  relative error below 1e-15; ``exp(u) = 0`` below ``u = -708``, a weight below 1e-307 of the best).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from assimilate._jit import REORDER, jit
from assimilate.filters._weighted_quantiles import weighted_quantile_pair

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
# Rows of the output table.
FORECAST_MEAN, FORECAST_VAR, MEAN, VAR, LOWER, UPPER, ESS = range(7)
LOG2E = 1.4426950408889634
LN2_HI = 0.6931471803691238  # ln 2 split in two so that k * LN2_HI is exact for |k| < 2^20
LN2_LO = 1.9082149292705877e-10
EXP_FLOOR = -708.0
# Below this, squared weights underflow (the ESS needs them): renormalize by the largest weight.
TINY_TOTAL = 1e-100
SMALLEST_VAR = 2.2250738585072014e-308  # the smallest normal double
WINDOW_PARTICLES = 16.0  # particles wanted in a quantile search window


@jit()
def exp_shifted(u: FloatArray, best: float, out: FloatArray, bits: IntArray) -> None:
    """``u -= best`` (so ``u <= 0``), then ``out = exp(u)`` (0 below -708). ``bits`` is scratch."""
    n = u.shape[0]
    for i in range(n):
        u[i] -= best
        v = max(u[i], EXP_FLOOR)
        k = math.floor(v * LOG2E + 0.5)
        f = (v - k * LN2_HI) - k * LN2_LO
        # |f| <= ln(2) / 2: the degree-12 Taylor polynomial is exact to double precision
        p = 1.0 / 479001600.0
        p = p * f + 1.0 / 39916800.0
        p = p * f + 1.0 / 3628800.0
        p = p * f + 1.0 / 362880.0
        p = p * f + 1.0 / 40320.0
        p = p * f + 1.0 / 5040.0
        p = p * f + 1.0 / 720.0
        p = p * f + 1.0 / 120.0
        p = p * f + 1.0 / 24.0
        p = p * f + 1.0 / 6.0
        p = p * f + 1.0 / 2.0
        p = p * f + 1.0 / 1.0
        p = p * f + 1.0 / 1.0
        out[i] = p
        bits[i] = (np.int64(k) + 1023) << 52  # the bit pattern of the double 2^k
    powers = bits.view(np.float64)
    for i in range(n):
        out[i] = out[i] * powers[i] if u[i] > EXP_FLOOR else 0.0


@jit()
def draw_antithetic(rng: np.random.Generator, z: FloatArray) -> None:
    """Standard normals in sign-flipped pairs (``z[2k+1] = -z[2k]``)."""
    n = z.shape[0]
    for i in range(0, n - 1, 2):
        value = rng.standard_normal()
        z[i] = value
        z[i + 1] = -value
    if n % 2 == 1:
        z[n - 1] = rng.standard_normal()


@jit()
def systematic_resample(x: FloatArray, w: FloatArray, total: float, u: float, out: FloatArray) -> None:
    """Copy ``x`` into ``out`` by systematic resampling with weights ``w`` (sum ``total``)."""
    n = x.shape[0]
    step = total / n
    position = u * step
    last = n - 1
    while last > 0 and w[last] == 0.0:  # rounding near the end must not land on a zero weight
        last -= 1
    cumulative = w[0]
    j = 0
    for i in range(n):
        # Half-open intervals [C_{j-1}, C_j): a position on a boundary (u = 0) skips zero weights.
        while j < last and position >= cumulative:
            j += 1
            cumulative += w[j]
        out[i] = x[j]
        position += step


@jit(fastmath=REORDER)
def mean_and_var(x: FloatArray) -> tuple[float, float]:
    """Equal-weight mean and variance (ddof 0), two passes."""
    n = x.shape[0]
    total = 0.0
    for i in range(n):
        total += x[i]
    mean = total / n
    spread = 0.0
    for i in range(n):
        d = x[i] - mean
        spread += d * d
    return mean, spread / n


@jit(fastmath=REORDER)
def rejuvenation_scale(x: FloatArray, shrink: float, process_var: float) -> tuple[float, float, float]:
    """Mean, shrink factor and jitter SD of the Liu-West kernel, topped up to what the walk lacks.

    Liu-West jitters by variance ``(1 - a^2) var``; the random walk already adds ``q`` before the
    next batch, so only the shortfall ``max(0, (1 - a^2) var - q)`` is added (none when ``q`` is
    enough), with the shrink toward the mean that keeps the cloud's variance.
    """
    mean, var = mean_and_var(x)
    jitter_var = max(0.0, (1.0 - shrink * shrink) * var - process_var)
    if jitter_var <= 0.0:
        return mean, 1.0, 0.0
    return mean, math.sqrt(1.0 - jitter_var / var), math.sqrt(jitter_var)


@jit(fastmath=REORDER)
def liu_west(
    x: FloatArray, mean: float, shrink: float, jitter: float, z: FloatArray, out: FloatArray
) -> None:
    """``out = a x + (1 - a) mean + jitter z``."""
    centre = (1.0 - shrink) * mean
    for i in range(x.shape[0]):
        out[i] = shrink * x[i] + centre + jitter * z[i]


@jit(fastmath=REORDER)
def weighted_moments(source: FloatArray, w: FloatArray, shift: float) -> tuple[float, float, float, float]:
    """``sum w``, ``sum w^2``, weighted mean and weighted variance of ``source`` (shifted for accuracy)."""
    n = source.shape[0]
    s0, s1, sww = 0.0, 0.0, 0.0
    for i in range(n):
        s0 += w[i]
        sww += w[i] * w[i]
        s1 += w[i] * (source[i] - shift)
    if s0 == 0.0:
        return 0.0, 0.0, shift, 0.0  # every weight underflowed: the caller rescales and retries
    mean = shift + s1 / s0
    s2 = 0.0
    for i in range(n):
        d = source[i] - mean
        s2 += w[i] * d * d
    return s0, sww, mean, s2 / s0


@jit(fastmath=REORDER)
def reweight(
    x: FloatArray, log_w: FloatArray, estimate: float, scale2: float, student_df: float, offset: float
) -> None:
    """``log_w += log g(estimate | x) - offset`` up to a constant (``scale2``: variance or t scale^2).

    With ``offset = log(sum(exp(log_w)))`` every new log weight is <= 0: no maximum is needed.
    """
    n = x.shape[0]
    if student_df > 0.0:
        factor = 1.0 / (scale2 * student_df)
        power = -0.5 * (student_df + 1.0)
        for i in range(n):
            d = estimate - x[i]
            log_w[i] += power * math.log1p(d * d * factor) - offset
    else:
        factor = -0.5 / scale2
        for i in range(n):
            d = estimate - x[i]
            log_w[i] += factor * d * d - offset


@jit(fastmath=REORDER)
def maximum(values: FloatArray) -> float:
    best = -math.inf
    for i in range(values.shape[0]):
        best = max(best, values[i])
    return best


@jit(fastmath=REORDER)
def move(x: FloatArray, sd: float, z: FloatArray) -> None:
    for i in range(x.shape[0]):
        x[i] += sd * z[i]


@jit(fastmath=REORDER)
def optimal_move(
    x: FloatArray, estimate: float, gain: float, sd: float, z: FloatArray, mu: FloatArray
) -> None:
    """Draw from ``p(theta_t | theta_{t-1}, y_t)``: mean ``x + K (y - x)``, kept in ``mu``."""
    for i in range(x.shape[0]):
        centre = x[i] + gain * (estimate - x[i])
        mu[i] = centre
        x[i] = centre + sd * z[i]


@jit()
def band(
    x: FloatArray,
    w: FloatArray,
    total: float,
    probabilities: FloatArray,
    search: FloatArray,
    mean: float,
    spread: float,
    scratch: FloatArray,
    out: FloatArray,
) -> None:
    """The band's two weighted quantiles into ``out``.

    Each is searched in a window around ``mean + spread * search[0, k]`` (the normal quantile,
    then last batch's value in spread units) of half-width ``spread * search[1, k]``, resized
    after each batch to hold about ``WINDOW_PARTICLES`` particles: the particles are spread like
    the proposal, not like the posterior, so no fixed width fits. ``search`` is updated here.
    """
    guesses, widths = np.empty(2), np.empty(2)
    for k in range(2):
        guesses[k] = mean + search[0, k] * spread
        widths[k] = search[1, k] * spread
    sizes = weighted_quantile_pair(x, w, total, probabilities, guesses, widths, scratch, out)
    if spread > 0.0:
        for k in range(2):
            search[0, k] = (out[k] - mean) / spread
            resize = WINDOW_PARTICLES / sizes[k] if sizes[k] > 0 else 4.0
            search[1, k] *= min(max(resize, 0.25), 4.0)


@jit()
def particle_pass(
    cloud: FloatArray,
    estimates: FloatArray,
    std_errors: FloatArray,
    excluded: BoolArray,
    process_var: float,
    student_df: float,
    optimal: bool,
    log_constant: float,
    ess_threshold: float,
    shrink: float,
    probabilities: FloatArray,
    normal_quantiles: FloatArray,
    rng: np.random.Generator,
    out: FloatArray,
) -> float:
    """Filter the stream from ``cloud`` into ``out`` (7 x T rows above); returns the log-likelihood.

    ``student_df`` 0 means a Gaussian observation; ``optimal`` (Gaussian only) proposes from
    ``p(theta_t | theta_{t-1}, y_t)`` and weights by ``p(y_t | theta_{t-1})``; ``log_constant`` is the
    log normalizer of the standardized observation density; ``shrink`` is the Liu-West ``a``
    (1 = no rejuvenation); ``probabilities`` are the lower and upper band levels and
    ``normal_quantiles`` the standard normal quantiles at them.
    """
    n, n_steps = cloud.shape[0], estimates.shape[0]
    x, spare = cloud.copy(), np.empty(n)
    log_w, w = np.zeros(n), np.ones(n)
    z, mu, bits = np.empty(n), np.empty(n), np.empty(n, dtype=np.int64)
    scratch, bounds, search = np.empty((4, n)), np.empty(2), np.empty((2, 2))
    for k in range(2):
        search[0, k] = normal_quantiles[k]
        density = math.exp(-0.5 * normal_quantiles[k] ** 2) / math.sqrt(2.0 * math.pi)
        search[1, k] = WINDOW_PARTICLES / (2.0 * n * density)
    total, log_total, ess, log_likelihood = float(n), math.log(n), float(n), 0.0
    mean, var = mean_and_var(x)
    step_sd = math.sqrt(process_var)
    for t in range(n_steps):
        forecast_mean, forecast_var = mean, var + process_var
        out[FORECAST_MEAN, t] = forecast_mean
        out[FORECAST_VAR, t] = forecast_var
        if excluded[t]:
            if step_sd > 0.0:
                draw_antithetic(rng, z)
                move(x, step_sd, z)
            mean, var = forecast_mean, forecast_var
        else:
            estimate, r = estimates[t], std_errors[t] * std_errors[t]
            if optimal:
                s = process_var + r
                reweight(x, log_w, estimate, s, 0.0, log_total)
                constant = log_constant - 0.5 * math.log(s)
                mu[:] = x
                if step_sd > 0.0:
                    draw_antithetic(rng, z)
                    optimal_move(x, estimate, process_var / s, math.sqrt(process_var * r / s), z, mu)
                source, extra = mu, process_var * r / s
            else:
                if step_sd > 0.0:
                    draw_antithetic(rng, z)
                    move(x, step_sd, z)
                reweight(x, log_w, estimate, r, student_df, log_total)
                constant = log_constant - 0.5 * math.log(r)
                source, extra = x, 0.0
            best = 0.0
            exp_shifted(log_w, best, w, bits)
            new_total, sum_w2, mean, var = weighted_moments(source, w, forecast_mean)
            if new_total < TINY_TOTAL:
                # every particle is far from the estimate: rescale by the best one and redo
                best = maximum(log_w)
                exp_shifted(log_w, best, w, bits)
                new_total, sum_w2, mean, var = weighted_moments(source, w, forecast_mean)
            # a cloud whose weight sits on one particle cannot resolve its spread: never report 0
            var = max(var + extra, SMALLEST_VAR)
            log_likelihood += constant + best + math.log(new_total)
            total, log_total, ess = new_total, math.log(new_total), new_total * new_total / sum_w2
        out[MEAN, t] = mean
        out[VAR, t] = var
        out[ESS, t] = ess
        band(x, w, total, probabilities, search, mean, math.sqrt(var), scratch, bounds)
        out[LOWER, t] = bounds[0]
        out[UPPER, t] = bounds[1]
        if ess < ess_threshold * n:
            systematic_resample(x, w, total, rng.random(), spare)
            centre, factor, jitter = rejuvenation_scale(spare, shrink, process_var)
            if jitter > 0.0:
                draw_antithetic(rng, z)
                liu_west(spare, centre, factor, jitter, z, x)
            else:
                x[:] = spare
            log_w[:] = 0.0
            w[:] = 1.0
            total, log_total, ess = float(n), math.log(n), float(n)
    return log_likelihood
