"""The in-process runner's backfill: runs over ranges of batches, equal to a run per batch.

A history landed at once runs as one run per range of consecutive batches (each asset once over
the range), the last also updating the posterior; what it records must be what a run per batch
records: the warehouse, each batch's materializations and check verdicts, the posterior, the
alerts. The sensor's next tick then confirms every batch (nothing pending, nothing re-run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from orchestration.batch_ranges import RANGE_START_TAG, batch_ranges
from orchestration.runner import run_landed_batches
from orchestration.sensors import LandingCursor
from tests.backend_support import use_another_warehouse
from tests.pipeline.test_cli_partition_range import (
    BATCH_ASSETS,
    HOW_COMPUTED,
    STUDY,
    check_states,
    evaluations,
    figures_left_out,
    materializations,
    shown,
    warehouse_tables,
)
from tests.pipeline.test_pipeline_returning_units import srm_batch
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

MONTHS = ["2025-01", "2025-02", "2025-03", "2025-04", "2025-06"]  # no file for May
KEYS = [f"{month}-01" for month in MONTHS]


def request(key: str, *, attempt: int = 1, withdrawn: bool = False) -> dg.RunRequest:
    tags = {"assimilate/attempt": str(attempt)} | ({"assimilate/withdrawn": "true"} if withdrawn else {})
    return dg.RunRequest(run_key=f"k{key}", partition_key=key, tags=tags)


def test_ranges_are_consecutive_requested_batches_and_withdrawals_and_retries_run_alone() -> None:
    keys = [f"2025-{m:02d}-01" for m in range(1, 13)]
    requests = [request(keys[i]) for i in (4, 0, 1, 2, 3, 6, 7, 10)]
    requests += [request(keys[8], withdrawn=True), request(keys[9], attempt=2)]
    groups = batch_ranges(requests, keys, max_batches=3)
    assert [[str(r.partition_key)[5:7] for r in group] for group in groups] == [
        ["01", "02", "03"],
        ["04", "05"],  # bounded at three
        ["07", "08"],  # June has no request: a new range
        ["09"],  # a withdrawal, alone
        ["10"],  # a retry, alone
        ["11"],
    ]
    assert len(batch_ranges(requests, keys)[0]) == 5
    with pytest.raises(ValueError, match="max_batches"):
        batch_ranges(requests, keys, max_batches=0)


def land(project: Project) -> None:
    folder = project.landing(STUDY)
    for seed, month in enumerate(MONTHS):
        # April's sample-ratio check (an ERROR gate) fails: the batch is kept out either way.
        write_batch(folder, month, srm_batch(7) if month == "2025-04" else ab_batch(seed))


def project(tmp_path: Path, name: str) -> Project:
    made = Project(
        data=tmp_path / name, studies=[example_study(STUDY)], instance=dg.DagsterInstance.ephemeral()
    )
    land(made)
    return made


def batch_alerts(project: Project) -> list[tuple[str, str, str, str]]:
    return sorted(
        (a.kind, a.partition_key, a.check_name, a.message) for a in project.alerts() if a.scope == "batch"
    )


def test_a_backfill_runs_ranges_and_equals_a_run_per_batch_history(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = project(tmp_path, "reference")
    history = reference.tick()
    assert len(history) == len(MONTHS) and all(run.success for run in history)
    reference_tables = warehouse_tables(reference.data)
    use_another_warehouse(request, monkeypatch)  # on PostgreSQL, a database of its own

    ranged = project(tmp_path, "ranged")
    runs = backfill(ranged)
    assert [r.success for r in runs] == [True, True]
    first, last = (ranged.instance.get_run_by_id(r.run_id) for r in runs)
    assert first is not None and last is not None
    assert (first.tags[RANGE_START_TAG], first.tags["dagster/asset_partition_range_end"]) == (
        KEYS[0],
        KEYS[3],
    )
    assert last.tags["dagster/partition"] == KEYS[4]  # after the gap: a range of one is a plain run
    audit = ranged.warehouse.read_table(STUDY, "audit_trail")
    assert audit["run_id"].tolist() == [last.run_id]  # one posterior update, after every batch

    for asset in BATCH_ASSETS:
        ours, theirs = materializations(ranged.instance, asset), materializations(reference.instance, asset)
        assert [r.partition_key for r in ours] == [r.partition_key for r in theirs] == KEYS, asset
        for mine, other in zip(ours, theirs, strict=True):
            expected = shown(other.asset_materialization.metadata, reference.data)
            if mine.partition_key not in (KEYS[3], KEYS[4]):  # figures: drawn for a range's last batch
                expected = figures_left_out(expected)
            assert shown(mine.asset_materialization.metadata, ranged.data) == expected, (
                asset,
                mine.partition_key,
            )
    for asset in ["effect_posterior", "posterior_report"]:
        (once,) = materializations(ranged.instance, asset)
        final = materializations(reference.instance, asset)[-1]
        mine = shown(once.asset_materialization.metadata, ranged.data)
        other = shown(final.asset_materialization.metadata, reference.data)
        assert {k: v for k, v in mine.items() if k not in HOW_COMPUTED} == {
            k: v for k, v in other.items() if k not in HOW_COMPUTED
        }, asset

    ours, theirs = evaluations(ranged.instance, ranged.data), evaluations(reference.instance, reference.data)
    assert ours.keys() == theirs.keys()
    for where, evaluated in ours.items():
        # A posterior check runs once after the backfill, once per run in the history.
        assert evaluated == (theirs[where][-1:] if where[2] is None else theirs[where]), where
    partitioned = sorted({(asset, check) for asset, check, partition in ours if partition is not None})
    assert check_states(ranged.instance, partitioned) == check_states(reference.instance, partitioned)
    assert batch_alerts(ranged) == batch_alerts(reference) != []  # April's gate, alerted once

    tables = warehouse_tables(ranged.data)
    assert tables.keys() == reference_tables.keys() and "posterior_steps" in tables
    for name, table in tables.items():
        pd.testing.assert_frame_equal(table, reference_tables[name], check_exact=True, obj=name)
    assert ranged.steps(STUDY)["excluded"].tolist() == [False, False, False, True, True, False]

    # The next tick confirms every batch at once: its range run is the attempt's run.
    assert backfill(ranged) == []
    state = LandingCursor.read(ranged.cursors[STUDY]).state
    assert sorted(state.confirmed) == KEYS and state.attempts == {}

    # A range whose batch fails (July's file is taken away after the tick): the posterior is
    # updated anyway, and the next tick retries the other batch alone.
    write_batch(ranged.landing(STUDY), "2025-07", ab_batch(7))
    write_batch(ranged.landing(STUDY), "2025-08", ab_batch(8))
    failed, posterior = backfill(ranged, progress=lambda _: (ranged.landing(STUDY) / "2025-07.csv").unlink())
    assert (failed.success, posterior.success) == (False, True)
    audited = set(ranged.warehouse.read_table(STUDY, "audit_trail")["run_id"])
    assert audited == {last.run_id, posterior.run_id}
    (alert,) = [a for a in ranged.alerts() if a.kind == "run_failure"]
    assert f"batches 2025-07-01...2025-08-01 run {failed.run_id[:8]}" in alert.message
    (retry,) = backfill(ranged)
    run = ranged.instance.get_run_by_id(retry.run_id)
    assert retry.success and run is not None
    assert (run.tags["dagster/partition"], run.tags["assimilate/attempt"]) == ("2025-08-01", "2")
    steps = ranged.steps(STUDY).set_index("batch")
    assert steps.loc["2025-08-01", "excluded"] == False and steps.loc["2025-07-01", "excluded"] == True  # noqa: E712


def backfill(project: Project, **options: Any) -> list[dg.ExecuteInProcessResult]:
    return run_landed_batches(
        project.defs, project.instance, project.studies, cursors=project.cursors, backfill=True, **options
    )
