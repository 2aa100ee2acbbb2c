"""The demo end to end, as `bash scripts/demo.sh` runs it, in a subprocess on a data folder in tmp_path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.definitions import STUDIES_DIR
from orchestration.instance import PROJECT_ROOT
from orchestration.study_config import load_studies
from scripts.demo import REPORT_FILES

MONTHS = [f"2025-{month:02d}-01" for month in range(1, 13)]


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "scripts.demo", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def sections(output: str) -> dict[str, str]:
    """The printed summary of each study, by study name."""
    parts = re.split(r"^=== (\w+): posterior trajectory$", output, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def listed_reports(section: str) -> list[Path]:
    """The indented paths under a study's ``reports (...):`` line (relative to the demo's folder)."""
    paths = []
    for line in section.split("\nreports (", 1)[1].splitlines()[1:]:
        if not line.startswith("  "):
            break
        path = Path(line.strip())
        paths.append(path if path.is_absolute() else PROJECT_ROOT / path)
    return paths


@pytest.mark.slow
def test_the_demo_runs_every_study_and_shows_exclusions_and_reports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run_demo("--data-dir", str(data))
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "Landed 24 batch files" in out
    finished = re.search(r"^(\d+) runs finished \((\d+) succeeded\)$", out, flags=re.MULTILINE)
    assert finished is not None and finished.groups() == ("24", "24"), out[:2000]

    by_study = sections(out)
    assert sorted(by_study) == sorted(s.name for s in load_studies(STUDIES_DIR))
    assert {"ab_checkout", "retention_outreach"} <= set(by_study)
    for study in ("ab_checkout", "retention_outreach"):
        text = by_study[study]
        assert all(month in text for month in MONTHS), text
        # The report files are listed after the trajectory: exactly the ones that exist.
        listed = listed_reports(text)
        folder = data / "reports" / study
        assert [p.resolve() for p in listed] == [
            (folder / name).resolve() for name in REPORT_FILES if (folder / name).is_file()
        ]
        assert {"fan_chart.png", "trajectory.csv", "summary.txt"} <= {p.name for p in listed}

    outreach = by_study["retention_outreach"]
    excluded = re.search(r"^excluded batches: (\d+)$", outreach, flags=re.MULTILINE)
    assert excluded is not None and int(excluded.group(1)) >= 1
    # The seventh month is assigned by a health rule: no overlap, so it is kept out, check named.
    assert re.search(r"^  2025-07-01: failed .*check_propensity_model_overlap", outreach, flags=re.MULTILINE)
    assert (data / "warehouse.duckdb").is_file() and (data / "dagster_home" / "dagster.yaml").is_file()


def test_the_demo_never_wipes_a_folder_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    done = run_demo("--data-dir", str(tmp_path))
    assert done.returncode != 0
    assert "not deleting it" in done.stderr
    assert precious.read_text() == "keep me"
