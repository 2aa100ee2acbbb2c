"""Resuming the filter where its inputs changed: an append costs one step, a correction t..T.

A pipeline stores one row per filtered batch with a fingerprint of that batch's observation and
the filter state after it. When the observations change (a new batch, a late or corrected batch,
a batch newly excluded), the filter restarts from the stored state just before the first changed
batch, so the result equals a full re-filter while an append costs O(1) filter work.

With ``process_var="mle"`` the process variance is re-estimated from all batches, and with the
particle backend the cloud is not stored: both re-filter from the start (documented trade-off).
Batches that share units (a ``correlation`` of their errors with off-diagonal entries among the
used batches) are fused by exact conditioning (:func:`assimilate.filters.correlated_kalman`), also
from the start: a new batch correlated with old ones revises their errors' expected part. Without
such a correlation the path, and every stored number, is the one above, bit for bit.

:func:`result_from_steps` reads the ``AssimilationResult`` back from the stored steps (the RTS
smoother runs on the stored ``(m_t, P_t)``): a report never filters again. The model, per batch t:
``theta_t = theta_{t-1} + w_t, w_t ~ N(0, q)``; ``y_t = theta_t + e_t, e_t ~ N(0, se_t^2)``.

Example
-------
>>> import pandas as pd
>>> obs = pd.DataFrame({"batch": ["a", "b"], "estimate": [0.5, 0.6], "std_error": [0.1, 0.1],
...                     "excluded": [False, False], "exclusion_reason": ["", ""]})
>>> settings = FilterSettings(process_var=0.01, prior_mean=0.0, prior_var=1.0)
>>> update = refilter_from_first_change(obs, None, settings)
>>> update.n_recomputed
2
>>> bool(result_from_steps(update.steps, settings).final_mean == update.result.final_mean)
True
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from assimilate.filter_settings import DEFAULT_PARTICLES, FilterSettings
from assimilate.filters import (
    KalmanState,
    causal_kalman,
    correlated_kalman,
    fit_process_variance,
    initial_state,
    particle_filter,
    step,
)
from assimilate.result import AssimilationResult
from assimilate.stored_steps import (
    CORRELATED,
    OBSERVATION_COLUMNS,
    STEP_COLUMNS,
    fingerprints,
    result_from_steps,
    steps_from_result,
    unchanged_prefix,
)

__all__ = [
    "OBSERVATION_COLUMNS",
    "STEP_COLUMNS",
    "FilterSettings",
    "IncrementalUpdate",
    "full_filter",
    "refilter_from_first_change",
    "resolved_process_var",
    "result_from_steps",
]


@dataclass(frozen=True)
class IncrementalUpdate:
    """The new stored steps, the result they describe, and how much was recomputed."""

    steps: pd.DataFrame
    result: AssimilationResult | None
    n_recomputed: int
    first_recomputed_label: str


def resolved_process_var(observed: pd.DataFrame, settings: FilterSettings) -> float:
    """The numeric process variance: as configured, or its MLE over the admitted batches.

    The MLE uses the filter's own observation model (Student-t for a robust particle filter).
    """
    if settings.process_var != "mle":
        return float(settings.process_var)
    usable = observed[~observed["excluded"].astype(bool)]
    if len(usable) < 3:
        return 0.0
    # Fitted under the likelihood the filter uses: a Gaussian fit would read a heavy-tailed outlier
    # as drift and undo the robust filter.
    robust = settings.backend == "particle" and settings.observation == "student_t"
    fit = fit_process_variance(
        observed["estimate"].where(~observed["excluded"].astype(bool)).to_numpy(dtype=float),
        observed["std_error"].to_numpy(dtype=float),
        likelihood="student_t" if robust else "gaussian",
        df=settings.df if robust else None,
        **settings.prior_kwargs(),
    )
    return float(fit.process_var)


def correlated_batches(observed: pd.DataFrame, correlation: ArrayLike | None) -> NDArray[np.float64] | None:
    """``correlation`` when it correlates two used batches, else None (the independent path applies)."""
    if correlation is None:
        return None
    matrix = np.asarray(correlation, dtype=np.float64)
    if matrix.shape != (len(observed), len(observed)):
        raise ValueError(f"correlation must be {len(observed)} x {len(observed)}, got shape {matrix.shape}")
    estimate = observed["estimate"].to_numpy(dtype=float)
    used = ~observed["excluded"].astype(bool).to_numpy() & np.isfinite(estimate)
    block = matrix[np.ix_(used, used)]
    return matrix if np.any(block[~np.eye(len(block), dtype=bool)]) else None


def full_filter(
    observed: pd.DataFrame,
    settings: FilterSettings,
    *,
    smooth: bool = True,
    correlation: ArrayLike | None = None,
) -> AssimilationResult:
    """Filter every batch from the start with the configured backend.

    ``correlation`` (``T x T``, the batches' error correlation) fuses by exact conditioning when it
    correlates used batches; the particle backend assumes independent batches and ignores it.
    """
    correlated = correlated_batches(observed, correlation)
    if correlated is not None and settings.backend == "kalman":
        return _correlated_filter(observed, settings, correlated, smooth=smooth)
    q = resolved_process_var(observed, settings)
    excluded = observed["excluded"].astype(bool).to_numpy()
    estimates = observed["estimate"].to_numpy(dtype=float)
    standard_errors = observed["std_error"].to_numpy(dtype=float)
    common: dict[str, Any] = {
        "labels": [str(b) for b in observed["batch"]],
        "excluded": excluded.tolist(),
        "exclusion_reasons": [str(r) for r in observed["exclusion_reason"]],
        "alpha": settings.alpha,
    }
    if settings.backend == "particle":
        mean, var = settings.particle_prior(observed)
        return particle_filter(
            estimates,
            standard_errors,
            process_var=q,
            prior_mean=mean,
            prior_var=var,
            observation=settings.observation,
            df=settings.df,
            n_particles=settings.n_particles or DEFAULT_PARTICLES,
            rng=np.random.default_rng(settings.seed),
            **common,
        )
    return causal_kalman(
        estimates, standard_errors, process_var=q, smooth=smooth, **settings.prior_kwargs(), **common
    )


def _correlated_filter(
    observed: pd.DataFrame, settings: FilterSettings, correlation: NDArray[np.float64], *, smooth: bool
) -> AssimilationResult:
    estimates = observed["estimate"].to_numpy(dtype=float)
    used = ~observed["excluded"].astype(bool).to_numpy() & np.isfinite(estimates)
    process_var = settings.process_var
    if process_var == "mle" and int(used.sum()) < 3:
        process_var = 0.0  # as resolved_process_var: too few batches to fit one
    return correlated_kalman(
        estimates,
        observed["std_error"].to_numpy(dtype=float),
        correlation=correlation,
        process_var=process_var,
        labels=[str(b) for b in observed["batch"]],
        excluded=(~used).tolist(),
        exclusion_reasons=[str(r) for r in observed["exclusion_reason"]],
        alpha=settings.alpha,
        smooth=smooth,
        **settings.prior_kwargs(),
    )


def refilter_from_first_change(
    observed: pd.DataFrame,
    previous: pd.DataFrame | None,
    settings: FilterSettings,
    *,
    correlation: ArrayLike | None = None,
) -> IncrementalUpdate:
    """Resume the Kalman filter from the first batch whose observation changed.

    Parameters
    ----------
    observed : DataFrame
        One row per batch in time order: batch, estimate, std_error, excluded, exclusion_reason.
    previous : DataFrame or None
        The steps stored by the last update (``STEP_COLUMNS``), or None / empty at the start.
    settings : FilterSettings
        Backend, process variance and prior.
    correlation : array_like, optional
        ``T x T`` correlation of the batches' errors (batches that share units). When it correlates
        two used batches (Kalman backend), every batch is re-fused by exact conditioning.

    Returns
    -------
    IncrementalUpdate
        ``steps`` equals what a full re-filter would store.
    """
    observed = observed.reset_index(drop=True)
    if observed.empty:
        return IncrementalUpdate(pd.DataFrame(columns=STEP_COLUMNS), None, 0, "")
    correlated = correlated_batches(observed, correlation)
    if correlated is not None and settings.backend == "kalman":
        # Smoothed too: the exact smoother of a correlated fusion is stored, not rebuilt on reading.
        result = _correlated_filter(observed, settings, correlated, smooth=True)
        # Steps fused with a correlation are never resumed from: their settings print says so.
        marked = hashlib.sha256(correlated.tobytes()).hexdigest()
        settings_print = f"{CORRELATED}{settings.fingerprint(result.process_var)}:{marked}"
        steps = steps_from_result(result, observed, fingerprints(observed), settings_print)
        return IncrementalUpdate(steps, result, len(steps), str(steps.iloc[0]["batch"]))
    q = resolved_process_var(observed, settings)
    settings_print = settings.fingerprint(q)
    if settings.backend == "particle":
        result = full_filter(observed, settings, smooth=False)
        steps = steps_from_result(result, observed, fingerprints(observed), settings_print)
        return IncrementalUpdate(steps, result, len(steps), str(steps.iloc[0]["batch"]))
    start = 0
    if previous is not None and not previous.empty and set(STEP_COLUMNS) <= set(previous.columns):
        # (Steps stored before a column was added are recomputed from the start.)
        same_settings = bool((previous["settings_fingerprint"] == settings_print).all())
        start = unchanged_prefix(previous, observed) if same_settings else 0
    state = (
        _initial(settings)
        if start == 0
        else KalmanState.from_dict(json.loads(previous.iloc[start - 1]["state_json"]))  # type: ignore[union-attr]
    )
    rows = []
    z = _z(settings.alpha)
    pending = observed.iloc[start:]
    for batch, estimate, std_error, excluded, reason, fingerprint in zip(
        pending["batch"].astype(str),
        pending["estimate"].to_numpy(dtype=float).tolist(),
        pending["std_error"].to_numpy(dtype=float).tolist(),
        pending["excluded"].astype(bool).tolist(),
        pending["exclusion_reason"].astype(str),
        fingerprints(pending),
        strict=True,
    ):
        use = not excluded and math.isfinite(estimate)
        state, record = step(state, estimate if use else None, std_error if use else None, process_var=q)
        sd = float(np.sqrt(record.posterior_var))
        rows.append(
            {
                "batch": batch,
                "estimate": estimate,
                "std_error": std_error,
                "excluded": not use,
                "exclusion_reason": reason or ("" if use else "no estimate"),
                "fingerprint": fingerprint,
                "settings_fingerprint": settings_print,
                "forecast_mean": record.forecast_mean,
                "forecast_var": record.forecast_var,
                "innovation": record.innovation,
                "innovation_var": record.innovation_var,
                "posterior_mean": record.posterior_mean,
                "posterior_var": record.posterior_var,
                "posterior_sd": sd,
                "ci_lower": record.posterior_mean - z * sd,
                "ci_upper": record.posterior_mean + z * sd,
                "state_json": json.dumps(state.to_dict()),
                "process_var": q,
                "log_likelihood": state.log_likelihood,
                "ess": math.nan,
                "smoothed_mean": math.nan,
                "smoothed_var": math.nan,
            }
        )
    steps = pd.DataFrame(rows, columns=STEP_COLUMNS)
    if start:
        kept = previous.iloc[:start][STEP_COLUMNS].reset_index(drop=True)  # type: ignore[union-attr]
        steps = pd.concat([kept, steps], ignore_index=True) if rows else kept
    label = str(observed.iloc[start]["batch"]) if start < len(observed) else ""
    return IncrementalUpdate(steps, result_from_steps(steps, settings, smooth=False), len(rows), label)


def _initial(settings: FilterSettings) -> KalmanState:
    if settings.uses_diffuse_start:
        return initial_state(prior_mean=0.0, prior_var=float("inf"))
    return initial_state(prior_mean=float(settings.prior_mean), prior_var=float(settings.prior_var))  # type: ignore[arg-type]


def _z(alpha: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(1 - alpha / 2))
