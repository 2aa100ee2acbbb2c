"""Peak resident memory of one large landed batch through the whole pipeline (issue 17: 1e7 rows in 4 GiB).

    .venv/bin/python -m benchmarks.memory                  # 1e6 and 1e7 rows (the 1e7 run takes minutes)
    .venv/bin/python -m benchmarks.memory --rows 1000000   # one size
    .venv/bin/python -m benchmarks.memory --smoke          # 20,000 rows (seconds)

One Parquet file of the outreach study (``retention_study()``) is written in chunks to a fresh
data folder. Then two subprocesses, one after the other, each on that file:

- the pipeline: the project's runner (``run_landed_batches``: landing-sensor tick, the run of the
  study's job, its alerts) on a SQLite instance in a fresh Dagster home, as ``assimilate run`` does;
- the reference: the library path on the same file (benchmarks/notebook.py: read, check,
  ``fit_batch``, one filter step).

Each subprocess's peak resident set size is the kernel's ``ru_maxrss`` of that child, taken by a
small launcher that forks it (``LAUNCHER``: a child forked from this process would be charged for
this process's memory), and psutil samples it every 0.2 s to stop a run that passes ``KILL_GIB``. Wall time
is the subprocess's, imports included. Agreement: the pipeline ran, its stored primary estimate
equals the library's (relative difference <= 1e-8) and its posterior equals the library's re-filter.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from assimilate.simulate import simulate_outreach_batch

GIB = 2**30
TARGET_GIB = 4.0
KILL_GIB = 16.0
CHUNK_ROWS = 1_000_000
BATCH_LABEL, PARTITION = "2025-01", "2025-01-01"  # the study's first month
TOLERANCE = 1e-8


def write_outreach_file(path: Path, n_rows: int, *, seed: int = 17, chunk_rows: int = CHUNK_ROWS) -> Path:
    """One outreach batch of ``n_rows`` rows as Parquet, simulated and written a chunk at a time.

    Each chunk is an independent draw of the same stream; account ids are renumbered across the
    file so that every unit appears once (the pipeline checks that).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    try:
        for index, start in enumerate(range(0, n_rows, chunk_rows)):
            size = min(chunk_rows, n_rows - start)
            frame = simulate_outreach_batch(size, rng=np.random.default_rng([seed, index]))
            frame["account_id"] = [f"acct-{start + i:013d}" for i in range(size)]
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return path


@dataclass(frozen=True)
class ChildRun:
    """One measured subprocess: its peak RSS, wall time, exit code and the JSON it printed last."""

    peak_bytes: int
    seconds: float
    returncode: int
    report: dict[str, Any]
    stderr: str
    killed: bool
    samples: tuple[tuple[float, int], ...] = ()  # (epoch seconds, RSS bytes) every 0.2 s, with psutil

    @property
    def peak_gib(self) -> float:
        return self.peak_bytes / GIB


# A small process between this one and the measured command. The kernel's peak RSS of a child
# counts the memory of the process it was forked from (Linux carries the pre-exec image's high-water
# mark over exec), so a child forked from this process, which may hold gigabytes, would be charged
# for them. The launcher is small when it forks the command, and reports that child's peak alone.
LAUNCHER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(code)"
)


def measure_child(command: list[str], *, kill_bytes: float = KILL_GIB * GIB) -> ChildRun:
    """Run ``command`` and measure its peak resident memory; its report is the last JSON line it prints.

    The peak is the kernel's ``ru_maxrss`` of the command alone, taken by a small launcher process
    that forks it (``LAUNCHER``); psutil, when installed, samples the command's RSS to kill it past
    ``kill_bytes``.
    """
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.TemporaryDirectory() as folder,
    ):
        peak_file = Path(folder) / "peak_kib"
        start = time.perf_counter()
        launcher = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(peak_file), *command], stdout=out, stderr=err, text=True
        )
        killed, sampled, samples = False, 0, []
        try:
            import psutil

            watched: Any = psutil.Process(launcher.pid)
        except ImportError:  # the kernel's peak still comes from the launcher
            watched = None
        while launcher.poll() is None:
            if watched is not None:
                with contextlib.suppress(Exception):  # the command ended between poll and the sample
                    rss = sum(c.memory_info().rss for c in watched.children(recursive=True))
                    samples.append((time.time(), rss))
                    sampled = max(sampled, rss)
                if sampled > kill_bytes and not killed:
                    for process in watched.children(recursive=True):
                        process.kill()
                    killed = True
            time.sleep(0.2)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
        report = json.loads(lines[-1]) if lines else {}
        kernel = int(peak_file.read_text()) * 1024 if peak_file.exists() else 0  # KiB on Linux
        stderr = err.read()[-4000:]
        return ChildRun(
            max(kernel, sampled), seconds, launcher.returncode, report, stderr, killed, tuple(samples)
        )


def step_peaks(home: Path, samples: tuple[tuple[float, int], ...]) -> list[tuple[str, float, int]]:
    """Each step of the runs in ``home``'s instance: its wall seconds and the largest RSS sampled in it."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        stats = [s for run in instance.get_runs() for s in instance.get_run_step_stats(run.run_id)]
    finally:
        instance.dispose()
    found = []
    for s in sorted(stats, key=lambda s: s.start_time or 0.0):
        if s.start_time is None or s.end_time is None:
            continue
        found.append(
            (
                s.step_key.split("__")[-1],
                float(s.end_time - s.start_time),
                _peak_within(samples, s.start_time, s.end_time),
            )
        )
    return found


def _peak_within(samples: tuple[tuple[float, int], ...], start: float, end: float) -> int:
    """The largest RSS sampled from ``start`` to ``end``; for a step shorter than the sampling interval,
    the larger of the samples just before and just after it, the nearest the sampler saw it."""
    inside = [rss for when, rss in samples if start <= when <= end]
    if inside:
        return max(inside)
    before = [rss for when, rss in samples if when < start][-1:]
    after = [rss for when, rss in samples if when > end][:1]
    return max(before + after, default=0)


def child_command(kind: str, data: Path, home: Path) -> list[str]:
    """The command of one measured subprocess: this module in its ``--child`` role."""
    return [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--child",
        kind,
        "--data",
        str(data),
        "--home",
        str(home),
    ]


def _child(kind: str, data: Path, home: Path) -> dict[str, Any]:
    """What one subprocess does: the pipeline's runner, or the library path, on the landed file."""
    path = data / "landing" / "retention_outreach" / f"{BATCH_LABEL}.parquet"
    start = time.perf_counter()
    if kind == "library":  # the library only: no Dagster, no shell in this process
        from benchmarks.notebook import library_path, outreach_plan

        estimate = library_path(path, outreach_plan(), PARTITION)
        return {"seconds": time.perf_counter() - start, "estimate": estimate.estimate}
    import dagster as dg

    from benchmarks.pipeline import retention_study
    from orchestration.definitions import build_definitions
    from orchestration.runner import run_landed_batches

    study = retention_study()
    defs = build_definitions(studies=[study], data_dir=data)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        results = run_landed_batches(defs, instance, [study])
    finally:
        instance.dispose()
    return {"seconds": time.perf_counter() - start, "success": [r.success for r in results]}


def stored_primary_estimate(data: Path) -> float:
    """The pipeline's stored primary estimate of the landed batch."""
    from benchmarks.pipeline import retention_study
    from resources.warehouse import Warehouse

    study = retention_study()
    effects = Warehouse(data / "warehouse.duckdb").read_table(study.name, "batch_effects")
    return float(effects.loc[effects["is_primary"].astype(bool), "estimate"].iloc[0])


def memory_rows(n_rows: int) -> list[dict[str, Any]]:
    """Peak RSS of the pipeline and of the library path on one ``n_rows``-row file; ratios to the library."""
    from benchmarks.notebook import relative_difference
    from benchmarks.pipeline import Setup, posterior_agreement, retention_study
    from orchestration.instance import prepare_dagster_home

    study = retention_study()
    bench = "peak memory, one landed batch"
    with tempfile.TemporaryDirectory(prefix="assimilate-memory-") as folder:
        data, home = Path(folder) / "data", prepare_dagster_home(Path(folder) / "home")
        write_outreach_file(data / "landing" / study.landing_folder / f"{BATCH_LABEL}.parquet", n_rows)
        steps: list[tuple[str, float, int]] = []
        library = measure_child(child_command("library", data, home))
        pipeline = measure_child(child_command("pipeline", data, home))
        if library.returncode != 0 or "estimate" not in library.report:
            raise RuntimeError(f"the library subprocess failed ({n_rows} rows):\n{library.stderr}")
        if pipeline.killed:
            agreement = f"NO (killed past {KILL_GIB:g} GiB)"
        elif pipeline.returncode != 0 or pipeline.report.get("success") != [True]:
            agreement = f"NO (the pipeline failed: exit {pipeline.returncode}) {pipeline.stderr[-800:]}"
        else:
            gap = relative_difference(stored_primary_estimate(data), library.report["estimate"])
            posterior = posterior_agreement(Setup(home, data, study, None))  # type: ignore[arg-type]
            verdict = "yes" if gap <= TOLERANCE and posterior.startswith("yes") else "NO"
            agreement = f"{verdict} (estimate rel. diff {gap:.1e}; posterior {posterior})"
            steps = step_peaks(home, pipeline.samples)
    ratio = pipeline.peak_bytes / library.peak_bytes
    library_tool = "library path: read + check + fit_batch + step (reference)"
    rows = [
        _memory_row(bench, library_tool, n_rows, library.seconds, library.peak_bytes, 1.0, "reference"),
        _memory_row(
            bench,
            "pipeline: runner, sqlite instance (subprocess)",
            n_rows,
            pipeline.seconds,
            pipeline.peak_bytes,
            ratio,
            agreement,
        ),
        _memory_row(
            bench + " (vs target)",
            f"pipeline peak / {TARGET_GIB:g} GiB target",
            n_rows,
            pipeline.seconds,
            pipeline.peak_bytes,
            pipeline.peak_gib / TARGET_GIB,
            "within" if pipeline.peak_gib <= TARGET_GIB else "above",
        ),
    ]
    # Where the peak is: the largest RSS sampled during each step (ratio: to the library's peak).
    for name, seconds, peak in steps:
        rows.append(
            _memory_row(bench + " (step)", name, n_rows, seconds, peak, peak / library.peak_bytes, "-")
        )
    return rows


def _memory_row(
    bench: str, tool: str, n_rows: int, seconds: float, peak_bytes: float, ratio: float, agreement: str
) -> dict[str, Any]:
    from benchmarks.pipeline import row

    item = row(bench, tool, n_rows, [max(seconds, 1e-9)], ratio, agreement)
    item["peak_mib"] = peak_bytes / 2**20
    return item


def print_rows(rows: list[dict[str, Any]]) -> None:
    """The rows with their peak memory: benchmark, tool, size, wall s, peak GiB, ratio, agreement."""
    for item in rows:
        print(
            f"{item['benchmark']:<42} {item['tool']:<62} {item['size']:>9} {item['median_s']:>9.2f} s "
            f"{item['peak_mib'] / 1024:>7.2f} GiB {item['ratio_to_reference']:>7.2f}  {item['agreement']}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="20,000 rows, seconds")
    parser.add_argument("--rows", type=int, action="append", help="one size (repeatable)")
    parser.add_argument("--child", choices=["pipeline", "library"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.data, args.home)), flush=True)
        return
    for n_rows in args.rows or ([20_000] if args.smoke else [1_000_000, 10_000_000]):
        print_rows(memory_rows(n_rows))


if __name__ == "__main__":
    main()
