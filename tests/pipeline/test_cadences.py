"""Cadences: yearly and any cron, the file-naming rule, partitions cut after the last landed batch."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import yaml

from assets.partitions import cut_partitions, last_batches, study_partitions
from orchestration.definitions import build_definitions
from orchestration.jobs import study_job_name
from orchestration.reconcile import ReconcileState
from orchestration.runner import QUIET, tick_landing_sensor
from orchestration.sensors import LandingCursor
from resources.cadence import expected_name
from resources.landing_files import partition_key_for_file, scan_landing
from resources.study import StudyConfig, StudyConfigError, load_study
from resources.warehouse import WarehouseResource
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

MONDAYS = "0 0 * * 1"


def study(**changes: Any) -> StudyConfig:
    """The A/B example with ``changes``, validated as a study file would be."""
    data = example_study("ab_checkout").model_dump(mode="json")
    return StudyConfig.model_validate({**data, **changes})


@pytest.mark.parametrize(
    ("name", "cadence", "expected"),
    [
        ("2024.csv", "yearly", "2024-01-01"),
        ("2024.PARQUET", "yearly", "2024-01-01"),
        ("2024-01.csv", "yearly", None),
        ("2024-01-01.csv", "yearly", None),
        ("2025-01-06.csv", MONDAYS, "2025-01-06"),  # the week starting Monday 2025-01-06
        ("2025-01-07.csv", MONDAYS, None),  # a Tuesday
        ("2025-01-03.csv", "0 0 * * 1-5", "2025-01-03"),  # a Friday: its period runs to Monday
        ("2025-01-04.csv", "0 0 * * 1-5", None),
        ("2025-04-01.csv", "0 0 1 */3 *", "2025-04-01"),  # quarterly
        ("2025-05-01.csv", "0 0 1 */3 *", None),
        ("2025-01-06.csv", "30 6 * * 1", "2025-01-06"),  # a period may start at any time of its day
    ],
)
def test_yearly_and_cron_file_names_map_to_the_period_they_start(
    name: str, cadence: str, expected: str | None
) -> None:
    assert partition_key_for_file(name, cadence) == expected


@pytest.mark.parametrize("cadence", ["daily", "weekly", "monthly", "yearly", MONDAYS, "0 0 * * 1-5"])
def test_every_partition_key_has_a_file_name_that_maps_back_to_it(cadence: str) -> None:
    for key in study_partitions(study(cadence=cadence, start_date="2020-01-01")).get_partition_keys()[:40]:
        assert partition_key_for_file(expected_name(key, cadence), cadence) == key


def test_a_misnamed_file_is_told_the_expected_names_around_its_date(tmp_path: Path) -> None:
    for name in ("2025-01-07.csv", "2025-01.csv", "notes.csv", "2025-01-06.csv"):
        (tmp_path / name).write_text("x")
    scan = scan_landing(tmp_path, cadence=MONDAYS, cursor={}, settle_seconds=0)
    assert [f.partition_key for f in scan.new_or_changed] == ["2025-01-06"]
    misnamed = scan.misnamed
    assert "Tuesday" in misnamed["2025-01-07.csv"]
    assert "2025-01-06.csv" in misnamed["2025-01-07.csv"] and "2025-01-13.csv" in misnamed["2025-01-07.csv"]
    assert "YYYY-MM-DD" in misnamed["notes.csv"]
    assert "2024-12-30.csv" in misnamed["2025-01.csv"]  # the Monday week containing 2025-01-01


def test_cadence_end_date_and_grace_period_in_a_study_file(tmp_path: Path) -> None:
    data = yaml.safe_load((Path(__file__).parents[2] / "studies" / "ab_checkout.yaml").read_text())
    path = tmp_path / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            data | {"cadence": {"cron": "0 0 * * 1-5"}, "end_date": "2025-06-30", "grace_period": "1d12h"}
        )
    )
    loaded = load_study(path)
    assert (loaded.cadence, loaded.end_date, loaded.grace_period.total_seconds()) == (
        "0 0 * * 1-5",
        date(2025, 6, 30),
        36 * 3600,
    )
    assert loaded.batches_per_year == 261 and study(cadence="yearly").batches_per_year == 1
    assert loaded.batch_rules_hash == example_study("ab_checkout").batch_rules_hash  # no batch re-run
    for bad, message in [
        ({"cadence": {"cron": "*/15 * * * *"}}, "cadence: '*/15 * * * *' can start several periods a day"),
        ({"cadence": {"cron": "0 0 * * 9"}}, "cadence: '0 0 * * 9' is not a cron expression Dagster accepts"),
        ({"end_date": "2024-12-31"}, "end_date: must be on or after start_date 2025-01-01"),
        ({"grace_period": "soon"}, "grace_period: must be a duration"),
    ]:
        path.write_text(yaml.safe_dump(data | bad))
        with pytest.raises(StudyConfigError) as raised:
            load_study(path)
        assert any(line.startswith(f"{path}: {message}") for line in str(raised.value).splitlines()), (
            raised.value
        )


def test_partitions_end_one_period_after_the_last_landed_batch_or_at_the_end_date() -> None:
    monthly = study(start_date="2024-01-01")
    assert cut_partitions(monthly, None).get_partition_keys() == ["2024-01-01"]
    assert cut_partitions(monthly, "2024-03-01").get_partition_keys()[-2:] == ["2024-03-01", "2024-04-01"]
    ended = study(start_date="2024-01-01", end_date="2024-03-15")
    assert cut_partitions(ended, "2024-03-01").get_partition_keys()[-1] == "2024-03-01"
    assert study_partitions(ended).get_partition_keys()[-1] == "2024-03-01"
    # Never beyond the period running now: a batch for next year's periods waits for them to begin.
    now = study_partitions(monthly).get_partition_keys()[-1]
    assert cut_partitions(monthly, "2099-01-01").get_partition_keys()[-1] == now


def test_the_cut_reads_the_landing_folder_and_the_batches_the_warehouse_still_holds(tmp_path: Path) -> None:
    studies = [example_study("ab_checkout")]
    landing = tmp_path / "landing"
    warehouse = WarehouseResource.for_data_dir(tmp_path).get()  # the pipeline's, on either backend
    folder = landing / "ab_checkout"
    folder.mkdir(parents=True)
    assert last_batches(studies, landing, warehouse) == {"ab_checkout": None}
    for name in (
        "2025-01.csv",
        "2027-13.csv",
        "2024-12.csv",
        ".2025-06.csv.tmp",
    ):  # junk, before start, hidden
        (folder / name).write_text("x")
    assert last_batches(studies, landing, warehouse) == {"ab_checkout": "2025-01-01"}
    # A batch whose file was removed stays a partition while the warehouse holds it: the run that
    # withdraws it must be a run of a valid partition.
    row = pd.DataFrame(
        [{"file_name": "2025-03.csv", "sha256": "ab", "size_bytes": 1, "n_rows": 1, "columns_json": "[]"}]
    )
    warehouse.replace_partition_tables("ab_checkout", "2025-03-01", {"raw_files": row})
    assert last_batches(studies, landing, warehouse) == {"ab_checkout": "2025-03-01"}
    # A DuckDB file named by its path that cannot be read: the folder alone decides.
    (tmp_path / "broken.duckdb").write_text("not a database")
    assert last_batches(studies, landing, tmp_path / "broken.duckdb") == {"ab_checkout": "2025-01-01"}


def _raw_keys(project: Project, name: str) -> list[str]:
    partitions = project.defs.resolve_assets_def(dg.AssetKey([name, "raw_batch"])).partitions_def
    assert partitions is not None
    return partitions.get_partition_keys()


def test_yearly_and_cron_studies_end_to_end(tmp_path: Path) -> None:
    yearly = study(name="yearly_ab", landing_folder="yearly_ab", cadence="yearly", start_date="2022-01-01")
    weekly = study(
        name="monday_ab", landing_folder="monday_ab", cadence={"cron": MONDAYS}, start_date="2025-01-06"
    )
    project = Project(
        data=tmp_path / "data", studies=[yearly, weekly], instance=dg.DagsterInstance.ephemeral()
    )
    for seed, year in enumerate(("2022", "2023")):
        write_batch(project.landing("yearly_ab"), year, ab_batch(seed))
    for seed, monday in enumerate(("2025-01-06", "2025-01-13")):
        write_batch(project.landing("monday_ab"), monday, ab_batch(10 + seed))
    assert _raw_keys(project, "yearly_ab") == ["2022-01-01", "2023-01-01", "2024-01-01"]
    assert _raw_keys(project, "monday_ab") == ["2025-01-06", "2025-01-13", "2025-01-20"]

    runs = project.tick()
    assert len(runs) == 4 and all(r.success for r in runs)
    for name, batches in (
        ("yearly_ab", ["2022-01-01", "2023-01-01"]),
        ("monday_ab", ["2025-01-06", "2025-01-13"]),
    ):
        steps = project.steps(name)
        assert steps["batch"].tolist() == batches
        assert not steps["excluded"].any() and steps["posterior_sd"].iloc[-1] < steps["posterior_sd"].iloc[0]

    # The next expected batch is a partition, but one that never had a file cannot be materialized.
    job = project.defs.resolve_job_def(study_job_name(weekly))
    result = job.execute_in_process(
        partition_key="2025-01-20", instance=project.instance, raise_on_error=False, run_config=QUIET
    )
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error is not None
    assert (
        "monday_ab" in error.message
        and "2025-01-20" in error.message
        and "expected 2025-01-20.csv" in error.message
    )
    assert project.steps("monday_ab")["batch"].tolist() == ["2025-01-06", "2025-01-13"]
    assert project.tick() == [], "the sensor requests no run for a partition without a file"


def test_the_landing_sensor_never_requests_a_partition_outside_the_loaded_ones(tmp_path: Path) -> None:
    """A batch whose withdrawal is due but that a load of the code no longer has waits for a load that has it."""
    ab = example_study("ab_checkout")
    data = tmp_path / "data"
    (data / "landing" / "ab_checkout").mkdir(parents=True)
    row = pd.DataFrame(
        [{"file_name": "2025-01.csv", "sha256": "aa", "size_bytes": 1, "n_rows": 1, "columns_json": "[]"}]
    )
    WarehouseResource.for_data_dir(data).get().replace_partition_tables(
        "ab_checkout", "2025-01-01", {"raw_files": row}
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=["ab_checkout", "raw_batch"], partition="2025-03-01", metadata={"sha256": "cc"}
        )
    )
    cursor = LandingCursor({}, ReconcileState(confirmed={"2025-03-01": "cc+"})).write()
    defs = build_definitions(studies=[ab], data_dir=data)  # cut after January: March is not a partition
    result = tick_landing_sensor(defs, instance, ab, cursor)
    assert isinstance(result, dg.SensorResult) and result.run_requests == []
    assert LandingCursor.read(result.cursor).state.confirmed == {"2025-03-01": "cc+"}  # kept for a later load
