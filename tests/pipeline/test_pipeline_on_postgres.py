"""The pipeline on a PostgreSQL warehouse: the key end-to-end and idempotency tests, unchanged.

The tests below call the DuckDB suite's own test functions (tests/pipeline/test_pipeline.py,
tests/reliability/test_idempotency.py) with a project whose warehouse is a fresh PostgreSQL
database, chosen the way a deployment chooses it: ``ASSIMILATE_WAREHOUSE_URL`` in the environment.
``pytest --warehouse=postgres`` runs the whole of those modules (and any other pipeline test that
reads the warehouse through ``Project.warehouse``) on PostgreSQL; this module keeps the key
scenarios in the normal suite.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg2
import pytest

import tests.pipeline.test_pipeline as end_to_end
import tests.reliability.test_idempotency as idempotency
from resources.postgres_warehouse import PostgresWarehouse
from resources.warehouse import WAREHOUSE_URL_ENV
from tests.pipeline_support import Project, ab_batch, example_study, write_batch


@pytest.fixture
def project(tmp_path: Path, postgres_warehouse_url: str, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv(WAREHOUSE_URL_ENV, postgres_warehouse_url)
    instance = dg.DagsterInstance.ephemeral()
    return Project(data=tmp_path / "data", studies=[example_study("ab_checkout")], instance=instance)


def on_postgres(project: Project) -> None:
    """What ran, ran on PostgreSQL: the pipeline wrote no DuckDB file."""
    assert isinstance(project.warehouse, PostgresWarehouse)
    assert project.warehouse.exists()
    assert not list(project.data.rglob("*.duckdb*"))


def test_landed_files_reach_the_posterior_and_equal_the_library_filter(project: Project) -> None:
    end_to_end.test_three_landed_files_reach_the_posterior_and_equal_the_library_filter(project)
    on_postgres(project)


def test_a_corrected_file_recomputes_from_its_batch(project: Project) -> None:
    end_to_end.test_identical_file_requests_no_run_and_a_corrected_file_recomputes_from_its_batch(project)
    on_postgres(project)


def test_out_of_order_arrival_and_a_withdrawn_batch(project: Project) -> None:
    end_to_end.test_out_of_order_arrival_and_a_withdrawn_batch_equal_a_full_refilter(project)
    on_postgres(project)


def test_rerunning_a_partition_leaves_every_table_and_report_byte_identical(
    project: Project, tmp_path: Path
) -> None:
    for seed, month in enumerate(["2025-01", "2025-02"]):  # the idempotency module's project fixture
        write_batch(project.landing(idempotency.STUDY), month, ab_batch(seed))
    assert [r.success for r in project.tick()] == [True, True]
    idempotency.test_rerunning_a_partition_leaves_every_table_and_report_byte_identical(project, tmp_path)
    on_postgres(project)


def test_an_emptied_warehouse_database_is_alerted_and_rebuilt_to_the_same_posterior(
    project: Project, postgres_warehouse_url: str
) -> None:
    """The DuckDB suite deletes the file (test_landing_reconcile.py); here every schema is dropped."""
    landing = project.landing("ab_checkout")
    for month in range(1, 4):
        write_batch(landing, f"2025-0{month}", ab_batch(month))
    assert all(r.success for r in project.tick())
    assert project.tick() == []
    before = project.steps("ab_checkout")
    with psycopg2.connect(postgres_warehouse_url) as connection, connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA ab_checkout CASCADE; DROP SCHEMA assimilate_meta CASCADE")
    connection.close()
    assert not project.warehouse.exists()
    write_batch(landing, "2025-04", ab_batch(4))
    runs = project.tick()
    assert len(runs) == 4 and all(r.success for r in runs), "every landed batch is run again"
    lost = [a for a in project.alerts() if "the warehouse is missing" in a.message]
    assert len(lost) == 1 and "3 landed batches are rebuilt" in lost[0].message
    after = project.steps("ab_checkout")
    columns = ["batch", "estimate", "std_error", "posterior_mean", "posterior_sd"]
    assert after[columns].iloc[:3].reset_index(drop=True).equals(before[columns].reset_index(drop=True))
    on_postgres(project)
