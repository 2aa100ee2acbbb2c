"""The long frame of a difference-in-differences design, checked: units, ordered periods, cohorts.

Every row is one unit in one period. Periods are any ordered values (integers, dates, text) and
are coded by their rank ``0 .. T-1``. A unit's cohort is the rank of the first period in which it
is treated (the first period at or after its ``first_treated`` value); never-treated units (a
missing or infinite ``first_treated``, or one after the last period) get ``NEVER``, larger than
every period, so "not yet treated at period ``s``" is ``cohort > s`` for every unit.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from assimilate._validation import check_choice

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
NEVER = int(np.iinfo(np.int64).max)
Sampling = Literal["panel", "repeated_cross_section"]
SAMPLINGS: tuple[Sampling, ...] = ("panel", "repeated_cross_section")


@dataclass(frozen=True)
class Panel:
    """Row-wise codes of a checked frame (all arrays of length ``n`` unless said otherwise)."""

    unit: IntArray  # unit codes 0 .. N-1 (the clusters)
    period: IntArray  # period ranks 0 .. T-1
    cohort: IntArray  # rank of the first treated period, NEVER for never treated
    outcome: FloatArray
    periods: pd.Index  # the T periods in order
    unit_column: str

    @property
    def n_units(self) -> int:
        """``N``: the units (clusters)."""
        return int(self.unit.max()) + 1

    @property
    def n_periods(self) -> int:
        """``T``: the periods."""
        return len(self.periods)

    @property
    def treated(self) -> NDArray[np.bool_]:
        """Rows of units treated at some period of the sample."""
        return np.asarray(self.cohort != NEVER, dtype=np.bool_)

    def unit_cohorts(self) -> IntArray:
        """Each unit's cohort (length ``N``)."""
        cohorts = np.empty(self.n_units, dtype=np.int64)
        cohorts[self.unit] = self.cohort
        return cohorts

    def event_time(self) -> IntArray:
        """``t - g`` on rows of treated units; 0 on the others (mask them with :attr:`treated`)."""
        return np.where(self.treated, self.period - np.where(self.treated, self.cohort, 0), 0)


def read_panel(
    data: pd.DataFrame,
    *,
    unit: str,
    period: str,
    outcome: str,
    first_treated: Hashable,
    group: str | None,
    sampling: Sampling,
) -> Panel:
    """Check the frame and code it; every broken rule raises a ``ValueError`` naming column and rule."""
    check_choice("sampling", sampling, SAMPLINGS)
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if data.empty:
        raise ValueError("data is empty: no unit-period rows")
    is_column = isinstance(first_treated, str) and first_treated in data.columns
    if is_column and group is not None:
        raise ValueError(
            f"first_treated={first_treated!r} is a column (each unit's first treated period): "
            "group= is for a common adoption period only; give one or the other"
        )
    if not is_column and group is None:
        raise ValueError(
            f"first_treated={first_treated!r} is not a column of the data: a common adoption period "
            f"needs group=<0/1 column of the treated units> (columns: {list(data.columns)})"
        )
    named = [unit, period, outcome, *([first_treated] if is_column else [group])]
    missing = [c for c in named if c not in data.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not in the data (columns: {list(data.columns)})")
    if len(set(named)) < len(named):
        raise ValueError(f"one column named in two roles among {named}")
    for column in (unit, period):
        if data[column].isna().any():
            raise ValueError(f"column {column!r}: {int(data[column].isna().sum())} missing value(s)")
    unit_codes, _ = pd.factorize(data[unit])
    try:
        periods = pd.Index(pd.unique(data[period])).sort_values()
    except TypeError as error:
        raise ValueError(f"period column {period!r}: values that cannot be ordered ({error})") from error
    if len(periods) < 2:
        raise ValueError(f"period column {period!r}: a difference in differences needs 2 periods or more")
    period_codes = np.asarray(periods.get_indexer(pd.Index(data[period])), dtype=np.int64)
    n_units = int(unit_codes.max()) + 1
    repeated = len(data) - len(np.unique(unit_codes.astype(np.int64) * len(periods) + period_codes))
    if repeated:
        raise ValueError(
            f"columns {unit!r} and {period!r}: {repeated} unit(s) appear more than once in one period "
            "(one row per unit and period)"
        )
    if sampling == "panel" and len(data) == n_units:
        raise ValueError(
            f"column {unit!r}: no unit is seen in two periods, so this is not a panel; "
            "use sampling='repeated_cross_section'"
        )
    if is_column:
        cohort = _cohort_ranks(data[first_treated], periods, str(first_treated), period)
    else:
        cohort = _common_cohort(data[str(group)], first_treated, periods, str(group), period)
    stored = np.empty(n_units, dtype=np.int64)
    stored[unit_codes] = cohort  # one of each unit's values; any row that differs breaks the rule
    differing = np.unique(unit_codes[stored[unit_codes] != cohort])
    if differing.size:
        source = first_treated if is_column else group
        raise ValueError(
            f"column {source!r}: {differing.size} unit(s) have different first treated "
            f"periods in different rows (one cohort per unit of {unit!r})"
        )
    if not (cohort == NEVER).any() and len(np.unique(cohort)) < 2:
        raise ValueError("every unit is in one cohort: no comparison units (never or not yet treated)")
    return Panel(
        unit=np.asarray(unit_codes, dtype=np.int64),
        period=period_codes,
        cohort=cohort,
        outcome=_outcome(data[outcome], outcome),
        periods=periods,
        unit_column=unit,
    )


def _outcome(series: pd.Series, column: str) -> FloatArray:
    try:
        values = series.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"outcome column {column!r} must be numeric: {error}") from error
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"outcome column {column!r}: {int(bad.sum())} missing or non-finite value(s)")
    return values


def _cohort_ranks(values: pd.Series, periods: pd.Index, column: str, period: str) -> IntArray:
    """Rank of the first period at or after each value; NEVER when missing, infinite or after the last."""
    if pd.api.types.is_datetime64_any_dtype(periods.dtype) and not pd.api.types.is_datetime64_any_dtype(
        values.dtype
    ):
        try:
            values = pd.Series(pd.to_datetime(values), index=values.index)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"first_treated column {column!r}: not dates like {period!r}: {error}"
            ) from error
    never = values.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(values.dtype):
        never |= np.isposinf(values.to_numpy(dtype=np.float64, na_value=np.nan))
    ranks = np.full(len(values), NEVER, dtype=np.int64)
    try:
        found = periods.searchsorted(values[~never].to_numpy(), side="left")
    except TypeError as error:
        raise ValueError(
            f"first_treated column {column!r}: values cannot be compared with the periods of {period!r} "
            f"({error})"
        ) from error
    found = np.asarray(found, dtype=np.int64)
    if (found == 0).any():
        raise ValueError(
            f"first_treated column {column!r}: {int((found == 0).sum())} row(s) of units treated at or "
            f"before the first period ({periods[0]}) have no untreated period to compare; write "
            "never-treated units as missing or inf (not 0)"
        )
    ranks[~never] = np.where(found >= len(periods), NEVER, found)
    return ranks


def _common_cohort(
    group: pd.Series, first_treated: Hashable, periods: pd.Index, column: str, period: str
) -> IntArray:
    """One adoption period for the rows with ``group == 1``; NEVER for ``group == 0``."""
    try:
        flags = group.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        flags = np.full(len(group), np.nan)
    if not np.isin(flags, (0.0, 1.0)).all():
        shown = sorted({str(v) for v in group.unique()})[:5]
        raise ValueError(f"group column {column!r} must be 0/1 (1: the treated group), got values {shown}")
    rank = _cohort_ranks(pd.Series([first_treated]), periods, "first_treated", period)[0]
    if rank == NEVER:
        raise ValueError(f"first_treated={first_treated!r} is after the last period of {period!r}")
    return np.where(flags == 1.0, rank, NEVER).astype(np.int64)
