"""Study cadences: the named ones and any cron, their periods, and the name of each period's file.

A cadence is ``daily``, ``weekly`` (weeks start on Sunday), ``monthly``, ``yearly``, or a cron
expression (``cadence: {cron: "0 0 * * 1-5"}`` in a study file): each tick starts a period that
ends at the next tick (UTC). At most one period starts on a day, so a period is named by the date
it starts: that date (``%Y-%m-%d``) is its Dagster partition key, and its batch file is named

==========  ==================  ===========================================================
cadence     file name           the period
==========  ==================  ===========================================================
daily       ``2025-03-14.csv``  the day
weekly      ``2025-03-09.csv``  the week starting Sunday 2025-03-09
monthly     ``2025-03.csv``     March 2025
yearly      ``2025.csv``        the year 2025
cron        ``2025-01-06.csv``  the period starting at the tick on 2025-01-06
==========  ==================  ===========================================================

(``.csv`` or ``.parquet``). Period arithmetic is Dagster's own cron support, so these periods are
exactly the study's partitions.

Example
-------
>>> key_for_stem("2025-03", "monthly")
('2025-03-01', '')
>>> expected_name("2025-01-06", "0 0 * * 1")
'2025-01-06.csv'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

NAMED: dict[str, str] = {
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 0",
    "monthly": "0 0 1 * *",
    "yearly": "0 0 1 1 *",
}
KEY_FORMAT = "%Y-%m-%d"
SUFFIXES = (".csv", ".parquet")
# Before a study's batch is taken as overdue, after its period ends (a cron cadence: a quarter of the period).
DEFAULT_GRACE = {
    "daily": timedelta(hours=12),
    "weekly": timedelta(days=2),
    "monthly": timedelta(days=5),
    "yearly": timedelta(days=30),
}
# ASCII digits only: \d would also match other scripts' digits, so a look-alike name could take a period.
_FORMS = {
    "YYYY-MM-DD": r"([0-9]{4})-([0-9]{2})-([0-9]{2})",
    "YYYY-MM": r"([0-9]{4})-([0-9]{2})",
    "YYYY": r"([0-9]{4})",
}
_SINGLE = re.compile(r"[0-9]{1,2}")
RULE = (
    "must be one of 'daily', 'weekly', 'monthly', 'yearly', or a cron expression with a single minute "
    'and hour (at most one period a day), e.g. {cron: "0 0 * * 1-5"}'
)


def cadence_from_config(value: Any) -> str:
    """The cadence of a study file's ``cadence:`` value: a name, ``{cron: "..."}`` or a cron string.

    Raises
    ------
    ValueError
        With the rule, when the value is neither a named cadence nor a cron that Dagster accepts
        with at most one tick a day.
    """
    if isinstance(value, Mapping):
        if set(value) != {"cron"} or not isinstance(value["cron"], str):
            raise ValueError(
                f'a cron cadence is written {{cron: "<minute> <hour> <day> <month> <weekday>"}}; {RULE}'
            )
        value = value["cron"]
    if not isinstance(value, str):
        raise ValueError(RULE)
    text = " ".join(value.split())
    problem = cadence_problem(text)
    if problem:
        raise ValueError(problem)
    return text


@functools.lru_cache(maxsize=256)
def cadence_problem(cadence: str) -> str:
    """Why ``cadence`` is not a cadence ('' when it is)."""
    if cadence in NAMED:
        return ""
    fields = cadence.split()
    if len(fields) != 5:
        return RULE
    try:
        dg.TimeWindowPartitionsDefinition(start="2000-01-01", fmt=KEY_FORMAT, cron_schedule=cadence)
    except dg.DagsterInvalidDefinitionError:
        return f"{cadence!r} is not a cron expression Dagster accepts; {RULE}"
    if not (_SINGLE.fullmatch(fields[0]) and _SINGLE.fullmatch(fields[1])):
        return f"{cadence!r} can start several periods a day (its minute and hour must be single numbers); {RULE}"
    return ""


def check_cadence(cadence: str) -> str:
    """``cadence``, or a ValueError naming the rule."""
    problem = cadence_problem(cadence) if isinstance(cadence, str) else RULE
    if problem:
        raise ValueError(f"cadence {problem} (got {cadence!r})")
    return cadence


def cron_of(cadence: str) -> str:
    """The cron schedule whose ticks start the cadence's periods."""
    return NAMED.get(cadence, cadence)


def describe(cadence: str) -> str:
    """``monthly``, or ``cron '0 0 * * 1-5'``: how messages name a cadence."""
    return cadence if cadence in NAMED else f"cron {cadence!r}"


def name_form(cadence: str) -> str:
    """The form of a batch file's name (without suffix)."""
    return {"monthly": "YYYY-MM", "yearly": "YYYY"}.get(cadence, "YYYY-MM-DD")


@functools.lru_cache(maxsize=64)
def _windows(cadence: str) -> dg.TimeWindowPartitionsDefinition:
    # Lookups are by timestamp, so the start is only a reference point.
    return dg.TimeWindowPartitionsDefinition(
        start="2000-01-01", fmt=KEY_FORMAT, cron_schedule=cron_of(cadence)
    )


def period_of(moment: datetime, cadence: str) -> str:
    """The key of the period containing ``moment`` (UTC when naive)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return _windows(cadence).get_partition_key_for_timestamp(moment.timestamp())


def period_window(key: str, cadence: str) -> tuple[datetime, datetime]:
    """Start and end (UTC) of the period whose key is ``key``."""
    window = _windows(cadence).time_window_for_partition_key(key)
    return window.start, window.end


def next_key(key: str, cadence: str) -> str:
    """The key of the period after ``key``'s."""
    return period_of(period_window(key, cadence)[1], cadence)


def previous_key(key: str, cadence: str) -> str:
    """The key of the period before ``key``'s."""
    return period_of(period_window(key, cadence)[0] - timedelta(seconds=1), cadence)


def first_key_from(day: date, cadence: str) -> str:
    """The first period starting on or after ``day``: a study's first batch when it starts then."""
    containing = period_of(_day_end(day), cadence)
    return containing if containing >= day.isoformat() else next_key(containing, cadence)


def key_of_day(day: date, cadence: str) -> str:
    """The period containing the whole of ``day`` or its end: the last batch of a study ending then."""
    return period_of(_day_end(day), cadence)


def _day_end(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)


def expected_name(key: str, cadence: str, suffix: str = ".csv") -> str:
    """The batch file name of the period ``key`` (``2025-03.csv`` for a monthly ``2025-03-01``)."""
    return {"monthly": key[:7], "yearly": key[:4]}.get(cadence, key) + suffix


def grace_for(key: str, cadence: str, grace: timedelta | None) -> timedelta:
    """How long after its period ends a batch may land before it is overdue."""
    if grace is not None:
        return grace
    if cadence in DEFAULT_GRACE:
        return DEFAULT_GRACE[cadence]
    start, end = period_window(key, cadence)
    return (end - start) / 4


@functools.lru_cache(maxsize=64)
def periods_per_year(cadence: str) -> int:
    """How many periods start in a year (2025 for a cron): daily 365, weekly 52, monthly 12, yearly 1."""
    if cadence in ("daily", "weekly", "monthly", "yearly"):
        return {"daily": 365, "weekly": 52, "monthly": 12, "yearly": 1}[cadence]
    key, count = first_key_from(date(2025, 1, 1), cadence), 0
    while key < "2026-01-01":
        key, count = next_key(key, cadence), count + 1
    return max(1, count)


def key_for_stem(stem: str, cadence: str, suffix: str = "") -> tuple[str | None, str]:
    """The period key a file name's stem names, or None with the reason and the expected name(s)."""
    form = name_form(cadence)
    match = re.fullmatch(_FORMS[form], stem)
    if match is None:
        return (
            None,
            f"name does not match {form}{suffix} for a {describe(cadence)} study{_nearby(stem, cadence)}",
        )
    numbers = [int(g) for g in match.groups()] + [1, 1]
    try:
        day = date(numbers[0], numbers[1], numbers[2])
    except ValueError as error:
        return None, f"name {stem!r} is not a calendar date ({error})"
    key = key_of_day(day, cadence)
    if key != day.isoformat():
        return None, (
            f"{stem} is a {day:%A}, not the first day of a period of this {describe(cadence)} study"
            f"{_nearby(stem, cadence)}"
        )
    return key, ""


def _nearby(stem: str, cadence: str) -> str:
    """The expected names around a date written in any of the forms ('' for a name with no date)."""
    for pattern in _FORMS.values():
        match = re.fullmatch(pattern, stem)
        if match is None:
            continue
        numbers = [int(g) for g in match.groups()] + [1, 1]
        try:
            day = date(numbers[0], numbers[1], numbers[2])
        except ValueError:
            return ""
        containing = key_of_day(day, cadence)
        following = next_key(containing, cadence)
        return (
            f": the period containing {day.isoformat()} is named {expected_name(containing, cadence)}, "
            f"the next {expected_name(following, cadence)}"
        )
    return ""
