"""The study file's ``source:`` key: validated at load naming the key; the sources read without Dagster."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml

from orchestration.freshness import build_freshness_sensor
from orchestration.instance import PROJECT_ROOT
from resources.alerts import AlertsResource
from resources.batch_source_config import ParquetDatasetSource, SqlSource
from resources.batch_source_scan import scan_source
from resources.batch_sources import dataset_partition, read_dataset, read_query
from resources.landing import LandingResource
from resources.raw_records import read_landed_file
from resources.study import StudyConfigError, load_study
from resources.warehouse import PostgresWarehouse, WarehouseResource

STUDY = PROJECT_ROOT / "studies" / "ab_checkout.yaml"


def _study_file(tmp_path: Path, source: Any) -> Path:
    data = yaml.safe_load(STUDY.read_text(encoding="utf-8"))
    data["source"] = source
    path = tmp_path / "ab_checkout.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("source", "key", "rule"),
    [
        (
            {"kind": "parquet_dataset", "path": "events/*.parquet"},
            "source.parquet_dataset.path",
            "exactly once",
        ),
        (
            {"kind": "parquet_dataset", "path": "a/{batch}/{batch}.parquet"},
            "source.parquet_dataset.path",
            "(got 2)",
        ),
        ({"kind": "parquet_dataset", "path": "../up/{batch}.parquet"}, "source.parquet_dataset.path", "'..'"),
        (
            {"kind": "parquet_dataset", "path": "/data/../x/{batch}.parquet"},
            "source.parquet_dataset.path",
            "'..'",
        ),
        (
            {"kind": "parquet_dataset", "path": "x/{batch}", "extra": 1},
            "source.parquet_dataset.extra",
            "unknown key",
        ),
        ({"kind": "sql", "query": "SELECT * FROM events"}, "source.sql.query", "$batch"),
        ({"kind": "sql", "query": "SELECT * FROM t WHERE d = $batch_day"}, "source.sql.query", "$batch"),
        (
            {"kind": "sql", "query": "SELECT * FROM t WHERE d = $batch AND e = $other"},
            "source.sql.query",
            "$other",
        ),
        (
            {"kind": "sql", "query": "SELECT * FROM t WHERE d = $batch; DROP TABLE t"},
            "source.sql.query",
            "one statement",
        ),
        (
            {"kind": "sql", "query": "SELECT * FROM t WHERE d = $batch", "database": {"url_env": "no-name"}},
            "source.sql.database",
            "NAME",
        ),
        (
            {"kind": "sql", "query": "SELECT * FROM t WHERE d = $batch", "database": "elsewhere"},
            "source.sql.database",
            "",
        ),
        ({"kind": "csv_folder", "path": "x"}, "source", "'parquet_dataset', 'sql'"),
    ],
)
def test_a_bad_source_is_a_load_error_naming_the_key(
    tmp_path: Path, source: Any, key: str, rule: str
) -> None:
    with pytest.raises(StudyConfigError) as error:
        load_study(_study_file(tmp_path, source))
    assert f"ab_checkout.yaml: {key}" in str(error.value) and rule in str(error.value)


def test_an_unset_source_leaves_both_hashes_as_they_were_and_a_set_one_changes_them(tmp_path: Path) -> None:
    plain = load_study(STUDY)
    data = yaml.safe_load(STUDY.read_text(encoding="utf-8"))
    data.pop("source", None)
    canonical = plain.model_dump(mode="json")
    assert "source" not in canonical  # so neither hash sees the key (both are over this dump)
    sourced = load_study(_study_file(tmp_path, {"kind": "sql", "query": "SELECT * FROM t WHERE d = $batch"}))
    assert sourced.batch_rules_hash != plain.batch_rules_hash and sourced.config_hash != plain.config_hash
    assert isinstance(sourced.source, SqlSource) and sourced.source.database == "warehouse"


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "unit_id": [f"u{seed}-{i}" for i in range(n)],
            "x": rng.standard_normal(n),
            "treatment": rng.binomial(1, 0.5, n),
            "note": [None if i % 3 == 0 else f"n{i}" for i in range(n)],
        }
    )


def test_a_dataset_partition_is_its_files_in_name_order_hashed_over_names_and_file_hashes(
    tmp_path: Path,
) -> None:
    source = ParquetDatasetSource(kind="parquet_dataset", path="events/day={batch}/*.parquet")
    folder = tmp_path / "events" / "day=2025-01-01"
    folder.mkdir(parents=True)
    rows = _rows(9, 1)
    rows.iloc[4:].to_parquet(folder / "b.parquet", index=False)
    rows.iloc[:4].to_parquet(folder / "a.parquet", index=False)
    (folder / ".c.parquet").write_bytes(b"hidden: being written")
    (folder / "notes.txt").write_text("not matched")
    landed = read_dataset(source, tmp_path, "2025-01-01")
    assert landed is not None and not landed.error
    assert landed.file_name == "events/day=2025-01-01/ (2 files)"
    lines = "".join(
        f"{name}\0{hashlib.sha256((folder / name).read_bytes()).hexdigest()}\n"
        for name in ["a.parquet", "b.parquet"]
    )
    assert landed.sha256 == hashlib.sha256(lines.encode()).hexdigest()
    assert landed.size_bytes == sum((folder / n).stat().st_size for n in ["a.parquet", "b.parquet"])
    rows.to_parquet(tmp_path / "whole.parquet", index=False)  # the same rows as one landed file
    pd.testing.assert_frame_equal(
        landed.raw, read_landed_file(tmp_path / "whole.parquet", batch="2025-01-01").raw
    )
    assert read_dataset(source, tmp_path, "2025-02-01") is None  # no file: a missing partition
    copy = tmp_path / "events" / "day=2025-02-01"
    copy.mkdir()
    for name in ["a.parquet", "b.parquet"]:
        (copy / name).write_bytes((folder / name).read_bytes())
    copied = read_dataset(source, tmp_path, "2025-02-01")
    assert copied is not None and copied.sha256 == landed.sha256  # the same delivery twice: seen as such


def test_an_unreadable_dataset_file_or_columns_that_differ_are_an_error_naming_the_batch_and_file(
    tmp_path: Path,
) -> None:
    source = ParquetDatasetSource(
        kind="parquet_dataset", path="/" + str(tmp_path).strip("/") + "/{batch}-*.parquet"
    )
    _rows(3, 1).to_parquet(tmp_path / "2025-01-01-a.parquet", index=False)
    (tmp_path / "2025-01-01-b.parquet").write_bytes(b"PAR1 not really")
    broken = read_dataset(source, tmp_path / "elsewhere", "2025-01-01")
    assert broken is not None and broken.raw.empty
    assert "batch 2025-01-01: file 2025-01-01-b.parquet: cannot be read as Parquet" in broken.error
    _rows(3, 2).drop(columns=["note"]).to_parquet(tmp_path / "2025-01-01-b.parquet", index=False)
    mismatch = read_dataset(source, tmp_path, "2025-01-01")
    assert mismatch is not None and "2025-01-01-b.parquet has columns" in mismatch.error
    assert dataset_partition(source, tmp_path, "2025-01-01").shown == str(tmp_path)


def _duckdb_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frame: pd.DataFrame, name: str
) -> SqlSource:
    path = tmp_path / f"{name}.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.register("frame", frame)
        connection.execute("CREATE TABLE events AS SELECT * FROM frame")
    monkeypatch.setenv(name.upper(), f"duckdb:///{path}")
    return SqlSource.model_validate(
        {
            "kind": "sql",
            "query": "SELECT * FROM events WHERE day = $batch",
            "database": {"url_env": name.upper()},
        }
    )


def test_the_same_result_in_another_row_order_gives_the_same_hash_and_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = pd.concat([_rows(40, 1).assign(day="2025-01-01"), _rows(5, 2).assign(day="2025-02-01")])
    warehouse = WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))
    one = read_query(_duckdb_source(tmp_path, monkeypatch, rows, "one"), warehouse, "2025-01-01")
    shuffled = rows.sample(frac=1.0, random_state=7).reset_index(drop=True)
    two = read_query(_duckdb_source(tmp_path, monkeypatch, shuffled, "two"), warehouse, "2025-01-01")
    assert one is not None and two is not None and not one.error
    assert one.sha256 == two.sha256 and one.file_name == "sql query, batch 2025-01-01"
    pd.testing.assert_frame_equal(one.raw, two.raw)
    assert len(one.raw) == 40 and list(one.raw["unit_id"]) == sorted(one.raw["unit_id"])
    assert (one.raw["note"] == "").sum() == 14  # NULL is missing, as in a landed Parquet file
    changed = rows.assign(x=lambda f: f["x"].where(f.index != 3, 99.0))
    three = read_query(_duckdb_source(tmp_path, monkeypatch, changed, "three"), warehouse, "2025-01-01")
    assert three is not None and three.sha256 != one.sha256
    assert read_query(_duckdb_source(tmp_path, monkeypatch, rows, "four"), warehouse, "2025-03-01") is None


def test_the_batch_is_a_bound_parameter_never_text_in_the_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _rows(3, 1).assign(day="2025-01-01")
    source = _duckdb_source(tmp_path, monkeypatch, rows, "bound")
    warehouse = WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))
    sneaky = "2025-01-01' OR '1'='1"  # would match every row if pasted into the text
    assert read_query(source, warehouse, sneaky) is None


def test_a_failing_source_is_an_error_naming_the_batch_never_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on port 1: the source's database is waited for as long as a warehouse's lock.
    warehouse = WarehouseResource(path=str(tmp_path / "warehouse.duckdb"), lock_timeout_s=1.0)
    secret = "postgresql://analyst:s3cret-pass@127.0.0.1:1/events"
    monkeypatch.setenv("EVENTS_URL", secret)
    source = SqlSource.model_validate(
        {"kind": "sql", "query": "SELECT * FROM e WHERE d = $batch", "database": {"url_env": "EVENTS_URL"}}
    )
    landed = read_query(source, warehouse, "2025-01-01")
    assert landed is not None and landed.error.startswith("batch 2025-01-01: the sql query failed")
    assert "s3cret-pass" not in landed.error
    monkeypatch.delenv("EVENTS_URL")
    unset = read_query(source, warehouse, "2025-01-01")
    assert unset is not None and "EVENTS_URL is not set" in unset.error
    monkeypatch.setenv("EVENTS_URL", "mysql://x/y")
    other = read_query(source, warehouse, "2025-01-01")
    assert other is not None and "must start with duckdb:///" in other.error


def test_the_sensor_scan_sees_partitions_with_data_up_to_today_and_sets_aside_failing_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = pd.concat([_rows(4, 1).assign(day="2025-01-01"), _rows(4, 2).assign(day="2025-03-01")])
    source = _duckdb_source(tmp_path, monkeypatch, rows, "scan")
    study = load_study(STUDY).model_copy(update={"source": source})
    landing, warehouse = (
        LandingResource(root=str(tmp_path)),
        WarehouseResource(path=str(tmp_path / "w.duckdb")),
    )
    keys = ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01", "2025-05-01", "2099-01-01"]
    scan = scan_source(study, landing, warehouse, keys)
    assert sorted(scan.available) == ["2025-01-01", "2025-03-01"] and not scan.unread
    assert scan.available["2025-01-01"][1] == read_query(source, warehouse, "2025-01-01").sha256  # type: ignore[union-attr]
    monkeypatch.setenv("SCAN", f"duckdb:///{tmp_path / 'gone.duckdb'}")
    failing = scan_source(study, landing, warehouse, keys)
    assert not failing.available and sorted(failing.unread) == keys[:5]  # never read as "no data"
    assert "does not exist" in failing.unread["2025-03-01"]
    assert "not queried at this tick (3 queries in a row failed)" in failing.unread["2025-04-01"]


def test_the_freshness_sensor_watches_a_dataset_and_leaves_a_sql_source_alone(tmp_path: Path) -> None:
    plain = load_study(STUDY)
    dataset = plain.model_copy(
        update={"source": ParquetDatasetSource(kind="parquet_dataset", path="events/day={batch}/*.parquet")}
    )
    sql = plain.model_copy(
        update={"name": "ab_sql", "source": SqlSource(kind="sql", query="SELECT $batch AS b")}
    )
    landing = LandingResource(root=str(tmp_path / "landing"))
    alerts = AlertsResource(log_path=str(tmp_path / "alerts.jsonl"))
    clock = [datetime(2025, 3, 7, tzinfo=UTC)]  # February's batch was due by March 6

    def tick() -> str:
        sensor = build_freshness_sensor([dataset, sql], now=lambda: clock[0])
        result = sensor(dg.build_sensor_context(resources={"landing": landing, "alerts": alerts}))
        assert isinstance(result, dg.SkipReason)
        return result.skip_message or ""

    for key in ["2025-01-01", "2025-02-01"]:
        folder = tmp_path / "landing" / "events" / f"day={key}"
        folder.mkdir(parents=True)
        if key == "2025-01-01":
            _rows(3, 1).to_parquet(folder / "part-0.parquet", index=False)
    assert tick().splitlines() == [
        "ab_checkout: 1 overdue: 2025-02.csv",
        "ab_sql: not watched (its batches come from a SQL query)",
    ]
    _rows(3, 2).to_parquet(tmp_path / "landing" / "events" / "day=2025-02-01" / "part-0.parquet", index=False)
    assert tick().splitlines()[0] == "ab_checkout: on time"


def test_a_postgresql_source_gives_the_rows_and_hash_a_duckdb_one_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_warehouse_url: str
) -> None:
    rows = pd.concat([_rows(30, 1).assign(day="2025-01-01"), _rows(5, 2).assign(day="2025-02-01")])
    PostgresWarehouse(postgres_warehouse_url).replace_table(
        "src", "events", rows.sample(frac=1.0, random_state=2)
    )
    monkeypatch.setenv("EVENTS_PG_URL", postgres_warehouse_url)
    on_postgres = SqlSource.model_validate(
        {
            "kind": "sql",
            "query": "SELECT unit_id, x, treatment, note, day FROM src.events WHERE day = $batch",
            "database": {"url_env": "EVENTS_PG_URL"},
        }
    )
    warehouse = WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))
    expected = read_query(_duckdb_source(tmp_path, monkeypatch, rows, "pg_twin"), warehouse, "2025-01-01")
    landed = read_query(on_postgres, warehouse, "2025-01-01")
    assert landed is not None and expected is not None and not landed.error
    assert landed.sha256 == expected.sha256
    pd.testing.assert_frame_equal(landed.raw, expected.raw)
