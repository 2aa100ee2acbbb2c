"""Run landed batches through Dagster in this process: sensor tick -> runs -> alerts.

The demo and the pipeline tests use this to drive the real definitions without a daemon: the same
landing sensor decides what to run, each request runs as a real Dagster run on the given instance,
and the same alert logic as the alert sensors reads each finished run. Like the daemon, it launches
a run key once per instance, ever, so what the daemon would drop is dropped here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from orchestration.alert_sensors import send_alerts_for_run
from orchestration.instance_records import run_status
from orchestration.jobs import study_job_name
from orchestration.sensors import landing_sensor_name
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
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    study: StudyConfig,
    request: dg.RunRequest,
    *,
    asset_selection: Sequence[dg.AssetKey] | None = None,
) -> dg.ExecuteInProcessResult:
    """One run of the study's job for the requested partition (or ``asset_selection``), then its alerts."""
    job = defs.resolve_job_def(study_job_name(study))
    tags = dict(request.tags)
    if request.run_key:
        # As the daemon tags a sensor's runs: its run-key check then skips what already ran here.
        tags |= {"dagster/run_key": request.run_key, "dagster/sensor_name": landing_sensor_name(study)}
    result = job.execute_in_process(
        run_config=QUIET,
        partition_key=request.partition_key,
        instance=instance,
        tags=tags,
        raise_on_error=False,
        asset_selection=asset_selection,
    )
    run = instance.get_run_by_id(result.run_id)
    if run is not None:
        send_alerts_for_run(instance, run, defs.resources["alerts"], {study.name: study.alerts})
    return result


def batch_and_posterior_assets(
    defs: dg.Definitions, study: StudyConfig
) -> tuple[list[dg.AssetKey], list[dg.AssetKey]]:
    """The study job's partitioned (per-batch) assets, and its unpartitioned ones (posterior, report)."""
    graph = defs.resolve_asset_graph()
    keys = sorted(defs.resolve_job_def(study_job_name(study)).asset_layer.executable_asset_keys)
    partitioned = [k for k in keys if graph.get(k).partitions_def is not None]
    return partitioned, [k for k in keys if k not in partitioned]


def run_landed_batches(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    studies: list[StudyConfig],
    *,
    cursors: dict[str, str | None] | None = None,
    progress: Callable[[int], Any] | None = None,
    backfill: bool = False,
) -> list[dg.ExecuteInProcessResult]:
    """Tick every study's landing sensor and execute what it requests, study by study.

    By default every run is the whole job, so each one ends with a posterior update. With
    ``backfill=True`` (many files landed at once, e.g. a history) each run holds only the batch
    assets of its partition, and each study's posterior and report are updated once after them,
    in one more run: the same posterior without an update (and report) per batch, which is
    about half the run time of a 1e4-row batch. That run happens whatever the batch runs did.
    """
    cursors = cursors if cursors is not None else {}
    plan: list[tuple[StudyConfig, dg.RunRequest, Sequence[dg.AssetKey] | None]] = []
    for study in studies:
        result = tick_landing_sensor(defs, instance, study, cursors.get(study.name))
        if not isinstance(result, dg.SensorResult):
            continue
        cursors[study.name] = result.cursor
        if not result.run_requests:
            continue
        batch_assets, posterior_assets = batch_and_posterior_assets(defs, study) if backfill else (None, [])
        plan += [(study, request, batch_assets) for request in result.run_requests]
        if posterior_assets:
            plan.append((study, dg.RunRequest(tags={"assimilate/backfill": "posterior"}), posterior_assets))
    bar = progress(len(plan)) if progress else None
    results = []
    for study, request, selection in plan:
        if request.run_key and run_status(instance, request.run_key) != "missing":
            # As the daemon does: a run key is launched once per instance, ever.
            continue
        results.append(execute_request(defs, instance, study, request, asset_selection=selection))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return results
