"""One batch of a difference-in-differences study: the panel up to its period, its effect or its placebo.

Each batch is one period ``t`` of a panel (the batch label is the period). With the stored rows of
the earlier batches and this one, a **post period** (some cohort adopted at or before ``t``) gives
the effect in that calendar period, ``theta_C(t) = sum_{g <= t} w_g ATT(g, t)`` (Callaway &
Sant'Anna 2021; :meth:`~assimilate.estimators.did_staggered.GroupTimeATT.calendar_effect`), and a
**pre period** (no cohort adopted yet) gives its placebo, ``sum_g w_g ATT(g, t)`` with the short
difference ``t`` against ``t - 1`` for every cohort ``g > t``: zero in expectation under parallel
trends and no anticipation. Both come with each unit's influence value ``psi_i`` (the unit is the
cluster), so two periods' covariance is ``G/(G-1) sum_i psi_ia psi_ib / N^2``; the placebos'
joint Wald test (:func:`stored_pre_trend`) gates the post periods.

Cohorts are batch labels: a unit's first treated batch. Adoptions after ``t`` are known from the
cohort labels (not from later data), so the cells at ``t`` are exactly those of
:func:`~assimilate.estimators.did_staggered.group_time_att` on the whole panel, for either control
group: on a balanced panel the batch's estimate, standard error and influence values equal the
whole panel's to rounding.

Example
-------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(3)
>>> months = ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"]
>>> cohort = rng.choice(["2025-03-01", ""], 200)
>>> rows = [(u, m, cohort[u], rng.normal() + (m >= cohort[u] != "")) for u in range(200) for m in months]
>>> panel = pd.DataFrame(rows, columns=["unit", "month", "first", "y"])
>>> fit = period_effect(panel, unit="unit", period="month", outcome="y", batch="2025-03-01",
...                     first_treated="first")
>>> fit.kind, fit.estimate.method, bool(abs(fit.estimate.estimate - 1) < 4 * fit.estimate.std_error)
('post', 'callaway_santanna', True)
>>> period_effect(panel, unit="unit", period="month", outcome="y", batch="2025-02-01",
...               first_treated="first").kind
'pre'
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from assimilate._frozen import ReadOnlyArrays, to_jsonable
from assimilate.estimators._did_panel import NEVER, Panel, read_panel
from assimilate.estimators.did_diagnostics import PreTrendVerdict, pre_trend_test
from assimilate.estimators.did_results import EventStudy
from assimilate.estimators.did_staggered import (
    CONTROL_GROUPS,
    METHOD,
    ControlGroup,
    GroupTimeATT,
    _cell,
    group_time_from_cells,
)
from assimilate.estimators.result import EffectEstimate

FloatArray = NDArray[np.float64]
PLACEBO = "pre-period placebo"
"""How a pre-period batch is named wherever it is kept out of the posterior."""
PLACEBO_METHOD = f"{METHOD}_placebo"
NEVER_WORDS = frozenset({"", "never", "nan", "none", "inf"})
"""Cohort values of a never-treated unit (compared lower-cased and stripped)."""
PeriodKind = Literal["first", "pre", "post"]


@dataclass(frozen=True)
class PeriodFit(ReadOnlyArrays):
    """One period's estimate (the effect, or the placebo of a pre period) and its units' influence.

    Parameters
    ----------
    batch : str
        The period (batch label).
    kind : {"first", "pre", "post"}
        ``first``: the panel's first period (nothing to difference with, no estimate); ``pre``: no
        cohort adopted yet (``estimate`` is the placebo); ``post``: ``theta_C(t)``.
    estimate : EffectEstimate or None
        ``method`` ``callaway_santanna`` (post) or ``callaway_santanna_placebo`` (pre), ATT, CR1 on
        the unit with ``df = G - 1``; None for the first period.
    unit_ids : ndarray of str
        The panel's units (``N``), in the order of ``influence``.
    influence : ndarray
        ``psi_i``: ``estimate - truth ~ (1/N) sum_i psi_i``; ``SE^2 = G/(G-1) sum psi_i^2 / N^2``.
    cells : DataFrame
        The ``ATT(g, t)`` cells used: cohort, period, base_period, estimate, n_treated, n_control.
    """

    batch: str
    kind: PeriodKind
    estimate: EffectEstimate | None
    unit_ids: NDArray[np.object_]
    influence: FloatArray
    cells: pd.DataFrame

    def influence_frame(self) -> pd.DataFrame:
        """One row per unit: ``unit_id`` and ``influence`` (the stored form; empty for the first period)."""
        return pd.DataFrame({"unit_id": self.unit_ids.astype(str), "influence": self.influence})


def unit_cohorts(
    panel: pd.DataFrame, *, unit: str, first_treated: str, group: str | None = None
) -> pd.Series:
    """Each row's cohort label (its unit's first treated batch), None for a never-treated unit.

    Parameters
    ----------
    panel : DataFrame
        The rows.
    unit : str
        The unit column.
    first_treated : str
        A column of batch labels (empty, ``never``, missing: never treated), or with ``group`` the
        one adoption batch.
    group : str, optional
        The 0/1 column of the units that adopt at ``first_treated`` (single adoption).

    Raises
    ------
    ValueError
        A column missing, a group value not 0/1, or a unit with two cohorts (naming the column).
    """
    if group is not None:
        if group not in panel.columns:
            raise ValueError(f"column {group!r} (design.group) is not in the data")
        flags = pd.to_numeric(panel[group], errors="coerce")
        if not flags.isin([0, 1]).all():
            raise ValueError(f"column {group!r} (design.group) must be 0 or 1 in every row")
        labels = _kept_or_none([first_treated] * len(panel), flags == 1, panel.index)
        source = group
    else:
        if first_treated not in panel.columns:
            raise ValueError(f"column {first_treated!r} (design.first_treated) is not in the data")
        text = panel[first_treated].astype(object).where(panel[first_treated].notna(), "")
        words = text.astype(str).str.strip()
        labels = _kept_or_none(words, ~words.str.lower().isin(NEVER_WORDS), panel.index)
        source = first_treated
    per_unit = labels.fillna("").groupby(panel[unit].to_numpy()).nunique()
    if (per_unit > 1).any():
        shown = [str(u) for u in per_unit.index[per_unit > 1][:5]]
        raise ValueError(
            f"column {source!r}: unit(s) {shown} of {unit!r} have different first treated batches in "
            "different rows (one cohort per unit)"
        )
    return labels


def period_effect(
    panel: pd.DataFrame,
    *,
    unit: str,
    period: str,
    outcome: str,
    batch: str,
    first_treated: str,
    group: str | None = None,
    control_group: ControlGroup = "not_yet_treated",
) -> PeriodFit:
    """The effect (post period) or placebo (pre period) of ``batch`` from the panel up to it.

    Parameters
    ----------
    panel : DataFrame
        One row per unit and period, periods up to ``batch`` (later rows are ignored).
    unit, period, outcome : str
        Columns: the unit id (the cluster), the period (batch labels, which sort in time order),
        the outcome.
    batch : str
        The period estimated: the panel's last.
    first_treated, group
        As :func:`unit_cohorts`.
    control_group : {"not_yet_treated", "never_treated"}
        The comparison units of each cohort (as :func:`~assimilate.estimators.did_staggered.group_time_att`).

    Returns
    -------
    PeriodFit

    Raises
    ------
    ValueError
        Broken panel rules (a repeated unit in a period, a non-numeric outcome, a cohort treated in
        the first period, no comparison units), each naming its column.
    """
    if control_group not in CONTROL_GROUPS:
        raise ValueError(f"control_group must be one of {list(CONTROL_GROUPS)}, got {control_group!r}")
    if period not in panel.columns:
        raise ValueError(f"column {period!r} (the period) is not in the data")
    rows = panel[panel[period].astype(str) <= str(batch)]
    if rows.empty or not (rows[period].astype(str) == str(batch)).any():
        raise ValueError(f"batch {batch}: no row of the panel is in this period")
    source = first_treated if group is None else group  # the column the cohorts come from
    names = {"unit": unit, "period": period, "outcome": outcome, "cohort": source}
    frame = pd.DataFrame(
        {
            "unit": rows[unit].astype(str).to_numpy(),
            "period": rows[period].astype(str).to_numpy(),
            "outcome": rows[outcome].to_numpy(),
            "cohort": unit_cohorts(rows, unit=unit, first_treated=first_treated, group=group).to_numpy(),
        }
    )
    periods = sorted(frame["period"].unique())
    if len(periods) < 2:
        empty = np.empty(0)
        return PeriodFit(str(batch), "first", None, empty.astype(object), empty, pd.DataFrame())
    coded = _coded_panel(frame.rename(columns=names), periods, names)
    if control_group == "never_treated" and not (coded.cohort == NEVER).any():
        raise ValueError(f"batch {batch}: control never_treated, but no unit is never treated")
    t = len(periods) - 1
    cohorts = np.unique(coded.cohort[coded.treated])
    adopted = [int(g) for g in cohorts if g <= t]
    kind: PeriodKind = "post" if adopted else "pre"
    chosen = adopted if adopted else [int(g) for g in cohorts]
    cells: list[tuple[Any, ...]] = []
    skipped: list[tuple[Hashable, Hashable, str]] = []
    for g in chosen:
        base = g - 1 if kind == "post" else t - 1
        found = _cell(coded, g, t, base, control_group, "panel")
        if isinstance(found, str):
            skipped.append((_label(periods, g), periods[t], found))
        else:
            cells.append((g, t, base, *found))
    if not cells:
        raise ValueError(f"batch {batch}: no ATT(g, t) cell could be estimated: {skipped[:3]}")
    att = _group_time(coded, cells, skipped, control_group)
    keep = np.arange(len(att.estimate))
    value, psi = att._aggregate(keep)
    facts = {"period": str(batch), "placebo": kind == "pre", "cohorts": [_label(periods, g) for g in chosen]}
    effect = att._effect(keep, {"aggregation": "calendar" if kind == "post" else "placebo", **facts})
    if kind == "pre":
        effect = replace(effect, method=PLACEBO_METHOD)
    assert abs(effect.estimate - value) <= 1e-12 * max(1.0, abs(value))
    units = np.empty(coded.n_units, dtype=object)
    units[coded.unit] = frame["unit"].to_numpy()  # read_panel codes units in order of appearance
    table = pd.DataFrame(
        {
            "cohort": [_label(periods, g) for g in att.cohort],
            "period": [periods[p] for p in att.period],
            "base_period": [periods[b] for b in att.base],
            "estimate": att.estimate,
            "n_treated": att.n_treated_cell,
            "n_control": att.n_control_cell,
        }
    )
    return PeriodFit(str(batch), kind, effect, units, psi, table)


def _label(periods: Sequence[str], rank: int) -> str:
    return periods[rank] if rank < len(periods) else "later"


def _kept_or_none(values: Iterable[Any], keep: Iterable[bool], index: pd.Index) -> pd.Series:
    """``values`` where ``keep``, else None (not NaN: a missing cohort label), as an object column."""
    return pd.Series([v if k else None for v, k in zip(values, keep, strict=True)], index=index, dtype=object)


def _coded_panel(frame: pd.DataFrame, periods: list[str], names: dict[str, str]) -> Panel:
    """The checked panel with cohorts coded so that adoptions after the last period stay cohorts.

    ``frame``'s columns are the study's (``names``: role -> column), so every error names them.
    """
    last = periods[-1]
    labels = frame[names["cohort"]].to_numpy(dtype=object)
    seen = np.array([c is not None and c <= last for c in labels], dtype=bool)
    # read_panel checks the frame (one row per unit and period, a numeric outcome, a cohort
    # treated before the first period); adoptions after the last period it codes as never.
    checked = read_panel(
        frame.assign(**{names["cohort"]: _kept_or_none(labels, seen, frame.index)}),
        unit=names["unit"],
        period=names["period"],
        outcome=names["outcome"],
        first_treated=names["cohort"],
        group=None,
        sampling="panel",
    )
    later = sorted({c for c, s in zip(labels, seen, strict=True) if c is not None and not s})
    cohort = checked.cohort.copy()
    for rank, label in enumerate(later, start=len(periods)):  # after every period, in their order
        cohort[labels == label] = rank
    return replace(checked, cohort=cohort)


def _group_time(
    panel: Panel,
    cells: list[tuple[Any, ...]],
    skipped: list[tuple[Hashable, Hashable, str]],
    control: ControlGroup,
) -> GroupTimeATT:
    return group_time_from_cells(panel, cells, skipped, control_group=control, base_period="varying")


def stored_pre_trend(
    leads: pd.DataFrame,
    influence: pd.DataFrame,
    *,
    periods: Sequence[str],
    first_adoption: str,
    alpha: float = 0.05,
) -> tuple[PreTrendVerdict, EventStudy | None]:
    """The joint pre-trend test of the stored placebos, their covariance from the stored influence values.

    Parameters
    ----------
    leads : DataFrame
        One row per pre-period batch: ``partition_key``, ``estimate`` (its placebo).
    influence : DataFrame
        Stored influence rows: ``partition_key``, ``unit_id``, ``influence`` (``psi_i``, one row per unit).
    periods : sequence of str
        Every period of the panel so far, in order (event times are counted in them).
    first_adoption : str
        The first cohort's batch: a lead's event time is its rank minus the rank of the first period
        at or after it.
    alpha : float
        The test's level.

    Returns
    -------
    (PreTrendVerdict, EventStudy or None)
        :func:`~assimilate.estimators.did_diagnostics.pre_trend_test` on the leads, ``chi2``; the
        leads as an event study (None when there is none to test).

    Notes
    -----
    With ``c_ia = psi_ia / N_a`` (``N_a`` the units of period ``a``), ``Cov(a, b) = G/(G-1)
    sum_i c_ia c_ib`` over the ``G`` units of either: on a balanced panel exactly the
    unit-clustered covariance of :class:`~assimilate.estimators.did_staggered.GroupTimeATT`.
    """
    order = [str(p) for p in periods]
    chosen = leads.assign(partition_key=leads["partition_key"].astype(str)).sort_values("partition_key")
    labels = [k for k in chosen["partition_key"] if k in order]
    if not labels:
        study = None
        rule = f"joint Wald test that the leads are 0: p-value >= {alpha:g}"
        reason = "no pre-period placebo is stored: no lead to test"
        return PreTrendVerdict("pre_trends", None, alpha, rule, "undefined", reason), study
    rows = influence[influence["partition_key"].astype(str).isin(labels)]
    wide = rows.pivot_table(index="unit_id", columns="partition_key", values="influence", aggfunc="sum")
    wide = wide.reindex(columns=labels).fillna(0.0)
    counts = rows.groupby(rows["partition_key"].astype(str))["unit_id"].nunique().reindex(labels)
    contributions = wide.to_numpy(dtype=np.float64) / counts.to_numpy(dtype=np.float64)
    n_units = contributions.shape[0]
    covariance = n_units / (n_units - 1) * (contributions.T @ contributions)
    anchor = bisect.bisect_left(order, str(first_adoption))  # the first period at or after adoption
    estimates = chosen.set_index("partition_key").loc[labels, "estimate"].to_numpy(dtype=np.float64)
    study = EventStudy(
        event_times=tuple(order.index(k) - anchor for k in labels),
        estimate=estimates,
        covariance=covariance,
        df=n_units - 1,
        method=PLACEBO_METHOD,
        diagnostics=to_jsonable({"periods": labels}),
    )
    return pre_trend_test(study, alpha=alpha), study
