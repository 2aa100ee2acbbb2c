"""Run every simulation study, print one table, and write it to docs/SIMULATIONS.md.

    python -m simulations.run            # the full studies (minutes): the table in docs/
    python -m simulations.run --fast     # what CI runs (seconds); prints, writes nothing
    python -m simulations.run --only peeking gates

Each row is one measured quantity with its promise (``target``), its Monte Carlo error and whether
the promise held. The run exits non-zero when any promise fails.
"""

from __future__ import annotations

import argparse
import importlib
import math
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from simulations.table import COLUMNS

STUDIES = (
    "returning_units",
    "peeking",
    "gates",
    "row_gates",
    "robust_and_trend",
    "n_of_1",
    "clustered",
    "estimands",
    "post_treatment",
    "iv",
    "first_stage_sign",
    "refuters",
    "calibration_audit",
    "calibration_audit_short",
    "segments",
    "did",
    "did_gate",
    "guardrails",
    "sampling_weights",
)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "SIMULATIONS.md"


def run_all(names: tuple[str, ...], *, fast: bool) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every named study's rows, and how long each took (seconds)."""
    frames, seconds = [], {}
    for name in tqdm(names, desc="simulation studies", unit="study", file=sys.stderr):
        module = importlib.import_module(f"simulations.{name}")
        start = time.perf_counter()
        frames.append(module.run(fast=fast))
        seconds[name] = time.perf_counter() - start
    return pd.concat(frames, ignore_index=True)[COLUMNS], seconds


def markdown(table: pd.DataFrame, seconds: dict[str, float], *, fast: bool) -> str:
    """The table as the Markdown page docs/SIMULATIONS.md."""

    def number(value: float) -> str:
        return "" if isinstance(value, float) and math.isnan(value) else f"{value:.4g}"

    shown = table.assign(
        value=table["value"].map(number),
        mc_error=table["mc_error"].map(number),
        passed=table["passed"].map(lambda p: "" if p is None or p != p else ("yes" if p else "NO")),
    )
    lines = [
        "# Simulation studies: do the intervals and gates keep their promises?",
        "",
        f"Made by `python -m simulations.run{' --fast' if fast else ''}` on "
        f"{datetime.now(UTC):%Y-%m-%d} ({platform.machine()}, Python {platform.python_version()}); "
        "every study is seeded. `target` is the promise; `mc_error` the Monte Carlo standard error of "
        "`value`; `passed` whether the promise held (blank: reported, no promise).",
        "",
        "Time per study: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ".",
        "",
        shown.to_markdown(index=False),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fast", action="store_true", help="the quick versions (CI); writes no docs")
    parser.add_argument("--only", nargs="+", choices=STUDIES, help="run only these studies")
    args = parser.parse_args(argv)
    names = tuple(args.only or STUDIES)
    table, seconds = run_all(names, fast=args.fast)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)
    print(table.to_string(index=False))
    if not args.fast and not args.only:
        DOCS.write_text(markdown(table, seconds, fast=False), encoding="utf-8")
        print(f"written: {DOCS.relative_to(Path.cwd()) if DOCS.is_relative_to(Path.cwd()) else DOCS}")
    failed = table[table["passed"].map(lambda p: p is not None and p == p and not bool(p))]
    if len(failed):
        print(f"{len(failed)} promise(s) not kept:\n{failed.to_string(index=False)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
