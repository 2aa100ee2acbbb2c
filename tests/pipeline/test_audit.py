"""The audit trail: every posterior update records what produced it, and one command exports it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from resources.warehouse import PostgresWarehouse
from scripts.export_audit import main as export_audit
from tests.pipeline_support import Project, ab_batch, example_study, write_batch


@pytest.fixture
def project(tmp_path: Path) -> Project:
    instance = dg.DagsterInstance.ephemeral()
    return Project(data=tmp_path / "data", studies=[example_study("ab_checkout")], instance=instance)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_posterior_update_lists_every_input_hash_config_and_verdict(project: Project) -> None:
    folder = project.landing("ab_checkout")
    files = [write_batch(folder, month, ab_batch(seed)) for seed, month in enumerate(["2025-01", "2025-02"])]
    broken = ab_batch(9, n=1000).assign(treatment=lambda f: (np.arange(len(f)) % 10 < 3).astype(int))
    files.append(write_batch(folder, "2025-03", broken))  # sample-ratio mismatch: excluded
    runs = project.tick()
    audit = project.warehouse.read_table("ab_checkout", "audit_trail")
    assert sorted(audit["run_id"]) == sorted(r.run_id for r in runs)
    last = audit.sort_values("n_batches").iloc[-1]
    study = project.studies[0]
    assert last["config_hash"] == study.config_hash
    assert json.loads(last["config_json"])["name"] == "ab_checkout"
    assert json.loads(last["thresholds_json"]) == study.thresholds.model_dump(mode="json")
    assert last["seed"] == study.seed
    assert len(last["source_sha256"]) == 64
    hashes = {batch: entry[0]["sha256"] for batch, entry in json.loads(last["input_files_json"]).items()}
    assert hashes == {
        "2025-01-01": _sha(files[0]),
        "2025-02-01": _sha(files[1]),
        "2025-03-01": _sha(files[2]),
    }
    verdicts = json.loads(last["verdicts_json"])
    srm = [v for v in verdicts["2025-03-01"] if v["check_name"].endswith("sample_ratio_mismatch")]
    assert srm and srm[0]["status"] == "fail"
    assert "sample_ratio_mismatch" in json.loads(last["excluded_json"])["2025-03-01"]
    steps = project.steps("ab_checkout")
    assert last["posterior_mean"] == pytest.approx(steps["posterior_mean"].iloc[-1], abs=1e-12)


def test_the_export_command_writes_one_expanded_record_per_update(
    project: Project, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_batch(project.landing("ab_checkout"), "2025-01", ab_batch(0))
    project.tick()
    out = tmp_path / "audit.jsonl"
    data = ["--data-dir", str(project.data)]  # the pipeline's warehouse, on either backend
    assert export_audit(["ab_checkout", *data, "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["record"] for r in records] == ["posterior_update"]
    assert records[0]["config_json"]["treatment"] == "treatment"
    assert list(records[0]["input_files_json"]) == ["2025-01-01"]
    assert export_audit(["no_such_study", *data]) == 1
    assert export_audit(['x"; DROP TABLE y; --', *data]) == 2
    assert "study" in capsys.readouterr().err
    if not isinstance(project.warehouse, PostgresWarehouse):  # the DuckDB file named by its path
        by_path = tmp_path / "by_path.jsonl"
        warehouse = str(project.data / "warehouse.duckdb")
        assert export_audit(["ab_checkout", "--warehouse", warehouse, "--out", str(by_path)]) == 0
        assert by_path.read_text() == out.read_text()
