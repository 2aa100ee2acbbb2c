"""Staggered adoption: group-time average effects on the treated (Callaway & Sant'Anna 2021), unconditional.

Model: for the cohort ``g`` first treated in period ``g`` and a period ``t``, with base period ``b``
(``g - 1`` after adoption),
``ATT(g, t) = E[Y_t - Y_b | G = g] - E[Y_t - Y_b | C]``, the comparison units ``C`` never treated
or not yet treated at ``max(t, b)``; each is a 2x2 difference of means, so no already-treated unit
is ever a control and two-way fixed effects' negative weights (Goodman-Bacon 2021) cannot arise.
The ``ATT(g, t)`` are averaged with cohort-size weights: the simple ATT over all post-adoption
cells, the effect in one calendar period (one batch) ``theta_C(t) = sum_{g <= t} w_g ATT(g, t)``
and the event-time effects ``theta(e) = sum_g w_g ATT(g, g + e)``.

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(1)
>>> units, periods = 300, 5
>>> cohort = rng.choice([2, 3, np.inf], units)
>>> unit = np.repeat(np.arange(units), periods); t = np.tile(np.arange(periods), units)
>>> g = cohort[unit]; y = rng.standard_normal(units)[unit] + 0.2 * t + np.where(t >= g, 1 + t - g, 0)
>>> frame = pd.DataFrame({"id": unit, "t": t, "g": g, "y": y + rng.standard_normal(units * periods)})
>>> att = group_time_att(frame, unit="id", period="t", outcome="y", first_treated="g")
>>> overall = att.simple()
>>> overall.estimand, overall.method, bool(abs(overall.estimate - 1.8) < 4 * overall.std_error)
('ATT', 'callaway_santanna', True)
>>> att.event_time().lags
(0, 1, 2)
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from assimilate._frozen import ReadOnlyArrays, to_jsonable
from assimilate._validation import check_alpha, check_choice
from assimilate.estimators._did_panel import NEVER, Panel, Sampling, read_panel
from assimilate.estimators.did_results import EventStudy
from assimilate.estimators.result import EffectEstimate

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
ControlGroup = Literal["not_yet_treated", "never_treated"]
CONTROL_GROUPS: tuple[ControlGroup, ...] = ("not_yet_treated", "never_treated")
BasePeriod = Literal["varying", "universal"]
BASE_PERIODS: tuple[BasePeriod, ...] = ("varying", "universal")
"""Before adoption ``ATT(g, t)`` compares ``t`` with ``t - 1`` (varying) or with ``g - 1`` (universal)."""
METHOD = "callaway_santanna"


@dataclass(frozen=True)
class GroupTimeATT(ReadOnlyArrays):
    """The ``ATT(g, t)`` cells with their influence functions, and their aggregations (frozen).

    Parameters
    ----------
    cohort, period, base : ndarray of int, shape (K,)
        Ranks of each cell's cohort ``g``, period ``t`` and base period ``b``.
    estimate : ndarray, shape (K,)
        ``ATT(g, t)``.
    influence : ndarray, shape (N, K)
        Unit ``i``'s influence ``psi_i`` on each cell: ``ATT_hat - ATT ~ (1/N) sum_i psi_i``.
    n_treated_cell, n_control_cell : ndarray of int, shape (K,)
        Units (panel) or rows at period ``t`` (repeated cross-section) of the cohort and of ``C``.
    unit_cohort : ndarray of int, shape (N,)
        Each unit's cohort rank (``NEVER`` for never treated), for the weights.
    periods : tuple
        The period labels, in order (ranks index them).
    control_group, base_period : str
        The options of the fit.
    skipped : tuple of (cohort, period, reason)
        Cells that could not be estimated (an empty cohort or comparison cell).
    """

    cohort: IntArray
    period: IntArray
    base: IntArray
    estimate: FloatArray
    influence: FloatArray
    n_treated_cell: IntArray
    n_control_cell: IntArray
    unit_cohort: IntArray
    periods: tuple[Any, ...]
    control_group: ControlGroup
    base_period: BasePeriod
    skipped: tuple[tuple[Any, Any, str], ...] = ()

    def __post_init__(self) -> None:
        for name, kind in (
            ("cohort", np.int64),
            ("period", np.int64),
            ("base", np.int64),
            ("estimate", np.float64),
            ("influence", np.float64),
            ("n_treated_cell", np.int64),
            ("n_control_cell", np.int64),
            ("unit_cohort", np.int64),
        ):
            array = np.array(getattr(self, name), dtype=kind)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if self.influence.shape != (len(self.unit_cohort), len(self.estimate)):
            raise ValueError(f"GroupTimeATT: influence must be (N, K), got {self.influence.shape}")

    @property
    def n_units(self) -> int:
        """``N``: the units, which are the clusters."""
        return int(self.influence.shape[0])

    @property
    def df(self) -> int:
        """``G - 1`` (``G = N`` unit clusters): the ``t`` intervals' degrees of freedom."""
        return self.n_units - 1

    @property
    def event_times(self) -> IntArray:
        """``e = t - g`` of each cell (in periods)."""
        return np.asarray(self.period - self.cohort, dtype=np.int64)

    @property
    def covariance(self) -> FloatArray:
        """``G/(G-1) sum_i psi_i psi_i' / N^2``: the unit-clustered covariance of the cells."""
        return _covariance(self.influence)

    @property
    def std_error(self) -> FloatArray:
        """Standard errors of the cells."""
        squares = np.einsum("ik,ik->k", self.influence, self.influence)
        return np.asarray(np.sqrt(squares * _factor(self.n_units)), dtype=np.float64)

    def conf_int(self, alpha: float = 0.05) -> tuple[FloatArray, FloatArray]:
        """Pointwise ``t_{G-1}`` intervals of the cells, ``(lower, upper)``."""
        half = float(stats.t.ppf(1.0 - check_alpha(alpha) / 2.0, self.df)) * self.std_error
        return self.estimate - half, self.estimate + half

    def to_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """One row per cell: cohort, period, base_period, event_time, estimate, std_error, interval, counts."""
        lower, upper = self.conf_int(alpha)
        label = np.array(self.periods, dtype=object)
        return pd.DataFrame(
            {
                "cohort": label[self.cohort],
                "period": label[self.period],
                "base_period": label[self.base],
                "event_time": self.event_times,
                "estimate": self.estimate,
                "std_error": self.std_error,
                "ci_lower": lower,
                "ci_upper": upper,
                "alpha": alpha,
                "n_treated": self.n_treated_cell,
                "n_control": self.n_control_cell,
            }
        )

    def simple(self) -> EffectEstimate:
        """The simple ATT: every post-adoption cell (``t >= g``), weighted by its cohort's size.

        Returns
        -------
        EffectEstimate
            ``estimand="ATT"``, ``method="callaway_santanna"``, ``se_method="cr1"`` (the
            influence function summed by unit with ``G/(G-1)``); ``diagnostics["standard_error"]["df"]
            = G - 1`` for :func:`assimilate.estimators.variance.t_conf_int`.
        """
        keep = np.flatnonzero(self.period >= self.cohort)
        if keep.size == 0:
            raise ValueError("no post-adoption cell could be estimated: no simple ATT")
        return self._effect(keep, {"aggregation": "simple"})

    def _effect(self, keep: IntArray, facts: dict[str, Any]) -> EffectEstimate:
        value, psi = self._aggregate(keep)
        treated = np.isin(self.unit_cohort, np.unique(self.cohort[keep]))
        entry = {"se_type": "CR1", "cluster": "unit", "n_clusters": self.n_units, "df": self.df}
        diagnostics = {
            **facts,
            "control_group": self.control_group,
            "base_period": self.base_period,
            "n_cells": int(keep.size),
            "cells_skipped": [list(cell) for cell in self.skipped],
            "standard_error": entry,
        }
        return EffectEstimate(
            estimate=value,
            std_error=float(np.sqrt(_covariance(psi[:, None])[0, 0])),
            n_treated=int(treated.sum()),
            n_control=int((~treated).sum()),
            method=METHOD,
            se_method="cr1",
            estimand="ATT",
            diagnostics=to_jsonable(diagnostics),
        )

    def calendar_effect(self, period: Hashable) -> EffectEstimate:
        """``theta_C(t) = sum_{g <= t} w_g ATT(g, t)``: the effect in one period (one batch), ``w_g`` ∝ cohort size.

        Parameters
        ----------
        period : period value
            A period label (as in the data) at or after the first adoption.

        Returns
        -------
        EffectEstimate
            As :meth:`simple`, with ``diagnostics["aggregation"] = "calendar"`` and the period.
        """
        if period not in self.periods:
            raise ValueError(f"period {period!r} is not one of the periods {list(self.periods)}")
        rank = self.periods.index(period)
        keep = np.flatnonzero((self.period == rank) & (self.period >= self.cohort))
        if keep.size == 0:
            raise ValueError(f"no cohort is treated by period {period!r} (or its cells were skipped)")
        return self._effect(keep, {"aggregation": "calendar", "period": period})

    def event_time(self) -> EventStudy:
        """``theta(e) = sum_g w_g ATT(g, g + e)`` for every event time with a cell, ``w_g`` ∝ cohort size.

        Returns
        -------
        EventStudy
            ``method="callaway_santanna"``, the joint unit-clustered covariance of the
            ``theta(e)`` from their influence functions, ``df = G - 1``; ``reference=-1`` with a
            universal base period (``ATT(g, g - 1) = 0`` by construction), else None.
        """
        times = sorted(int(e) for e in np.unique(self.event_times))
        parts = [self._aggregate(np.flatnonzero(self.event_times == e)) for e in times]
        psi = np.column_stack([p for _, p in parts])
        treated = self.unit_cohort != NEVER
        return EventStudy(
            event_times=tuple(times),
            estimate=np.array([v for v, _ in parts]),
            covariance=_covariance(psi),
            df=self.df,
            method=METHOD,
            reference=-1 if self.base_period == "universal" else None,
            n_treated=int(treated.sum()),
            n_control=int((~treated).sum()),
            diagnostics={"control_group": self.control_group, "base_period": self.base_period},
        )

    def _aggregate(self, keep: IntArray) -> tuple[float, FloatArray]:
        """``sum_k w_k ATT_k`` with ``w_k ∝ P(G = g_k)``, and its influence (the weights' estimation included)."""
        shares = np.array([np.mean(self.unit_cohort == g) for g in self.cohort[keep]])
        total = float(shares.sum())
        weights = shares / total
        att = self.estimate[keep]
        # d w_k: (1[G_i = g_k] - p_k) / S - p_k sum_j (1[G_i = g_j] - p_j) / S^2 (CS 2021, Appendix; R did's wif)
        member = (self.unit_cohort[:, None] == self.cohort[keep][None, :]).astype(np.float64) - shares
        weight_influence = member / total - np.outer(member.sum(axis=1), shares / total**2)
        psi = self.influence[:, keep] @ weights + weight_influence @ att
        return float(weights @ att), psi


def _factor(n_units: int) -> float:
    return n_units / (n_units - 1) / n_units**2


def _covariance(psi: FloatArray) -> FloatArray:
    return np.asarray(_factor(psi.shape[0]) * (psi.T @ psi), dtype=np.float64)


def group_time_att(
    data: pd.DataFrame,
    *,
    unit: str,
    period: str,
    outcome: str,
    first_treated: Hashable,
    group: str | None = None,
    control_group: ControlGroup = "not_yet_treated",
    base_period: BasePeriod = "varying",
    sampling: Sampling = "panel",
) -> GroupTimeATT:
    """Every ``ATT(g, t)`` by the unconditional estimator of Callaway & Sant'Anna (2021).

    Parameters
    ----------
    data : DataFrame
        Long frame, one row per unit and period.
    unit, period, outcome : str
        Columns: the unit id (the cluster), the period (ordered values), the outcome.
    first_treated : str or period value
        The column of each unit's first treated period (missing or ``inf``: never treated), or a
        common adoption period with ``group``.
    group : str, optional
        With a common ``first_treated``: the 0/1 column of the treated units.
    control_group : {"not_yet_treated", "never_treated"}
        ``C``: units never treated or not yet treated at ``max(t, b)`` (other cohorts), or never
        treated only.
    base_period : {"varying", "universal"}
        Before adoption, compare ``t`` with ``t - 1`` (placebo short differences, the R ``did``
        default) or with ``g - 1``; after adoption the base is always ``g - 1``.
    sampling : {"panel", "repeated_cross_section"}
        Panel: each cell uses the units seen in both ``t`` and ``b``. Repeated cross-section: the
        four cell means are over the rows of each period.

    Returns
    -------
    GroupTimeATT
        The cells (cells with an empty cohort or comparison group are listed in ``skipped``),
        their influence functions, :meth:`~GroupTimeATT.simple` and :meth:`~GroupTimeATT.event_time`.

    Notes
    -----
    No covariates: ``ATT(g, t) = [ybar(g, t) - ybar(g, b)] - [ybar(C, t) - ybar(C, b)]``, with
    influence ``psi_i = sum_c s_c (N / n_c)(y_i - ybar_c)`` over the four cells ``c`` the unit is in
    (signs ``+ - - +``); on a panel this is the panel estimator's ``(N/n_g)(dY_i - mean_g dY)
    - (N/n_C)(dY_i - mean_C dY)`` (Callaway & Sant'Anna 2021, Theorem 2). Aggregations weight cells
    by cohort shares ``P(G = g)``, and their influence adds the shares' own (Section 3; R ``did``
    ``aggte``). Standard errors are analytic from the influence functions summed by unit, with
    ``G/(G-1)``, and intervals ``t_{G-1}``, pointwise; the paper's multiplier bootstrap and its
    simultaneous bands are not implemented, and neither are covariates (their doubly robust
    ``ATT(g, t)``) nor anticipation.
    """
    check_choice("control_group", control_group, CONTROL_GROUPS)
    check_choice("base_period", base_period, BASE_PERIODS)
    panel = read_panel(
        data,
        unit=unit,
        period=period,
        outcome=outcome,
        first_treated=first_treated,
        group=group,
        sampling=sampling,
    )
    if control_group == "never_treated" and not (panel.cohort == NEVER).any():
        raise ValueError("control_group='never_treated' but no unit is never treated; use 'not_yet_treated'")
    cells, skipped = [], []
    for g in np.unique(panel.cohort[panel.treated]):
        for t in range(panel.n_periods):
            b = g - 1 if (t >= g or base_period == "universal") else t - 1
            if b < 0 or t == b:
                continue
            found = _cell(panel, int(g), t, int(b), control_group, sampling)
            if isinstance(found, str):
                skipped.append((panel.periods[int(g)], panel.periods[t], found))
            else:
                cells.append((int(g), t, int(b), *found))
    if not cells:
        raise ValueError(f"no ATT(g, t) cell could be estimated: {skipped[:3]}")
    return group_time_from_cells(panel, cells, skipped, control_group=control_group, base_period=base_period)


def group_time_from_cells(
    panel: Any,
    cells: list[tuple[Any, ...]],
    skipped: list[tuple[Any, Any, str]],
    *,
    control_group: ControlGroup,
    base_period: BasePeriod,
) -> GroupTimeATT:
    """The result from estimated cells ``(cohort, period, base, estimate, influence, n_treated, n_control)``."""
    columns = list(zip(*cells, strict=True))
    return GroupTimeATT(
        cohort=np.array(columns[0]),
        period=np.array(columns[1]),
        base=np.array(columns[2]),
        estimate=np.array(columns[3]),
        influence=np.column_stack(columns[4]),
        n_treated_cell=np.array(columns[5]),
        n_control_cell=np.array(columns[6]),
        unit_cohort=panel.unit_cohorts(),
        periods=tuple(panel.periods),
        control_group=control_group,
        base_period=base_period,
        skipped=tuple(skipped),
    )


def _cell(
    panel: Panel, g: int, t: int, b: int, control_group: ControlGroup, sampling: Sampling
) -> tuple[float, FloatArray, int, int] | str:
    """``ATT(g, t)`` against base ``b``, its influence by unit and the cell sizes; or why it is undefined."""
    cohort = panel.cohort
    comparison = (
        (cohort == NEVER) if control_group == "never_treated" else (cohort > max(t, b)) & (cohort != g)
    )
    rows = (panel.period == t) | (panel.period == b)
    if sampling == "panel":  # a unit enters the cell only when seen in both periods
        both = np.bincount(panel.unit[rows], minlength=panel.n_units) == 2
        rows &= both[panel.unit]
    n_units = panel.n_units
    value, influence, sizes = 0.0, np.zeros(len(cohort)), []
    for members, sign in ((cohort == g, 1.0), (comparison, -1.0)):
        for when, side in ((t, 1.0), (b, -1.0)):
            inside = rows & members & (panel.period == when)
            size = int(inside.sum())
            if size == 0:
                who = "cohort" if sign > 0 else "comparison group"
                return f"empty {who} at period {panel.periods[when]}"
            mean = float(panel.outcome[inside].mean())
            value += sign * side * mean
            influence[inside] = sign * side * (n_units / size) * (panel.outcome[inside] - mean)
            sizes.append(size)
    by_unit = np.bincount(panel.unit, weights=influence, minlength=n_units).astype(np.float64)
    return value, by_unit, sizes[0], sizes[2]
