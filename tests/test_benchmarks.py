"""The benchmark suite runs (tiny sizes) and every estimate agrees with its reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchestration.instance import PROJECT_ROOT


def test_benchmark_smoke_run_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--output", str(output)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ratio" in done.stdout and "kalman" in done.stdout
    rows = json.loads(output.read_text())["rows"]
    assert {r["benchmark"] for r in rows} >= {"aipw", "ipw", "kalman", "particle"}
    assert all(r["agreement"] != "NO" for r in rows)
