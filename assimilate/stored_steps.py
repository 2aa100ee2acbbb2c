"""The posterior's stored step table: its columns, each batch's observation print, a whole path as rows.

A pipeline stores one row per batch (``STEP_COLUMNS``): the observation ``(y_t, se_t)`` and why it
was left out, a fingerprint of it, the filter's forecast ``(m_{t|t-1}, P_{t|t-1})``, innovation
``v_t = y_t - m_{t|t-1}`` with variance ``S_t``, posterior ``(m_t, P_t)`` with its band, and enough
of the run to rebuild its ``AssimilationResult`` without filtering again
(:func:`result_from_steps`): the process variance, the log-likelihood, the
particle ESS, and the smoothed belief of a correlated fusion (the RTS smoother of an independent
Kalman path runs on the stored ``(m_t, P_t)`` instead). :func:`unchanged_prefix` says how many
leading rows still describe today's observations, so an append re-filters one batch.

Example
-------
>>> import pandas as pd
>>> obs = pd.DataFrame({"batch": ["a", "b"], "estimate": [0.5, 0.6], "std_error": [0.1, 0.1],
...                     "excluded": [False, False], "exclusion_reason": ["", ""]})
>>> prints = fingerprints(obs)
>>> first_change(prints, [prints[0], "changed"])
1
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from assimilate.filter_settings import DEFAULT_PARTICLES, FilterSettings
from assimilate.filters import rts_smooth
from assimilate.filters.particle import DEFAULT_ESS_THRESHOLD
from assimilate.result import AssimilationResult

OBSERVATION_COLUMNS = ["batch", "estimate", "std_error", "excluded", "exclusion_reason"]
STEP_COLUMNS = [
    *OBSERVATION_COLUMNS,
    "fingerprint",
    "settings_fingerprint",
    "forecast_mean",
    "forecast_var",
    "innovation",
    "innovation_var",
    "posterior_mean",
    "posterior_var",
    "posterior_sd",
    "ci_lower",
    "ci_upper",
    "state_json",
    # The process variance the path was filtered with (an MLE is stored, never refitted).
    "process_var",
    # Log predictive likelihood of the used estimates through this batch; a filter that reports
    # only its total (particle, correlated fusion) has it on the last row, NaN above.
    "log_likelihood",
    "ess",  # particle filter: effective sample size after the batch (NaN for Kalman)
    # A correlated fusion's exact smoothed belief (NaN otherwise: the RTS smoother runs on reading).
    "smoothed_mean",
    "smoothed_var",
]
PATH_COLUMNS = [
    "batch",
    "estimate",
    "std_error",
    "excluded",
    "posterior_mean",
    "posterior_sd",
    "ci_lower",
    "ci_upper",
]
"""The filtered path as people read it (the fan chart's numbers; the always-valid bounds follow when stored)."""
CORRELATED = "correlated:"
"""Prefix of the settings print of steps fused with an error correlation (never resumed from)."""


def observation_fingerprint(
    batch: str, estimate: float, std_error: float, excluded: bool, reason: str
) -> str:
    """Hash of one batch's observation (exact float representations)."""
    text = json.dumps([batch, repr(float(estimate)), repr(float(std_error)), bool(excluded), reason])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def fingerprints(observed: pd.DataFrame) -> list[str]:
    """:func:`observation_fingerprint` of every row of ``observed`` (``OBSERVATION_COLUMNS``)."""
    columns = zip(
        observed["batch"].astype(str),
        observed["estimate"].to_numpy(dtype=float).tolist(),
        observed["std_error"].to_numpy(dtype=float).tolist(),
        observed["excluded"].astype(bool).tolist(),
        observed["exclusion_reason"].astype(str),
        strict=True,
    )
    return [observation_fingerprint(*values) for values in columns]


def unchanged_prefix(previous: pd.DataFrame, observed: pd.DataFrame) -> int:
    """How many leading batches have the observation the stored steps were computed from.

    Equal to ``first_change`` over the fingerprints, without hashing every batch: a used batch is
    stored exactly as observed, so its columns are compared as arrays (floats bit for bit); only
    the batches that were not used (stored in a normalized form) are compared by fingerprint.
    """
    n = min(len(previous), len(observed))
    old, new = previous.iloc[:n], observed.iloc[:n]
    estimate = new["estimate"].to_numpy(dtype=float)
    used = ~new["excluded"].to_numpy(dtype=bool) & np.isfinite(estimate)
    same = (
        used
        & (old["batch"].astype(str).to_numpy() == new["batch"].astype(str).to_numpy())
        & _same_bits(old["estimate"], new["estimate"])
        & _same_bits(old["std_error"], new["std_error"])
        & ~old["excluded"].to_numpy(dtype=bool)
        & (old["exclusion_reason"].astype(str).to_numpy() == new["exclusion_reason"].astype(str).to_numpy())
    )
    for index in np.flatnonzero(~used).tolist():
        same[index] = fingerprints(new.iloc[index : index + 1])[0] == old["fingerprint"].iloc[index]
    changed = np.flatnonzero(~same)
    return int(changed[0]) if len(changed) else n


def _same_bits(old: pd.Series, new: pd.Series) -> np.ndarray:
    """Equal as ``repr`` would say: bit for bit (so -0.0 differs from 0.0), any NaN equals any NaN."""
    a, b = old.to_numpy(dtype=np.float64), new.to_numpy(dtype=np.float64)
    return np.asarray((a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b)))


def first_change(previous: list[str], current: list[str]) -> int:
    """Index of the first position where the two fingerprint lists differ (or the shorter length)."""
    for index, (old, new) in enumerate(zip(previous, current, strict=False)):
        if old != new:
            return index
    return min(len(previous), len(current))


def steps_from_result(
    result: AssimilationResult, observed: pd.DataFrame, prints: list[str], settings_print: str
) -> pd.DataFrame:
    """The stored rows of a path filtered whole (particle filter, correlated fusion): no state to resume from."""
    table = result.trajectory()
    n = result.n_batches
    log_likelihood = np.full(n, np.nan)
    log_likelihood[-1] = result.log_likelihood
    absent = np.full(n, np.nan)
    return pd.DataFrame(
        {
            "batch": table["batch"],
            "estimate": observed["estimate"],
            "std_error": observed["std_error"],
            "excluded": table["excluded"],
            "exclusion_reason": table["exclusion_reason"],
            "fingerprint": prints,
            "settings_fingerprint": settings_print,
            "forecast_mean": result.forecast_mean,
            "forecast_var": result.forecast_var,
            "innovation": result.innovations,
            "innovation_var": result.innovation_var,
            "posterior_mean": result.posterior_mean,
            "posterior_var": result.posterior_var,
            "posterior_sd": result.posterior_sd,
            "ci_lower": result.posterior_lower,
            "ci_upper": result.posterior_upper,
            "state_json": "",
            "process_var": result.process_var,
            "log_likelihood": log_likelihood,
            "ess": absent if result.ess is None else result.ess,
            "smoothed_mean": absent if result.smoothed_mean is None else result.smoothed_mean,
            "smoothed_var": absent if result.smoothed_var is None else result.smoothed_var,
        },
        columns=STEP_COLUMNS,
    )


def result_from_steps(
    steps: pd.DataFrame, settings: FilterSettings, *, smooth: bool = True
) -> AssimilationResult:
    """The ``AssimilationResult`` the stored steps describe, without running a filter.

    Equal to :func:`assimilate.incremental.full_filter` on the steps' observations (Kalman: the same numbers; particle:
    the stored draws' numbers, the same seed's): forecasts, posteriors, bands, innovations, the
    particle ESS, the process variance the path was filtered with (an MLE is not refitted) and
    the log-likelihood. The smoothed path is the RTS smoother over the stored ``(m_t, P_t)``
    (Rauch, Tung & Striebel 1965), or the stored exact smoother of a correlated fusion.

    Parameters
    ----------
    steps : DataFrame
        Rows stored by :func:`assimilate.incremental.refilter_from_first_change` (``STEP_COLUMNS``), at least one.
    settings : FilterSettings
        The settings they were filtered under (checked against their settings print).
    smooth : bool
        Also give the smoothed path (Kalman backend; a particle path has none).

    Returns
    -------
    AssimilationResult
        ``details`` name the observation model (and the particle count); a correlated fusion's
        error correlation is not among them (it is stored beside the steps).

    Raises
    ------
    ValueError
        When there is no step, a column is missing (steps stored by an earlier version), or the
        steps were filtered under other settings.
    """
    missing = [column for column in STEP_COLUMNS if column not in steps.columns]
    if steps.empty or missing:
        raise ValueError(
            f"stored posterior steps lack column(s) {missing}: re-run the posterior to store them"
            if missing
            else "no stored posterior step: nothing was filtered yet"
        )
    process_var = float(steps["process_var"].iloc[-1])
    stored_print = str(steps["settings_fingerprint"].iloc[-1])
    correlated = stored_print.startswith(CORRELATED)
    other_q = settings.process_var != "mle" and float(settings.process_var) != process_var
    if other_q or stored_print.removeprefix(CORRELATED).split(":")[0] != settings.fingerprint(process_var):
        raise ValueError("the stored posterior steps were filtered under other filter settings")
    mean, var = steps["posterior_mean"].to_numpy(dtype=float), steps["posterior_var"].to_numpy(dtype=float)
    smoothed: tuple[NDArray[np.float64], NDArray[np.float64]] | tuple[None, None] = (None, None)
    if smooth and settings.backend == "kalman":
        smoothed = (
            (steps["smoothed_mean"].to_numpy(dtype=float), steps["smoothed_var"].to_numpy(dtype=float))
            if correlated
            else rts_smooth(mean, var, process_var=process_var)
        )
    particle = settings.backend == "particle"
    prior_mean, prior_var = _result_prior(steps, settings)
    return AssimilationResult(
        backend=settings.backend,
        alpha=settings.alpha,
        labels=tuple(steps["batch"].astype(str).tolist()),
        estimates=steps["estimate"].to_numpy(dtype=float),
        standard_errors=steps["std_error"].to_numpy(dtype=float),
        excluded=steps["excluded"].astype(bool).to_numpy(),
        exclusion_reasons=tuple(steps["exclusion_reason"].astype(str).tolist()),
        forecast_mean=steps["forecast_mean"].to_numpy(dtype=float),
        forecast_var=steps["forecast_var"].to_numpy(dtype=float),
        posterior_mean=mean,
        posterior_var=var,
        posterior_lower=steps["ci_lower"].to_numpy(dtype=float),
        posterior_upper=steps["ci_upper"].to_numpy(dtype=float),
        innovations=steps["innovation"].to_numpy(dtype=float),
        innovation_var=steps["innovation_var"].to_numpy(dtype=float),
        process_var=process_var,
        log_likelihood=float(steps["log_likelihood"].iloc[-1]),
        prior_mean=prior_mean,
        prior_var=prior_var,
        ess=steps["ess"].to_numpy(dtype=float) if particle else None,
        smoothed_mean=smoothed[0],
        smoothed_var=smoothed[1],
        details=_details(settings, correlated=correlated),
    )


def _result_prior(steps: pd.DataFrame, settings: FilterSettings) -> tuple[float, float]:
    """The prior :func:`~assimilate.incremental.full_filter` resolves for these observations (as each backend does)."""
    if settings.backend == "particle":
        return settings.particle_prior(steps)
    if settings.uses_diffuse_start:
        return 0.0, math.inf
    return float(settings.prior_mean), float(settings.prior_var)  # type: ignore[arg-type]


def _details(settings: FilterSettings, *, correlated: bool) -> dict[str, Any]:
    """The ``details`` a fresh run of :func:`~assimilate.incremental.full_filter` gives (the fit objects aside)."""
    if settings.backend == "particle":
        return {
            "observation": settings.observation,
            "df": settings.df,
            "n_particles": settings.n_particles or DEFAULT_PARTICLES,
            "proposal": "bootstrap",
            "ess_threshold": DEFAULT_ESS_THRESHOLD,
            "rejuvenation": "liu_west",
        }
    details: dict[str, Any] = {"observation": "gaussian", "diffuse": settings.uses_diffuse_start}
    return details | {"correlated_errors": True} if correlated else details
