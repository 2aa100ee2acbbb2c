"""Run landed batches through Dagster in this process: sensor tick -> runs -> alerts.

The demo and the pipeline tests use this to drive the real definitions without a daemon: the same
landing sensor decides what to run, each request runs as a real Dagster run on the given instance,
and the same alert logic as the alert sensors reads each finished run. Like the daemon, it launches
a run key once per instance, ever, so what the daemon would drop is dropped here too.

With ``backfill=True`` (a history landed at once) the sensor's requests for consecutive batches
become one run over their range (every asset has a single-run backfill policy: each runs once over
the range and records each batch as its own run would, assets/partition_range.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from orchestration.alert_sensors import send_alerts_for_run
from orchestration.batch_ranges import batch_ranges, launched_as, range_request
from orchestration.instance_records import run_status
from orchestration.jobs import study_job_name
from orchestration.sensors import landing_sensor_name
from resources.guardrails import derive_guardrail_studies
from resources.study import StudyConfig
from resources.warehouse import lease_connection, warehouse_of

# Runs driven from here log warnings and errors only; every event is still stored in the instance.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
Planned = tuple[StudyConfig, dg.RunRequest, Sequence[dg.AssetKey] | None]


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
    """One run of the study's job for the requested partition or range (or ``asset_selection``), then its alerts."""
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
        routes = {s.name: s.alerts for s in (study, *derive_guardrail_studies(study))}  # its guardrails' too
        send_alerts_for_run(instance, run, defs.resources["alerts"], routes)
    return result


def batch_and_posterior_assets(
    defs: dg.Definitions, study: StudyConfig
) -> tuple[list[dg.AssetKey], list[dg.AssetKey]]:
    """The study job's partitioned (per-batch) assets, and its unpartitioned ones (posterior, report)."""
    graph = defs.resolve_asset_graph()
    keys = sorted(defs.resolve_job_def(study_job_name(study)).asset_layer.executable_asset_keys)
    partitioned = [k for k in keys if graph.get(k).partitions_def is not None]
    return partitioned, [k for k in keys if k not in partitioned]


def _plan_backfill(
    defs: dg.Definitions, study: StudyConfig, requests: Sequence[dg.RunRequest], max_batches: int | None
) -> tuple[list[Planned], dict[str, str]]:
    batch_assets, posterior_assets = batch_and_posterior_assets(defs, study)
    partitions = defs.resolve_job_def(study_job_name(study)).partitions_def
    keys = partitions.get_partition_keys() if partitions is not None else []
    planned: list[Planned] = []
    launched: dict[str, str] = {}
    for group in batch_ranges(requests, keys, max_batches=max_batches):
        request = range_request(study, group)
        planned.append((study, request, batch_assets))
        launched |= {str(r.partition_key): str(request.run_key) for r in group}
    # The last run also updates the posterior and its report, once, after every batch.
    last_study, last, selection = planned[-1]
    planned[-1] = (last_study, last, [*(selection or []), *posterior_assets])
    return planned, launched


def run_landed_batches(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    studies: list[StudyConfig],
    *,
    cursors: dict[str, str | None] | None = None,
    progress: Callable[[int], Any] | None = None,
    backfill: bool = False,
    max_batches: int | None = None,
) -> list[dg.ExecuteInProcessResult]:
    """Tick every study's landing sensor and execute what it requests, study by study.

    By default every request is a run of the whole job for its batch, so each one ends with a
    posterior update. With ``backfill=True`` (many files landed at once, e.g. a history) the
    requests for consecutive batches run as one run over their range (at most ``max_batches``
    each), and the study's last run also updates its posterior and report, once: the same
    warehouse and posterior as a run per batch. If that run fails before the posterior, a
    posterior-only run follows, so the posterior always reflects what landed.
    """
    # One warehouse connection for the ticks and the runs of this process (each open costs ~20 ms),
    # let go when idle or when another process waits (resources/warehouse_lease.py).
    with lease_connection(warehouse_of((defs.resources or {}).get("warehouse"))):
        return _run_landed_batches(defs, instance, studies, cursors, progress, backfill, max_batches)


def _run_landed_batches(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    studies: list[StudyConfig],
    cursors: dict[str, str | None] | None,
    progress: Callable[[int], Any] | None,
    backfill: bool,
    max_batches: int | None,
) -> list[dg.ExecuteInProcessResult]:
    cursors = cursors if cursors is not None else {}
    plan: list[Planned] = []
    for study in studies:
        result = tick_landing_sensor(defs, instance, study, cursors.get(study.name))
        if not isinstance(result, dg.SensorResult):
            continue
        cursors[study.name] = result.cursor
        # As the daemon does: a run key is launched once per instance, ever.
        requests = [
            r
            for r in result.run_requests or []
            if not r.run_key or run_status(instance, r.run_key) == "missing"
        ]
        if not requests:
            continue
        if backfill:
            planned, launched = _plan_backfill(defs, study, requests, max_batches)
            cursors[study.name] = launched_as(result.cursor, launched)
            plan += planned
        else:
            plan += [(study, request, None) for request in requests]
    bar = progress(len(plan)) if progress else None
    results: list[dg.ExecuteInProcessResult] = []
    for study, request, selection in plan:
        if request.run_key and run_status(instance, request.run_key) != "missing":
            continue
        done = execute_request(defs, instance, study, request, asset_selection=selection)
        results.append(done)
        posterior = _posterior_missed(done, selection, defs, study) if backfill else []
        if posterior:
            alone = dg.RunRequest(tags={"assimilate/backfill": "posterior"})
            results.append(execute_request(defs, instance, study, alone, asset_selection=posterior))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return results


def _posterior_missed(
    result: dg.ExecuteInProcessResult,
    selection: Sequence[dg.AssetKey] | None,
    defs: dg.Definitions,
    study: StudyConfig,
) -> list[dg.AssetKey]:
    """The posterior assets a failed run was to update and did not (a batch step failed before them)."""
    if result.success:
        return []
    done = {event.asset_key for event in result.get_asset_materialization_events()}
    posterior = batch_and_posterior_assets(defs, study)[1]
    return posterior if any(k in (selection or []) and k not in done for k in posterior) else []
