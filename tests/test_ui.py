"""The UI a user lives in: `dagster dev` on 127.0.0.1 shows a study's assets and a check result.

A real webserver process and a real headless Chromium (Debian package); the screenshot is kept
under test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
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
def test_webserver_shows_the_study_graph_and_a_check_result(tmp_path: Path) -> None:
    home = prepare_dagster_home(tmp_path / "dagster_home")
    data = tmp_path / "data"
    instance = dg.DagsterInstance.from_config(str(home))
    project = Project(data=data, studies=[example_study("ab_checkout")], instance=instance)
    for seed, month in enumerate(["2025-01", "2025-02"]):
        write_batch(project.landing("ab_checkout"), month, ab_batch(seed))
    assert all(r.success for r in project.tick())

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
    try:
        _wait_for(f"{base}/server_info", 120)
        _graphql(base, "mutation { setNuxSeen }")
        page = f"{base}/assets/ab_checkout/batch_effect?view=lineage&lineageScope=upstream"
        dom = _chromium(page, tmp_path / "profile", "--dump-dom")
        ARTIFACTS.mkdir(exist_ok=True)
        _chromium(page, tmp_path / "profile2", f"--screenshot={ARTIFACTS / 'ui_ab_checkout_lineage.png'}")
        checks_page = f"{base}/assets/ab_checkout/batch_effect?view=checks"
        checks_dom = _chromium(checks_page, tmp_path / "profile3", "--dump-dom")
        _chromium(
            checks_page, tmp_path / "profile4", f"--screenshot={ARTIFACTS / 'ui_ab_checkout_checks.png'}"
        )
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    # The upstream lineage at depth 1 shows the estimate and the two models it is built from.
    for asset in ("propensity_model", "outcome_model", "batch_effect"):
        assert asset in dom
    assert "check_batch_effect_balance" in checks_dom
    assert "check_batch_effect_estimation" in checks_dom
    assert (ARTIFACTS / "ui_ab_checkout_lineage.png").stat().st_size > 10_000
