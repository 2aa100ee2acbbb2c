"""The deployment path: a real ``dagster-daemon`` (sensor ticks, run queue, run launcher) on a scratch instance.

The in-process runner cannot show what the daemon does differently (it launches a run key once,
ever; it reloads the code location every minute), so the findings seen under the daemon are
replayed here: a reverted, withdrawn and restored batch file (H1), and a broken study file next to
a good one that comes back when fixed, without a restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from orchestration.instance import PROJECT_ROOT, prepare_dagster_home
from resources.alerts import JsonlAlertLog
from resources.landing_files import file_sha256
from resources.warehouse import WarehouseError, WarehouseResource
from tests.pipeline_support import ab_batch

STUDY_FILE = PROJECT_ROOT / "studies" / "ab_checkout.yaml"
UNFINISHED = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
}


def study_yaml(name: str, **changes: object) -> str:
    data = yaml.safe_load(STUDY_FILE.read_text())
    data |= {"name": name, "landing_folder": name, **changes}
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, Path, dg.DagsterInstance]]:
    """A running dagster-daemon over a scratch instance; yields (studies folder, data folder, instance)."""
    home = prepare_dagster_home(tmp_path / "home")
    studies, data = tmp_path / "studies", tmp_path / "data"
    studies.mkdir()
    (studies / "ab_checkout.yaml").write_text(study_yaml("ab_checkout"))
    (studies / "gamma.yaml").write_text(study_yaml("gamma", cadence="hourly"))  # broken
    location = tmp_path / "location.py"
    location.write_text(
        "from pathlib import Path\n"
        "from orchestration.definitions import build_definitions\n"
        f"defs = build_definitions(studies_dir=Path({str(studies)!r}), data_dir=Path({str(data)!r}))\n"
    )
    # Made before the daemon starts: two processes creating the SQLite storages at once corrupt
    # their migration tables ("more than one head").
    instance = dg.DagsterInstance.from_config(str(home))
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(PROJECT_ROOT)}
    log = (tmp_path / "daemon.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-f", str(location)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield studies, data, instance
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        instance.dispose()


def land(folder: Path, name: str, source: Path) -> Path:
    """Land atomically, as the landing contract asks: write a hidden file, then rename it."""
    folder.mkdir(parents=True, exist_ok=True)
    hidden = folder / f".{name}.tmp"
    shutil.copyfile(source, hidden)
    return hidden.replace(folder / name)


def stored(data: Path, study: str) -> dict[str, str]:
    try:
        # The daemon's warehouse: the data folder's DuckDB file, or the database of --warehouse=postgres.
        files = WarehouseResource.for_data_dir(data).open(lock_timeout_s=5).read_table(study, "raw_files")
    except WarehouseError:
        return {"locked": ""}
    if files.empty:
        return {}
    return dict(zip(files["partition_key"], files["sha256"], strict=True))


def wait_for(condition: Callable[[], bool], instance: dg.DagsterInstance, what: str, seconds: float) -> None:
    """Until ``condition`` holds with no run in flight (the daemon ticks every 30 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        busy = instance.get_runs(filters=dg.RunsFilter(statuses=list(UNFINISHED)), limit=1)
        if not busy and condition():
            return
        time.sleep(3)
    raise AssertionError(f"under the daemon, {what} did not happen within {seconds} s")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_under_the_daemon_every_change_of_the_folder_lands_and_a_fixed_study_comes_back(
    daemon: tuple[Path, Path, dg.DagsterInstance], tmp_path: Path
) -> None:
    studies, data, instance = daemon
    landing = data / "landing" / "ab_checkout"
    a, b = tmp_path / "A.csv", tmp_path / "B.csv"
    ab_batch(1).to_csv(a, index=False)
    ab_batch(2).to_csv(b, index=False)
    sha_a, sha_b = file_sha256(a), file_sha256(b)
    log = JsonlAlertLog(data / "alerts.jsonl")

    land(landing, "2025-01.csv", a)
    wait_for(lambda: stored(data, "ab_checkout") == {"2025-01-01": sha_a}, instance, "A landed", 240)
    broken = [x for x in log.alerts() if x.study == "gamma" and x.kind == "onset"]
    assert len(broken) == 1 and "cadence" in broken[0].message

    (studies / "gamma.yaml").write_text(study_yaml("gamma"))  # fixed: back at the next reload
    land(data / "landing" / "gamma", "2025-01.csv", a)

    land(landing, "2025-01.csv", b)
    wait_for(lambda: stored(data, "ab_checkout") == {"2025-01-01": sha_b}, instance, "B replaced A", 240)
    land(landing, "2025-01.csv", a)  # reverted: its run key was used before the fix
    wait_for(lambda: stored(data, "ab_checkout") == {"2025-01-01": sha_a}, instance, "the revert to A", 240)
    (landing / "2025-01.csv").unlink()
    wait_for(lambda: stored(data, "ab_checkout") == {}, instance, "the withdrawal", 240)
    land(landing, "2025-01.csv", a)  # restored
    wait_for(lambda: stored(data, "ab_checkout") == {"2025-01-01": sha_a}, instance, "the restore", 240)

    wait_for(lambda: stored(data, "gamma") == {"2025-01-01": sha_a}, instance, "the fixed study's batch", 300)
    # The study file's alerts (gamma's overdue months are alerted by the batch_freshness sensor).
    assert [x.kind for x in log.alerts() if x.study == "gamma" and x.asset == "study_file"] == [
        "onset",
        "recovery",
    ]
    failed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    assert not failed, [r.run_id for r in failed]
