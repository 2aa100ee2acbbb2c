"""The audit export reads the pipeline's warehouse on either backend, or a DuckDB file named by path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from assets.audit import AUDIT_TABLE
from orchestration.instance import DATA_DIR_ENV
from resources.warehouse import WAREHOUSE_URL_ENV, PostgresWarehouse, Warehouse, WarehouseResource
from scripts.export_audit import main as export_audit

STUDY = "ab_checkout"


@pytest.fixture(params=["duckdb", "postgres"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The pipeline's backend for the test: the variable unset (DuckDB) or a fresh PostgreSQL database."""
    monkeypatch.delenv(WAREHOUSE_URL_ENV, raising=False)
    if request.param == "postgres":
        monkeypatch.setenv(WAREHOUSE_URL_ENV, request.getfixturevalue("postgres_warehouse_url"))
    return str(request.param)


def store_audit(store: Warehouse) -> None:
    """Two posterior updates (stored newest first) and one drafting call, as the pipeline stores them."""
    updates = pd.DataFrame(
        {
            "run_id": ["run-2", "run-1"],
            "recorded_at": pd.to_datetime(["2025-02-02 00:00", "2025-01-02 00:00"]).tz_localize("UTC"),
            "n_batches": [2, 1],
            "config_json": [json.dumps({"name": STUDY, "treatment": "treatment"})] * 2,
            "posterior_mean": [0.45, 0.5],
        }
    )
    store.replace_partition(STUDY, AUDIT_TABLE, "2025-02-01", updates.iloc[:1])
    store.replace_partition(STUDY, AUDIT_TABLE, "2025-01-01", updates.iloc[1:])
    call = pd.DataFrame({"recorded_at": ["2025-03-01T00:00:00Z"], "model": ["m"], "error": [None]})
    store.replace_partition(STUDY, "drafting_log", "draft-1", call)


def test_the_export_reads_the_pipelines_warehouse_on_either_backend(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    store = WarehouseResource.for_data_dir(data).get()
    assert isinstance(store, PostgresWarehouse) == (backend == "postgres")
    missing = ["no_such_study", "--data-dir", str(tmp_path / "empty")]
    assert export_audit(missing) == 2  # no file, or a database nothing was written to yet
    err = capsys.readouterr().err
    assert "does not exist: run the pipeline first" in err
    if backend == "postgres":  # the database is named, its password never shown
        password = os.environ[WAREHOUSE_URL_ENV].split(":")[2].split("@")[0]
        assert "***" in err and password not in err
    store_audit(store)
    out = tmp_path / "audit.jsonl"
    assert export_audit([STUDY, "--data-dir", str(data), "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["record"], r.get("run_id")) for r in records] == [
        ("posterior_update", "run-1"),
        ("posterior_update", "run-2"),
        ("drafting_call", None),
    ]
    assert records[0]["config_json"] == {"name": STUDY, "treatment": "treatment"}
    assert records[0]["n_batches"] == 1 and records[2]["error"] is None
    monkeypatch.setenv(DATA_DIR_ENV, str(data))  # without --data-dir: the pipeline's data folder
    assert export_audit([STUDY]) == 0
    assert capsys.readouterr().out == out.read_text()
    assert export_audit(["no_such_study", "--data-dir", str(data)]) == 1
    assert export_audit(['x"; DROP TABLE y; --', "--data-dir", str(data)]) == 2
    assert "study" in capsys.readouterr().err


def test_a_warehouse_path_names_a_duckdb_file_whatever_the_variable_says(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "elsewhere" / "kept.duckdb"
    assert export_audit([STUDY, "--warehouse", str(path)]) == 2
    assert f"warehouse {path} does not exist" in capsys.readouterr().err
    store_audit(Warehouse(path.parent.mkdir() or path))
    out = tmp_path / "audit.jsonl"
    assert export_audit([STUDY, "--warehouse", str(path), "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 3
    assert not (tmp_path / "data").exists()


def test_a_bad_warehouse_url_is_named_without_its_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(WAREHOUSE_URL_ENV, "mysql://u:hunter2@h/db")
    assert export_audit([STUDY, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert WAREHOUSE_URL_ENV in err and "scheme" in err and "hunter2" not in err
