"""Run landed batches through Dagster in this process: sensor tick -> runs -> alerts.

The demo and the pipeline tests use this to drive the real definitions without a daemon: the same
landing sensor decides what to run, each request runs as a real Dagster run on the given instance,
and the same alert logic as the alert sensors reads each finished run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dagster as dg

from orchestration.alert_sensors import send_alerts_for_run
from orchestration.jobs import study_job_name
from orchestration.study_config import StudyConfig

# Runs driven from here log warnings and errors only; every event is still stored in the instance.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def tick_landing_sensor(
    defs: dg.Definitions, instance: dg.DagsterInstance, study: StudyConfig, cursor: str | None
) -> dg.SensorResult | dg.SkipReason:
    """Evaluate a study's landing sensor once, as the daemon would."""
    sensor = defs.resolve_sensor_def(f"{study.name}_landing_sensor")
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources)
    result = sensor(context)
    if isinstance(result, dg.SkipReason | dg.SensorResult):
        return result
    raise TypeError(f"unexpected sensor result {type(result).__name__}")


def execute_request(
    defs: dg.Definitions, instance: dg.DagsterInstance, study: StudyConfig, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    """One run of the study's job for the requested partition, then its alerts."""
    job = defs.resolve_job_def(study_job_name(study))
    tags = {**request.tags, **({"dagster/run_key": request.run_key} if request.run_key else {})}
    result = job.execute_in_process(
        run_config=QUIET,
        partition_key=request.partition_key,
        instance=instance,
        tags=tags,
        raise_on_error=False,
    )
    run = instance.get_run_by_id(result.run_id)
    if run is not None:
        send_alerts_for_run(instance, run, defs.resources["alerts"], {study.name: study.alerts})
    return result


def run_landed_batches(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    studies: list[StudyConfig],
    *,
    cursors: dict[str, str | None] | None = None,
    progress: Callable[[int], Any] | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Tick every study's landing sensor and execute what it requests, study by study."""
    cursors = cursors if cursors is not None else {}
    plan: list[tuple[StudyConfig, dg.RunRequest]] = []
    for study in studies:
        result = tick_landing_sensor(defs, instance, study, cursors.get(study.name))
        if isinstance(result, dg.SensorResult):
            cursors[study.name] = result.cursor
            plan += [(study, request) for request in result.run_requests or []]
    bar = progress(len(plan)) if progress else None
    results = []
    for study, request in plan:
        results.append(execute_request(defs, instance, study, request))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return results
