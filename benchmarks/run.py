"""Benchmarks: estimators and filters against references run in the same process, as ratios.

    .venv/bin/python -m benchmarks.run            # n = 1e4, 1e5, 1e6; T = 1e3, 1e5
    .venv/bin/python -m benchmarks.run --smoke    # tiny sizes: proves the suite works (CI)

Prints a table (tool, size, median and min-max of repeats, ratio to the reference, peak memory)
and writes it as JSON to benchmarks/results/latest.json so a later run can be compared. Every
benchmark first checks that our answer agrees with the reference's.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from assimilate.estimators import aipw_from_arrays, encode_covariates, ipw_from_arrays
from assimilate.filters import causal_kalman, particle_filter
from assimilate.simulate import OUTREACH_COVARIATES, simulate_outreach_batch

RESULTS = Path(__file__).resolve().parent / "results"


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


def timed(function: Callable[[], Any], repeats: int) -> tuple[list[float], float]:
    """Wall times of ``repeats`` calls and the peak traced memory (MiB) of one call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    function()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return times, peak


def sklearn_aipw(X: np.ndarray, d: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The textbook version: sklearn propensity and arm-wise outcome models, influence-function SE."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=np.inf, max_iter=1000, tol=1e-8))
    e = model.fit(X, d).predict_proba(X)[:, 1]
    e = np.clip(e, 0.01, 0.99)
    mu0 = LinearRegression().fit(X[d == 0], y[d == 0]).predict(X)
    mu1 = LinearRegression().fit(X[d == 1], y[d == 1]).predict(X)
    phi = mu1 - mu0 + d * (y - mu1) / e - (1 - d) * (y - mu0) / (1 - e)
    return float(phi.mean()), float(phi.std(ddof=0) / np.sqrt(len(y)))


def filterpy_kalman(y: np.ndarray, se: np.ndarray, q: float) -> np.ndarray:
    """A per-step filterpy KalmanFilter loop (the library a notebook would reach for)."""
    from filterpy.kalman import KalmanFilter

    kf = KalmanFilter(dim_x=1, dim_z=1)
    kf.x = np.array([[0.0]])
    kf.P = np.array([[1.0]])
    kf.F = kf.H = np.array([[1.0]])
    kf.Q = np.array([[q]])
    means = np.empty(len(y))
    for t, (value, error) in enumerate(zip(y, se, strict=True)):
        kf.predict()
        kf.update(np.array([[value]]), R=np.array([[error * error]]))
        means[t] = kf.x[0, 0]
    return means


def estimator_rows(sizes: list[int], repeats: int) -> list[Row]:
    rows = []
    for n in tqdm(sizes, desc="estimators", unit="size"):
        batch = simulate_outreach_batch(n, rng=np.random.default_rng(n))
        design = encode_covariates(batch, OUTREACH_COVARIATES)
        d = batch["outreach"].to_numpy(np.int64)
        y = batch["churn"].to_numpy(np.float64) + batch["health_score"].to_numpy() / 100  # continuous outcome
        X = design.without_intercept()
        ours = aipw_from_arrays(design, d, y, outcome_kind="linear")
        reference = sklearn_aipw(X, d.astype(float), y)
        agree = abs(ours.estimate - reference[0]) < 1e-6 and abs(ours.std_error / reference[1] - 1) < 1e-5
        ref_times, ref_peak = timed(lambda X=X, d=d, y=y: sklearn_aipw(X, d.astype(float), y), repeats)
        aipw_times, aipw_peak = timed(
            lambda design=design, d=d, y=y: aipw_from_arrays(design, d, y, outcome_kind="linear"), repeats
        )
        ipw_times, ipw_peak = timed(lambda design=design, d=d, y=y: ipw_from_arrays(design, d, y), repeats)
        floor = timed(lambda v=design.values: v.T @ (0.25 * v), repeats)[0]
        ref = statistics.median(ref_times)
        rows += [
            _row("aipw", "sklearn textbook (reference)", n, ref_times, 1.0, ref_peak, "reference"),
            _row(
                "aipw",
                "assimilate",
                n,
                aipw_times,
                statistics.median(aipw_times) / ref,
                aipw_peak,
                "yes" if agree else "NO",
            ),
            _row(
                "ipw",
                "assimilate (sandwich SE)",
                n,
                ipw_times,
                statistics.median(ipw_times) / ref,
                ipw_peak,
                "-",
            ),
            _row("floor pass X'(wX)", "numpy", n, floor, statistics.median(floor) / ref, 0.0, "-"),
        ]
    return rows


def filter_rows(lengths: list[int], repeats: int, n_particles: int) -> list[Row]:
    rows = []
    for t in tqdm(lengths, desc="filters", unit="size"):
        rng = np.random.default_rng(t)
        theta = 0.5 + np.cumsum(rng.normal(0, 0.01, t))
        se = np.full(t, 0.1)
        y = theta + rng.normal(0, 0.1, t)
        ours = causal_kalman(y, se, prior_mean=0.0, prior_var=1.0, process_var=1e-4, smooth=False)
        reference = filterpy_kalman(y, se, 1e-4)
        agree = bool(np.max(np.abs(ours.posterior_mean - reference)) < 1e-8)
        ref_times, ref_peak = timed(lambda y=y, se=se: filterpy_kalman(y, se, 1e-4), repeats)
        kal_times, kal_peak = timed(
            lambda y=y, se=se: causal_kalman(
                y, se, prior_mean=0.0, prior_var=1.0, process_var=1e-4, smooth=False
            ),
            repeats,
        )
        ref = statistics.median(ref_times)
        rows += [
            _row("kalman", "filterpy (reference)", t, ref_times, 1.0, ref_peak, "reference"),
            _row(
                "kalman",
                "assimilate",
                t,
                kal_times,
                statistics.median(kal_times) / ref,
                kal_peak,
                "yes" if agree else "NO",
            ),
        ]
        pf_times, pf_peak = timed(
            lambda y=y, se=se: particle_filter(
                y,
                se,
                prior_mean=0.0,
                prior_var=1.0,
                process_var=1e-4,
                n_particles=n_particles,
                rng=np.random.default_rng(1),
            ),
            1,
        )
        approx = particle_filter(
            y,
            se,
            prior_mean=0.0,
            prior_var=1.0,
            process_var=1e-4,
            n_particles=n_particles,
            rng=np.random.default_rng(1),
        )
        error = float(np.max(np.abs(approx.posterior_mean - ours.posterior_mean) / ours.posterior_sd))
        rows.append(
            _row(
                "particle",
                f"assimilate ({n_particles} particles)",
                t,
                pf_times,
                statistics.median(pf_times) / ref,
                pf_peak,
                f"max |error|/sd {error:.3f}",
            )
        )
    return rows


def _row(
    benchmark: str, tool: str, size: int, times: list[float], ratio: float, peak: float, agreement: str
) -> Row:
    return Row(
        benchmark, tool, size, statistics.median(times), min(times), max(times), ratio, peak, agreement
    )


def print_table(rows: list[Row]) -> None:
    header = f"{'benchmark':<18} {'tool':<32} {'size':>9} {'median s':>10} {'min-max s':>19} {'ratio':>7} {'peak MiB':>9}  agrees"
    print(header)
    print("-" * len(header))
    for r in rows:
        spread = f"{r.min_s:.4f}-{r.max_s:.4f}"
        print(
            f"{r.benchmark:<18} {r.tool:<32} {r.size:>9} {r.median_s:>10.4f} {spread:>19} {r.ratio_to_reference:>7.3f} "
            f"{r.peak_mib:>9.1f}  {r.agreement}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (used by the tests)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    if args.smoke:
        rows = estimator_rows([2_000], 1) + filter_rows([200], 1, 500)
    else:
        rows = estimator_rows([10_000, 100_000, 1_000_000], 3) + filter_rows([1_000, 100_000], 3, 3_000)
    print_table(rows)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
    payload = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "rows": [asdict(r) for r in rows],
    }
    args.output.write_text(json.dumps(payload, indent=2))
    if any(r.agreement == "NO" for r in rows):
        raise SystemExit("an estimate disagrees with its reference")


if __name__ == "__main__":
    main()
