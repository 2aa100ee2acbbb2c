"""The benchmark suite runs (tiny sizes) and every answer agrees with its reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.instance import PROJECT_ROOT


@pytest.mark.slow  # runs every benchmark's smoke version, the pipeline's among them (about two minutes)
def test_benchmark_smoke_run_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--output", str(output)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ratio" in done.stdout and "floors" in done.stdout
    payload = json.loads(output.read_text())
    assert payload["date"] and payload["machine"]["python"]
    rows = payload["rows"]
    benchmarks = {r["benchmark"] for r in rows}
    assert {"aipw", "ipw", "kalman", "particle"} <= benchmarks
    assert "landed batch -> posterior" in benchmarks, benchmarks
    assert not [r for r in rows if r["agreement"].startswith("NO")]
    ours = [r for r in rows if r["tool"].startswith("assimilate") and r["median_s"] == r["median_s"]]
    assert ours and all(r["median_s"] > 0 for r in ours)
