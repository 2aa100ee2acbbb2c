"""Alerts about what is (not) in a landing folder: overdue batches and files that are never read.

A period's batch is **overdue** when its file has not landed by the end of the period plus the
study's ``grace_period`` (default per cadence: daily 12 h, weekly 2 days, monthly 5 days, yearly
30 days, a cron a quarter of the period). Every period from the study's first landed batch on is
watched (gaps and the tail; before any file lands, the study's first period), so a stream that
stops is alerted, and a history that was never delivered is not alerted period by period.

A **misnamed** file (a name that maps to no period of the cadence, a date outside the study, two
files for one period, a path that leaves the folder) is never read until someone acts.

Each subject gets one onset alert and one recovery, like every alert of the project: the alert log
is the state, so a sensor that ticks every 30 s does not repeat itself. Subjects are study-level
alerts on the study's ``landing_folder``: ``file_name:<file>``, and ``batch_due:<partition>`` for a
batch that is late (``batch_due:<first>..<last>`` for the batches found overdue together, so a
backlog is one alert; it recovers when none of them is overdue any more).

Example
-------
>>> overdue = overdue_batches(study, landed={"2025-01-01"}, now=datetime(2025, 3, 9, tzinfo=UTC))  # doctest: +SKIP
>>> [o.partition_key for o in overdue]  # doctest: +SKIP
['2025-02-01']
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from assets.partitions import study_bounds, study_partitions
from resources.alerts import Alert, AlertsResource, StateKey
from resources.batch_source_scan import landed_in_source
from resources.cadence import expected_name, grace_for, period_window
from resources.landing import LandingResource
from resources.landing_files import partition_key_for_file
from resources.study import StudyConfig

FRESHNESS_SENSOR = "batch_freshness"
LANDING_ASSET = "landing_folder"  # the subject of these alerts: the folder, not an asset of the study
DUE, NAMED = "batch_due:", "file_name:"


@dataclass(frozen=True)
class Overdue:
    """A period whose batch file has not landed by its due time."""

    partition_key: str
    due_at: datetime
    file_name: str


def landed_keys(folder: Path, cadence: str) -> dict[str, str]:
    """Partition key -> a file name mapping to it (names only: a file being written has landed)."""
    if not folder.is_dir():
        return {}
    landed: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        key = None if path.name.startswith(".") else partition_key_for_file(path.name, cadence)
        if key is not None:
            landed.setdefault(key, path.name)
    return landed


def overdue_batches(study: StudyConfig, landed: Collection[str], now: datetime) -> list[Overdue]:
    """The periods from the first landed batch (or the study's first period) that are overdue at ``now``."""
    first, _ = study_bounds(study)
    since = min((k for k in landed if k >= first), default=first)
    overdue = []
    for key in study_partitions(study).get_partition_keys(current_time=now):
        if key < since or key in landed:
            continue
        due = period_window(key, study.cadence)[1] + grace_for(key, study.cadence, study.grace_period)
        if due <= now:
            overdue.append(Overdue(key, due, expected_name(key, study.cadence)))
    return overdue


def _alert(study: StudyConfig, kind: str, subject: str, partition_key: str, message: str) -> Alert:
    return Alert.create(
        study=study.name,
        kind=kind,
        check_name=subject,
        partition_key=partition_key,
        severity="WARN" if kind == "onset" else "INFO",
        value=None,
        threshold=None,
        message=message,
        scope="study",
        asset=LANDING_ASSET,
    )


def _in_onset(study: StudyConfig, prefix: str, last_kinds: Mapping[StateKey, str]) -> set[str]:
    """The subjects of ``prefix`` whose last alert was an onset (what a recovery may close)."""
    return {
        key[3]
        for key, kind in last_kinds.items()
        if kind == "onset" and key[:3] == ("study", study.name, LANDING_ASSET) and key[3].startswith(prefix)
    }


def _members(subject: str) -> tuple[str, str]:
    first, _, last = subject.removeprefix(DUE).partition("..")
    return first, last or first


def freshness_alerts(
    study: StudyConfig,
    overdue: Sequence[Overdue],
    landed: Mapping[str, str],
    last_kinds: Mapping[StateKey, str],
) -> list[Alert]:
    """One onset for the batches that became overdue together, one recovery once all of them landed.

    A batch is one subject (``batch_due:<partition>``) when it is late on its own, as on a stream
    that runs on time; batches found overdue in the same evaluation (a backlog: a new deployment,
    a stopped stream seen after a daemon outage) are one subject ``batch_due:<first>..<last>``, so
    a year of missing months is one alert, not twelve.
    """
    groups = {_members(subject): subject for subject in _in_onset(study, DUE, last_kinds)}
    late = {o.partition_key: o for o in overdue}
    covered = {k for k in late for first, last in groups if first <= k <= last}
    new = [late[k] for k in sorted(late) if k not in covered]
    alerts = []
    if new:
        head, tail = new[0], new[-1]
        subject = DUE + head.partition_key + ("" if head is tail else f"..{tail.partition_key}")
        names = ", ".join(o.file_name for o in new[:4]) + (f", ... {tail.file_name}" if len(new) > 4 else "")
        what = (
            f"batch {head.partition_key} is overdue: {head.file_name} (or .parquet) was due"
            if head is tail
            else f"{len(new)} batches are overdue: {names} (or .parquet); the first was due"
        )
        message = (
            f"{study.name}: {what} in {study.landing_folder}/ by {head.due_at:%Y-%m-%d %H:%M} UTC; "
            "the posterior has no observation for a period until its batch lands"
        )
        alerts.append(_alert(study, "onset", subject, head.partition_key, message))
    for (first, last), subject in sorted(groups.items()):
        if any(first <= k <= last for k in late):
            continue
        if first == last:
            done = f"landed as {landed[first]}" if first in landed else "is no longer expected"
            message = f"{study.name}: overdue batch {first} {done}"
        else:
            message = (
                f"{study.name}: overdue batches {first} to {last} have landed (or are no longer expected)"
            )
        alerts.append(_alert(study, "recovery", subject, first, message))
    return alerts


def misnamed_file_alerts(
    study: StudyConfig, misnamed: Mapping[str, str], last_kinds: Mapping[StateKey, str], *, next_due: str
) -> list[Alert]:
    """One onset per file left unread, one recovery when it is gone or read; ``next_due`` names a good name."""
    open_ = _in_onset(study, NAMED, last_kinds)
    folder = study.landing_folder
    alerts = [
        _alert(
            study,
            "onset",
            NAMED + name,
            "",
            f"{study.name}: file {name!r} left untouched in {folder}/: {reason}. "
            f"This study's next batch is due as {next_due}",
        )
        for name, reason in sorted(misnamed.items())
        if NAMED + name not in open_
    ]
    for subject in sorted(open_ - {NAMED + name for name in misnamed}):
        name = subject.removeprefix(NAMED)
        message = (
            f"{study.name}: file {name!r} in {folder}/ is no longer left unread (renamed, removed or read)"
        )
        alerts.append(_alert(study, "recovery", subject, "", message))
    return alerts


def build_freshness_sensor(
    studies: Sequence[StudyConfig], *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> dg.SensorDefinition:
    """The ``batch_freshness`` sensor: overdue batches of every study, alerted once, recovered once."""
    routes = {study.name: study.alerts for study in studies}

    @dg.sensor(
        name=FRESHNESS_SENSOR,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts once when a study's batch has not landed by its period's end plus grace_period.",
    )
    def batch_freshness(
        context: dg.SensorEvaluationContext, landing: LandingResource, alerts: AlertsResource
    ) -> dg.SkipReason:
        moment = now()
        router = alerts.routing(routes)
        last_kinds = router.log.last_kinds()
        lines = []
        for study in studies:
            landed = landed_keys(landing.study_folder(study), study.cadence)
            if study.source is not None:  # a Parquet dataset's partitions; a SQL source is not watched
                keys = study_partitions(study).get_partition_keys()
                in_source = landed_in_source(study, Path(landing.root), keys)
                if in_source is None:
                    lines.append(f"{study.name}: not watched (its batches come from a SQL query)")
                    continue
                landed = in_source
            overdue = overdue_batches(study, landed, moment)
            for alert in freshness_alerts(study, overdue, landed, last_kinds):
                context.log.warning(alert.message)
                router.queue(alert)  # delivered by the alert_deliveries sensor, within its budget
            names = ", ".join(o.file_name for o in overdue[:5]) + (" ..." if len(overdue) > 5 else "")
            lines.append(f"{study.name}: " + (f"{len(overdue)} overdue: {names}" if overdue else "on time"))
        return dg.SkipReason("\n".join(lines) or "no studies")

    return batch_freshness
