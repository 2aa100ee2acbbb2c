"""The result of a per-batch effect estimator.

``EffectEstimate`` is frozen: a different variance estimator means a new fit, never a mutation.
Its interval is the Wald interval ``estimate ± z_{1-alpha/2} · std_error`` (``t_{df}`` in place of
``z`` when a clustered standard error carries degrees of freedom). It pickles,
deep-copies, and round-trips through JSON with :meth:`EffectEstimate.to_dict` and
:meth:`EffectEstimate.from_dict`.

Example
-------
>>> est = EffectEstimate(estimate=0.5, std_error=0.1, n_treated=50, n_control=50,
...                      method="difference_in_means", se_method="welch")
>>> est.conf_int(alpha=0.05)
(0.304..., 0.695...)
>>> EffectEstimate.from_dict(est.to_dict()) == est
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import pandas as pd
from scipy import stats

from assimilate._frozen import FrozenDict, float_from_json, to_jsonable
from assimilate._validation import check_alpha, check_choice

Estimand = Literal["ATE", "ATT", "ATC"]
ESTIMANDS: tuple[Estimand, ...] = ("ATE", "ATT", "ATC")
"""Average effect over all units, over the treated, over the controls."""
ESTIMAND_WORDS: dict[str, str] = {
    "ATE": "average effect",
    "ATT": "average effect on the treated",
    "ATC": "average effect on the controls",
    "LATE": "local average effect on the compliers",
}
ResultEstimand = Estimand | Literal["LATE"]
RESULT_ESTIMANDS: tuple[ResultEstimand, ...] = (*ESTIMANDS, "LATE")
"""What an ``EffectEstimate`` may state: the ``ESTIMANDS`` of the adjustment estimators and the LATE
of an instrument's compliers (Imbens & Angrist 1994), which only the IV estimator delivers."""


@dataclass(frozen=True)
class EffectEstimate:
    """One batch's treatment-effect estimate with its standard error.

    Parameters
    ----------
    estimate : float
        Point estimate of the effect (ATE unless ``estimand`` says otherwise).
    std_error : float
        Standard error of ``estimate``.
    n_treated, n_control : int
        Units in each arm that entered the estimate (after any trimming).
    method : str
        Estimator name, e.g. ``"aipw"``.
    se_method : str
        How ``std_error`` was computed, e.g. ``"influence_function"``, ``"hc3"``.
    estimand : {"ATE", "ATT", "ATC", "LATE"}
        The population the effect averages over: all units (default), the treated, the controls,
        or (IV) the compliers.
    diagnostics : Mapping[str, Any]
        JSON-serialisable facts about the fit (trimming counts and bounds, folds, ...), read-only.
    """

    estimate: float
    std_error: float
    n_treated: int
    n_control: int
    method: str
    se_method: str
    estimand: ResultEstimand = "ATE"
    diagnostics: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "estimand", check_choice("estimand", self.estimand, RESULT_ESTIMANDS))
        object.__setattr__(self, "diagnostics", FrozenDict(self.diagnostics))

    @property
    def n(self) -> int:
        """Units that entered the estimate."""
        return self.n_treated + self.n_control

    @property
    def z_statistic(self) -> float:
        """``estimate / std_error``."""
        return self.estimate / self.std_error

    @property
    def df(self) -> float | None:
        """The degrees of freedom the standard error carries (``G - 1`` for a clustered one), else None."""
        entry = self.diagnostics.get("standard_error")
        df = entry.get("df") if isinstance(entry, Mapping) else None
        return None if df is None else float(df)

    @property
    def p_value(self) -> float:
        """Two-sided p-value of "no effect": on t with :attr:`df` when the SE carries one, else normal."""
        if self.df is not None:
            return float(2.0 * stats.t.sf(abs(self.z_statistic), self.df))
        return float(2.0 * stats.norm.sf(abs(self.z_statistic)))

    def conf_int(self, alpha: float = 0.05) -> tuple[float, float]:
        """Two-sided interval at level ``1 - alpha``: on t with :attr:`df` when the SE carries one, else normal.

        A clustered SE from few clusters is noisy, so its interval uses ``t_{G-1}`` (docs/INTERVALS.md);
        every consumer of the estimate (memo tables, summaries) then prints the interval the SE promises.
        """
        level = 1.0 - check_alpha(alpha) / 2.0
        critical = float(stats.norm.ppf(level) if self.df is None else stats.t.ppf(level, self.df))
        return (self.estimate - critical * self.std_error, self.estimate + critical * self.std_error)

    def to_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """One tidy row: method, estimate, std_error, ci_lower, ci_upper, alpha, counts."""
        lower, upper = self.conf_int(alpha)
        row = {
            "method": self.method,
            "estimand": self.estimand,
            "estimate": self.estimate,
            "std_error": self.std_error,
            "ci_lower": lower,
            "ci_upper": upper,
            "alpha": alpha,
            "p_value": self.p_value,
            "n_treated": self.n_treated,
            "n_control": self.n_control,
            "se_method": self.se_method,
        }
        return pd.DataFrame([row])

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (NaN as ``None``, infinities as ``"inf"``); :meth:`from_dict` reads them back.

        Returns
        -------
        dict
            One key per field; ``diagnostics`` as plain JSON data (tuples become lists).
        """
        return {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EffectEstimate:
        """The estimate :meth:`to_dict` wrote.

        Parameters
        ----------
        data : Mapping
            The fields, e.g. ``json.loads(json.dumps(estimate.to_dict()))``.

        Returns
        -------
        EffectEstimate

        Raises
        ------
        ValueError
            When a field is missing or an unknown key is present.
        """
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.name not in ("estimand", "diagnostics")}
        missing, unknown = sorted(required - set(data)), sorted(set(data) - names)
        if missing or unknown:
            raise ValueError(
                f"EffectEstimate.from_dict: missing field(s) {missing}, unknown key(s) {unknown}"
            )
        return cls(
            estimate=float_from_json(data["estimate"]),
            std_error=float_from_json(data["std_error"]),
            n_treated=int(data["n_treated"]),
            n_control=int(data["n_control"]),
            method=str(data["method"]),
            se_method=str(data["se_method"]),
            estimand=check_choice("estimand", str(data.get("estimand", "ATE")), RESULT_ESTIMANDS),
            diagnostics=dict(data.get("diagnostics", {})),
        )

    def summary(self, alpha: float = 0.05) -> str:
        """A short human-readable report."""
        lower, upper = self.conf_int(alpha)
        level = f"{100 * (1 - alpha):g}%"
        lines = [
            f"{self.method} estimate of the {self.estimand}",
            f"  estimate   {self.estimate: .6g}",
            f"  std_error  {self.std_error: .6g}  ({self.se_method})",
            f"  {level} CI    [{lower:.6g}, {upper:.6g}]",
            f"  p-value    {self.p_value:.4g}",
            f"  n          {self.n} ({self.n_treated} treated, {self.n_control} control)",
        ]
        lines += [f"  {key}: {value}" for key, value in self.diagnostics.items()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    @property
    def is_finite(self) -> bool:
        """Whether estimate and standard error are finite numbers (std_error > 0)."""
        return math.isfinite(self.estimate) and math.isfinite(self.std_error) and self.std_error > 0
