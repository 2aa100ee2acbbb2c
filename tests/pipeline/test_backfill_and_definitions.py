"""Several runs at once on one warehouse (either backend) and one instance; the code location loads."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from orchestration.definitions import build_definitions
from orchestration.instance import PROJECT_ROOT, prepare_dagster_home
from orchestration.jobs import study_job_name
from orchestration.runner import QUIET
from tests.backend_support import use_another_warehouse
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

MONTHS = [f"2025-{m:02d}" for m in range(1, 13)]


def _run_partition(home: str, data: str, partition_key: str) -> bool:
    """One run in its own process, as a multiprocess backfill would launch it."""
    study = example_study("ab_checkout")
    defs = build_definitions(studies=[study], data_dir=Path(data))
    instance = dg.DagsterInstance.from_config(home)
    job = defs.resolve_job_def(study_job_name(study))
    return job.execute_in_process(partition_key=partition_key, instance=instance, run_config=QUIET).success


def _land(project: Project) -> None:
    for seed, month in enumerate(MONTHS):
        write_batch(project.landing("ab_checkout"), month, ab_batch(seed))


@pytest.mark.slow
def test_a_concurrent_backfill_of_12_partitions_equals_a_sequential_run(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = prepare_dagster_home(tmp_path / "home")
    concurrent = Project(
        data=tmp_path / "concurrent",
        studies=[example_study("ab_checkout")],
        instance=dg.DagsterInstance.from_config(str(home)),
    )
    _land(concurrent)
    keys = [f"{m}-01" for m in MONTHS]
    context = multiprocessing.get_context("spawn")
    # An executor, not a Pool: a worker that dies fails the test instead of hanging it.
    with ProcessPoolExecutor(4, mp_context=context) as pool:
        n = len(keys)
        results = list(pool.map(_run_partition, [str(home)] * n, [str(concurrent.data)] * n, keys))
    assert all(results), "a run failed (lock error?)"
    columns = ["batch", "estimate", "std_error", "posterior_mean", "posterior_var"]
    got = concurrent.steps("ab_checkout")[columns]
    effects = concurrent.warehouse.read_table("ab_checkout", "batch_effects")

    # On PostgreSQL the sequential run writes to a database of its own (on DuckDB: its own file).
    use_another_warehouse(request, monkeypatch)
    sequential = Project(
        data=tmp_path / "sequential",
        studies=[example_study("ab_checkout")],
        instance=dg.DagsterInstance.ephemeral(),
    )
    _land(sequential)
    assert all(r.success for r in sequential.tick())
    # No settling run: each posterior update reads, filters and writes under one lock, and the
    # last one to run follows every batch's estimate.
    expected = sequential.steps("ab_checkout")[columns]
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), expected.reset_index(drop=True), check_exact=True
    )
    assert len(effects) == 12 * len(example_study("ab_checkout").estimators)  # no duplicated rows
    assert np.isfinite(got["posterior_mean"]).all()


def test_definitions_load_and_validate() -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-m",
            "orchestration.definitions",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    defs = build_definitions()
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert {"ab_checkout/effect_posterior", "retention_outreach/batch_effect"} <= keys
    assert defs.resolve_sensor_def("retention_outreach_landing_sensor") is not None
    assert defs.resolve_schedule_def("ab_checkout_schedule") is not None
