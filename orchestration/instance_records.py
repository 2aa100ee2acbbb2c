"""What the Dagster instance knows about a study's batches: the content each partition read, run statuses."""

from __future__ import annotations

import dagster as dg

from assets.common import key
from orchestration.reconcile import RunStatus
from resources.study import StudyConfig

_FAILED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


RULES_TAG = "assimilate/rules"


def latest_materialization(
    instance: dg.DagsterInstance, study: StudyConfig, partition_key: str
) -> tuple[str | None, str]:
    """What the newest raw_batch materialization of a partition read, and the batch rules of its run.

    The content is its sha256 (None: withdrawn, or never materialized); the rules are the run's
    ``assimilate/rules`` tag ("" when the run was launched without it, e.g. by hand).
    """
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key(study, "raw_batch"), asset_partitions=[partition_key]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None, ""
    value = records[0].asset_materialization.metadata.get("sha256")
    run = instance.get_run_by_id(records[0].run_id)
    rules = "" if run is None else run.tags.get(RULES_TAG, "")
    return (None if value is None else str(value.value)), rules


def latest_materialized_sha256(
    instance: dg.DagsterInstance, study: StudyConfig, partition_key: str
) -> str | None:
    """The content hash the newest raw_batch materialization of a partition read (None: withdrawn or never)."""
    return latest_materialization(instance, study, partition_key)[0]


def run_status(instance: dg.DagsterInstance, run_key: str) -> RunStatus:
    """The status of the newest run launched with ``run_key`` ("missing" when there is none yet)."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": run_key}), limit=1)
    if not runs:
        return "missing"
    status = runs[0].status
    if status == dg.DagsterRunStatus.SUCCESS:
        return "success"
    return "failure" if status in _FAILED else "in_progress"
