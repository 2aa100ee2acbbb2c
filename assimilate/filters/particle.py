"""Bootstrap particle filter (sequential importance resampling) for the random-walk effect model.

Same model as the Kalman filter (``RandomWalkEffectModel``), run approximately so the observation
may be heavy-tailed (Student-t): one outlying batch then moves the posterior far less.

Resampling is systematic, when the effective sample size drops below ``ess_threshold * N``.
Rejuvenation after resampling uses the Liu-West (2001) shrinkage kernel:
``theta' = a theta + (1 - a) mean + sqrt(1 - a^2) sd eps`` with ``a = (3 delta - 1) / (2 delta)``,
which keeps the cloud's mean and variance while breaking up the copies resampling makes, so a
static effect over thousands of batches does not collapse onto a handful of particles. It smooths
the posterior slightly (a kernel of variance ``(1 - a^2) sd^2``); ``rejuvenate=False`` turns it off.

Example
-------
>>> import numpy as np
>>> res = particle_filter([0.5, 0.6], [0.1, 0.1], process_var=0.01, prior_mean=0.0, prior_var=1.0,
...                       rng=np.random.default_rng(0), n_particles=1000)
>>> res.backend
'particle'
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from assimilate._validation import check_alpha, check_finite, check_non_negative, check_positive
from assimilate.filters.kalman import default_prior, prepare_inputs
from assimilate.filters.model import Observation, RandomWalkEffectModel
from assimilate.result import AssimilationResult

FloatArray = NDArray[np.float64]
PriorSampler = Callable[[np.random.Generator, int], ArrayLike]
LOW_ESS_FRACTION = 0.2
LOW_ESS_RUN = 10
LIU_WEST_DELTA = 0.98


def systematic_resample(weights: FloatArray, rng: np.random.Generator) -> NDArray[np.intp]:
    """Indices drawn by systematic resampling from normalized ``weights``."""
    n = len(weights)
    positions = (rng.random() + np.arange(n)) / n
    cumulative = np.cumsum(weights)
    cumulative[-1] = 1.0
    return np.searchsorted(cumulative, positions)


def weighted_quantiles(values: FloatArray, weights: FloatArray, probabilities: Sequence[float]) -> FloatArray:
    """Quantiles of a weighted sample (inverse of the weighted empirical CDF, interpolated)."""
    order = np.argsort(values)
    sorted_values, sorted_weights = values[order], weights[order]
    cdf = np.cumsum(sorted_weights) - 0.5 * sorted_weights
    return np.interp(probabilities, cdf, sorted_values)


def _log_sum_exp(values: FloatArray) -> float:
    """``log(sum(exp(values)))`` without overflow (scipy's version costs more per call than the sum)."""
    top = float(values.max())
    return top + math.log(float(np.exp(values - top).sum()))


def _liu_west(particles: FloatArray, rng: np.random.Generator) -> FloatArray:
    a = (3 * LIU_WEST_DELTA - 1) / (2 * LIU_WEST_DELTA)
    mean, sd = float(np.mean(particles)), float(np.std(particles))
    noise = rng.standard_normal(len(particles)) * (math.sqrt(1 - a * a) * sd)
    return np.asarray(a * particles + (1 - a) * mean + noise, dtype=np.float64)


def particle_filter(
    estimates: ArrayLike,
    standard_errors: ArrayLike,
    *,
    process_var: float,
    rng: np.random.Generator,
    prior_mean: float | None = None,
    prior_var: float | None = None,
    prior_sampler: PriorSampler | None = None,
    observation: Observation = "gaussian",
    df: float | None = None,
    n_particles: int = 2000,
    ess_threshold: float = 0.5,
    rejuvenate: bool = True,
    alpha: float = 0.05,
    labels: Sequence[str] | None = None,
    excluded: Sequence[bool] | None = None,
    exclusion_reasons: Sequence[str] | None = None,
) -> AssimilationResult:
    """Filter a stream of batch estimates with a bootstrap particle filter.

    Parameters
    ----------
    estimates, standard_errors : array_like
        One estimate and its standard error per batch (NaN estimate = no observation).
    process_var : float
        Variance of the effect's random-walk step per batch.
    rng : numpy.random.Generator
        Source of randomness; the same seed gives the same result.
    prior_mean, prior_var : float, optional
        Gaussian prior of the effect before batch 1 (defaults as in ``causal_kalman``).
    prior_sampler : callable, optional
        ``prior_sampler(rng, n)`` draws the initial cloud instead of the Gaussian prior.
    observation : {"gaussian", "student_t"}
        Observation distribution around the effect, scaled by the batch SE.
    df : float, optional
        Student-t degrees of freedom (required for ``"student_t"``).
    n_particles : int
        Cloud size.
    ess_threshold : float
        Resample when ESS < ``ess_threshold * n_particles``.
    rejuvenate : bool
        Apply the Liu-West kernel after each resampling.
    alpha : float
        Credible bands at level ``1 - alpha`` (weighted quantiles).
    labels, excluded, exclusion_reasons
        As in ``causal_kalman``.

    Returns
    -------
    AssimilationResult
        ``ess`` holds the effective sample size after each update; ``innovation_var`` is the
        predictive variance of the estimate: cloud variance + ``se^2`` times the observation's
        variance factor (``df / (df - 2)``; infinite for ``df <= 2``, so no standardized innovation).

    Notes
    -----
    A ``RuntimeWarning`` is issued when ESS / N stays below 0.2 for 10 batches in a row.
    """
    check_alpha(alpha)
    model = RandomWalkEffectModel(
        process_var=check_non_negative("process_var", process_var), observation=observation, df=df
    )
    if int(n_particles) < 2:
        raise ValueError(f"n_particles must be at least 2, got {n_particles}")
    if not 0.0 < ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must lie in (0, 1], got {ess_threshold}")
    inputs = prepare_inputs(
        estimates, standard_errors, labels=labels, excluded=excluded, exclusion_reasons=exclusion_reasons
    )
    n = int(n_particles)
    default_mean, default_var = default_prior(
        np.where(inputs.excluded, np.nan, inputs.estimates), inputs.standard_errors
    )
    mean0 = default_mean if prior_mean is None else check_finite("prior_mean", prior_mean)
    var0 = default_var if prior_var is None else check_positive("prior_var", prior_var)
    if prior_sampler is not None:
        particles = np.asarray(prior_sampler(rng, n), dtype=np.float64)
        if particles.shape != (n,) or not np.isfinite(particles).all():
            raise ValueError(f"prior_sampler must return {n} finite draws, got shape {particles.shape}")
    else:
        particles = mean0 + math.sqrt(var0) * rng.standard_normal(n)
    log_weights = np.zeros(n)
    step_sd = math.sqrt(model.process_var)
    factor = model.observation_variance_factor()
    lower_p, upper_p = alpha / 2, 1 - alpha / 2
    columns: dict[str, list[float]] = {
        k: [] for k in ("fm", "fv", "innov", "ivar", "pm", "pv", "lo", "hi", "ess")
    }
    log_likelihood, low_run, warned = 0.0, 0, False
    for y, se, skip in zip(
        inputs.estimates.tolist(), inputs.standard_errors.tolist(), inputs.excluded.tolist(), strict=True
    ):
        if step_sd > 0:
            particles = particles + step_sd * rng.standard_normal(n)
        total = _log_sum_exp(log_weights)
        weights = np.exp(log_weights - total)
        forecast_mean = float(weights @ particles)
        forecast_var = float(weights @ (particles - forecast_mean) ** 2)
        if skip:
            innovation, innovation_var = math.nan, math.nan
        else:
            innovation = y - forecast_mean
            innovation_var = forecast_var + se * se * factor
            log_weights = log_weights + model.observation_log_density(y, particles, se)
            updated = _log_sum_exp(log_weights)
            log_likelihood += updated - total
            weights = np.exp(log_weights - updated)
        ess = float(1.0 / np.sum(weights * weights))
        post_mean = float(weights @ particles)
        post_var = float(weights @ (particles - post_mean) ** 2)
        lo, hi = weighted_quantiles(particles, weights, (lower_p, upper_p))
        for key, value in zip(
            columns,
            (forecast_mean, forecast_var, innovation, innovation_var, post_mean, post_var, lo, hi, ess),
            strict=True,
        ):
            columns[key].append(float(value))
        low_run = low_run + 1 if ess < LOW_ESS_FRACTION * n else 0
        if low_run >= LOW_ESS_RUN and not warned:
            warnings.warn(
                f"particle ESS stayed below {LOW_ESS_FRACTION:.0%} of {n} particles for {LOW_ESS_RUN} batches "
                "in a row: increase n_particles or check the model",
                RuntimeWarning,
                stacklevel=2,
            )
            warned = True
        if ess < ess_threshold * n:
            particles = particles[systematic_resample(weights, rng)]
            log_weights = np.zeros(n)
            if rejuvenate:
                particles = _liu_west(particles, rng)
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}
    details: dict[str, Any] = {
        "observation": observation,
        "df": df,
        "n_particles": n,
        "ess_threshold": ess_threshold,
        "rejuvenation": "liu_west" if rejuvenate else "none",
    }
    return AssimilationResult(
        backend="particle",
        alpha=alpha,
        labels=inputs.labels,
        estimates=inputs.estimates,
        standard_errors=inputs.standard_errors,
        excluded=inputs.excluded,
        exclusion_reasons=inputs.reasons,
        forecast_mean=arrays["fm"],
        forecast_var=arrays["fv"],
        posterior_mean=arrays["pm"],
        posterior_var=arrays["pv"],
        posterior_lower=arrays["lo"],
        posterior_upper=arrays["hi"],
        innovations=arrays["innov"],
        innovation_var=arrays["ivar"],
        process_var=model.process_var,
        log_likelihood=log_likelihood,
        prior_mean=mean0,
        prior_var=var0,
        ess=arrays["ess"],
        details=details,
    )
