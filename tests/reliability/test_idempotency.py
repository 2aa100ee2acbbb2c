"""Re-running a partition is idempotent byte for byte: tables, report files, one audit row per run.

Every table of the study's schema is exported canonically (its rows sorted by every column, as
CSV) and hashed, on either warehouse backend (``pytest --warehouse=postgres`` runs it on
PostgreSQL; tests/pipeline/test_pipeline_on_postgres.py does in the normal suite); every report
file is hashed as written. The audit trail is the one table
that grows: it records each run (its ``run_id`` and ``recorded_at`` time), so it gets exactly one
row per run and its earlier rows never change.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from orchestration.runner import QUIET
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

STUDY = "ab_checkout"
AUDIT = "audit_trail"
PER_RUN = ("run_id", "recorded_at")  # what differs between two audit rows of identical updates
# recomputed_from says which period the update refiltered from: none when nothing changed.
RERUNS = 2


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_hashes(project: Project, export: Path) -> dict[str, str]:
    """sha256 of each table of the study (but the audit trail), exported as CSV in a canonical order."""
    store = project.warehouse
    tables = store.execute_read(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY table_name", [STUDY]
    )["table_name"]
    hashes = {}
    for table in tables:
        if table == AUDIT:
            continue
        target = export / f"{table}.csv"
        frame = store.read_table(STUDY, str(table))
        frame.sort_values(list(frame.columns), kind="mergesort").to_csv(target, index=False)
        hashes[table] = _sha(target.read_bytes())
    return hashes


def report_hashes(project: Project) -> dict[str, str]:
    folder = project.data / "reports" / STUDY
    return {
        p.relative_to(folder).as_posix(): _sha(p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project(
        data=tmp_path / "data", studies=[example_study(STUDY)], instance=dg.DagsterInstance.ephemeral()
    )
    folder = project.landing(STUDY)
    for seed, month in enumerate(["2025-01", "2025-02"]):
        write_batch(folder, month, ab_batch(seed))
    assert [r.success for r in project.tick()] == [True, True]
    return project


def test_rerunning_a_partition_leaves_every_table_and_report_byte_identical(
    project: Project, tmp_path: Path
) -> None:
    exports = [tmp_path / f"export{i}" for i in range(RERUNS + 1)]
    for folder in exports:
        folder.mkdir()
    tables, reports = table_hashes(project, exports[0]), report_hashes(project)
    assert {"raw_rows", "covariates", "quarantine", "batch_effects", "posterior_steps"} <= set(tables)
    assert {"trajectory.csv", "summary.txt", "fan_chart.png"} <= set(reports)
    audit = project.warehouse.read_table(STUDY, AUDIT)
    assert len(audit) == 2
    job = project.defs.resolve_job_def(f"{STUDY}_batch_job")
    for rerun in range(1, RERUNS + 1):
        result = job.execute_in_process(
            partition_key="2025-01-01", instance=project.instance, run_config=QUIET
        )
        assert result.success
        assert table_hashes(project, exports[rerun]) == tables
        assert report_hashes(project) == reports
        after = project.warehouse.read_table(STUDY, AUDIT)
        assert len(after) == len(audit) + 1, "one audit row per run"
        assert set(after["run_id"]) == set(audit["run_id"]) | {result.run_id}
        kept = after[after["run_id"] != result.run_id].sort_values("run_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(
            kept, audit.sort_values("run_id").reset_index(drop=True), check_exact=True
        )
        # Every update of the same two batches records the same config, inputs, verdicts and posterior.
        latest = after[after["n_batches"] == 2].drop(columns=[*PER_RUN, "partition_key", "recomputed_from"])
        assert len(latest) == rerun + 1 and len(latest.drop_duplicates()) == 1, latest.T
        assert after.loc[after["run_id"] == result.run_id, "recomputed_from"].fillna("").eq("").all()
        audit = after
