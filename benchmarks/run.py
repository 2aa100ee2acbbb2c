"""The whole benchmark suite: estimators, filters and the pipeline, each against its peers in one run.

    .venv/bin/python -m benchmarks.run                       # every size (about 20 minutes)
    .venv/bin/python -m benchmarks.run --only filters        # one part: estimators, filters, pipeline, refuters,
                                                             # memory (1e6 and 1e7 rows: +15 min), cli
    .venv/bin/python -m benchmarks.run --smoke               # tiny sizes: proves the suite works (CI)

Prints one table (tool, size, median and min-max of repeats, ratio to the reference, floor passes,
peak memory, agreement with the reference) and writes it as JSON with the date and the machine to
benchmarks/results/latest.json, so a later run can be compared with this one. Every benchmark
checks that our answer agrees with its reference; a disagreement fails the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.call_counts import print_parts, print_work
from benchmarks.cli import cli_rows
from benchmarks.estimators import estimator_rows
from benchmarks.filters import append_rows, filter_rows, first_call_rows
from benchmarks.memory import memory_rows
from benchmarks.pipeline import pipeline_rows
from benchmarks.refuters import refuter_rows
from benchmarks.table import Row, disagreements, print_table

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("estimators", "filters", "pipeline", "refuters", "memory", "cli")


def suite_rows(
    parts: tuple[str, ...],
    *,
    smoke: bool,
    work: list[dict[str, Any]] | None = None,
    time_parts: list[dict[str, Any]] | None = None,
) -> list[Row]:
    """The rows of the chosen parts, at smoke or full sizes (``work`` and ``time_parts``: see
    benchmarks/pipeline.py ``pipeline_rows``)."""
    rows: list[Row] = []
    if "estimators" in parts:
        rows += (
            estimator_rows([2_000], 1)
            if smoke
            else estimator_rows([10_000, 100_000, 1_000_000, 10_000_000], 5)
        )
    if "filters" in parts:
        if smoke:
            rows += filter_rows([200], 1, 500) + append_rows((10, 100), repeats=3)
        else:
            rows += filter_rows([1_000, 100_000, 1_000_000], 5, 3_000) + append_rows() + first_call_rows()
    if "pipeline" in parts:
        rows += [_as_row(r) for r in pipeline_rows(smoke, work=work, parts=time_parts)]
    if "refuters" in parts:
        rows += [_as_row(r) for r in refuter_rows(smoke)]
    if "memory" in parts:  # issue 17: a 1e7-row batch through the pipeline within 4 GiB
        sizes = [20_000] if smoke else [1_000_000, 10_000_000]
        rows += [_as_row(r) for n in sizes for r in memory_rows(n)]
    if "cli" in parts:  # issue 17: dagster asset materialize within 3x the in-process runner
        cli = cli_rows(2_000, repeats=1, profile=False) if smoke else cli_rows(100_000)
        rows += [_as_row(r) for r in cli]
    return rows


def _as_row(row: Row | dict[str, object]) -> Row:
    if isinstance(row, Row):
        return row
    floors = row.get("floor_passes")
    return Row(**{**row, "floor_passes": None if floors != floors else floors})  # type: ignore[arg-type]


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (used by the tests)")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only this part (repeatable)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    work: list[dict[str, Any]] = []
    time_parts: list[dict[str, Any]] = []
    rows = suite_rows(tuple(args.only or PARTS), smoke=args.smoke, work=work, time_parts=time_parts)
    print_table(rows)
    print_work(work)
    print_parts(time_parts)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rows": [asdict(r) for r in rows],
    }
    args.output.write_text(json.dumps(payload, indent=2))
    if disagreements(rows):
        raise SystemExit(
            "an answer disagrees with its reference: " + ", ".join(r.tool for r in disagreements(rows))
        )


if __name__ == "__main__":
    main()
