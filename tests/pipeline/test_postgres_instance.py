"""The team instance, dagster.postgres.yaml, on a real PostgreSQL server started by these tests.

The server comes from the Debian package's binaries (scripts/setup.sh installs it), runs as the
package's ``postgres`` system user when the tests run as root, keeps its data in a temporary
folder and listens on 127.0.0.1 only. Dagster connects as a non-superuser role with a password,
given to the instance through the environment variables the yaml names.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from orchestration.instance import PROJECT_ROOT, prepare_dagster_home
from tests.pipeline_support import Project, ab_batch, example_study, write_batch
from tests.postgres_support import ENV_VARS, PostgresServer, running_postgres


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server in a temporary folder on 127.0.0.1, stopped and removed at the end."""
    with running_postgres(db_name="dagster", user="assimilate") as server:
        yield server


def test_the_postgres_variant_keeps_the_instance_settings_of_dagster_yaml(tmp_path: Path) -> None:
    embedded = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    assert "storage" not in embedded
    assert set(yaml.safe_load((PROJECT_ROOT / "dagster.postgres.yaml").read_text())) == {"storage"}
    home = prepare_dagster_home(tmp_path / "team", variant="postgres")
    team = yaml.safe_load((home / "dagster.yaml").read_text())
    storage = team.pop("storage")
    assert team == embedded
    assert "run_coordinator" not in team  # max_concurrent_runs there as well is a config error
    db = storage["postgres"]["postgres_db"]
    assert db.pop("scheme") == "postgresql+psycopg2"  # plain postgresql:// means psycopg 3
    assert db == {
        name: {"env": var}
        for name, var in zip(("hostname", "port", "db_name", "username", "password"), ENV_VARS, strict=True)
    }


def test_an_instance_without_the_password_variable_does_not_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ENV_VARS:
        monkeypatch.setenv(var, "5432" if var.endswith("PORT") else "unused")
    monkeypatch.delenv("ASSIMILATE_DAGSTER_PG_PASSWORD")
    home = prepare_dagster_home(tmp_path / "home", variant="postgres")
    with pytest.raises(dg.DagsterInvalidConfigError, match="ASSIMILATE_DAGSTER_PG_PASSWORD"):
        dg.DagsterInstance.from_config(str(home))


def test_prepare_dagster_home_installs_the_variant_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASSIMILATE_INSTANCE", "postgres")
    home = prepare_dagster_home(tmp_path / "team")
    assert (
        (home / "dagster.yaml").read_bytes().endswith((PROJECT_ROOT / "dagster.postgres.yaml").read_bytes())
    )
    monkeypatch.delenv("ASSIMILATE_INSTANCE")
    home = prepare_dagster_home(tmp_path / "team")  # back to the default replaces the file
    assert (home / "dagster.yaml").read_bytes() == (PROJECT_ROOT / "dagster.yaml").read_bytes()
    with pytest.raises(ValueError, match="unknown Dagster instance variant"):
        prepare_dagster_home(tmp_path / "other", variant="mysql")


def test_the_pipeline_stores_its_runs_events_and_checks_in_postgres(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var, value in postgres_server.env().items():
        monkeypatch.setenv(var, value)
    home = prepare_dagster_home(tmp_path / "home", variant="postgres")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        project = Project(data=tmp_path / "data", studies=[example_study("ab_checkout")], instance=instance)
        for seed, month in enumerate(["2025-01", "2025-02"]):
            write_batch(project.landing("ab_checkout"), month, ab_batch(seed))
        results = project.tick()
        assert [r.success for r in results] == [True, True]
        run_ids = {r.run_id for r in results}
        materialized = {
            e.asset_key.to_string() for r in results for e in r.get_asset_materialization_events()
        }
        checks = {
            (c.asset_key.to_string(), c.check_name) for r in results for c in r.get_asset_check_evaluations()
        }
        assert '["ab_checkout", "effect_posterior"]' in materialized
        assert checks, "the study's asset checks did not run"

        runs = instance.get_runs()
        assert {run.run_id for run in runs} == run_ids
        assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}

    # The same facts, read from Postgres itself rather than through Dagster.
    with postgres_server.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT run_id, status FROM runs")
        assert dict(cursor.fetchall()) == dict.fromkeys(run_ids, "SUCCESS")
        cursor.execute(
            "SELECT DISTINCT asset_key FROM event_logs "
            "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND run_id = ANY(%s)",
            (list(run_ids),),
        )
        assert {row[0] for row in cursor.fetchall()} == materialized
        cursor.execute(
            "SELECT run_id, count(*) FROM event_logs "
            "WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION' GROUP BY run_id"
        )
        per_run = dict(cursor.fetchall())
        assert set(per_run) == run_ids
        assert sum(per_run.values()) == sum(len(r.get_asset_check_evaluations()) for r in results)
        cursor.execute("SELECT DISTINCT asset_key, check_name FROM asset_check_executions")
        # Every evaluated check is stored; a check not assessed (skipped, e.g. particle ESS on the
        # Kalman backend) has an execution row and no evaluation.
        executed = set(cursor.fetchall())
        assert checks <= executed and "check_effect_posterior_particle_ess" in {
            c for _, c in executed - checks
        }
    connection.close()
    assert not list(home.rglob("*.db")), "a SQLite storage file was written next to the Postgres one"

    # The warehouse holds the posterior after both batches.
    steps = project.steps("ab_checkout")
    assert steps["batch"].tolist() == ["2025-01-01", "2025-02-01"]
    assert np.isfinite(steps["posterior_mean"]).all() and (steps["posterior_var"] > 0).all()

    # Another process's view: a new instance from the same config sees the same runs and events.
    with dg.DagsterInstance.from_config(str(home)) as reloaded:
        assert {run.run_id for run in reloaded.get_runs()} == run_ids
        latest = reloaded.get_latest_materialization_event(dg.AssetKey(["ab_checkout", "effect_posterior"]))
        assert latest is not None and latest.run_id in run_ids
