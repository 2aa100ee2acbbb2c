"""Landing sensors: every partition whose materialized content differs from its file gets a run.

Each tick compares the landing folder with what the instance's ``raw_batch`` materializations read
(``orchestration/reconcile.py``), not with what was requested before: a new, changed, reverted,
restored or removed file, a file that was away when its run read it, and a failed run all lead to
a run, each with a fresh run key (the daemon launches a run key once, ever). A content whose runs
keep failing is given up after a few attempts, with one alert, until its file changes. A warehouse
that is deleted or swapped (its id differs from the one the sensor knew) is alerted and rebuilt
from the landing folder: every landed batch is run again. A file no scan will read until someone
acts (misnamed, outside the study's dates) is alerted once, naming the expected names.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import dagster as dg
import duckdb

from assets.partitions import study_bounds, study_partitions
from orchestration.freshness import misnamed_file_alerts
from orchestration.instance_records import RULES_TAG, latest_materialization, run_status
from orchestration.jobs import study_job_name
from orchestration.reconcile import ReconcileState, plan
from resources.alerts import Alert, AlertRouter, AlertsResource
from resources.batch_source_scan import scan_as_landing
from resources.cadence import expected_name
from resources.landing import LandingResource
from resources.landing_files import LandingScan, partition_key_for_file, scan_landing
from resources.study import StudyConfig
from resources.warehouse import WarehouseError, WarehouseResource


def landing_sensor_name(study: StudyConfig) -> str:
    return f"{study.name}_landing_sensor"


@dataclass(frozen=True)
class LandingCursor:
    """The sensor's memory: the folder scan's, the reconciliation's, and the warehouse it knew."""

    files: dict[str, Any]
    state: ReconcileState
    warehouse_id: str | None = None

    @classmethod
    def read(cls, text: str | None) -> LandingCursor:
        """The cursor; one this version cannot read starts afresh (the instance says what landed)."""
        try:
            data = json.loads(text) if text else {}
            if "files" not in data:  # the first format: the scan's cursor alone
                return cls(dict(data), ReconcileState())
            return cls(dict(data["files"]), ReconcileState.from_dict(data), data.get("warehouse_id"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls({}, ReconcileState())

    def write(self) -> str:
        record = {"files": self.files, **self.state.to_dict(), "warehouse_id": self.warehouse_id}
        return json.dumps(record, sort_keys=True)


def warehouse_identity(warehouse: WarehouseResource) -> str | Literal["busy"] | None:
    """The warehouse's id, None when it has no file (or no write yet), "busy" while it cannot be read."""
    try:
        return warehouse.open(lock_timeout_s=5.0).identity()
    except (WarehouseError, duckdb.Error):  # locked, or unreadable now: judged at a later tick
        return "busy"


def warehouse_lost(cursor: LandingCursor, identity: str | Literal["busy"] | None) -> bool:
    """Whether the warehouse the sensor knew is gone or was replaced (its batches must be rebuilt)."""
    if identity == "busy" or cursor.warehouse_id is None:
        return False
    return identity != cursor.warehouse_id and any(s is not None for s in cursor.state.confirmed.values())


def lost_warehouse_alert(study: StudyConfig, identity: str | None, batches: int) -> Alert:
    what = "is missing" if identity is None else "was replaced"
    return Alert.create(
        study=study.name,
        kind="run_failure",
        check_name="",
        partition_key="",
        severity="ERROR",
        value=batches,
        threshold=None,
        message=(
            f"{study.name}: the warehouse {what}; its {batches} landed batches are rebuilt from the "
            "landing folder (the posterior is recomputed from them)"
        ),
        scope="study",
    )


def undecided_partitions(scan: LandingScan, study: StudyConfig) -> frozenset[str]:
    """Partitions a file maps to that the scan could not use (two files, unsafe): never withdrawn."""
    landed = {f.partition_key for f in (*scan.new_or_changed, *scan.unchanged)}
    mapped = {partition_key_for_file(name, study.cadence) for name, _ in scan.unmapped}
    return frozenset(k for k in mapped if k is not None and k not in landed)


def gave_up_alert(study: StudyConfig, partition_key: str, token: str | None, attempts: int) -> Alert:
    what = f"file {token[:12]}" if token else "the withdrawal"
    return Alert.create(
        study=study.name,
        kind="run_failure",
        check_name="",
        partition_key=partition_key,
        severity="ERROR",
        value=attempts,
        threshold=attempts,
        message=(
            f"{study.name}: batch {partition_key}: {attempts} runs for {what} did not land it; "
            "not retried until its file changes (or a run of the partition is launched by hand)"
        ),
    )


def _nothing(partition_key: str) -> str | None:
    return None


def content(sha256: str | None, rules: str) -> str | None:
    """The reconciliation's token: a file's content under a study's batch rules (None: no file)."""
    return None if sha256 is None else f"{sha256}+{rules}"


def alert_misnamed(
    context: dg.SensorEvaluationContext,
    study: StudyConfig,
    scan: LandingScan,
    router: AlertRouter,
    valid_keys: set[str],
) -> None:
    """Alert once per file no scan will read until someone acts; log the ones a later scan reads."""
    for name in scan.waiting:
        context.log.info(f"{study.name}: file {name!r} waits: {dict(scan.unmapped)[name]}")
    next_due = expected_name(max(valid_keys, default=study_bounds(study)[0]), study.cadence)
    for alert in misnamed_file_alerts(study, scan.misnamed, router.log.last_kinds(), next_due=next_due):
        context.log.warning(alert.message)
        router.queue(alert)


def build_landing_sensor(
    study: StudyConfig, partitions: dg.TimeWindowPartitionsDefinition | None = None
) -> dg.SensorDefinition:
    """The study's landing sensor over ``partitions`` (default: every period up to now)."""
    partitions = partitions or study_partitions(study)

    @dg.sensor(
        name=landing_sensor_name(study),
        job_name=study_job_name(study),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Keeps the {study.name} batches equal to its landing folder: a partition whose file "
            "differs from what was materialized gets a run (failed runs are retried)."
        ),
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext,
        landing: LandingResource,
        alerts: AlertsResource,
        warehouse: WarehouseResource,
    ) -> dg.SensorResult | dg.SkipReason:
        folder = landing.study_folder(study)
        if study.source is None and not folder.is_dir():
            # Never read as "every file was removed": a missing folder withdraws nothing.
            return dg.SkipReason(f"landing folder {study.landing_folder}/ does not exist")
        cursor = LandingCursor.read(context.cursor)
        identity = warehouse_identity(warehouse)
        rules = study.batch_rules_hash
        state, materialized = (
            cursor.state,
            lambda p: content(*latest_materialization(context.instance, study, p)),
        )
        if identity is None and not warehouse.open(lock_timeout_s=5.0).exists():
            # Whatever the instance remembers, nothing is materialized without a warehouse.
            materialized = _nothing
        if warehouse_lost(cursor, identity):
            # The instance still says what was materialized; the warehouse no longer holds it.
            batches = sum(s is not None for s in cursor.state.confirmed.values())
            alert = lost_warehouse_alert(study, identity if identity != "busy" else None, batches)
            context.log.error(alert.message)
            alerts.router(study.alerts).queue(alert)
            state, materialized = ReconcileState(), _nothing
        valid_keys = set(partitions.get_partition_keys(dynamic_partitions_store=None))
        unread: dict[str, str] = {}
        if study.source is not None:  # a Parquet dataset or a SQL query (resources/batch_sources.py)
            scan, unread = scan_as_landing(study, landing, warehouse, valid_keys)
        else:
            scan = scan_landing(
                folder,
                cadence=study.cadence,
                cursor=cursor.files,
                valid_keys=valid_keys,
                bounds=study_bounds(study),
            )
        if unread:  # neither run nor withdrawn: the next tick looks again
            first = min(unread.items())[1]
            context.log.warning(f"{study.name}: {len(unread)} batch(es) not read now; the first: {first}")
        alert_misnamed(context, study, scan, alerts.router(study.alerts), valid_keys)
        landed = {f.partition_key: f for f in (*scan.new_or_changed, *scan.unchanged)}
        result = plan(
            {p: content(f.sha256, rules) for p, f in landed.items()},
            state,
            materialized=materialized,
            run_status=lambda run_key: run_status(context.instance, run_key),
            now=time.time(),
            new_key=lambda p, token: (
                f"{study.name}:{p}:{(token or 'withdrawn')[:16]}:{uuid.uuid4().hex[:12]}"
            ),
            # A partition outside the loaded ones cannot be run (a later load of the code includes it).
            undecided=undecided_partitions(scan, study)
            | frozenset(unread)
            | frozenset(p for p in (*state.confirmed, *state.attempts) if p not in valid_keys),
        )
        requests = []
        for request in result.requests:
            context.log.info(f"{study.name}: batch {request.partition_key}: {request.reason}")
            tags = {"assimilate/attempt": str(request.attempt), RULES_TAG: rules}
            file = landed.get(request.partition_key)
            if request.content is None or file is None:
                tags["assimilate/withdrawn"] = "true"
            else:
                tags |= {"assimilate/file": file.path.name, "assimilate/sha256": file.sha256}
            requests.append(
                dg.RunRequest(run_key=request.run_key, partition_key=request.partition_key, tags=tags)
            )
        if result.gave_up:
            router = alerts.router(study.alerts)
            for partition_key, attempt in zip(result.gave_up_keys, result.gave_up, strict=True):
                alert = gave_up_alert(study, partition_key, attempt.content, attempt.number)
                context.log.error(alert.message)
                router.queue(alert)
        known = cursor.warehouse_id if identity == "busy" else identity
        next_cursor = LandingCursor(scan.next_cursor, result.state, known)
        return dg.SensorResult(run_requests=requests, cursor=next_cursor.write())

    return landing_sensor
