"""A team deployment's distributed path: the daemon's runs send their steps to a Dask cluster.

A real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, a real ``dagster-daemon``
whose run workers use the Dask executor (``ASSIMILATE_DASK_SCHEDULER``), twelve monthly batches
landed at once. A worker is SIGKILLed in the middle of a step, which Dask runs again on the other
one, so both run steps. The warehouse and the posterior then equal an in-process sequential run of
the same files: no batch lost, none doubled.

The kill takes whichever worker is inside a step: runs of one study go one at a time, and Dask
sends a step where its predecessor's result lives, so one worker may run every step until then.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from orchestration.definitions import build_definitions
from orchestration.executor import DASK_SCHEDULER_ENV, dask_scheduler_address
from orchestration.instance import PROJECT_ROOT, prepare_dagster_home
from orchestration.runner import run_landed_batches
from orchestration.study_folder import load_studies
from resources.warehouse import WarehouseError, WarehouseResource
from tests.backend_support import use_another_warehouse
from tests.pipeline_support import ab_batch

MONTHS = [f"2025-{m:02d}" for m in range(1, 13)]
ROWS = 5_000  # enough for a step to last while the test looks for a worker inside one
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_study(folder: Path) -> None:
    """The A/B example study's analysis on the test's small batches (no guardrails, no refuters)."""
    data = yaml.safe_load((PROJECT_ROOT / "studies" / "ab_checkout.yaml").read_text())
    for optional in ("guardrails", "refuters", "calibration_audit", "segments"):
        data.pop(optional, None)
    data |= {"name": "ab_dask", "landing_folder": "ab_dask"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ab_dask.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def land_months(landing: Path) -> None:
    landing.mkdir(parents=True, exist_ok=True)
    for seed, month in enumerate(MONTHS, start=1):
        hidden = landing / f".{month}.tmp"
        ab_batch(seed, n=ROWS).to_csv(hidden, index=False)
        hidden.replace(landing / f"{month}.csv")


def start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, dg.DagsterInstance, list[subprocess.Popen[bytes]], Path]]:
    """Scheduler, two workers and a daemon; yields (data folder, instance, workers, log folder)."""
    studies, data, logs = tmp_path / "studies", tmp_path / "data", tmp_path / "logs"
    write_study(studies)
    logs.mkdir()
    home = prepare_dagster_home(tmp_path / "home")
    instance = dg.DagsterInstance.from_config(str(home))  # storages made before any other process
    location = tmp_path / "location.py"
    location.write_text(
        "from pathlib import Path\n"
        "from orchestration.definitions import build_definitions\n"
        f"defs = build_definitions(studies_dir=Path({str(studies)!r}), data_dir=Path({str(data)!r}))\n"
    )
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(PROJECT_ROOT),
        DASK_SCHEDULER_ENV: address,
        "MPLBACKEND": "Agg",
    }
    port = address.rsplit(":", 1)[1]
    processes = [
        start(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"],
            logs / "scheduler.log",
            env,
        )
    ]
    time.sleep(3)
    workers = [
        start(
            [
                str(BIN / "dask"),
                "worker",
                address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--name",
                f"worker-{i}",
            ],
            logs / f"worker-{i}.log",
            env,
        )
        for i in (1, 2)
    ]
    processes += workers
    time.sleep(3)
    processes.append(
        start([str(BIN / "dagster-daemon"), "run", "-f", str(location)], logs / "daemon.log", env)
    )
    try:
        yield data, instance, workers, logs
    finally:
        for process in reversed(processes):
            stop(process)


def wait_for_runs(instance: dg.DagsterInstance, data: Path, n_runs: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs = instance.get_runs()
        busy = instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED), limit=1)
        if len(runs) >= n_runs and not busy:
            return
        time.sleep(3)
    raise AssertionError(f"{len(instance.get_runs())} of {n_runs} runs finished within {seconds} s")


def tables(data: Path) -> dict[str, pd.DataFrame]:
    store = WarehouseResource.for_data_dir(data).open(lock_timeout_s=30)  # the folder's, on either backend
    return {
        name: store.read_table("ab_dask", name) for name in ("raw_files", "batch_effects", "posterior_steps")
    }


def sequential_reference(tmp_path: Path) -> dict[str, pd.DataFrame]:
    """The same files through the in-process runner, one run after another."""
    studies, data = tmp_path / "ref_studies", tmp_path / "ref_data"
    write_study(studies)
    land_months(data / "landing" / "ab_dask")
    loaded = load_studies(studies)
    defs = build_definitions(studies=loaded, data_dir=data)
    with dg.instance_for_test() as instance:
        run_landed_batches(defs, instance, loaded)
    return tables(data)


def step_starts(instance: dg.DagsterInstance, runs: list[dg.DagsterRun]) -> list[tuple[str, str, int]]:
    """(run id, step key, pid of the process that ran it) of every step start of ``runs``."""
    return [
        (run.run_id, str(entry.step_key), int(entry.dagster_event.pid))
        for run in runs
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        if entry.dagster_event is not None and entry.dagster_event.pid is not None
    ]


def running_step(instance: dg.DagsterInstance, pid: int) -> tuple[str, str] | None:
    """The (run id, step key) the process ``pid`` is running now (started, neither succeeded nor failed)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    ended = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    for run_id, step, started_by in step_starts(instance, runs):
        if started_by == pid and not any(
            e.step_key == step for e in instance.all_logs(run_id, of_type=ended)
        ):
            return run_id, step
    return None


def kill_mid_step(
    instance: dg.DagsterInstance, workers: list[subprocess.Popen[bytes]], after_runs: int
) -> tuple[str, str, int]:
    """SIGKILL the worker running a step once ``after_runs`` runs have succeeded: (run, step, its index)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS]))
        for index, worker in enumerate(workers if len(done) >= after_runs else []):
            step = running_step(instance, worker.pid)
            if step is not None:
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait(timeout=30)
                return *step, index
        time.sleep(0.1)
    raise AssertionError("no worker was inside a step after the first runs")


def assert_same_history(found: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame]) -> None:
    files = found["raw_files"].sort_values("partition_key")
    assert (
        files["partition_key"].tolist()
        == expected["raw_files"].sort_values("partition_key")["partition_key"].tolist()
    )
    assert files["sha256"].tolist() == expected["raw_files"].sort_values("partition_key")["sha256"].tolist()
    keys = ["partition_key", "method"]
    effects = found["batch_effects"].sort_values(keys).reset_index(drop=True)
    reference = expected["batch_effects"].sort_values(keys).reset_index(drop=True)
    assert len(effects) == len(reference) and not effects.duplicated(keys).any()  # no batch lost or doubled
    for column in ("n_treated", "n_control"):  # every row of every batch counted once
        assert effects[column].tolist() == reference[column].tolist()
    for column in ("estimate", "std_error"):
        np.testing.assert_allclose(effects[column], reference[column], rtol=1e-12, atol=1e-12)
    steps, ref_steps = found["posterior_steps"], expected["posterior_steps"]
    assert steps["batch"].tolist() == ref_steps["batch"].tolist()
    for column in ("posterior_mean", "posterior_sd"):
        np.testing.assert_allclose(steps[column], ref_steps[column], rtol=1e-10, atol=1e-12)


def test_the_address_is_checked_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DASK_SCHEDULER_ENV, "127.0.0.1:8786")
    with pytest.raises(ValueError, match="tcp://host:port"):
        dask_scheduler_address()
    monkeypatch.setenv(DASK_SCHEDULER_ENV, "tcp://127.0.0.1:8786")
    assert dask_scheduler_address() == "tcp://127.0.0.1:8786"


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_landed_history_runs_on_two_dask_workers_and_equals_a_sequential_run(
    cluster: tuple[Path, dg.DagsterInstance, list[subprocess.Popen[bytes]], Path],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, instance, workers, logs = cluster
    land_months(data / "landing" / "ab_dask")
    killed_run, killed_step, killed = kill_mid_step(instance, workers, after_runs=2)
    survivor = workers[1 - killed]
    wait_for_runs(instance, data, len(MONTHS), seconds=900)
    failed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    assert not failed, [(r.run_id, (logs / "daemon.log").read_text()[-2000:]) for r in failed]
    ran = {pid for _, _, pid in step_starts(instance, list(instance.get_runs()))}
    assert {w.pid for w in workers} <= ran, "both workers ran steps"
    rerun = [
        pid
        for run, step, pid in step_starts(instance, list(instance.get_runs()))
        if (run, step) == (killed_run, killed_step)
    ]
    assert rerun == [workers[killed].pid, survivor.pid], "the killed step ran again on the other worker"
    try:
        found = tables(data)
    except WarehouseError as error:
        pytest.fail(f"warehouse unreadable after the runs: {error}")
    use_another_warehouse(request, monkeypatch)  # on PostgreSQL the reference has a database of its own
    assert_same_history(found, sequential_reference(tmp_path))
