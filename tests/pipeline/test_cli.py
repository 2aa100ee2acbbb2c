"""The ``assimilate`` command: list the studies, run what landed, show a posterior."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestration.cli import main
from orchestration.instance import prepare_dagster_home
from resources.project import PROJECT_ROOT
from tests.pipeline_support import ab_batch, write_batch


def test_the_command_lists_runs_and_shows_a_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    studies, data = tmp_path / "studies", tmp_path / "data"
    studies.mkdir()
    shutil.copy(PROJECT_ROOT / "studies" / "ab_checkout.yaml", studies)
    (studies / "broken.yaml").write_text("name: broken\ncadence: hourly\n")
    landing = data / "landing" / "ab_checkout"
    landing.mkdir(parents=True)
    for seed, month in ((1, "2025-01"), (2, "2025-02"), (3, "2025-03")):
        write_batch(landing, month, ab_batch(seed))
    monkeypatch.setenv("DAGSTER_HOME", str(prepare_dagster_home(tmp_path / "home")))
    folders = ["--data-dir", str(data), "--studies-dir", str(studies)]

    assert main([*folders, "run", "ab_checkout"]) == 0
    assert "runs finished: 1, failed: 0" in capsys.readouterr().out  # the history as one run over its range
    assert main([*folders, "run"]) == 0
    assert "runs finished: 0, failed: 0" in capsys.readouterr().out  # nothing new landed

    assert main([*folders, "studies", "--json"]) == 0
    rows = {row["study"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["ab_checkout"]["landed_batches"] == 3
    assert rows["ab_checkout"]["in_posterior"] == 3
    assert rows["ab_checkout"]["design"] == "randomized"
    status = rows["broken.yaml"]["status"]
    assert status.startswith("does not load: broken.yaml: ")
    assert "cadence" in status or "is required" in status
    assert str(tmp_path) not in status

    assert main([*folders, "posterior", "ab_checkout"]) == 0
    shown = capsys.readouterr().out
    assert "2025-03-01" in shown
    assert "always-valid 95% interval after 2025-03-01" in shown
    assert "excluded batches: 0" in shown

    assert main([*folders, "run", "no_such_study"]) == 2
    assert "unknown or broken studies: no_such_study" in capsys.readouterr().err
