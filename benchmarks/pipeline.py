"""Pipeline benchmarks: a landed file to an updated posterior, and backfills of a history.

    .venv/bin/python -m benchmarks.pipeline            # 1e5- and 1e6-row batch; 120 x 1e4 rows; 1,000 daily x 1e3
    .venv/bin/python -m benchmarks.pipeline --smoke    # 1e4-row batch; 6 batches; 5 daily (seconds)

Everything is real: a fresh temporary data folder, the DuckDB warehouse, the project's runner
(landing-sensor tick, each requested run in this process, its alerts) and a real Dagster instance:
ephemeral (what the pipeline tests use) or SQLite in a temporary home with the project's
dagster.yaml (what the demo uses; every event is a SQLite commit, and the write pool applies).
Ratios are to references of the same run: the 3 s target and the library path on the same file
(benchmarks/notebook.py: read, check, ``fit_batch``, one filter step; issue 17's target: within 3x
of it at 1e5 and 1e6 rows, the 1e6 batch on the ephemeral instance only); for a backfill, the
library alone on the same files (targets: 120 batches of 1e4 rows in 30 s, 1,000 daily batches in
3 minutes). A backfill runs ranges of batches, each asset once over a range
(orchestration/batch_ranges.py). Files land whole (modified before the landing sensor's settle
time), so the sensor's wait for a file still being written (up to 1 s) is not measured.
Agreement: the stored posterior equals the library's full re-filter of the stored primary
estimates and verdicts.

Work per landed batch (benchmarks/call_counts.py): how many times the measured runs fit the
propensity and the outcome model per batch, and run the filter per posterior update, with the
seconds those calls take and the part of them spent repeating work (the target is one of each).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import numpy as np
import pandas as pd

from assets.common import VERDICT_TABLES, verdict_table
from assets.partitions import study_partitions
from assimilate.admission import observations
from assimilate.filter_settings import FilterSettings
from assimilate.incremental import full_filter
from assimilate.simulate import simulate_outreach_batch
from benchmarks.call_counts import TIMED_PARTS, counting_calls, part_rows, print_parts, print_work, work_rows
from benchmarks.notebook import library_path, retention_study_data
from orchestration.definitions import build_definitions
from orchestration.instance import prepare_dagster_home
from orchestration.runner import execute_request, run_landed_batches, tick_landing_sensor
from resources.landing_files import SETTLE_SECONDS
from resources.study import StudyConfig
from resources.warehouse import Warehouse

TARGET_LANDED_S = 3.0
TARGET_BACKFILL_S = 30.0  # 120 batches of 1e4 rows
TARGET_DAILY_S = 180.0  # 1,000 daily batches
DAILY_ROWS = 1_000
LARGE_LANDED_ROWS = 1_000_000  # issue 17: landed batch -> posterior within 3x the library at 1e5 and 1e6 rows
DAEMON_TICK_S = 30.0
NA = float("nan")
Instance = Literal["ephemeral", "sqlite"]


@dataclass
class Setup:
    """A fresh data folder and Dagster home, with the definitions and instance on them."""

    home: Path
    data: Path
    study: StudyConfig
    instance: dg.DagsterInstance
    cursors: dict[str, str | None] = field(default_factory=dict)

    @property
    def defs(self) -> dg.Definitions:
        """A load of the code location now: its partitions end after the files landed so far."""
        return build_definitions(studies=[self.study], data_dir=self.data)

    def land(self, label: str, frame: pd.DataFrame) -> Path:
        """Write a batch file as landed whole: its modification time SETTLE_SECONDS in the past.

        The landing sensor waits up to SETTLE_SECONDS for a file changed more recently (one being
        written in place); a file moved in whole keeps its older time. The measured path is then
        the pipeline's work, not that wait (a daemon's tick comes every 30 s anyway).
        """
        folder = self.data / "landing" / self.study.landing_folder
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{label}.parquet"
        frame.to_parquet(path, index=False)
        landed = time.time() - SETTLE_SECONDS - 1.0
        os.utime(path, (landed, landed))
        return path


@contextmanager
def fresh_setup(study: StudyConfig, instance: Instance) -> Iterator[Setup]:
    with tempfile.TemporaryDirectory(prefix="assimilate-bench-") as folder:
        home = prepare_dagster_home(Path(folder) / "home")
        data = Path(folder) / "data"
        dagster = (
            dg.DagsterInstance.ephemeral()
            if instance == "ephemeral"
            else dg.DagsterInstance.from_config(str(home))
        )
        try:
            yield Setup(home, data, study, dagster)
        finally:
            dagster.dispose()


def row(
    benchmark: str, tool: str, size: int, times: list[float], ratio: float, agreement: str
) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "tool": tool,
        "size": size,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "ratio_to_reference": ratio,
        "peak_mib": NA,
        "agreement": agreement,
        "floor_passes": NA,
    }


def retention_study(*, keep: tuple[str, ...] = (), **changes: Any) -> StudyConfig:
    """The shipped outreach study, by default without its opt-in per-batch extras.

    Its refuters refit the estimator and its effect modifier (region) adds a segment step: both
    are left out unless named in ``keep`` ("refuters", "segments"), so the per-batch budget
    measures the core path (benchmarks/refuters.py measures the refuters against it).
    """
    study = StudyConfig.model_validate(retention_study_data(keep=keep))
    return study.model_copy(update=changes) if changes else study


def posterior_agreement(setup: Setup, *, tolerance: float = 1e-9) -> str:
    """'yes' when the stored posterior equals the library's full re-filter of the stored estimates."""
    store = Warehouse(setup.data / "warehouse.duckdb")
    name = setup.study.name
    verdicts = pd.concat(
        [store.read_table(name, verdict_table(asset)) for asset in VERDICT_TABLES], ignore_index=True
    )
    observed = observations(
        study_partitions(setup.study).get_partition_keys(),
        store.read_table(name, "raw_files"),
        store.read_table(name, "batch_effects"),
        verdicts,
    )
    steps = store.read_table(name, "posterior_steps")
    expected = full_filter(observed, FilterSettings.from_plan(setup.study), smooth=False)
    if steps["batch"].astype(str).tolist() != list(expected.labels):
        return "NO (batches differ)"
    error = max(
        float(np.max(np.abs(steps["posterior_mean"].to_numpy() - expected.posterior_mean))),
        float(np.max(np.abs(steps["posterior_var"].to_numpy() - expected.posterior_var))),
    )
    excluded = int(steps["excluded"].sum())
    verdict = "yes" if error <= tolerance else "NO"
    return f"{verdict} (max |diff| {error:.1e}, {len(steps)} batches, {excluded} excluded)"


def _seconds(function: Any, *args: Any) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def posterior_updates(setup: Setup) -> int:
    """How many times the study's posterior has been materialized in this set-up's instance."""
    key = dg.AssetKey([setup.study.name, "effect_posterior"])
    return len(setup.instance.fetch_materializations(key, limit=10_000).records)


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Wall time of each step of a run, from the run's step stats."""
    return {
        s.step_key.split("__")[-1]: float(s.end_time - s.start_time)
        for s in instance.get_run_step_stats(run_id)
        if s.start_time is not None and s.end_time is not None
    }


@dataclass
class Ticks:
    """Landed batches run one tick each: wall time per tick, to the posterior, per step."""

    times: list[float] = field(default_factory=list)
    to_posterior: list[float] = field(default_factory=list)  # tick start -> the posterior stored
    steps: list[dict[str, float]] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)


def _ticks(setup: Setup, n_rows: int, months: range) -> Ticks:
    """Land one file per month and tick after each: wall time per tick, to the posterior, per step."""
    ticks = Ticks()
    posterior = dg.AssetKey([setup.study.name, "effect_posterior"])
    for month in months:
        frame = simulate_outreach_batch(n_rows, rng=np.random.default_rng(month))
        ticks.paths.append(setup.land(f"{2025 + (month - 1) // 12}-{(month - 1) % 12 + 1:02d}", frame))
        defs = setup.defs  # the daemon's reload of the code location, outside the timing
        started, start = time.time(), time.perf_counter()
        results = run_landed_batches(defs, setup.instance, [setup.study], cursors=setup.cursors)
        ticks.times.append(time.perf_counter() - start)
        if [r.success for r in results] != [True]:
            raise RuntimeError(f"the run of {ticks.paths[-1].name} failed")
        stored = setup.instance.fetch_materializations(posterior, limit=1).records[0]
        ticks.to_posterior.append(stored.timestamp - started)  # the event's time: the instance's clock
        ticks.steps.append(step_seconds(setup.instance, results[0].run_id))
    return ticks


def landed_batch_rows(
    n_rows: int,
    *,
    repeats: int = 3,
    earlier: int = 3,
    instances: Sequence[Instance] = ("ephemeral", "sqlite"),
    work: list[dict[str, Any]] | None = None,
    parts: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """(a) one landed file -> sensor -> run -> posterior, appended after ``earlier`` small batches.

    On each of ``instances`` (the ephemeral one always runs: the library reference is timed on its
    files). The library reference is benchmarks/notebook.py's ``library_path`` on the same files:
    read, check, ``fit_batch``, one filter step. Each run is timed whole (the memo and its figures
    come after the posterior) and to the posterior's materialization. ``work`` and ``parts``, when
    given, receive the work rows and the parts of the time of the measured batches (ephemeral
    instance).
    """
    study = retention_study()
    bench = "landed batch -> posterior"
    rows = [row(bench, "3 s target (reference)", n_rows, [TARGET_LANDED_S], 1.0, "reference")]
    timed: dict[str, list[float]] = {}
    for instance in dict.fromkeys(("ephemeral", *instances)):
        with fresh_setup(study, instance) as setup:
            first = _ticks(setup, 2_000, range(1, earlier + 1))
            updates = posterior_updates(setup)
            with counting_calls() as counter, counting_calls(TIMED_PARTS, one_depth=True) as timer:
                ticks = _ticks(setup, n_rows, range(earlier + 1, earlier + 1 + repeats))
            times, steps = ticks.times, ticks.steps
            measured = f"{bench}, {n_rows} rows, {instance} instance"
            if instance == "ephemeral":
                timed["library"] = [_seconds(library_path, path, study) for path in ticks.paths]
                cold = first.times[0]
            if work is not None and instance == "ephemeral":
                work += work_rows(
                    measured,
                    n_rows,
                    batches=repeats,
                    updates=posterior_updates(setup) - updates,
                    counter=counter,
                    batch_seconds=statistics.median(times),
                )
            if parts is not None and instance == "ephemeral":
                parts += part_rows(
                    measured,
                    n_rows,
                    batches=repeats,
                    counter=timer,
                    batch_seconds=sum(times) / repeats,  # the parts are sums over the batches too
                    library_seconds=statistics.median(timed["library"]),
                )
            agreement = posterior_agreement(setup)
        if instance == "ephemeral":
            rows.append(
                row(
                    bench + " (cold)",
                    "first tick of a process (imports), 2000 rows",
                    2_000,
                    [cold],
                    cold / TARGET_LANDED_S,
                    "-",
                )
            )
        label = f"dagster + duckdb, {instance} instance"
        timed[label], timed[f"{label}: posterior stored"] = times, ticks.to_posterior
        rows.append(row(bench, label, n_rows, times, statistics.median(times) / TARGET_LANDED_S, agreement))
        rows.append(
            row(
                bench,
                f"{label}: posterior stored",
                n_rows,
                ticks.to_posterior,
                statistics.median(ticks.to_posterior) / TARGET_LANDED_S,
                "-",
            )
        )
        total = statistics.median(times)
        for name in steps[0]:
            per_step = [s.get(name, NA) for s in steps]
            rows.append(
                row(
                    f"{bench} ({instance}: step)",
                    name,
                    n_rows,
                    per_step,
                    statistics.median(per_step) / total,
                    "-",
                )
            )
    lib = statistics.median(timed["library"])
    rows.insert(
        1,
        row(bench, "library: read + check + fit_batch + filter step", n_rows, timed["library"], lib / 3, "-"),
    )
    rows.append(
        row(bench + " (vs library)", "library path (reference)", n_rows, timed["library"], 1.0, "reference")
    )
    rows.append(row(bench + " (vs library)", "3x the library path (target)", n_rows, [3 * lib], 3.0, "-"))
    for label, times in timed.items():
        if label != "library":
            rows.append(
                row(bench + " (vs library)", label, n_rows, times, statistics.median(times) / lib, "-")
            )
    return rows


HistoryMode = Literal["every_run", "backfill", "backfill_sqlite", "processes"]
HISTORY_MODES: tuple[HistoryMode, ...] = ("every_run", "backfill", "backfill_sqlite", "processes")
Cadence = Literal["monthly", "daily"]
HISTORY_START = {"monthly": date(2016, 1, 1), "daily": date(2023, 1, 1)}


def history_labels(n_batches: int, cadence: Cadence) -> list[str]:
    """The batch files' names: ``2016-01`` onward (monthly), ``2023-01-01`` onward (daily)."""
    if cadence == "daily":
        return [(HISTORY_START["daily"] + timedelta(days=i)).isoformat() for i in range(n_batches)]
    return [f"{2016 + i // 12}-{i % 12 + 1:02d}" for i in range(n_batches)]


def history_rows(
    n_batches: int,
    n_rows: int,
    *,
    cadence: Cadence = "monthly",
    target_s: float = TARGET_BACKFILL_S,
    processes: int = 2,
    modes: Sequence[HistoryMode] = HISTORY_MODES,
    work: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """(b) a history of batches landed at once, then run; ratios to the library alone on the same files.

    The library alone (benchmarks/notebook.py) reads and checks each file, fits it with
    ``fit_batch`` (every estimator and the overlap, balance and estimation verdicts) and takes one
    filter step: what the pipeline computes per batch, without storage, the shell's checks,
    reports or Dagster. ``work``, when
    given, receives the work rows of the in-process paths (their calls are counted in this process).
    """
    study = retention_study(start_date=HISTORY_START[cadence], cadence=cadence)
    labels = history_labels(n_batches, cadence)
    frames = [simulate_outreach_batch(n_rows, rng=np.random.default_rng(1000 + i)) for i in range(n_batches)]
    bench = (
        f"backfill {n_batches} batches" if cadence == "monthly" else f"backfill {n_batches} {cadence} batches"
    )
    described: dict[HistoryMode, tuple[str, Instance]] = {
        "every_run": ("runner, every run updates the posterior", "ephemeral"),
        "backfill": ("runner, backfill=True (range runs)", "ephemeral"),
        "backfill_sqlite": ("runner, backfill=True (range runs)", "sqlite"),
        "processes": (f"{processes} processes, whole job per run", "sqlite"),
    }
    timed: list[tuple[str, float, str]] = []
    library = NA
    for mode in modes:
        label, instance = described[mode]
        with fresh_setup(study, instance) as setup:
            paths = [setup.land(name, frame) for name, frame in zip(labels, frames, strict=True)]
            if math.isnan(library):  # on the same files, in the same run
                library = sum(_seconds(library_path, path, study) for path in paths)
            defs = setup.defs
            start = time.perf_counter()
            if mode == "processes":
                ok = run_in_processes(setup, processes)
            else:
                with counting_calls() as counter:
                    runs = run_landed_batches(defs, setup.instance, [study], backfill=mode != "every_run")
                ok = [r.success for r in runs]
            total = time.perf_counter() - start
            if work is not None and mode != "processes":
                work += work_rows(
                    f"{bench}, {label}, {instance} instance",
                    n_rows,
                    batches=n_batches,
                    updates=posterior_updates(setup),
                    counter=counter,
                    batch_seconds=total / n_batches,
                )
            agreement = posterior_agreement(setup) if all(ok) else f"NO ({ok.count(False)} runs failed)"
        timed.append((f"{label}, {instance} instance, {len(ok)} runs", total, agreement))
    chain = n_batches * DAEMON_TICK_S
    rows = [
        row(
            bench,
            "library alone: read + check + fit_batch + filter step (reference)",
            n_rows,
            [library],
            1.0,
            "reference",
        ),
        row(bench, f"{target_s:g} s target", n_rows, [target_s], target_s / library, "-"),
        row(
            bench,
            f"self-dependent chain, {DAEMON_TICK_S:g} s tick/batch",
            n_rows,
            [chain],
            chain / library,
            "-",
        ),
    ]
    for label, total, agreement in timed:
        rows += [
            row(bench, f"{label}: total", n_rows, [total], total / library, agreement),
            row(bench, f"{label}: per batch", n_rows, [total / n_batches], total / library, "-"),
        ]
    return rows


_WORKER: dict[str, Any] = {}


def _start_worker(home: str, data: str, study: StudyConfig) -> None:
    _WORKER.update(
        defs=build_definitions(studies=[study], data_dir=Path(data)),
        instance=dg.DagsterInstance.from_config(home),
        study=study,
    )


def _run_request(request: dg.RunRequest) -> bool:
    return execute_request(_WORKER["defs"], _WORKER["instance"], _WORKER["study"], request).success


def run_in_processes(setup: Setup, processes: int) -> list[bool]:
    """One sensor tick, then its runs spread over worker processes, as a multiprocess backfill."""
    result = tick_landing_sensor(setup.defs, setup.instance, setup.study, None)
    requests = list(result.run_requests or []) if isinstance(result, dg.SensorResult) else []
    context = multiprocessing.get_context("spawn")
    arguments = (str(setup.home), str(setup.data), setup.study)
    # An executor, not a Pool: a worker that dies raises BrokenProcessPool instead of hanging.
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=_start_worker, initargs=arguments
    ) as pool:
        return list(pool.map(_run_request, requests))


def pipeline_rows(
    smoke: bool, *, work: list[dict[str, Any]] | None = None, parts: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Both pipeline benchmarks; smoke: a 1e4-row batch and a 6-batch history.

    ``work``, when given, receives the work per landed batch of every in-process path; ``parts``
    where the landed batches' time goes.
    """
    if smoke:
        # No worker processes in the smoke run: it proves the paths work, not their speed.
        return [
            *landed_batch_rows(10_000, work=work, parts=parts),
            *history_rows(6, 10_000, modes=("every_run", "backfill"), work=work),
            *history_rows(5, 500, cadence="daily", target_s=TARGET_DAILY_S, modes=("backfill",), work=work),
        ]
    return [
        *landed_batch_rows(100_000, work=work, parts=parts),
        *landed_batch_rows(LARGE_LANDED_ROWS, repeats=2, instances=("ephemeral",), work=work, parts=parts),
        *history_rows(120, 10_000, work=work),
        *daily_rows(1_000, work=work),
    ]


def daily_rows(
    n_batches: int, modes: Sequence[HistoryMode] = ("backfill",), work: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """(c) a history of daily batches (``DAILY_ROWS`` rows each) backfilled at once."""
    return history_rows(
        n_batches, DAILY_ROWS, cadence="daily", target_s=TARGET_DAILY_S, modes=modes, work=work
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, seconds")
    parser.add_argument(
        "--only",
        choices=["landed", "landed_large", *HISTORY_MODES, "daily"],
        help="one benchmark (or one path of the 120-batch backfill) only",
    )
    args = parser.parse_args()
    n_landed, n_history, n_daily = (10_000, 6, 5) if args.smoke else (100_000, 120, 1_000)
    printed: set[tuple[str, str, int]] = set()
    work: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    if args.only in (None, "landed"):
        _print(landed_batch_rows(n_landed, work=work, parts=parts), printed)
    # issue 17: the same target at 1e6 rows, ephemeral instance only
    if args.only in (None, "landed", "landed_large") and not args.smoke:
        large = landed_batch_rows(
            LARGE_LANDED_ROWS, repeats=2, instances=("ephemeral",), work=work, parts=parts
        )
        _print(large, printed)
    # One path at a time, each printed as soon as it is measured (the library's row each time).
    for mode in HISTORY_MODES:
        if args.only in (None, mode):
            _print(history_rows(n_history, 10_000, modes=[mode], work=work), printed)
    if args.only in (None, "daily"):
        _print(daily_rows(n_daily, work=work), printed)
    print_work(work)
    print_parts(parts)


def _print(rows: list[dict[str, Any]], printed: set[tuple[str, str, int]]) -> None:
    for item in rows:
        if (item["benchmark"], item["tool"], item["size"]) in printed:
            continue
        printed.add((item["benchmark"], item["tool"], item["size"]))
        print(
            f"{item['benchmark']:<42} {item['tool']:<62} {item['size']:>7} {item['median_s']:>9.3f} "
            f"{item['min_s']:>8.3f}-{item['max_s']:<8.3f} {item['ratio_to_reference']:>8.3f}  {item['agreement']}",
            flush=True,
        )


if __name__ == "__main__":
    main()
