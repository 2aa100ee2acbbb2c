"""The demo end to end, as `bash scripts/demo.sh` runs it, in a subprocess on a data folder in tmp_path."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.instance import PROJECT_ROOT
from orchestration.study_folder import load_studies
from scripts.demo import EXAMPLE_STUDIES, REPORT_FILES, claim_demo_folder
from scripts.example_batches import EXAMPLE_BATCHES

MONTHS = [f"2025-{month:02d}-01" for month in range(1, 13)]


def run_demo(*args: str, pipeline_data: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"} | {"MPLBACKEND": "Agg"}
    if pipeline_data is not None:
        env["ASSIMILATE_DATA_DIR"] = str(pipeline_data)
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
    team = team_data_folder(tmp_path / "pipeline_data")
    before = snapshot(team)
    data = tmp_path / "data"
    done = run_demo("--data-dir", str(data), pipeline_data=team)
    assert done.returncode == 0, done.stderr[-3000:]
    assert snapshot(team) == before, "the demo touched the pipeline's data folder"
    out = done.stdout
    landed = [p for p in (data / "landing").rglob("*") if p.is_file()]
    assert f"Landed {len(landed)} batch files" in out and len(landed) >= 10 * len(EXAMPLE_BATCHES)
    finished = re.search(r"^(\d+) runs finished \((\d+) succeeded\)$", out, flags=re.MULTILINE)
    # Each study's history landed at once: a backfill, one run over its batches per study (a
    # guardrail's study runs in its primary's runs).
    n_studies = str(len(EXAMPLE_BATCHES))
    assert finished is not None and finished.groups() == (n_studies, n_studies), out[:2000]

    by_study = sections(out)
    assert sorted(by_study) == sorted(s.name for s in load_studies(EXAMPLE_STUDIES))
    assert {"ab_checkout", "retention_outreach"} <= set(by_study)
    for study in ("ab_checkout", "retention_outreach", "n_of_1_sleep"):
        text = by_study[study]
        assert all(month in text for month in MONTHS), text
        # The report files are listed after the trajectory: exactly the ones that exist.
        listed = listed_reports(text)
        folder = data / "reports" / study
        assert [p.resolve() for p in listed] == [
            (folder / name).resolve() for name in REPORT_FILES if (folder / name).is_file()
        ]
        assert {"fan_chart.png", "trajectory.csv", "summary.txt"} <= {p.name for p in listed}

    # The N-of-1 example: one person's year of nights, a memo like any study's.
    sleep = by_study["n_of_1_sleep"]
    assert re.search(r"^always-valid 95% interval after 2025-12-01: \[", sleep, flags=re.MULTILINE), sleep
    assert "memo.md" in {p.name for p in listed_reports(sleep)}
    outreach = by_study["retention_outreach"]
    # The outreach study keeps the same accounts every month (its card's population): detected and fused with.
    assert re.search(
        r"^returning units: 100% of each batch's units were seen in an earlier batch .*; "
        r"the posterior fuses the batches with this correlation$",
        outreach,
        flags=re.MULTILINE,
    ), outreach
    assert re.search(
        r"^returning units: 0% .*treats the batches as independent$",
        by_study["ab_checkout"],
        flags=re.MULTILINE,
    )
    assert re.search(r"^always-valid 95% interval after 2025-12-01: \[", outreach, flags=re.MULTILINE)
    excluded = re.search(r"^excluded batches: (\d+)$", outreach, flags=re.MULTILINE)
    assert excluded is not None and int(excluded.group(1)) >= 1
    # The seventh month is assigned by a health rule: no overlap, so it is kept out, check named.
    assert re.search(r"^  2025-07-01: failed .*check_propensity_model_overlap", outreach, flags=re.MULTILINE)
    # The encouragement study: the month whose e-mails bounced has a weak instrument and is kept out.
    assert re.search(
        r"^  2025-08-01: failed .*weak_instrument", by_study["encouragement_iv"], flags=re.MULTILINE
    ), by_study["encouragement_iv"]
    assert (data / "warehouse.duckdb").is_file() and (data / "dagster_home" / "dagster.yaml").is_file()


def team_data_folder(root: Path) -> Path:
    """A pipeline data folder as a team has it: landed files, a warehouse, alerts."""
    (root / "landing" / "ab_checkout").mkdir(parents=True)
    (root / "landing" / "ab_checkout" / "2025-01.csv").write_text(
        "unit_id,treatment,outcome,x\n1,1,2.0,0.1\n"
    )
    (root / "warehouse.duckdb").write_bytes(b"the team's history")
    (root / "alerts.jsonl").write_text("")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_demo_never_uses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    done = run_demo("--data-dir", str(tmp_path), pipeline_data=tmp_path.parent / f"{tmp_path.name}-pipeline")
    assert done.returncode != 0
    assert "not made by the demo: not using it" in done.stderr
    assert precious.read_text() == "keep me"


@pytest.mark.parametrize("where", [".", "demo", ".."])
def test_the_demo_refuses_the_pipelines_data_folder(tmp_path: Path, where: str) -> None:
    team = team_data_folder(tmp_path / "team" / "data")
    before = snapshot(team)
    done = run_demo("--data-dir", str(team / where), pipeline_data=team)
    assert done.returncode != 0
    assert "overlaps the pipeline's data folder" in done.stderr
    assert snapshot(team) == before


def test_starting_fresh_removes_only_what_a_demo_run_wrote(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    claim_demo_folder(demo, fresh=True)
    for name in ("landing/ab_checkout/2025-01.csv", "reports/retention_outreach/memo.md", "dagster_home/x"):
        (demo / name).parent.mkdir(parents=True, exist_ok=True)
        (demo / name).write_text("demo output")
    (demo / "warehouse.duckdb").write_text("demo output")
    (demo / "landing" / "team_study").mkdir()
    (demo / "landing" / "team_study" / "2025-01.csv").write_text("a person's file")
    (demo / "notes.txt").write_text("a person's file")
    claim_demo_folder(demo, fresh=True)
    assert snapshot(demo) == {
        ".assimilate-demo": b"",
        "landing/team_study/2025-01.csv": b"a person's file",
        "notes.txt": b"a person's file",
    }
