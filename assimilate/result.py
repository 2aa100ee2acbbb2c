"""The posterior of a drifting treatment effect after assimilating a stream of batch estimates.

Both filter backends (Kalman, particle) return an ``AssimilationResult`` with the same meaning for
every field: at batch t, the *forecast* is the belief about the effect before batch t's estimate,
the *posterior* the belief after it, and the *innovation* is ``estimate_t - forecast_mean_t``.

Example
-------
>>> from assimilate import causal_kalman
>>> res = causal_kalman([0.5, 0.52, 0.49], [0.1, 0.1, 0.1], prior_mean=0.0, prior_var=1.0,
...                     process_var=0.0)
>>> round(res.final_mean, 3)
0.502
>>> res.trajectory().columns[:3].tolist()
['batch', 'estimate', 'std_error']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Backend = Literal["kalman", "particle"]


def _frozen(array: NDArray[Any]) -> NDArray[Any]:
    """A read-only array: shared as it is when nothing can write to it (1e6 steps: half the time), else copied."""
    if isinstance(array, np.ndarray) and _read_only_all_the_way(array):
        return array
    copy = np.array(array, copy=True)
    copy.setflags(write=False)
    return copy


def _read_only_all_the_way(array: NDArray[Any]) -> bool:
    """The array and every array it views are read-only (a base of another kind might be written)."""
    current: object = array
    while isinstance(current, np.ndarray):
        if current.flags.writeable:
            return False
        current = current.base
    return current is None


@dataclass(frozen=True)
class AssimilationResult:
    """Filtered (and optionally smoothed) posterior of the effect, batch by batch.

    Parameters
    ----------
    backend : {"kalman", "particle"}
        Engine that produced the result.
    alpha : float
        Interval level is ``1 - alpha`` for every interval in the result.
    labels : tuple of str
        Batch labels in time order.
    estimates, standard_errors : ndarray
        The per-batch observations (NaN where a batch gave none).
    excluded : ndarray of bool
        True where the batch did not update the posterior (missing or excluded): a predict-only
        step.
    exclusion_reasons : tuple of str
        Why each batch was excluded ("" when it was used).
    forecast_mean, forecast_var : ndarray
        One-step-ahead belief about the effect before batch t's estimate.
    posterior_mean, posterior_var : ndarray
        Filtered belief after batch t.
    posterior_lower, posterior_upper : ndarray
        Filtered credible band at level ``1 - alpha`` (normal for Kalman, weighted quantiles for
        the particle filter).
    innovations : ndarray
        ``estimate_t - forecast_mean_t`` (NaN where excluded).
    innovation_var : ndarray
        Predictive variance of ``estimate_t`` given the past (NaN where excluded).
    process_var : float
        Variance of the random-walk step used.
    log_likelihood : float
        Log predictive likelihood of the used estimates.
    prior_mean, prior_var : float
        Belief before the first batch (``prior_var`` may be ``inf`` for a diffuse start).
    ess : ndarray or None
        Effective sample size per step (particle backend).
    smoothed_mean, smoothed_var : ndarray or None
        Smoothed belief given all batches (RTS smoother), when computed.
    details : Mapping
        Backend specifics (process variance fit, particle counts, observation family, ...).
    """

    backend: Backend
    alpha: float
    labels: tuple[str, ...]
    estimates: FloatArray
    standard_errors: FloatArray
    excluded: NDArray[np.bool_]
    exclusion_reasons: tuple[str, ...]
    forecast_mean: FloatArray
    forecast_var: FloatArray
    posterior_mean: FloatArray
    posterior_var: FloatArray
    posterior_lower: FloatArray
    posterior_upper: FloatArray
    innovations: FloatArray
    innovation_var: FloatArray
    process_var: float
    log_likelihood: float
    prior_mean: float
    prior_var: float
    ess: FloatArray | None = None
    smoothed_mean: FloatArray | None = None
    smoothed_var: FloatArray | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (
            "estimates",
            "standard_errors",
            "excluded",
            "forecast_mean",
            "forecast_var",
            "posterior_mean",
            "posterior_var",
            "posterior_lower",
            "posterior_upper",
            "innovations",
            "innovation_var",
            "ess",
            "smoothed_mean",
            "smoothed_var",
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _frozen(value))
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))
        n = len(self.labels)
        if any(len(getattr(self, k)) != n for k in ("estimates", "posterior_mean", "excluded")):
            raise ValueError("AssimilationResult arrays must all have one entry per batch label")

    @property
    def n_batches(self) -> int:
        """Number of batches (used or excluded)."""
        return len(self.labels)

    @property
    def level(self) -> float:
        """Interval level ``1 - alpha``."""
        return 1.0 - self.alpha

    @property
    def posterior_sd(self) -> FloatArray:
        """Filtered posterior standard deviation per batch."""
        return np.sqrt(self.posterior_var)

    @property
    def posterior_ci(self) -> tuple[FloatArray, FloatArray]:
        """Filtered credible band ``(lower, upper)`` at level ``1 - alpha``."""
        return self.posterior_lower, self.posterior_upper

    @property
    def innovation_sd(self) -> FloatArray:
        """Predictive standard deviation of each estimate (NaN where excluded)."""
        return np.sqrt(self.innovation_var)

    @property
    def standardized_innovations(self) -> FloatArray:
        """``innovation / innovation_sd``: N(0, 1) under a well-specified Gaussian model."""
        return self.innovations / self.innovation_sd

    @property
    def smoothed_sd(self) -> FloatArray | None:
        """Smoothed standard deviation, when smoothing was computed."""
        return None if self.smoothed_var is None else np.sqrt(self.smoothed_var)

    @property
    def final_mean(self) -> float:
        """Posterior mean after the last batch."""
        return float(self.posterior_mean[-1])

    @property
    def final_sd(self) -> float:
        """Posterior SD after the last batch."""
        return float(np.sqrt(self.posterior_var[-1]))

    @property
    def final_ci(self) -> tuple[float, float]:
        """Credible interval after the last batch at level ``1 - alpha``."""
        return float(self.posterior_lower[-1]), float(self.posterior_upper[-1])

    def trajectory(self) -> pd.DataFrame:
        """Tidy table, one row per batch, snake_case columns."""
        table = pd.DataFrame(
            {
                "batch": list(self.labels),
                "estimate": self.estimates,
                "std_error": self.standard_errors,
                "excluded": self.excluded,
                "exclusion_reason": list(self.exclusion_reasons),
                "forecast_mean": self.forecast_mean,
                "forecast_sd": np.sqrt(self.forecast_var),
                "innovation": self.innovations,
                "innovation_sd": self.innovation_sd,
                "standardized_innovation": self.standardized_innovations,
                "posterior_mean": self.posterior_mean,
                "posterior_sd": self.posterior_sd,
                "ci_lower": self.posterior_lower,
                "ci_upper": self.posterior_upper,
            }
        )
        if self.ess is not None:
            table["ess"] = self.ess
        if self.smoothed_mean is not None and self.smoothed_var is not None:
            table["smoothed_mean"] = self.smoothed_mean
            table["smoothed_sd"] = np.sqrt(self.smoothed_var)
        return table

    def summary(self) -> str:
        """Human-readable report naming the backend and the real interval level."""
        lower, upper = self.final_ci
        n_excluded = int(np.sum(self.excluded))
        level = f"{100 * self.level:g}%"
        lines = [
            f"Assimilated effect ({self.backend} filter, {self.n_batches} batches, {n_excluded} excluded)",
            f"  process variance  {self.process_var:.4g}",
            f"  final posterior   mean {self.final_mean:.6g}, sd {self.final_sd:.6g}",
            f"  {level} credible interval [{lower:.6g}, {upper:.6g}]",
            f"  log-likelihood    {self.log_likelihood:.6g}",
        ]
        if self.ess is not None:
            lines.append(f"  min ESS           {float(np.min(self.ess)):.1f}")
        for label, reason in zip(self.labels, self.exclusion_reasons, strict=True):
            if reason:
                lines.append(f"  excluded {label}: {reason}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()
