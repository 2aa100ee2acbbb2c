"""The UI a user lives in: `dagster dev` on 127.0.0.1 shows a study's assets and its check results.

A real webserver process (with its daemon) and a real headless Chromium (Debian package); the
screenshots are kept under test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from orchestration.instance import PROJECT_ROOT, prepare_dagster_home
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

CHROMIUM = shutil.which("chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


def _graphql(base: str, query: str) -> dict[str, object]:
    body = json.dumps({"query": query}).encode()
    request = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


SENSOR_TICKS = """{ sensorOrError(sensorSelector: {repositoryLocationName: "location.py",
  repositoryName: "__repository__", sensorName: "ab_checkout_landing_sensor"}) {
  ... on Sensor { sensorState { ticks(limit: 5) { status runIds } } } } }"""
RUNS = "{ runsOrError { ... on Runs { results { runId status } } } }"
UNFINISHED = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"}


def _settle(base: str, seconds: float) -> list[str]:
    """Wait for the daemon's first landing-sensor tick and for every run; return the runs it launched."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = _graphql(base, SENSOR_TICKS)["data"]["sensorOrError"]["sensorState"]  # type: ignore[index]
        ticks = [t for t in state["ticks"] if t["status"] != "STARTED"]
        runs = _graphql(base, RUNS)["data"]["runsOrError"]["results"]  # type: ignore[index]
        if ticks and not any(run["status"] in UNFINISHED for run in runs):
            return [run_id for tick in ticks for run_id in tick["runIds"]]
        time.sleep(2)
    raise TimeoutError(f"the landing sensor did not tick, or runs did not finish, within {seconds} s")


def _text(dom: str) -> str:
    """The visible text of a dumped DOM, tags removed and whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom)))


def _chromium(url: str, profile: Path, *extra: str) -> str:
    command = [
        CHROMIUM or "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=20000",
        "--window-size=1600,1000",
        *extra,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is installed by scripts/setup.sh")
def test_webserver_shows_the_study_graph_and_check_results(tmp_path: Path) -> None:
    home = prepare_dagster_home(tmp_path / "dagster_home")
    data = tmp_path / "data"
    instance = dg.DagsterInstance.from_config(str(home))
    project = Project(data=data, studies=[example_study("ab_checkout")], instance=instance)
    write_batch(project.landing("ab_checkout"), "2025-01", ab_batch(0))
    # February's split is 30/70 where 50/50 was designed: its sample-ratio check fails.
    skewed = ab_batch(1, n=1000).assign(treatment=lambda f: (np.arange(len(f)) % 10 < 3).astype(int))
    write_batch(project.landing("ab_checkout"), "2025-02", skewed)
    runs = project.tick()
    assert all(r.success for r in runs)
    january, february = (
        next(r.run_id for r in runs if r.dagster_run.tags["dagster/partition"] == batch)
        for batch in ("2025-01-01", "2025-02-01")
    )
    verdicts = {
        asset: project.warehouse.read_table(
            "ab_checkout", f"verdicts_{asset}", partition_key="2025-02-01"
        ).set_index("check_name")
        for asset in ("batch_effect", "covariate_table")
    }
    balance = verdicts["batch_effect"].loc["check_batch_effect_balance"]
    srm = verdicts["covariate_table"].loc["check_covariate_table_sample_ratio_mismatch"]
    assert (balance["status"], srm["status"]) == ("pass", "fail")

    location = tmp_path / "location.py"
    location.write_text(
        "from pathlib import Path\n"
        "from orchestration.definitions import build_definitions\n"
        f"defs = build_definitions(data_dir=Path({str(data)!r}))\n"
    )
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(PROJECT_ROOT)}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-f",
            str(location),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    checks = f"{base}/assets/ab_checkout/{{}}?view=checks&checkDetail={{}}"
    try:
        _wait_for(f"{base}/server_info", 120)
        # No "Join the community" modal: the project's dagster.yaml turns it off (nothing posted here).
        show_nux = _graphql(base, "{ shouldShowNux }")["data"]["shouldShowNux"]  # type: ignore[index]
        relaunched = _settle(base, 600)
        page = f"{base}/assets/ab_checkout/batch_effect?view=lineage&lineageScope=upstream"
        dom = _chromium(page, tmp_path / "profile", "--dump-dom")
        ARTIFACTS.mkdir(exist_ok=True)
        _chromium(page, tmp_path / "profile2", f"--screenshot={ARTIFACTS / 'ui_ab_checkout_lineage.png'}")
        balance_page = checks.format("batch_effect", "check_batch_effect_balance")
        balance_dom = _text(_chromium(balance_page, tmp_path / "profile3", "--dump-dom"))
        _chromium(
            balance_page, tmp_path / "profile4", f"--screenshot={ARTIFACTS / 'ui_ab_checkout_checks.png'}"
        )
        srm_page = checks.format("covariate_table", "check_covariate_table_sample_ratio_mismatch")
        srm_dom = _text(_chromium(srm_page, tmp_path / "profile5", "--dump-dom"))
        first_page = _text(_chromium(f"{base}/", tmp_path / "profile6", "--dump-dom"))
        runs_dom = _text(_chromium(f"{base}/runs", tmp_path / "profile7", "--dump-dom"))
        _chromium(
            f"{base}/runs", tmp_path / "profile8", f"--screenshot={ARTIFACTS / 'ui_ab_checkout_runs.png'}"
        )
        partitions_page = f"{base}/assets/ab_checkout/batch_effect?view=partitions"
        partitions_dom = _text(_chromium(partitions_page, tmp_path / "profile9", "--dump-dom"))
        ess_page = checks.format("effect_posterior", "check_effect_posterior_particle_ess")
        ess_dom = _text(_chromium(ess_page, tmp_path / "profile10", "--dump-dom"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a slow shutdown on a loaded machine is not what this test checks
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
    # The upstream lineage at depth 1 shows the estimate and the two models it is built from.
    for asset in ("propensity_model", "outcome_model", "batch_effect"):
        assert asset in dom
    assert (ARTIFACTS / "ui_ab_checkout_lineage.png").stat().st_size > 10_000
    assert (ARTIFACTS / "ui_ab_checkout_checks.png").stat().st_size > 10_000
    # Each check page shows its latest evaluation: the verdict, the batch and the stored reason.
    assert "Evaluation result Passed" in balance_dom
    assert "Partition 2025-02-01" in balance_dom
    assert f"reason {balance['reason']}" in balance_dom
    assert "Evaluation result Failed" in srm_dom
    assert "Partition 2025-02-01" in srm_dom
    assert f"reason {srm['reason']}" in srm_dom
    assert "check_covariate_table_sample_ratio_mismatch" in srm_dom
    # The check's description is the catalogue's: what it asks, the study's numbers, what a failure does.
    assert "A failure keeps the batch out of the posterior" in srm_dom
    # In the run list the excluded batch's run carries a tag naming the failed gate (the run itself
    # stays green: the posterior must still take the batch's predict-only step); January's does not.
    row = {
        run_id: runs_dom.split(run_id[:8], 1)[1].split("View all tags", 1)[0]
        for run_id in (january, february)
    }
    assert "assimilate/excluded: check_covariate_table_sample_ratio_mismatch" in row[february]
    assert "assimilate/excluded" not in row[january]
    # A check that does not apply (particle ESS on the Kalman backend) is skipped, never passed.
    assert "Evaluation result Skipped" in ess_dom
    assert "check_effect_posterior_particle_ess Skipped" in ess_dom
    # No "Join the Dagster community" modal over the first page (it opens unless the instance says no).
    assert show_nux is False
    assert "Timeline" in first_page and "Join the Dagster community" not in first_page
    # Partitions end one period after the last landed batch: one "Missing" (the batch due next).
    assert "3 Partitions" in partitions_dom and "Missing (1)" in partitions_dom
    # Runs driven in-process (demo, tests) are not run again by the daemon's landing sensor.
    assert relaunched == [], f"dagster dev's landing sensor re-ran {len(relaunched)} landed batches"
