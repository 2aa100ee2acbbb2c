"""The benchmark table: one row per tool and size, timing helpers and the printed layout.

A row holds wall times of repeated calls (median, min, max), the ratio of its median to the
reference's median, the peak traced memory of one call, how its answer agrees with ours and, for
the estimator benchmarks, its median in "floor passes" (one ``X'(wX)`` over the same design).
"""

from __future__ import annotations

import math
import statistics
import time
import tracemalloc
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    benchmark: str
    tool: str
    size: int
    median_s: float
    min_s: float
    max_s: float
    ratio_to_reference: float
    peak_mib: float
    agreement: str
    floor_passes: float | None = None  # median / the floor pass's median at this size


def timed(function: Callable[[], Any], repeats: int) -> tuple[list[float], float]:
    """Wall times of ``repeats`` calls and the peak traced memory (MiB) of one more call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times, traced_peak(function)


def timed_together(
    functions: Mapping[str, Callable[[], Any]], repeats: int, *, warm: Collection[str] = ()
) -> dict[str, list[float]]:
    """Wall times of ``repeats`` rounds, each calling every function once in turn.

    Interleaving gives every tool the same share of whatever else the machine is doing, so ratios
    within one run stay comparable on a shared machine. Functions named in ``warm`` are called once
    untimed right before each timed call: a multi-threaded BLAS call after another tool has run
    otherwise pays for waking its sleeping threads (milliseconds on a busy machine), which would
    flatter whatever is compared with it.
    """
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            if name in warm:
                function()
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def traced_peak(function: Callable[[], Any]) -> float:
    """Peak memory (MiB) that tracemalloc sees during one call (numpy allocations included)."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def make_row(
    benchmark: str,
    tool: str,
    size: int,
    times: list[float],
    *,
    reference_median: float,
    peak_mib: float,
    agreement: str,
    floor_median: float | None = None,
) -> Row:
    """A row from raw times: median, spread, ratio to the reference and to the floor pass."""
    median = statistics.median(times)
    return Row(
        benchmark,
        tool,
        size,
        median,
        min(times),
        max(times),
        median / reference_median,
        peak_mib,
        agreement,
        None if floor_median is None else median / floor_median,
    )


def skipped_row(benchmark: str, tool: str, size: int, reason: str) -> Row:
    """A row for a tool that did not run at this size (too slow, or not installed)."""
    return Row(benchmark, tool, size, math.nan, math.nan, math.nan, math.nan, math.nan, reason)


def disagreements(rows: list[Row]) -> list[Row]:
    """Rows whose answer disagrees with ours (agreement starting with ``"NO"``)."""
    return [r for r in rows if r.agreement.startswith("NO")]


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'benchmark':<18} {'tool':<40} {'size':>9} {'median s':>10} {'min-max s':>19} "
        f"{'ratio':>8} {'floors':>7} {'peak MiB':>9}  agrees"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if math.isnan(r.median_s):
            print(
                f"{r.benchmark:<18} {r.tool:<40} {r.size:>9} {'-':>10} {'-':>19} {'-':>8} {'-':>7} {'-':>9}  {r.agreement}"
            )
            continue
        spread = f"{r.min_s:.4f}-{r.max_s:.4f}"
        floors = "-" if r.floor_passes is None else f"{r.floor_passes:.2f}"
        peak = "-" if math.isnan(r.peak_mib) else f"{r.peak_mib:.1f}"
        print(
            f"{r.benchmark:<18} {r.tool:<40} {r.size:>9} {r.median_s:>10.4f} {spread:>19} "
            f"{r.ratio_to_reference:>8.3f} {floors:>7} {peak:>9}  {r.agreement}"
        )
