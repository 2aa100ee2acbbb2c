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
The loop is compiled (``_particle_loop``); its randomness comes only from ``rng`` (a
``numpy.random.Generator`` or an int seed).

A call written for StatsPAI's ``statspai.assimilation.particle_filter`` runs unchanged when it
names the random walk and the seed (see :data:`STATSPAI_ARGUMENTS`): ``process_sd``,
``random_state`` and ``ess_resample_threshold`` are accepted as aliases, and StatsPAI options we
do not have raise a ``TypeError`` naming what to use instead.

Example
-------
>>> import numpy as np
>>> res = particle_filter([0.5, 0.6], [0.1, 0.1], process_var=0.01, prior_mean=0.0, prior_var=1.0,
...                       rng=np.random.default_rng(0), n_particles=1000)
>>> res.backend
'particle'
>>> same = particle_filter([0.5, 0.6], [0.1, 0.1], process_sd=0.1, prior_mean=0.0, prior_var=1.0,
...                        random_state=0, n_particles=1000)
>>> bool(same.final_mean == particle_filter([0.5, 0.6], [0.1, 0.1], process_var=0.1**2, prior_mean=0.0,
...      prior_var=1.0, rng=0, n_particles=1000).final_mean)
True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, Never

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
DEFAULT_ESS_THRESHOLD = 0.5
Seed = np.random.Generator | int

STATSPAI_ARGUMENTS: dict[str, str] = {
    "process_sd": "process_var = process_sd ** 2 (accepted as an alias)",
    "random_state": "rng, a numpy Generator or an int seed (accepted as an alias; None is refused)",
    "ess_resample_threshold": "ess_threshold (accepted as an alias)",
    "prior_mean": "prior_mean (StatsPAI's default 0; ours is taken from the first batch)",
    "prior_var": "prior_var (StatsPAI's default 1; ours is taken from the batches)",
    "prior_sampler": "prior_sampler (same signature: (rng, n) -> draws)",
    "n_particles": "n_particles",
    "alpha": "alpha",
    "transition_sampler": "not supported: the effect follows the random walk; set process_var (or process_sd)",
    "observation_log_pdf": "not supported: use observation='student_t' with df for heavy-tailed batches",
}
"""How each argument of StatsPAI's ``particle_filter`` maps onto ours."""


def particle_filter(
    estimates: ArrayLike,
    standard_errors: ArrayLike,
    *,
    process_var: float | Literal["mle"] | None = None,
    rng: Seed | None = None,
    prior_mean: float | None = None,
    prior_var: float | None = None,
    prior_sampler: PriorSampler | None = None,
    observation: Observation = "gaussian",
    df: float | None = None,
    n_particles: int = 2000,
    proposal: Proposal = "bootstrap",
    ess_threshold: float | None = None,
    rejuvenate: bool = True,
    alpha: float = 0.05,
    labels: Sequence[str] | None = None,
    excluded: Sequence[bool] | None = None,
    exclusion_reasons: Sequence[str] | None = None,
    process_sd: float | None = None,
    random_state: Seed | None = None,
    ess_resample_threshold: float | None = None,
    **statspai_only: Never,
) -> AssimilationResult:
    """Filter a stream of batch estimates with a particle filter.

    Parameters
    ----------
    estimates, standard_errors : array_like
        One estimate and its standard error per batch (NaN estimate = no observation).
    process_var : float or "mle"
        Required (or its alias ``process_sd``). Variance of the effect's random-walk step per batch; ``"mle"`` estimates it by maximum
        likelihood under this filter's observation model and prior (Kalman likelihood for
        Gaussian, grid-filter likelihood for Student-t; see :func:`fit_process_variance`), reported
        in ``details["process_var_fit"]``. The fit uses the Gaussian prior even when
        ``prior_sampler`` draws the initial cloud.
    rng : numpy.random.Generator or int
        Required (or its alias ``random_state``). Source of randomness, or a seed for
        ``numpy.random.default_rng``; the same seed gives the same result.
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
    ess_threshold : float, optional
        Resample when ESS < ``ess_threshold * n_particles`` (default 0.5).
    rejuvenate : bool
        Apply the (topped-up) Liu-West kernel after each resampling.
    alpha : float
        Credible bands at level ``1 - alpha`` (weighted quantiles).
    labels, excluded, exclusion_reasons
        As in ``causal_kalman``.
    process_sd, random_state, ess_resample_threshold : optional
        StatsPAI's names for ``sqrt(process_var)``, ``rng`` and ``ess_threshold``. Giving an
        argument and its alias is a ``TypeError``.
    **statspai_only
        StatsPAI options we do not have (``transition_sampler``, ``observation_log_pdf``): a
        ``TypeError`` says what to use instead (:data:`STATSPAI_ARGUMENTS`).

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
    process_var, rng, ess_threshold = _statspai_aliases(
        process_var, process_sd, rng, random_state, ess_threshold, ess_resample_threshold, statspai_only
    )
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


def _statspai_aliases(
    process_var: float | Literal["mle"] | None,
    process_sd: float | None,
    rng: Seed | None,
    random_state: Seed | None,
    ess_threshold: float | None,
    ess_resample_threshold: float | None,
    others: dict[str, Any],
) -> tuple[float | Literal["mle"], np.random.Generator, float]:
    """Our arguments from ours or StatsPAI's names: one of each pair, never both."""
    for name in others:
        if name in STATSPAI_ARGUMENTS:
            raise TypeError(
                f"particle_filter() does not take StatsPAI's {name!r}: {STATSPAI_ARGUMENTS[name]}"
            )
        raise TypeError(f"particle_filter() got an unexpected keyword argument {name!r}")
    for ours, theirs, value, alias in (
        ("process_var", "process_sd", process_var, process_sd),
        ("rng", "random_state", rng, random_state),
        ("ess_threshold", "ess_resample_threshold", ess_threshold, ess_resample_threshold),
    ):
        if value is not None and alias is not None:
            raise TypeError(
                f"particle_filter() got both {ours!r} and its StatsPAI alias {theirs!r}: give one"
            )
    if process_sd is not None:
        process_var = check_non_negative("process_sd", process_sd) ** 2
    if process_var is None:
        raise TypeError(
            "particle_filter() needs process_var, the variance of the effect's random-walk step per batch "
            "(0 for a static effect, or 'mle'; StatsPAI's process_sd is accepted as its square root)"
        )
    seed = rng if rng is not None else random_state
    if seed is None:
        raise TypeError(
            "particle_filter() needs rng: a numpy.random.Generator or an int seed (StatsPAI's random_state "
            "is accepted as an alias); an unseeded filter is refused so that every run can be replayed"
        )
    threshold = ess_threshold if ess_threshold is not None else ess_resample_threshold
    return process_var, as_generator(seed), DEFAULT_ESS_THRESHOLD if threshold is None else float(threshold)


def as_generator(seed: Seed) -> np.random.Generator:
    """``seed`` if it is a Generator, else ``numpy.random.default_rng(seed)`` for an int seed."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool | np.bool_):
        return np.random.default_rng(int(seed))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got {type(seed).__name__}")


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
