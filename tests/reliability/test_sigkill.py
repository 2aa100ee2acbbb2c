"""A run killed with SIGKILL mid-way leaves a consistent warehouse; re-running completes it.

The kills are placed by what the run has done, not by the clock: each one waits in the event log
for a named step to start, so a loaded machine changes when they happen, never whether. The steps
are those an uninterrupted run of the batch job started, in its order, read from the same event
log: a kill after each, whatever the assets are called.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from orchestration.instance import PROJECT_ROOT, prepare_dagster_home
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

MONTHS = ["2025-01", "2025-02", "2025-03"]
RUN_ONE = """
import sys
from pathlib import Path
import dagster as dg
from orchestration.definitions import build_definitions
from orchestration.runner import QUIET
from tests.pipeline_support import example_study
study = example_study("ab_checkout")
defs = build_definitions(studies=[study], data_dir=Path(sys.argv[2]))
instance = dg.DagsterInstance.from_config(sys.argv[1])
job = defs.resolve_job_def("ab_checkout_batch_job")
sys.exit(0 if job.execute_in_process(partition_key=sys.argv[3], instance=instance, run_config=QUIET).success else 1)
"""


def _start(home: Path, data: Path, key: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_ONE, str(home), str(data), key],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


MIN_KILLS = 3


def _started_steps(instance: dg.DagsterInstance) -> list[str]:
    """The step keys the newest run started, in the order it started them."""
    (run,) = instance.get_runs(limit=1)
    return [event.step_key for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)]


def _wait_for_step_start(
    instance: dg.DagsterInstance, process: subprocess.Popen[bytes], step_key: str, timeout_s: float = 300
) -> bool:
    """Until the newest started run has begun ``step_key`` (True), or the process ended first (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]), limit=1):
            started = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            if any(event.step_key == step_key for event in started):
                return True
        time.sleep(0.05)
    return False


def _fail_orphaned_runs(instance: dg.DagsterInstance) -> None:
    """What the daemon's run monitoring does for a dead run worker: fail the run, free its pool slots."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        instance.report_run_failed(run)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ten interpreters start one after another: 13 min at a load of 10 on 2 cores
def test_sigkill_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    home = prepare_dagster_home(tmp_path / "home")
    killed = Project(
        data=tmp_path / "killed",
        studies=[example_study("ab_checkout")],
        instance=dg.DagsterInstance.from_config(str(home)),
    )
    reference = Project(
        data=tmp_path / "reference",
        studies=[example_study("ab_checkout")],
        instance=dg.DagsterInstance.ephemeral(),
    )
    for project in (killed, reference):
        for seed, month in enumerate(MONTHS):
            write_batch(project.landing("ab_checkout"), month, ab_batch(seed))
    assert all(r.success for r in reference.tick())

    assert _start(home, killed.data, "2025-01-01").wait(timeout=300) == 0
    steps_of_a_run = _started_steps(killed.instance)
    assert len(steps_of_a_run) > MIN_KILLS, steps_of_a_run
    kills = []
    for step in steps_of_a_run:
        process = _start(home, killed.data, "2025-02-01")
        if _wait_for_step_start(killed.instance, process, step):
            process.send_signal(signal.SIGKILL)
            kills.append(step)
        process.wait(timeout=60)
        _fail_orphaned_runs(killed.instance)
        steps = killed.steps("ab_checkout")  # the warehouse opens and reads after every kill
        assert steps["batch"].is_unique
    print(f"killed after {len(kills)} of {len(steps_of_a_run)} step starts: {kills}")
    assert len(kills) >= MIN_KILLS, f"killed after {kills} only, of {steps_of_a_run}"
    for key in ("2025-02-01", "2025-03-01"):
        assert _start(home, killed.data, key).wait(timeout=300) == 0

    columns = ["batch", "estimate", "std_error", "posterior_mean", "posterior_var"]
    pd.testing.assert_frame_equal(
        killed.steps("ab_checkout")[columns], reference.steps("ab_checkout")[columns], check_exact=True
    )
    effects = killed.warehouse.read_table("ab_checkout", "batch_effects")
    assert len(effects) == len(MONTHS) * len(example_study("ab_checkout").estimators)
    raw = killed.warehouse.read_table("ab_checkout", "raw_rows")
    assert not raw.duplicated(["partition_key", "row_index"]).any()
