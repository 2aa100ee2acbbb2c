"""The result of an event study: effects by event time with their joint covariance.

``EventStudy`` holds ``beta_k`` for event times ``k = t - g`` (periods since first treatment;
``k < 0`` the leads, placebo effects before adoption; ``k >= 0`` the lags) and their unit-clustered
covariance, so that the leads can be tested jointly
(:func:`assimilate.estimators.did_diagnostics.pre_trend_test`) and each lag read as one effect.
Intervals are ``beta_k ± t_{df, 1-alpha/2} SE_k`` (normal when ``df`` is None), pointwise.

Example
-------
>>> import numpy as np
>>> study = EventStudy(event_times=(-2, 0, 1), estimate=np.array([0.1, 1.0, 1.5]),
...                    covariance=np.diag([0.04, 0.04, 0.09]), df=99, method="example")
>>> study.leads, study.lags
((-2,), (0, 1))
>>> study.effect(1).estimand, study.effect(1).estimate
('ATT', 1.5)
>>> list(study.to_frame().columns)[:4]
['event_time', 'estimate', 'std_error', 'ci_lower']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from assimilate._frozen import FrozenDict, ReadOnlyArrays, array_from_json, to_jsonable
from assimilate._validation import check_alpha
from assimilate.estimators.result import EffectEstimate

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class EventStudy(ReadOnlyArrays):
    """Effects by event time with their covariance (frozen; arrays read-only).

    Parameters
    ----------
    event_times : tuple of int
        Increasing event times ``k`` (periods since first treatment), the reference left out.
    estimate : ndarray, shape (K,)
        ``beta_k``.
    covariance : ndarray, shape (K, K)
        Their covariance (unit-clustered).
    df : int or None
        Degrees of freedom of the ``t`` intervals and tests (``G - 1``); None: normal.
    method : str
        How the effects were estimated (``"event_study_twfe"``, ``"callaway_santanna"``).
    reference : int or None
        The event time normalized to 0 (``-1`` for two-way fixed effects), if any.
    n_treated, n_control : int
        Units ever treated in the sample; units never treated.
    diagnostics : Mapping
        JSON-safe facts about the fit, read-only.
    """

    event_times: tuple[int, ...]
    estimate: FloatArray
    covariance: FloatArray
    df: int | None
    method: str
    reference: int | None = None
    n_treated: int = 0
    n_control: int = 0
    diagnostics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        times = tuple(int(k) for k in self.event_times)
        object.__setattr__(self, "event_times", times)
        for name in ("estimate", "covariance"):
            array = np.array(getattr(self, name), dtype=np.float64)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        size = len(times)
        if self.estimate.shape != (size,) or self.covariance.shape != (size, size):
            raise ValueError(
                f"EventStudy: {size} event times need estimate ({size},) and covariance ({size}, {size}); "
                f"got {self.estimate.shape} and {self.covariance.shape}"
            )
        if list(times) != sorted(set(times)) or (self.reference is not None and self.reference in times):
            raise ValueError(f"EventStudy: event times must increase and leave out the reference: {times}")
        object.__setattr__(self, "diagnostics", FrozenDict(self.diagnostics))

    @property
    def std_error(self) -> FloatArray:
        """Standard errors ``SE_k``."""
        return np.sqrt(np.diag(self.covariance))

    @property
    def leads(self) -> tuple[int, ...]:
        """Event times before adoption (``k < 0``): the placebo effects."""
        return tuple(k for k in self.event_times if k < 0)

    @property
    def lags(self) -> tuple[int, ...]:
        """Event times at and after adoption (``k >= 0``)."""
        return tuple(k for k in self.event_times if k >= 0)

    def _critical(self, alpha: float) -> float:
        level = 1.0 - check_alpha(alpha) / 2.0
        return float(stats.norm.ppf(level) if self.df is None else stats.t.ppf(level, self.df))

    def conf_int(self, alpha: float = 0.05) -> tuple[FloatArray, FloatArray]:
        """Pointwise ``1 - alpha`` intervals ``(lower, upper)``, ``t_df`` (normal without ``df``)."""
        half = self._critical(alpha) * self.std_error
        return self.estimate - half, self.estimate + half

    @property
    def p_value(self) -> FloatArray:
        """Two-sided pointwise p-values of ``beta_k = 0``."""
        z = np.abs(self.estimate) / self.std_error
        return np.asarray(2.0 * (stats.norm.sf(z) if self.df is None else stats.t.sf(z, self.df)))

    def select(self, event_times: Sequence[int]) -> tuple[FloatArray, FloatArray]:
        """The estimates and covariance of the given event times, in that order."""
        missing = [k for k in event_times if k not in self.event_times]
        if missing:
            raise ValueError(f"event time(s) {missing} not estimated (estimated: {list(self.event_times)})")
        index = [self.event_times.index(int(k)) for k in event_times]
        return self.estimate[index], self.covariance[np.ix_(index, index)]

    def effect(self, event_time: int) -> EffectEstimate:
        """The effect at one event time as an :class:`EffectEstimate` (ATT, CR1 with ``df``)."""
        value, covariance = self.select([event_time])
        entry = {"se_type": "CR1", "n_clusters": None if self.df is None else self.df + 1, "df": self.df}
        return EffectEstimate(
            estimate=float(value[0]),
            std_error=float(np.sqrt(covariance[0, 0])),
            n_treated=self.n_treated,
            n_control=self.n_control,
            method=self.method,
            se_method="cr1",
            estimand="ATT",
            diagnostics={"event_time": int(event_time), "standard_error": entry},
        )

    def to_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """One row per event time: event_time, estimate, std_error, ci_lower, ci_upper, alpha, p_value, kind."""
        lower, upper = self.conf_int(alpha)
        return pd.DataFrame(
            {
                "event_time": np.array(self.event_times, dtype=np.int64),
                "estimate": self.estimate,
                "std_error": self.std_error,
                "ci_lower": lower,
                "ci_upper": upper,
                "alpha": alpha,
                "p_value": self.p_value,
                "kind": ["lead" if k < 0 else "lag" for k in self.event_times],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields; :meth:`from_dict` reads them back."""
        return {
            "event_times": list(self.event_times),
            "estimate": to_jsonable(self.estimate),
            "covariance": to_jsonable(self.covariance),
            "df": self.df,
            "method": self.method,
            "reference": self.reference,
            "n_treated": self.n_treated,
            "n_control": self.n_control,
            "diagnostics": to_jsonable(self.diagnostics),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventStudy:
        """The study :meth:`to_dict` wrote."""
        size = len(data["event_times"])
        return cls(
            event_times=tuple(int(k) for k in data["event_times"]),
            estimate=array_from_json(data["estimate"]),
            covariance=array_from_json(data["covariance"]).reshape(size, size),
            df=None if data["df"] is None else int(data["df"]),
            method=str(data["method"]),
            reference=None if data.get("reference") is None else int(data["reference"]),
            n_treated=int(data.get("n_treated", 0)),
            n_control=int(data.get("n_control", 0)),
            diagnostics=dict(data.get("diagnostics", {})),
        )
