"""Filter benchmarks: our Kalman and particle filters against statsmodels, filterpy and StatsPAI.

    .venv/bin/python -m benchmarks.filters            # T = 1e3, 1e5, 1e6; 3000 particles; appends
    .venv/bin/python -m benchmarks.filters --smoke    # T = 200, 500 particles: proves it runs

The stream is the scalar random walk ``theta_t = theta_{t-1} + N(0, q)`` observed through batch
estimates with a per-batch standard error ``se_t`` (uniform on [0.05, 0.2]), ``q = 1e-4``, prior
N(0, 1). Tools of one size are timed in interleaved rounds (``timed_together``), so on a shared
machine each gets the same share of the noise; ratios are to the first row of each group.

- ``kalman``: the reference is statsmodels' state-space Kalman filter (an ``MLEModel`` local level
  with ``obs_cov`` of shape (1, 1, T) and fixed parameters, filtering only); our filtered means and
  variances must agree to ``KALMAN_AGREEMENT`` (absolute on the mean, relative on the variance).
  filterpy's ``KalmanFilter`` loop is a second peer up to ``FILTERPY_LIMIT`` batches.
- ``particle``: StatsPAI's bootstrap particle filter (``statspai.assimilation.particle_filter``) on
  the same model is the reference up to ``STATSPAI_LIMIT`` batches; ours with the bootstrap and the
  locally optimal proposal. Accuracy is against the exact (Kalman) answer on the same stream:
  ``|PF mean - Kalman mean| / Kalman SD``, its maximum and mean over the stream, averaged over
  ``ACCURACY_SEEDS`` seeds, for every tool.
- ``append``: the cost of adding one batch to a stream of T batches, through the step API and
  through the incremental resume the pipeline uses (``refilter_from_first_change``); the ratio is
  to T = 10 and must stay near 1 (O(1) per append).
- ``first call``: compile time of the numba kernels in a fresh process with an empty cache, and
  the first call with the cache filled (what every later process pays).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from assimilate.filters import causal_kalman, initial_state, particle_filter, step
from assimilate.incremental import FilterSettings, refilter_from_first_change
from benchmarks.table import Row, make_row, print_table, skipped_row, timed_together, traced_peak

PROCESS_VAR = 1e-4
PRIOR_MEAN, PRIOR_VAR = 0.0, 1.0
KALMAN_AGREEMENT = 1e-8
FILTERPY_LIMIT = 100_000
STATSPAI_LIMIT = 10_000
PARTICLE_LIMIT = 100_000  # our particle filter at 3000 x 1e6 would take about 20 s a call
ACCURACY_SEEDS = 10
APPEND_CALLS = 50  # one timed sample = this many appends (a single one is below the clock's grain)


def simulate_stream(t: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Estimates and standard errors of a random-walk effect (no missing batches: every peer takes it)."""
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.05, 0.2, t)
    theta = 0.5 + np.cumsum(rng.normal(0.0, math.sqrt(PROCESS_VAR), t))
    return theta + rng.normal(0.0, se), se


def statsmodels_kalman(y: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Filtered means and variances from statsmodels (its state at t=1 is our forecast: P0 + q)."""
    from statsmodels.tsa.statespace.mlemodel import MLEModel

    model = MLEModel(
        y,
        k_states=1,
        k_posdef=1,
        initialization="known",
        initial_state=[PRIOR_MEAN],
        initial_state_cov=[[PRIOR_VAR + PROCESS_VAR]],
    )
    model["design"] = model["transition"] = model["selection"] = np.ones((1, 1))
    model["state_cov"] = np.array([[PROCESS_VAR]])
    model["obs_cov"] = (se * se).reshape(1, 1, -1)
    result = model.ssm.filter()
    return result.filtered_state[0], result.filtered_state_cov[0, 0]


def filterpy_kalman(y: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A per-step filterpy ``KalmanFilter`` loop (what a notebook would write)."""
    from filterpy.kalman import KalmanFilter

    kf = KalmanFilter(dim_x=1, dim_z=1)
    kf.x = np.array([[PRIOR_MEAN]])
    kf.P = np.array([[PRIOR_VAR]])
    kf.F = kf.H = np.array([[1.0]])
    kf.Q = np.array([[PROCESS_VAR]])
    means, variances = np.empty(len(y)), np.empty(len(y))
    for t, (value, error) in enumerate(zip(y, se, strict=True)):
        kf.predict()
        kf.update(np.array([[value]]), R=np.array([[error * error]]))
        means[t], variances[t] = kf.x[0, 0], kf.P[0, 0]
    return means, variances


def statspai_particles(y: np.ndarray, se: np.ndarray, n_particles: int, seed: int) -> np.ndarray:
    """StatsPAI's bootstrap particle filter on the same model: its posterior means."""
    from statspai.assimilation import particle_filter as statspai_filter

    result = statspai_filter(
        y,
        se,
        prior_mean=PRIOR_MEAN,
        prior_var=PRIOR_VAR,
        process_sd=math.sqrt(PROCESS_VAR),
        n_particles=n_particles,
        random_state=seed,
    )
    return np.asarray(result.posterior_mean)


def ours_kalman(y: np.ndarray, se: np.ndarray, *, smooth: bool = False) -> Any:
    return causal_kalman(
        y, se, prior_mean=PRIOR_MEAN, prior_var=PRIOR_VAR, process_var=PROCESS_VAR, smooth=smooth
    )


def ours_particles(y: np.ndarray, se: np.ndarray, n_particles: int, seed: int, proposal: str) -> Any:
    return particle_filter(
        y,
        se,
        prior_mean=PRIOR_MEAN,
        prior_var=PRIOR_VAR,
        process_var=PROCESS_VAR,
        n_particles=n_particles,
        proposal=proposal,  # type: ignore[arg-type]
        rng=np.random.default_rng(seed),
    )


def _agreement(means: np.ndarray, variances: np.ndarray, exact: Any) -> str:
    mean_gap = float(np.max(np.abs(means - exact.posterior_mean)))
    var_gap = float(np.max(np.abs(variances / exact.posterior_var - 1.0)))
    verdict = "yes" if mean_gap < KALMAN_AGREEMENT and var_gap < KALMAN_AGREEMENT else "NO"
    return f"{verdict}: |mean| {mean_gap:.1e}, var rel {var_gap:.1e}"


def _accuracy(means: list[np.ndarray], exact: Any) -> str:
    errors = [np.abs(m - exact.posterior_mean) / exact.posterior_sd for m in means]
    worst = statistics.mean(float(e.max()) for e in errors)
    typical = statistics.mean(float(e.mean()) for e in errors)
    return f"|err|/sd max {worst:.4f} mean {typical:.4f} ({len(means)} seeds)"


def kalman_rows(t: int, repeats: int) -> list[Row]:
    y, se = simulate_stream(t, seed=t)
    exact = ours_kalman(y, se)
    tools = {
        "statsmodels (reference)": lambda: statsmodels_kalman(y, se),
        "assimilate": lambda: ours_kalman(y, se),
        "assimilate (+ RTS smoother)": lambda: ours_kalman(y, se, smooth=True),
    }
    if t <= FILTERPY_LIMIT:
        tools["filterpy"] = lambda: filterpy_kalman(y, se)
    agreements = {
        "statsmodels (reference)": _agreement(*statsmodels_kalman(y, se), exact),
        "assimilate": "-",
        "assimilate (+ RTS smoother)": "-",
    }
    if t <= FILTERPY_LIMIT:
        agreements["filterpy"] = _agreement(*filterpy_kalman(y, se), exact)
    ours_kalman(y, se, smooth=True)  # every tool has run once before the timed rounds
    times = timed_together(tools, repeats)
    reference = statistics.median(times["statsmodels (reference)"])
    rows = [
        make_row(
            "kalman",
            name,
            t,
            times[name],
            reference_median=reference,
            peak_mib=traced_peak(tools[name]),
            agreement=agreements[name],
        )
        for name in tools
    ]
    if t > FILTERPY_LIMIT:
        rows.append(skipped_row("kalman", "filterpy", t, f"skipped above T = {FILTERPY_LIMIT:.0e}"))
    return rows


def particle_rows(t: int, repeats: int, n_particles: int) -> list[Row]:
    y, se = simulate_stream(t, seed=t)
    exact = ours_kalman(y, se)
    installed = importlib.util.find_spec("statspai") is not None  # the optional bench extra
    with_peer = installed and t <= STATSPAI_LIMIT
    tools: dict[str, Any] = {}
    if with_peer:
        tools["StatsPAI (reference)"] = lambda: statspai_particles(y, se, n_particles, 1)
    tools["assimilate bootstrap"] = lambda: ours_particles(y, se, n_particles, 1, "bootstrap")
    tools["assimilate optimal proposal"] = lambda: ours_particles(y, se, n_particles, 1, "optimal")
    seeds = range(ACCURACY_SEEDS if with_peer else 1)
    means = {
        "StatsPAI (reference)": lambda s: statspai_particles(y, se, n_particles, s),
        "assimilate bootstrap": lambda s: ours_particles(y, se, n_particles, s, "bootstrap").posterior_mean,
        "assimilate optimal proposal": lambda s: (
            ours_particles(y, se, n_particles, s, "optimal").posterior_mean
        ),
    }
    accuracy = {name: _accuracy([means[name](s) for s in seeds], exact) for name in tools}
    times = timed_together(tools, repeats)
    reference = statistics.median(times["StatsPAI (reference)"]) if with_peer else math.nan
    rows = [
        make_row(
            "particle",
            f"{name} ({n_particles} particles)",
            t,
            times[name],
            reference_median=reference,
            peak_mib=traced_peak(tools[name]),
            agreement=accuracy[name],
        )
        for name in tools
    ]
    if not with_peer:
        why = (
            "not installed (pip install -e '.[bench]')"
            if not installed
            else f"skipped above T = {STATSPAI_LIMIT:.0e}"
        )
        rows.insert(0, skipped_row("particle", "StatsPAI", t, why))
    return rows


def filter_rows(lengths: list[int], repeats: int, n_particles: int) -> list[Row]:
    """Kalman rows at every length; particle rows up to ``PARTICLE_LIMIT`` (StatsPAI up to its own)."""
    rows: list[Row] = []
    for t in tqdm(lengths, desc="filters", unit="size"):
        rows += kalman_rows(t, repeats)
        if t <= PARTICLE_LIMIT:
            rows += particle_rows(t, repeats if t <= STATSPAI_LIMIT else min(repeats, 3), n_particles)
    return rows


def _observations(t: int) -> pd.DataFrame:
    y, se = simulate_stream(t, seed=7)
    return pd.DataFrame(
        {
            "batch": [f"week_{i:07d}" for i in range(t)],
            "estimate": y,
            "std_error": se,
            "excluded": np.zeros(t, dtype=bool),
            "exclusion_reason": [""] * t,
        }
    )


def append_rows(lengths: tuple[int, ...] = (10, 100, 1000), repeats: int = 15) -> list[Row]:
    """Time to add one batch to a stream of T batches, per call, for the step API and the resume."""
    settings = FilterSettings(process_var=PROCESS_VAR, prior_mean=PRIOR_MEAN, prior_var=PRIOR_VAR)
    samples: dict[str, dict[int, list[float]]] = {"step API": {}, "incremental resume": {}}
    checks: dict[int, str] = {}
    for t in lengths:
        observed = _observations(t + 1)
        stored = refilter_from_first_change(observed.iloc[:t], None, settings).steps
        state = initial_state(prior_mean=PRIOR_MEAN, prior_var=PRIOR_VAR)
        for value, error in zip(observed["estimate"][:t], observed["std_error"][:t], strict=True):
            state, _ = step(state, value, error, process_var=PROCESS_VAR)
        last, last_se = float(observed["estimate"].iloc[t]), float(observed["std_error"].iloc[t])

        def by_step(state: Any = state, last: float = last, last_se: float = last_se) -> None:
            for _ in range(APPEND_CALLS):
                step(state, last, last_se, process_var=PROCESS_VAR)

        def by_resume(observed: pd.DataFrame = observed, stored: pd.DataFrame = stored) -> None:
            for _ in range(APPEND_CALLS):
                refilter_from_first_change(observed, stored, settings)

        times = timed_together({"step API": by_step, "incremental resume": by_resume}, repeats)
        for name, values in times.items():
            samples[name][t] = [v / APPEND_CALLS for v in values]
        update = refilter_from_first_change(observed, stored, settings)
        full = causal_kalman(
            observed["estimate"],
            observed["std_error"],
            prior_mean=PRIOR_MEAN,
            prior_var=PRIOR_VAR,
            process_var=PROCESS_VAR,
            smooth=False,
        )
        same = update.result is not None and np.array_equal(update.result.posterior_mean, full.posterior_mean)
        checks[t] = (
            f"{'yes' if same and update.n_recomputed == 1 else 'NO'}: {update.n_recomputed} step recomputed"
        )
    rows = []
    for name, by_length in samples.items():
        base = statistics.median(by_length[lengths[0]])
        for t in lengths:
            per_append = f"{1e6 * statistics.median(by_length[t]):.1f} us per append"
            agreement = f"{checks[t]}; {per_append}" if name == "incremental resume" else per_append
            rows.append(
                make_row(
                    "append",
                    name,
                    t,
                    by_length[t],
                    reference_median=base,
                    peak_mib=math.nan,
                    agreement=agreement,
                )
            )
    return rows


FIRST_CALL = """
import time
import numpy as np
start = time.perf_counter()
from assimilate.filters import causal_kalman, particle_filter
imported = time.perf_counter()
causal_kalman([0.5, 0.6], [0.1, 0.1], prior_mean=0.0, prior_var=1.0, process_var=0.01)
kalman = time.perf_counter()
particle_filter([0.5, 0.6], [0.1, 0.1], process_var=0.01, rng=np.random.default_rng(0), n_particles=100)
particle_filter([0.5, 0.6], [0.1, 0.1], process_var=0.01, rng=np.random.default_rng(0), n_particles=100,
                observation="student_t", df=4)
particle = time.perf_counter()
print(imported - start, kalman - imported, particle - kalman)
"""


def first_call_rows() -> list[Row]:
    """First calls in fresh processes: compiling into an empty numba cache, then loading from it."""
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        environment = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("compile (empty cache)", "load (filled cache)"):
            done = subprocess.run(
                [sys.executable, "-c", FIRST_CALL],
                env=environment,
                capture_output=True,
                text=True,
                check=True,
            )
            imported, kalman, particle = (float(v) for v in done.stdout.split())
            for name, seconds in (("causal_kalman", kalman), ("particle_filter", particle)):
                rows.append(
                    make_row(
                        "first call",
                        f"{name}: {label}",
                        2,
                        [seconds],
                        reference_median=math.nan,
                        peak_mib=math.nan,
                        agreement=f"import {imported:.2f} s",
                    )
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="T = 200, 500 particles, one repeat")
    parser.add_argument("--output", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.smoke:
        rows = filter_rows([200], 1, 500) + append_rows((10, 100), repeats=3)
    else:
        rows = filter_rows([1_000, 100_000, 1_000_000], 5, 3_000) + append_rows() + first_call_rows()
    print_table(rows)
    print(f"({time.perf_counter() - start:.1f} s)")
    if args.output:
        args.output.write_text(json.dumps({"rows": [asdict(r) for r in rows]}, indent=2))
    if any(r.agreement.startswith("NO") for r in rows):
        raise SystemExit("a filter disagrees with its reference")


if __name__ == "__main__":
    main()
