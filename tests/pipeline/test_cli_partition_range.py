"""`dagster asset materialize --partition-range` on the real definitions equals a run per batch.

The CLI runs each asset once over the range (single-run backfill policy, assets/partition_range.py);
what it records must be what three runs, one per batch, record: the warehouse, one materialization
per asset and batch with that batch's metadata, one check evaluation per check and batch with that
batch's verdict, and the posterior (updated once, after the range).
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from assets.partition_range import FIGURE_NOT_DRAWN
from checks.results import EXCLUDED_TAG
from orchestration.instance import PROJECT_ROOT, prepare_dagster_home
from resources.study import load_study
from resources.warehouse import WarehouseResource
from tests.backend_support import use_another_warehouse
from tests.pipeline.test_pipeline_returning_units import srm_batch
from tests.pipeline_support import Project, ab_batch, write_batch

STUDY = "ab_checkout"
MONTHS = ["2025-01", "2025-02", "2025-03"]
KEYS = [f"{month}-01" for month in MONTHS]
BATCH_ASSETS = ["raw_batch", "covariate_table", "propensity_model", "outcome_model", "batch_effect"]
# The posterior of a run per batch resumes from the stored path; the range's is computed once.
HOW_COMPUTED = {"recomputed_from", "steps_recomputed"}
FIGURES = ("overlap", "love_plot")  # a batch's figures (assets/estimation.py)


def land(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_batch(folder, MONTHS[0], ab_batch(0))
    write_batch(folder, MONTHS[1], srm_batch(7))  # its sample-ratio check (ERROR) fails
    write_batch(folder, MONTHS[2], ab_batch(2))


def shown(entries: dict[str, Any], data: Path) -> dict[str, Any]:
    """Metadata values, with the data folder's path (different in the two projects) taken out."""
    return {
        label: str(entry.value).replace(str(data), "<data>")
        if isinstance(entry, dg.PathMetadataValue)
        else entry.value
        for label, entry in entries.items()
    }


def figures_left_out(entries: dict[str, Any]) -> dict[str, Any]:
    """A batch's shown metadata as a range step records it for a batch before the range's last."""
    paths = {f"{figure}_path" for figure in FIGURES}
    return {k: FIGURE_NOT_DRAWN if k in FIGURES else v for k, v in entries.items() if k not in paths}


def materializations(instance: dg.DagsterInstance, asset: str) -> list[dg.EventLogRecord]:
    return list(
        instance.fetch_materializations(dg.AssetKey([STUDY, asset]), limit=1000, ascending=True).records
    )


def evaluations(instance: dg.DagsterInstance, data: Path) -> dict[tuple[str, str, str | None], list[tuple]]:
    """Every check evaluation, oldest first, by (asset, check, partition)."""
    found: dict[tuple[str, str, str | None], list[tuple]] = {}
    for run in instance.get_runs():
        for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            event = record.get_dagster_event().event_specific_data
            found.setdefault((event.asset_key.path[-1], event.check_name, event.partition), []).append(
                (
                    record.timestamp,
                    event.passed,
                    event.severity,
                    event.description,
                    shown(event.metadata, data),
                )
            )
    return {where: [e[1:] for e in sorted(evals, key=lambda e: e[0])] for where, evals in found.items()}


def check_states(instance: dg.DagsterInstance, checks: list[tuple[str, str]]) -> dict[tuple[str, str], tuple]:
    """Per (check, partition): the status Dagster shows, and whether it is for the latest materialization."""
    keys = [dg.AssetCheckKey(dg.AssetKey([STUDY, asset]), name) for asset, name in checks]
    return {
        (info.check_key.name, info.partition_key): (
            info.latest_execution_status,
            info.latest_target_materialization_storage_id == info.latest_materialization_storage_id,
        )
        for info in instance.event_log_storage.get_asset_check_partition_info(keys)
    }


def warehouse_tables(data: Path) -> dict[str, pd.DataFrame]:
    store = WarehouseResource.for_data_dir(data).open()  # the data folder's, on either backend
    names = store.execute_read(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [STUDY]
    )["table_name"]
    # The audit trail has a row per posterior update, by design one per run.
    return {name: store.read_table(STUDY, name) for name in sorted(names) if name != "audit_trail"}


def test_cli_partition_range_equals_a_run_per_batch_history(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    studies, data, home = tmp_path / "studies", tmp_path / "data", tmp_path / "home"
    studies.mkdir()
    shutil.copy(PROJECT_ROOT / "studies" / f"{STUDY}.yaml", studies)
    land(data / "landing" / STUDY)
    prepare_dagster_home(home)
    location = tmp_path / "location.py"
    location.write_text(
        "from pathlib import Path\n"
        "from orchestration.definitions import build_definitions\n"
        f"defs = build_definitions(studies_dir=Path({str(studies)!r}), data_dir=Path({str(data)!r}))\n"
    )
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-f", str(location)]
    command += ["--select", f"group:{STUDY}", "--partition-range", f"{KEYS[0]}...{KEYS[-1]}"]
    done = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ours_tables = warehouse_tables(data)
    # On PostgreSQL the reference writes to a database of its own (on DuckDB: its own file).
    use_another_warehouse(request, monkeypatch)

    reference = Project(
        data=tmp_path / "reference",
        studies=[load_study(studies / f"{STUDY}.yaml")],
        instance=dg.DagsterInstance.ephemeral(),
    )
    land(reference.landing(STUDY))
    runs = reference.tick()  # the landing sensor: one run per batch, each ending with the posterior
    assert len(runs) == 3 and all(run.success for run in runs)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.tags["dagster/asset_partition_range_end"] == KEYS[-1]
        assert run.tags[EXCLUDED_TAG] == "check_covariate_table_sample_ratio_mismatch"  # batch 2's gate
        engine = [r.message for r in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
        assert any(
            message.startswith("Executing steps in process") for message in engine
        )  # no process per step

        for asset in BATCH_ASSETS:
            ours, theirs = materializations(instance, asset), materializations(reference.instance, asset)
            assert [r.partition_key for r in ours] == [r.partition_key for r in theirs] == KEYS, asset
            for mine, other in zip(ours, theirs, strict=True):
                expected = shown(other.asset_materialization.metadata, reference.data)
                if mine.partition_key != KEYS[-1]:  # the figures are drawn for the range's last batch
                    expected = figures_left_out(expected)
                assert shown(mine.asset_materialization.metadata, data) == expected, (
                    asset,
                    mine.partition_key,
                )
        for asset in ["effect_posterior", "posterior_report"]:
            (once,) = materializations(instance, asset)  # once, after the range
            last = materializations(reference.instance, asset)[-1]
            mine, other = (
                shown(once.asset_materialization.metadata, data),
                shown(last.asset_materialization.metadata, reference.data),
            )
            assert {k: v for k, v in mine.items() if k not in HOW_COMPUTED} == {
                k: v for k, v in other.items() if k not in HOW_COMPUTED
            }, (asset, _differences(mine, other))

        ours, theirs = evaluations(instance, data), evaluations(reference.instance, reference.data)
        partitioned = sorted({(asset, check) for asset, check, partition in ours if partition is not None})
        states = check_states(instance, partitioned)
        assert len(states) == 3 * len(partitioned) and all(current for _, current in states.values())
        assert states == check_states(reference.instance, partitioned)  # what the UI shows per batch
    assert ours.keys() == theirs.keys()
    for where, evaluated in ours.items():
        if where[2] is None:  # a posterior check: once after the range, once per run in the history
            assert evaluated == theirs[where][-1:], where
        else:
            assert evaluated == theirs[where], where
    failed = sorted(where for where, evaluated in ours.items() if not evaluated[-1][0])
    assert ("covariate_table", "check_covariate_table_sample_ratio_mismatch", KEYS[1]) in failed
    assert all(partition == KEYS[1] for *_, partition in failed if partition is not None)

    their_tables = warehouse_tables(reference.data)
    assert ours_tables.keys() == their_tables.keys() and "posterior_steps" in ours_tables
    for name, table in ours_tables.items():
        pd.testing.assert_frame_equal(table, their_tables[name], check_exact=True, obj=name)


def _differences(mine: dict[str, object], other: dict[str, object]) -> str:
    """The differing metadata entries, text as a unified diff (a failure says what moved)."""
    lines = []
    for key in sorted(set(mine) | set(other)):
        a, b = mine.get(key), other.get(key)
        if a != b:
            lines += [f"{key}:"]
            lines += difflib.unified_diff(str(a).splitlines(), str(b).splitlines(), lineterm="", n=0)
    return "\n".join(lines)
