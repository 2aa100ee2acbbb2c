"""Particle filter (sequential importance resampling) for the random-walk effect model.

Same model as the Kalman filter (``RandomWalkEffectModel``), run approximately so the observation
may be heavy-tailed (Student-t): one outlying batch then moves the posterior far less.

Particles move by the model's random walk (the bootstrap proposal) or, for a Gaussian observation,
by the locally optimal proposal ``p(theta_t | theta_{t-1}, y_t)`` weighted by ``p(y_t | theta_{t-1})``,
which keeps the effective sample size high when batches are informative. Resampling is
systematic, when the effective sample size drops below ``ess_threshold * N``. Rejuvenation after
resampling uses the Liu-West (2001) shrinkage kernel:
``theta' = a theta + (1 - a) mean + sqrt(1 - a^2) sd eps`` with ``a = (3 delta - 1) / (2 delta)``,
which keeps the cloud's mean and variance while breaking up the copies resampling makes, so a
static effect over thousands of batches does not collapse onto a handful of particles. It smooths
the posterior slightly (a kernel of variance ``(1 - a^2) sd^2``), so it only tops up what the
random walk does not already add before the next batch: ``max(0, (1 - a^2) sd^2 - q)`` (the full
kernel for a static effect, nothing once ``q`` is enough); ``rejuvenate=False`` turns it off.
The loop is compiled (``_particle_loop``); its randomness comes only from ``rng``.

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
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from assimilate._validation import (
    check_alpha,
    check_choice,
    check_non_negative,
)
from assimilate.filters._particle_loop import (
    ESS,
    FORECAST_MEAN,
    FORECAST_VAR,
    LOWER,
    MEAN,
    UPPER,
    VAR,
    particle_pass,
)
from assimilate.filters.mle import fit_process_variance_inputs
from assimilate.filters.model import Observation, RandomWalkEffectModel
from assimilate.filters.stream import prepare_inputs, resolve_prior
from assimilate.result import AssimilationResult

FloatArray = NDArray[np.float64]
PriorSampler = Callable[[np.random.Generator, int], ArrayLike]
Proposal = Literal["bootstrap", "optimal"]
PROPOSALS: tuple[Proposal, ...] = ("bootstrap", "optimal")
LOW_ESS_FRACTION = 0.2
LOW_ESS_RUN = 10
LIU_WEST_DELTA = 0.98


def particle_filter(
    estimates: ArrayLike,
    standard_errors: ArrayLike,
    *,
    process_var: float | Literal["mle"],
    rng: np.random.Generator,
    prior_mean: float | None = None,
    prior_var: float | None = None,
    prior_sampler: PriorSampler | None = None,
    observation: Observation = "gaussian",
    df: float | None = None,
    n_particles: int = 2000,
    proposal: Proposal = "bootstrap",
    ess_threshold: float = 0.5,
    rejuvenate: bool = True,
    alpha: float = 0.05,
    labels: Sequence[str] | None = None,
    excluded: Sequence[bool] | None = None,
    exclusion_reasons: Sequence[str] | None = None,
) -> AssimilationResult:
    """Filter a stream of batch estimates with a particle filter.

    Parameters
    ----------
    estimates, standard_errors : array_like
        One estimate and its standard error per batch (NaN estimate = no observation).
    process_var : float or "mle"
        Variance of the effect's random-walk step per batch; ``"mle"`` estimates it by maximum
        likelihood under this filter's observation model and prior (Kalman likelihood for
        Gaussian, grid-filter likelihood for Student-t; see :func:`fit_process_variance`), reported
        in ``details["process_var_fit"]``. The fit uses the Gaussian prior even when
        ``prior_sampler`` draws the initial cloud.
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
    proposal : {"bootstrap", "optimal"}
        How particles move: by the random walk (any observation), or by the locally optimal
        proposal (Gaussian observation only; far fewer wasted particles when batches are
        informative relative to the drift).
    ess_threshold : float
        Resample when ESS < ``ess_threshold * n_particles``.
    rejuvenate : bool
        Apply the (topped-up) Liu-West kernel after each resampling.
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
    The forecast before batch t is the previous posterior's mean with variance ``+ q`` (exact for a
    random walk). Propagation noise is antithetic (pairs of particles move by ``+z`` and ``-z``),
    which halves the draws and cancels most of the noise it would add to the posterior mean; each
    particle still moves by the model, so the weights and the filter stay exact in the limit.
    A ``RuntimeWarning`` is issued when ESS / N stays below 0.2 for 10 batches in a row.
    """
    check_alpha(alpha)
    if isinstance(process_var, str) and process_var != "mle":
        raise ValueError(f"process_var must be a number >= 0 or 'mle', got {process_var!r}")
    fixed = 0.0 if process_var == "mle" else check_non_negative("process_var", process_var)
    model = RandomWalkEffectModel(process_var=fixed, observation=observation, df=df)
    check_choice("proposal", proposal, PROPOSALS)
    if proposal == "optimal" and model.observation != "gaussian":
        raise ValueError("proposal='optimal' needs a Gaussian observation; use 'bootstrap' for Student-t")
    if int(n_particles) < 2:
        raise ValueError(f"n_particles must be at least 2, got {n_particles}")
    if not 0.0 < ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must lie in (0, 1], got {ess_threshold}")
    inputs = prepare_inputs(
        estimates, standard_errors, labels=labels, excluded=excluded, exclusion_reasons=exclusion_reasons
    )
    n = int(n_particles)
    mean0, var0 = resolve_prior(inputs, prior_mean, prior_var, False)
    fit = None
    if process_var == "mle":
        fit = fit_process_variance_inputs(
            inputs, prior_mean=mean0, prior_var=var0, likelihood=model.observation, df=model.df
        )
        model = RandomWalkEffectModel(process_var=fit.process_var, observation=observation, df=df)
    if prior_sampler is not None:
        cloud = np.asarray(prior_sampler(rng, n), dtype=np.float64)
        if cloud.shape != (n,) or not np.isfinite(cloud).all():
            raise ValueError(f"prior_sampler must return {n} finite draws, got shape {cloud.shape}")
    else:
        cloud = mean0 + math.sqrt(var0) * rng.standard_normal(n)
    probabilities = np.array([alpha / 2, 1 - alpha / 2])
    table = np.empty((7, len(inputs.estimates)), dtype=np.float64)
    log_likelihood = particle_pass(
        np.ascontiguousarray(cloud),
        inputs.estimates,
        inputs.standard_errors,
        inputs.excluded,
        model.process_var,
        float(df) if model.observation == "student_t" else 0.0,  # type: ignore[arg-type]
        proposal == "optimal",
        model.observation_log_constant(),
        float(ess_threshold),
        (3 * LIU_WEST_DELTA - 1) / (2 * LIU_WEST_DELTA) if rejuvenate else 1.0,
        probabilities,
        special.ndtri(probabilities),
        rng,
        table,
    )
    _warn_on_low_ess(table[ESS], n)
    innovations = np.where(inputs.excluded, np.nan, inputs.estimates - table[FORECAST_MEAN])
    factor = model.observation_variance_factor()
    innovation_var = np.where(
        inputs.excluded, np.nan, table[FORECAST_VAR] + inputs.standard_errors**2 * factor
    )
    details: dict[str, Any] = {
        "observation": observation,
        "df": df,
        "n_particles": n,
        "proposal": proposal,
        "ess_threshold": ess_threshold,
        "rejuvenation": "liu_west" if rejuvenate else "none",
    }
    if fit is not None:
        details["process_var_fit"] = fit
    return AssimilationResult(
        backend="particle",
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
        innovations=innovations,
        innovation_var=innovation_var,
        process_var=model.process_var,
        log_likelihood=log_likelihood,
        prior_mean=mean0,
        prior_var=var0,
        ess=table[ESS],
        details=details,
    )


def _warn_on_low_ess(ess: FloatArray, n: int) -> None:
    low = np.concatenate([[0], (ess < LOW_ESS_FRACTION * n).astype(np.int64)])
    run = np.cumsum(low) - np.maximum.accumulate(np.where(low == 0, np.cumsum(low), 0))
    if run.max() >= LOW_ESS_RUN:
        warnings.warn(
            f"particle ESS stayed below {LOW_ESS_FRACTION:.0%} of {n} particles for {LOW_ESS_RUN} batches "
            "in a row: increase n_particles or check the model",
            RuntimeWarning,
            stacklevel=3,
        )
