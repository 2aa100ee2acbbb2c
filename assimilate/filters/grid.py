"""Exact grid (point-mass) filter of the random-walk effect, Gaussian or Student-t observation.

``theta_t = theta_{t-1} + w_t``, ``w_t ~ N(0, q)``; ``y_t = theta_t + se_t e_t`` with ``e_t ~ N(0, 1)``
or ``e_t ~ t(df)``. The state is one-dimensional, so its density can be carried on a fixed, evenly
spaced grid: the predict step convolves it with the Gaussian step (in Fourier space), the update
step multiplies it by the observation density, and the log-likelihood is the sum of the one-step
predictive log densities (the numerical-integration filter of Kitagawa 1987, JASA 82: 1032-1041).
Unlike the particle filter, it is deterministic and smooth in ``q``, so ``log L(q)`` can be
maximized by a 1-D optimizer; unlike the Kalman filter, it is exact for a heavy-tailed observation
(up to the grid: see Notes of :func:`grid_filter`).

Example
-------
>>> res = grid_filter([0.5, 0.6, 2.5, 0.55], [0.1] * 4, process_var=0.0, df=5.0,
...                   prior_mean=0.0, prior_var=1.0)
>>> bool(abs(res.final_mean - 0.55) < 0.05)  # the outlying 2.5 barely moves it
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import fft, stats

from assimilate._frozen import ReadOnlyArrays
from assimilate._validation import check_alpha, check_non_negative
from assimilate.filters.model import Observation, RandomWalkEffectModel
from assimilate.filters.stream import StreamInputs, prepare_inputs, resolve_prior

FloatArray = NDArray[np.float64]
POINTS_PER_SD = 3.0  # grid points per SD of the narrowest posterior the stream can produce
MAX_POINTS = 50_000
TAIL_MASS = 1e-5  # observation mass left outside the grid, per batch, at most (df >= 4)
MIN_PAD, MAX_PAD = 10.0, 50.0  # grid margin beyond the estimates, in SEs
KERNEL_SDS = 10.0
PAD_POINTS = 8
NEWTON_STEPS = 4
TRIM = 1e-30  # mass below this share of the largest point mass is dropped
# Rows of the output table.
FORECAST_MEAN, FORECAST_VAR, MEAN, VAR, LOWER, UPPER = range(6)


class Grid(NamedTuple):
    """Evenly spaced points on which the belief is carried."""

    points: FloatArray
    spacing: float


@dataclass(frozen=True)
class GridFilterResult(ReadOnlyArrays):
    """Filtered belief after each batch, and the log-likelihood of the stream.

    Attributes
    ----------
    log_likelihood : float
        ``sum_t log p(y_t | y_1..y_{t-1})`` over the used batches (the first used batch adds
        nothing under a diffuse start, as in the Kalman filter).
    forecast_mean, forecast_var, posterior_mean, posterior_var : ndarray
        Belief before and after each batch (variance inf while the start is still diffuse).
    posterior_lower, posterior_upper : ndarray
        Equal-tailed credible band at level ``1 - alpha``.
    grid_spacing : float
        Distance between grid points.
    n_points : int
        Number of grid points.
    """

    log_likelihood: float
    forecast_mean: FloatArray
    forecast_var: FloatArray
    posterior_mean: FloatArray
    posterior_var: FloatArray
    posterior_lower: FloatArray
    posterior_upper: FloatArray
    alpha: float
    grid_spacing: float
    n_points: int

    @property
    def final_mean(self) -> float:
        """Posterior mean after the last batch."""
        return float(self.posterior_mean[-1])

    @property
    def final_ci(self) -> tuple[float, float]:
        """Credible band after the last batch."""
        return float(self.posterior_lower[-1]), float(self.posterior_upper[-1])


def _pad(model: RandomWalkEffectModel) -> float:
    if model.observation == "gaussian":
        return MIN_PAD
    tail = float(stats.t.isf(TAIL_MASS / 2, float(model.df)))  # type: ignore[arg-type]
    return min(max(tail, MIN_PAD), MAX_PAD)


def build_grid(
    inputs: StreamInputs,
    model: RandomWalkEffectModel,
    *,
    prior_mean: float,
    prior_var: float,
    points_per_sd: float = POINTS_PER_SD,
    max_points: int = MAX_POINTS,
    margin: float = 0.0,
) -> Grid:
    """A grid for a stream that does not depend on ``q`` (so ``log L(q)`` is smooth in ``q``).

    It spans every used estimate +- ``pad`` of its SE (``pad``: the observation quantile leaving
    ``TAIL_MASS`` outside, between 10 and 50), a proper prior's +- 8 SD when that is narrower
    than the data, and ``margin`` more on each side; its spacing is the narrowest possible posterior SD over ``points_per_sd``,
    that SD coming from the largest observed information ``(df + 1) / (df se^2)`` per batch.
    """
    used = ~inputs.excluded
    y, se = inputs.estimates[used], inputs.standard_errors[used]
    if len(y) == 0:
        raise ValueError("the grid filter needs at least one used batch")
    pad = _pad(model)
    low, high = float(np.min(y - pad * se)), float(np.max(y + pad * se))
    information = float(np.sum(1.0 / se**2))
    if model.observation == "student_t":
        information *= (float(model.df) + 1.0) / float(model.df)  # type: ignore[arg-type]
    if math.isfinite(prior_var):
        information += 1.0 / prior_var
        prior_sd = math.sqrt(prior_var)
        if 16.0 * prior_sd < high - low:
            low, high = min(low, prior_mean - 8.0 * prior_sd), max(high, prior_mean + 8.0 * prior_sd)
    low, high = low - margin, high + margin
    spacing = 1.0 / math.sqrt(information) / points_per_sd
    n_points = math.ceil((high - low) / spacing) + 1
    if n_points > max_points:
        n_points = max_points
        spacing = (high - low) / (n_points - 1)
    return Grid(low + spacing * np.arange(n_points, dtype=np.float64), spacing)


def _predict(
    mass: FloatArray, low: int, high: int, n_points: int, spacing: float, process_var: float
) -> tuple[FloatArray, int, int]:
    """Convolve the mass on ``[low, high)`` with the Gaussian step, exactly for a resolved density.

    The step multiplies the spectrum by ``exp(-q w^2 / 2)`` (the Gaussian's transfer function),
    which is exact for a band-limited density at any ``q``, however small against the spacing
    (a sampled kernel narrower than the spacing would barely move the mass), and smooth in ``q``.
    The zero padding (``KERNEL_SDS`` step SDs each side) keeps the circular convolution from
    wrapping; mass that steps off the grid is dropped.
    """
    reach = math.ceil(KERNEL_SDS * math.sqrt(process_var) / spacing) + PAD_POINTS
    size = fft.next_fast_len(len(mass) + 2 * reach, real=True)
    padded = np.zeros(size)
    padded[reach : reach + len(mass)] = mass
    frequency = 2.0 * math.pi * fft.rfftfreq(size, d=spacing)
    spread = fft.irfft(fft.rfft(padded) * np.exp(-0.5 * process_var * frequency**2), n=size)
    new_low, new_high = max(0, low - reach), min(n_points, high + reach)
    start = reach - (low - new_low)
    return np.maximum(spread[start : start + new_high - new_low], 0.0), new_low, new_high


def _band(points: FloatArray, mass: FloatArray, probabilities: tuple[float, float]) -> tuple[float, float]:
    """Quantiles: solve ``F(x) = p`` on the cubic through the CDF at the 4 nearest points.

    The CDF at a point is the trapezoid sum with its end correction ``-h^2 f' / 12``; both it and
    the cubic interpolation are accurate to O(spacing^4) for a resolved density.
    """
    total = float(mass.sum())
    slope = np.zeros(len(mass))
    slope[1:-1] = mass[2:] - mass[:-2]
    cdf = (np.cumsum(mass) - 0.5 * mass - slope / 24.0) / total
    out = []
    for p in probabilities:
        i = int(np.searchsorted(cdf, p))
        first = min(max(i - 2, 0), len(mass) - 4)
        if first < 0 or i == 0 or i == len(mass):  # at the edge, or the belief on 1-3 points
            out.append(float(np.interp(p, cdf, points)))
            continue
        centre = points[first]
        a, b, c, d = np.linalg.solve(np.vander(points[first : first + 4] - centre, 4), cdf[first : first + 4])
        x = float(np.interp(p, cdf[i - 1 : i + 1], points[i - 1 : i + 1])) - centre
        for _ in range(NEWTON_STEPS):
            x -= (((a * x + b) * x + c) * x + d - p) / ((3.0 * a * x + 2.0 * b) * x + c)
        out.append(float(centre + x))
    return out[0], out[1]


def grid_pass(
    inputs: StreamInputs,
    model: RandomWalkEffectModel,
    grid: Grid,
    *,
    prior_mean: float,
    prior_var: float,
    alpha: float | None = 0.05,
) -> tuple[float, FloatArray | None]:
    """Filter a validated stream on ``grid``: the log-likelihood, and the 6 x T table unless ``alpha`` is None.

    Only the support (points holding more than ``TRIM`` of the largest mass) is carried, so a step
    costs the width of the belief, not of the grid. Mass that steps off the grid is lost.
    """
    x, h = grid.points, grid.spacing
    n_points = len(x)
    flat = math.isinf(prior_var)  # diffuse: density 1 everywhere until the first used batch
    if flat:
        mass = np.full(n_points, h)
    else:
        mass = h * np.exp(-0.5 * (x - prior_mean) ** 2 / prior_var) / math.sqrt(2.0 * math.pi * prior_var)
    low, high = _support(mass, 0)
    mass = mass[low:high]
    table = None if alpha is None else np.empty((6, len(inputs.estimates)), dtype=np.float64)
    probabilities = (0.0, 1.0) if alpha is None else (alpha / 2.0, 1.0 - alpha / 2.0)
    mean, var, log_likelihood = prior_mean, prior_var, 0.0
    for t in range(len(inputs.estimates)):
        if model.process_var > 0.0 and not flat:
            mass, low, high = _predict(mass, low, high, n_points, h, model.process_var)
            var = var + model.process_var
        if table is not None:
            table[FORECAST_MEAN, t], table[FORECAST_VAR, t] = mean, var
        if not inputs.excluded[t]:
            points = x[low:high]
            log_density = model.observation_log_density(
                float(inputs.estimates[t]), points, float(inputs.standard_errors[t])
            )
            log_mass = np.full(len(mass), -math.inf)
            np.log(mass, out=log_mass, where=mass > 0.0)
            joint = log_mass + log_density
            top = float(np.max(joint))
            mass = np.exp(joint - top)
            total = float(mass.sum())
            log_likelihood += top + math.log(total)
            mass /= total
            flat = False
            mean = float(np.dot(mass, points))
            var = float(np.dot(mass, (points - mean) ** 2))
            keep_low, keep_high = _support(mass, low)
            mass = mass[keep_low - low : keep_high - low]
            low, high = keep_low, keep_high
        if table is not None:
            lower, upper = (-math.inf, math.inf) if flat else _band(x[low:high], mass, probabilities)
            table[MEAN, t], table[VAR, t] = mean, var
            table[LOWER, t], table[UPPER, t] = lower, upper
    return log_likelihood, table


def _support(mass: FloatArray, offset: int) -> tuple[int, int]:
    """Grid index range ``[low, high)`` of the points holding more than ``TRIM`` of the largest mass."""
    kept = np.flatnonzero(mass > TRIM * float(np.max(mass)))
    return offset + int(kept[0]), offset + int(kept[-1]) + 1


def grid_filter(
    estimates: ArrayLike,
    standard_errors: ArrayLike,
    *,
    process_var: float,
    observation: Observation = "student_t",
    df: float | None = None,
    prior_mean: float | None = None,
    prior_var: float | None = None,
    diffuse: bool = False,
    alpha: float = 0.05,
    excluded: Sequence[bool] | None = None,
    points_per_sd: float = POINTS_PER_SD,
) -> GridFilterResult:
    """Filter a stream exactly (up to the grid) under a Gaussian or Student-t observation.

    Parameters
    ----------
    estimates, standard_errors : array_like
        The stream (NaN estimate = no observation).
    process_var : float
        Variance of the random-walk step per batch.
    observation : {"student_t", "gaussian"}
        Observation distribution around the effect, scaled by the batch SE.
    df : float, optional
        Student-t degrees of freedom (required for ``"student_t"``).
    prior_mean, prior_var : float, optional
        Gaussian prior before batch 1 (defaults as in ``causal_kalman``).
    diffuse : bool
        Flat prior: the first used batch initializes the belief and adds nothing to ``log L``.
    alpha : float
        Credible bands at level ``1 - alpha``.
    excluded : sequence of bool, optional
        Batches that must not update the belief.
    points_per_sd : float
        Grid resolution, in points per SD of the narrowest possible posterior.

    Returns
    -------
    GridFilterResult

    Notes
    -----
    Predict: ``p_{t|t-1} = p_{t-1} * N(0, q)`` (multiplying the spectrum by ``exp(-q w^2 / 2)``);
    update: ``p_t(x_i) ∝ g(y_t | x_i) p_{t|t-1}(x_i)``, and
    ``log L += log sum_i g(y_t | x_i) p_{t|t-1}(x_i)``. For a density resolved by the grid both
    steps are exact to rounding (the sum over grid points of a smooth density converges
    geometrically in the spacing): with a Gaussian observation the log-likelihood equals the
    Kalman filter's to about 1e-13 at 3 points per SD. What remains is the observation tails
    beyond ``pad`` SEs of every estimate (``TAIL_MASS`` = 1e-5 per batch for ``df >= 4``, 2e-5 at
    ``df = 3``, 1.3% at ``df = 1``), which matters only while the belief is as wide as one
    batch's observation density (the first batch after a diffuse start) and the band, read from the cumulative mass by linear interpolation (error of a
    small fraction of the spacing).
    """
    check_alpha(alpha)
    model = RandomWalkEffectModel(
        process_var=check_non_negative("process_var", process_var),
        observation=observation,
        df=df if observation == "student_t" else None,
    )
    if observation == "gaussian" and df is not None:
        raise ValueError("df applies only to observation='student_t'")
    inputs = prepare_inputs(estimates, standard_errors, excluded=excluded)
    mean0, var0 = resolve_prior(inputs, prior_mean, None if diffuse else prior_var, diffuse)
    # room for the widest forecast: the step SD over the longest run of batches without an update
    run = np.diff(np.flatnonzero(np.concatenate([[True], ~inputs.excluded, [True]]))).max()
    margin = KERNEL_SDS * math.sqrt(model.process_var * float(run))
    grid = build_grid(
        inputs, model, prior_mean=mean0, prior_var=var0, points_per_sd=points_per_sd, margin=margin
    )
    log_likelihood, table = grid_pass(inputs, model, grid, prior_mean=mean0, prior_var=var0, alpha=alpha)
    assert table is not None
    table.setflags(write=False)
    return GridFilterResult(
        log_likelihood=log_likelihood,
        forecast_mean=table[FORECAST_MEAN],
        forecast_var=table[FORECAST_VAR],
        posterior_mean=table[MEAN],
        posterior_var=table[VAR],
        posterior_lower=table[LOWER],
        posterior_upper=table[UPPER],
        alpha=alpha,
        grid_spacing=grid.spacing,
        n_points=len(grid.points),
    )
