"""Batches from a partitioned Parquet dataset or a SQL query give the posterior a landing folder gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from assimilate.simulate import simulate_ab_stream
from orchestration.runner import execute_request
from resources.batch_source_config import DatabaseUrl, ParquetDatasetSource, SqlSource
from resources.study import StudyConfig
from tests.pipeline_support import Project, example_study

MONTHS = ["2025-01", "2025-02", "2025-03"]
KEYS = [f"{m}-01" for m in MONTHS]
STEP_NUMBERS = ["estimate", "std_error", "posterior_mean", "posterior_sd", "ci_lower", "ci_upper"]


def _batches() -> list[pd.DataFrame]:
    """The checkout example's first three months (scripts/example_batches.py draws the same)."""
    stream = simulate_ab_stream(rng=np.random.default_rng(20250101), n_batches=3)
    return [batch.reset_index(drop=True) for batch in stream.batches]


def _project(tmp_path: Path, study: StudyConfig) -> Project:
    return Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())


def _steps(project: Project) -> pd.DataFrame:
    steps = project.steps("ab_checkout").sort_values("batch").reset_index(drop=True)
    return steps[["batch", "excluded", *STEP_NUMBERS]]


@pytest.fixture(scope="module")
def landing_steps(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The same rows landed as one Parquet file a month: the posterior every source must give."""
    project = _project(tmp_path_factory.mktemp("landing"), example_study("ab_checkout"))
    for month, batch in zip(MONTHS, _batches(), strict=True):
        batch.to_parquet(project.landing("ab_checkout") / f"{month}.parquet", index=False)
    project.tick()
    steps = _steps(project)
    assert list(steps["batch"]) == KEYS and not steps["excluded"].any()
    return steps


def _same_posterior(project: Project, landing_steps: pd.DataFrame) -> None:
    steps = _steps(project)
    assert list(steps["batch"]) == KEYS
    assert list(steps["excluded"]) == list(landing_steps["excluded"])
    np.testing.assert_allclose(steps[STEP_NUMBERS], landing_steps[STEP_NUMBERS], rtol=0, atol=1e-12)


def _ran(results: list[dg.ExecuteInProcessResult]) -> list[str]:
    return sorted(str(r.dagster_run.tags.get("dagster/partition")) for r in results)


def test_a_parquet_dataset_gives_the_landing_posterior_and_a_redelivered_partition_reruns(
    tmp_path: Path, landing_steps: pd.DataFrame
) -> None:
    source = ParquetDatasetSource(kind="parquet_dataset", path="events/day={batch}/*.parquet")
    project = _project(tmp_path, example_study("ab_checkout", source=source))
    root = project.data / "landing" / "events"
    for key, batch in zip(KEYS, _batches(), strict=True):
        folder = root / f"day={key}"
        folder.mkdir(parents=True)
        half = len(batch) // 2  # two files a partition: rows concatenated in file-name order
        batch.iloc[:half].to_parquet(folder / "part-0.parquet", index=False)
        batch.iloc[half:].to_parquet(folder / "part-1.parquet", index=False)
    (root / f"day={KEYS[0]}" / ".part-2.parquet.tmp").write_bytes(b"half-written")  # hidden: not read
    assert _ran(project.tick()) == KEYS
    _same_posterior(project, landing_steps)
    files = project.warehouse.read_table("ab_checkout", "raw_files").sort_values("partition_key")
    assert list(files["file_name"]) == [f"events/day={k}/ (2 files)" for k in KEYS]
    assert list(files["n_rows"]) == [len(b) for b in _batches()]
    assert not project.tick(), "nothing changed: no run"
    changed = _batches()[1].assign(outcome=lambda f: f["outcome"] + 1.0)
    changed.iloc[len(changed) // 2 :].to_parquet(root / f"day={KEYS[1]}" / "part-1.parquet", index=False)
    assert _ran(project.tick()) == [KEYS[1]]
    after = _steps(project)
    assert after.loc[1, "estimate"] != pytest.approx(landing_steps.loc[1, "estimate"])
    shutil.rmtree(root / f"day={KEYS[2]}")  # a partition taken back: its batch is withdrawn
    (withdrawal,) = project.tick()
    assert withdrawal.dagster_run.tags.get("assimilate/withdrawn") == "true"
    stored = project.warehouse.read_table("ab_checkout", "raw_files")
    assert sorted(stored["partition_key"].astype(str)) == KEYS[:2]


def _events() -> pd.DataFrame:
    return pd.concat(
        [b.assign(day=pd.Timestamp(k).date()) for k, b in zip(KEYS, _batches(), strict=True)],
        ignore_index=True,
    )


QUERY = "SELECT unit_id, x, treatment, outcome FROM {table} WHERE day = CAST($batch AS DATE)"


def test_a_sql_query_on_another_duckdb_database_gives_the_landing_posterior(
    tmp_path: Path, landing_steps: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "events.duckdb"
    events = _events().sample(frac=1.0, random_state=3)  # stored in another order than delivered
    with duckdb.connect(str(database)) as connection:
        connection.execute("CREATE TABLE events AS SELECT * FROM events")
    monkeypatch.setenv("EVENTS_DB_URL", f"duckdb:///{database}")
    source = SqlSource(
        kind="sql", query=QUERY.format(table="events"), database=DatabaseUrl(url_env="EVENTS_DB_URL")
    )
    project = _project(tmp_path, example_study("ab_checkout", source=source))
    assert _ran(project.tick()) == KEYS  # 2025-04 onwards return no rows: no run
    _same_posterior(project, landing_steps)
    files = project.warehouse.read_table("ab_checkout", "raw_files")
    assert sorted(files["file_name"]) == [f"sql query, batch {k}" for k in KEYS]
    assert not project.tick()
    with duckdb.connect(str(database)) as connection:  # a re-delivered month: one of its rows changed
        connection.execute(
            "UPDATE events SET outcome = outcome + 100 WHERE unit_id = ?", [events["unit_id"].iloc[0]]
        )
    changed = str(events["day"].iloc[0])
    assert _ran(project.tick()) == [changed]


def test_a_sql_query_on_the_warehouse_gives_the_landing_posterior(
    tmp_path: Path, landing_steps: pd.DataFrame
) -> None:
    source = SqlSource(kind="sql", query=QUERY.format(table="source_data.events"), database="warehouse")
    project = _project(tmp_path, example_study("ab_checkout", source=source))
    project.data.mkdir(parents=True)
    project.warehouse.replace_table("source_data", "events", _events().astype({"day": "datetime64[ns]"}))
    assert _ran(project.tick()) == KEYS
    _same_posterior(project, landing_steps)


def test_a_failing_query_is_a_failed_data_quality_check_naming_the_batch_and_the_error(
    tmp_path: Path,
) -> None:
    source = SqlSource(kind="sql", query=QUERY.format(table="no_such_table"), database="warehouse")
    project = _project(tmp_path, example_study("ab_checkout", source=source))
    project.data.mkdir(parents=True)
    project.warehouse.replace_table("source_data", "other", pd.DataFrame({"a": [1]}))
    assert not project.tick(), "a partition whose query fails is neither run nor withdrawn by the sensor"
    study = project.studies[0]
    result = execute_request(project.defs, project.instance, study, dg.RunRequest(partition_key=KEYS[0]))
    (check,) = [
        c
        for c in result.get_asset_check_evaluations()
        if c.check_name.endswith("data_quality") and c.asset_key.path[-1] == "raw_batch"
    ]
    assert not check.passed
    text = " ".join(str(v.value) for v in check.metadata.values())
    assert f"batch {KEYS[0]}" in text and "no_such_table" in text.lower()
