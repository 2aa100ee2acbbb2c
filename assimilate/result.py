"""The posterior of a drifting treatment effect after assimilating a stream of batch estimates.

Both filter backends (Kalman, particle) return an ``AssimilationResult`` with the same meaning for
every field: at batch t, the *forecast* is the belief about the effect before batch t's estimate,
the *posterior* the belief after it, and the *innovation* is ``estimate_t - forecast_mean_t``.
A result is read-only, pickles and deep-copies (its arrays stay read-only), round-trips through
JSON with :meth:`AssimilationResult.to_dict` / :meth:`AssimilationResult.from_dict`, and draws
its fan chart with :meth:`AssimilationResult.plot`.

Example
-------
>>> from assimilate import causal_kalman
>>> res = causal_kalman([0.5, 0.52, 0.49], [0.1, 0.1, 0.1], prior_mean=0.0, prior_var=1.0,
...                     process_var=0.0)
>>> round(res.final_mean, 3)
0.502
>>> res.trajectory().columns[:3].tolist()
['batch', 'estimate', 'std_error']
>>> AssimilationResult.from_dict(res.to_dict()).final_mean == res.final_mean
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from assimilate._frozen import FrozenDict, ReadOnlyArrays, array_from_json, float_from_json, to_jsonable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


_ARRAYS = (
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
)


@dataclass(frozen=True)
class AssimilationResult(ReadOnlyArrays):
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
        Backend specifics (process variance fit, particle counts, observation family, ...),
        read-only.
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
        for name in _ARRAYS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _frozen(value))
        object.__setattr__(self, "details", FrozenDict(self.details))
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields: arrays as lists, NaN as ``None``, infinities as ``"inf"``/``"-inf"``.

        Returns
        -------
        dict
            One key per field; objects in ``details`` (the process-variance fit, the shared units)
            as dicts of their fields. :meth:`from_dict` reads it back.
        """
        return {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AssimilationResult:
        """The result :meth:`to_dict` wrote (every array and number exactly).

        Parameters
        ----------
        data : Mapping
            The fields, e.g. ``json.loads(json.dumps(result.to_dict()))``.

        Returns
        -------
        AssimilationResult
            ``details["process_var_fit"]``, ``details["shared_units"]`` and
            ``details["error_correlation"]`` come back as their objects; other details as JSON data.

        Raises
        ------
        ValueError
            When a field is missing or an unknown key is present.
        """
        names = {f.name for f in fields(cls)}
        optional = {"ess", "smoothed_mean", "smoothed_var", "details"}
        missing, unknown = sorted(names - optional - set(data)), sorted(set(data) - names)
        if missing or unknown:
            raise ValueError(
                f"AssimilationResult.from_dict: missing field(s) {missing}, unknown key(s) {unknown}"
            )
        arrays: dict[str, Any] = {}
        for name in _ARRAYS:
            value = data.get(name)
            dtype = np.bool_ if name == "excluded" else np.float64
            arrays[name] = None if value is None else array_from_json(value, dtype)
        return cls(
            backend=data["backend"],
            alpha=float(data["alpha"]),
            labels=tuple(str(label) for label in data["labels"]),
            exclusion_reasons=tuple(str(reason) for reason in data["exclusion_reasons"]),
            process_var=float_from_json(data["process_var"]),
            log_likelihood=float_from_json(data["log_likelihood"]),
            prior_mean=float_from_json(data["prior_mean"]),
            prior_var=float_from_json(data["prior_var"]),
            details=_details_from_json(data.get("details") or {}),
            **arrays,
        )

    def plot(self, *, true_effects: Sequence[float] | None = None, title: str | None = None) -> Figure:
        """Fan chart: the posterior band and mean, the batch estimates, excluded batches named.

        Parameters
        ----------
        true_effects : sequence of float, optional
            The true effect per batch, when known (simulations).
        title : str, optional
            Figure title (default ``"Assimilated treatment effect"``).

        Returns
        -------
        matplotlib.figure.Figure
            The caller shows, saves or closes it (``assimilate.report.plots.figure_to_png``).
        """
        from assimilate.report.plots import fan_chart

        if title is None:
            return fan_chart(self, true_effects=true_effects)
        return fan_chart(self, true_effects=true_effects, title=title)


def _details_from_json(details: Mapping[str, Any]) -> dict[str, Any]:
    """``details`` with the objects the filters put there rebuilt from their JSON form."""
    out = dict(details)
    fit = out.get("process_var_fit")
    if isinstance(fit, Mapping):
        from assimilate.filters.mle import ProcessVarianceFit

        out["process_var_fit"] = ProcessVarianceFit(
            process_var=float_from_json(fit["process_var"]),
            std_error=float_from_json(fit["std_error"]),
            conf_int=(float_from_json(fit["conf_int"][0]), float_from_json(fit["conf_int"][1])),
            log_likelihood=float_from_json(fit["log_likelihood"]),
            log_likelihood_static=float_from_json(fit["log_likelihood_static"]),
            lr_statistic=float_from_json(fit["lr_statistic"]),
            p_value_static=float_from_json(fit["p_value_static"]),
            profile=pd.DataFrame({k: array_from_json(v) for k, v in fit["profile"].items()}),
            likelihood=fit.get("likelihood", "gaussian"),
            df=None if fit.get("df") is None else float(fit["df"]),
        )
    shared = out.get("shared_units")
    if isinstance(shared, Mapping):
        from assimilate.filters.shared_units import SharedUnits

        out["shared_units"] = SharedUnits(
            labels=tuple(str(label) for label in shared["labels"]),
            covariance=array_from_json(shared["covariance"]),
            correlation=array_from_json(shared["correlation"]),
            n_units=array_from_json(shared["n_units"], np.int64),
            n_returning=array_from_json(shared["n_returning"], np.int64),
            n_shared=array_from_json(shared["n_shared"], np.int64),
            min_eigenvalue=float_from_json(shared["min_eigenvalue"]),
            psd_adjusted=bool(shared["psd_adjusted"]),
        )
    if isinstance(out.get("error_correlation"), list):
        out["error_correlation"] = array_from_json(out["error_correlation"])
    return out
