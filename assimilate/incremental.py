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

Example
-------
>>> import pandas as pd
>>> obs = pd.DataFrame({"batch": ["a", "b"], "estimate": [0.5, 0.6], "std_error": [0.1, 0.1],
...                     "excluded": [False, False], "exclusion_reason": ["", ""]})
>>> settings = FilterSettings(process_var=0.01, prior_mean=0.0, prior_var=1.0)
>>> update = refilter_from_first_change(obs, None, settings)
>>> update.n_recomputed
2
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

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
]


@dataclass(frozen=True)
class FilterSettings:
    """Everything besides the observations that determines the filtered path.

    ``prior_mean``/``prior_var`` of None with ``diffuse=False`` fall back to an exact diffuse start:
    a default prior scaled on the data would change with every batch and defeat resuming.
    """

    backend: Literal["kalman", "particle"] = "kalman"
    process_var: float | Literal["mle"] = 0.0
    prior_mean: float | None = None
    prior_var: float | None = None
    diffuse: bool = False
    alpha: float = 0.05
    n_particles: int | None = None
    observation: Literal["gaussian", "student_t"] = "gaussian"
    df: float | None = None
    seed: int = 0

    @property
    def uses_diffuse_start(self) -> bool:
        """True when the filter starts diffuse (asked for, or no prior given)."""
        return self.diffuse or self.prior_mean is None or self.prior_var is None

    def fingerprint(self, resolved_process_var: float) -> str:
        """Hash of the settings with the process variance actually used."""
        payload = asdict(self) | {"process_var": repr(float(resolved_process_var))}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class IncrementalUpdate:
    """The new stored steps, the result they describe, and how much was recomputed."""

    steps: pd.DataFrame
    result: AssimilationResult | None
    n_recomputed: int
    first_recomputed_label: str


def observation_fingerprint(
    batch: str, estimate: float, std_error: float, excluded: bool, reason: str
) -> str:
    """Hash of one batch's observation (exact float representations)."""
    text = json.dumps([batch, repr(float(estimate)), repr(float(std_error)), bool(excluded), reason])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _fingerprints(observed: pd.DataFrame) -> list[str]:
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
        same[index] = _fingerprints(new.iloc[index : index + 1])[0] == old["fingerprint"].iloc[index]
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
        **_prior_kwargs(settings),
    )
    return float(fit.process_var)


def _prior_kwargs(settings: FilterSettings) -> dict[str, Any]:
    if settings.uses_diffuse_start:
        return {"diffuse": True}
    return {"prior_mean": settings.prior_mean, "prior_var": settings.prior_var}


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
        prior = settings
        mean = 0.0 if prior.prior_mean is None else prior.prior_mean
        var = _diffuse_particle_var(observed) if prior.prior_var is None else prior.prior_var
        return particle_filter(
            estimates,
            standard_errors,
            process_var=q,
            prior_mean=mean,
            prior_var=var,
            observation=settings.observation,
            df=settings.df,
            n_particles=settings.n_particles or 2000,
            rng=np.random.default_rng(settings.seed),
            **common,
        )
    return causal_kalman(
        estimates, standard_errors, process_var=q, smooth=smooth, **_prior_kwargs(settings), **common
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
        **_prior_kwargs(settings),
    )


def _diffuse_particle_var(observed: pd.DataFrame) -> float:
    """A wide but proper prior for particles: (10 x the scale of the data)^2."""
    values = np.abs(observed["estimate"].to_numpy(dtype=float))
    ses = observed["std_error"].to_numpy(dtype=float)
    scale = float(np.nanmax(np.concatenate([values, ses, [1.0]])))
    return (10.0 * scale) ** 2


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
        result = _correlated_filter(observed, settings, correlated, smooth=False)
        # Steps fused with a correlation are never resumed from: their settings print says so.
        marked = hashlib.sha256(settings.fingerprint(result.process_var).encode() + correlated.tobytes())
        return _from_result(result, observed, _fingerprints(observed), "correlated:" + marked.hexdigest())
    q = resolved_process_var(observed, settings)
    settings_print = settings.fingerprint(q)
    if settings.backend == "particle":
        return _from_result(
            full_filter(observed, settings, smooth=False), observed, _fingerprints(observed), settings_print
        )
    start = 0
    if previous is not None and not previous.empty:
        same_settings = bool((previous["settings_fingerprint"] == settings_print).all())
        start = unchanged_prefix(previous, observed) if same_settings else 0
    fingerprints = _fingerprints(observed.iloc[start:])
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
        fingerprints,
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
            }
        )
    steps = pd.DataFrame(rows, columns=STEP_COLUMNS)
    if start:
        kept = previous.iloc[:start][STEP_COLUMNS].reset_index(drop=True)  # type: ignore[union-attr]
        steps = pd.concat([kept, steps], ignore_index=True) if rows else kept
    label = str(observed.iloc[start]["batch"]) if start < len(observed) else ""
    return IncrementalUpdate(steps, result_from_steps(steps, settings, q), len(rows), label)


def _initial(settings: FilterSettings) -> KalmanState:
    if settings.uses_diffuse_start:
        return initial_state(prior_mean=0.0, prior_var=float("inf"))
    return initial_state(prior_mean=float(settings.prior_mean), prior_var=float(settings.prior_var))  # type: ignore[arg-type]


def _z(alpha: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(1 - alpha / 2))


def result_from_steps(
    steps: pd.DataFrame, settings: FilterSettings, process_var: float
) -> AssimilationResult:
    """The ``AssimilationResult`` described by stored Kalman steps (no smoothing)."""
    last_state = KalmanState.from_dict(json.loads(steps.iloc[-1]["state_json"]))
    prior_var = float("inf") if settings.uses_diffuse_start else float(settings.prior_var)  # type: ignore[arg-type]
    return AssimilationResult(
        backend="kalman",
        alpha=settings.alpha,
        labels=tuple(steps["batch"].astype(str).tolist()),
        estimates=steps["estimate"].to_numpy(dtype=float),
        standard_errors=steps["std_error"].to_numpy(dtype=float),
        excluded=steps["excluded"].astype(bool).to_numpy(),
        exclusion_reasons=tuple(steps["exclusion_reason"].astype(str).tolist()),
        forecast_mean=steps["forecast_mean"].to_numpy(dtype=float),
        forecast_var=steps["forecast_var"].to_numpy(dtype=float),
        posterior_mean=steps["posterior_mean"].to_numpy(dtype=float),
        posterior_var=steps["posterior_var"].to_numpy(dtype=float),
        posterior_lower=steps["ci_lower"].to_numpy(dtype=float),
        posterior_upper=steps["ci_upper"].to_numpy(dtype=float),
        innovations=steps["innovation"].to_numpy(dtype=float),
        innovation_var=steps["innovation_var"].to_numpy(dtype=float),
        process_var=process_var,
        log_likelihood=float(last_state.log_likelihood),
        prior_mean=0.0 if settings.prior_mean is None else float(settings.prior_mean),
        prior_var=prior_var,
    )


def _from_result(
    result: AssimilationResult, observed: pd.DataFrame, fingerprints: list[str], settings_print: str
) -> IncrementalUpdate:
    table = result.trajectory()
    steps = pd.DataFrame(
        {
            "batch": table["batch"],
            "estimate": observed["estimate"],
            "std_error": observed["std_error"],
            "excluded": table["excluded"],
            "exclusion_reason": table["exclusion_reason"],
            "fingerprint": fingerprints,
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
        },
        columns=STEP_COLUMNS,
    )
    return IncrementalUpdate(steps, result, len(steps), str(steps.iloc[0]["batch"]))
