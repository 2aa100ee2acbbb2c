"""Estimator benchmarks: our AIPW, IPW and regression adjustment against the hardware floor and peers.

    .venv/bin/python -m benchmarks.estimators            # n = 1e4, 1e5, 1e6, 1e7; median of 5
    .venv/bin/python -m benchmarks.estimators --smoke    # n = 2000, one repeat: proves it runs

The data are the outreach stream's design (``simulate_outreach_batch``: five numeric covariates,
three region dummies and an intercept, 9 columns) with a continuous outcome ``churn + health/100``.
Every size has a **floor pass**: one ``X.T @ (w[:, None] * X)`` over the same design with BLAS on
all cores (its default), the least a method that touches every row with a p x p matrix can cost;
``floor_passes`` is a tool's median over the floor's median. All tools of one size are timed in
interleaved rounds, so that on a shared machine each gets the same share of the noise.

Our estimators run their passes on the default thread count (``pass_threads()``: all cores) in
the main rows, and once more per thread count of ``thread_counts()`` (1, 2, 4, ... and the number
of cores) in rows marked ``[t threads]``, whose ratio is to the default's median and whose
agreement column compares their answer with the default's (``THREADS_AGREE``, relative). At ``TARGET_SIZE`` rows the main rows say whether the floor-pass
target of issue 17 (``FLOOR_TARGETS``) is met in this run.

Agreement (the ``agreement`` column; run.py fails on a row starting with ``NO``):

- ``EXACT = 1e-8``: absolute on the estimate and relative on the standard error, for references
  that solve the same equations to machine precision: statsmodels (GLM Binomial propensity,
  arm-wise OLS, OLS with HC3), the stacked M-estimation sandwich for IPW, StatsPAI's
  ``aipw(cross_fit=False)`` and a straightforward full-matrix numpy implementation.
- ``SKLEARN = 1e-6`` (estimate) and ``SKLEARN_SE = 1e-5`` (relative SE), for tools whose logistic
  fit is scikit-learn's, which stops at its own solver tolerance: the textbook sklearn AIPW,
  EconML ``LinearDRLearner`` and DoWhy's propensity weighting (no SE).
- EconML and StatsPAI report ``sd(phi)`` with divisor ``n - 1``; their SE is rescaled by
  ``sqrt((n - 1) / n)`` before the comparison. EconML runs with ``cv=1`` (no cross-fitting),
  clipping at 0.01 and a regression of ``y`` on ``[w, t, w t]`` (the arm-wise OLS of ours).

Peers too slow for large batches are skipped above ``PEER_LIMITS`` (the row says so). Sizes
above ``IN_PROCESS_LIMIT`` run in a subprocess (ours and the floor only): their ``peak_mib`` is the
peak resident memory of the call above the data already loaded, and the agreement column gives the
process's peak RSS; the estimates are checked against the straightforward numpy references.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from assimilate.estimators import DesignMatrix, aipw_from_arrays, encode_covariates, ipw_from_arrays
from assimilate.estimators._threads import parallel_passes, pass_threads
from assimilate.estimators.regression import regression_adjustment_from_arrays
from assimilate.estimators.result import EffectEstimate
from assimilate.simulate import OUTREACH_COVARIATES, simulate_outreach_batch
from benchmarks.table import (
    Row,
    disagreements,
    make_row,
    print_table,
    skipped_row,
    timed_together,
    traced_peak,
)

FloatArray = NDArray[np.float64]
EXACT = 1e-8
SKLEARN = 1e-6
SKLEARN_SE = 1e-5
BOUNDS = (0.01, 0.99)
CHUNK_ROWS = 1_000_000  # larger designs are simulated a million rows at a time
IN_PROCESS_LIMIT = 1_000_000
PEER_LIMITS = {"econml": 100_000, "dowhy": 100_000, "statspai": 100_000}
MEMORY_LIMIT_MIB = 4096.0
THREADS_AGREE = 1e-12  # relative: an estimate and SE on any thread count against the default's
TARGET_SIZE = 1_000_000
FLOOR_TARGETS = {"aipw": 3.0, "ipw": 3.0, "ra": 1.5}  # issue 17: at most this many floor passes
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Outreach:
    design: DesignMatrix
    treatment: NDArray[np.int64]
    outcome: FloatArray


def outreach(n: int) -> Outreach:
    """The outreach design at ``n`` rows (seeded by ``n``; above a million, built chunk by chunk)."""
    if n <= CHUNK_ROWS:
        batch = simulate_outreach_batch(n, rng=np.random.default_rng(n))
        design = encode_covariates(batch, OUTREACH_COVARIATES)
        outcome = batch["churn"].to_numpy(np.float64) + batch["health_score"].to_numpy() / 100
        return Outreach(design, batch["outreach"].to_numpy(np.int64), outcome)
    rng = np.random.default_rng(n)
    values = None
    treatment, outcome = np.empty(n, dtype=np.int64), np.empty(n)
    categories: dict[str, Any] = {}
    columns: tuple[str, ...] = ()
    for start in range(0, n, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, n)
        batch = simulate_outreach_batch(stop - start, rng=rng)
        part = encode_covariates(batch, OUTREACH_COVARIATES, categories=categories or None)
        if values is None:
            values = np.empty((n, part.values.shape[1]))
            categories, columns = dict(part.categories), part.columns
        values[start:stop] = part.values
        treatment[start:stop] = batch["outreach"].to_numpy(np.int64)
        outcome[start:stop] = batch["churn"].to_numpy(np.float64) + batch["health_score"].to_numpy() / 100
        del batch, part
    assert values is not None
    return Outreach(DesignMatrix(values, columns, categories), treatment, outcome)


# ---------------------------------------------------------------- references and peers


def floor_pass(X: FloatArray, w: FloatArray) -> FloatArray:
    return np.asarray(X.T @ (w[:, None] * X))


def _aipw_phi(
    d: FloatArray, y: FloatArray, e: FloatArray, mu0: FloatArray, mu1: FloatArray
) -> tuple[float, float]:
    phi = mu1 - mu0 + d * (y - mu1) / e - (1 - d) * (y - mu0) / (1 - e)
    return float(phi.mean()), float(phi.std(ddof=0) / np.sqrt(len(y)))


def newton_logit(X: FloatArray, d: FloatArray) -> FloatArray:
    """Plain Newton from zero with full-matrix products: the straightforward logistic fit."""
    beta = np.zeros(X.shape[1])
    for _ in range(50):
        mu = 1.0 / (1.0 + np.exp(-(X @ beta)))
        delta = np.linalg.solve(X.T @ ((mu * (1 - mu))[:, None] * X), X.T @ (d - mu))
        beta = beta + delta
        if np.max(np.abs(delta)) < 1e-10 * (1.0 + np.max(np.abs(beta))):
            break
    return beta


def numpy_aipw(X: FloatArray, d: FloatArray, y: FloatArray) -> tuple[float, float]:
    """Straightforward numpy AIPW: Newton propensity, arm-wise lstsq, influence-function SE."""
    e = np.clip(1.0 / (1.0 + np.exp(-(X @ newton_logit(X, d)))), *BOUNDS)
    treated = d == 1
    mu0 = X @ np.linalg.lstsq(X[~treated], y[~treated])[0]
    mu1 = X @ np.linalg.lstsq(X[treated], y[treated])[0]
    return _aipw_phi(d, y, e, mu0, mu1)


def sklearn_aipw(X: FloatArray, d: FloatArray, y: FloatArray) -> tuple[float, float]:
    """The textbook version: sklearn propensity and arm-wise outcome models, influence-function SE."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    covariates = X[:, 1:]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=np.inf, max_iter=1000, tol=1e-8))
    e = np.clip(model.fit(covariates, d).predict_proba(covariates)[:, 1], *BOUNDS)
    mu0 = LinearRegression().fit(covariates[d == 0], y[d == 0]).predict(covariates)
    mu1 = LinearRegression().fit(covariates[d == 1], y[d == 1]).predict(covariates)
    return _aipw_phi(d, y, e, mu0, mu1)


def _glm_propensity(X: FloatArray, d: FloatArray) -> FloatArray:
    import statsmodels.api as sm

    return np.asarray(sm.GLM(d, X, family=sm.families.Binomial()).fit().fittedvalues)


def statsmodels_aipw(X: FloatArray, d: FloatArray, y: FloatArray) -> tuple[float, float]:
    """GLM Binomial propensity, arm-wise OLS, influence-function SE."""
    import statsmodels.api as sm

    e = np.clip(_glm_propensity(X, d), *BOUNDS)
    treated = d == 1
    mu0 = X @ sm.OLS(y[~treated], X[~treated]).fit().params
    mu1 = X @ sm.OLS(y[treated], X[treated]).fit().params
    return _aipw_phi(d, y, e, mu0, mu1)


def sandwich_ipw(X: FloatArray, d: FloatArray, y: FloatArray, raw: FloatArray) -> tuple[float, float]:
    """Hajek IPW with the stacked M-estimation sandwich ``A^-1 B A^-T / n`` over (beta, mu1, mu0)."""
    n, p = X.shape
    e = np.clip(raw, *BOUNDS)
    w1, w0 = d / e, (1 - d) / (1 - e)
    mu1, mu0 = float(w1 @ y / w1.sum()), float(w0 @ y / w0.sum())
    slope = np.where(e == raw, raw * (1 - raw), 0.0)  # de/d(eta); clipped scores do not move
    psi = np.column_stack([X * (d - raw)[:, None], w1 * (y - mu1), w0 * (y - mu0)])
    bread = np.zeros((p + 2, p + 2))
    bread[:p, :p] = X.T @ (X * (raw * (1 - raw))[:, None]) / n
    bread[p, :p] = X.T @ (d * (y - mu1) * slope / e**2) / n
    bread[p, p] = w1.sum() / n
    bread[p + 1, :p] = -X.T @ ((1 - d) * (y - mu0) * slope / (1 - e) ** 2) / n
    bread[p + 1, p + 1] = w0.sum() / n
    inverse = np.linalg.inv(bread)
    cov = inverse @ (psi.T @ psi / n) @ inverse.T / n
    contrast = np.zeros(p + 2)
    contrast[p], contrast[p + 1] = 1.0, -1.0
    return mu1 - mu0, float(np.sqrt(contrast @ cov @ contrast))


def statsmodels_ipw(X: FloatArray, d: FloatArray, y: FloatArray) -> tuple[float, float]:
    return sandwich_ipw(X, d, y, _glm_propensity(X, d))


def numpy_ipw(X: FloatArray, d: FloatArray, y: FloatArray) -> tuple[float, float]:
    return sandwich_ipw(X, d, y, 1.0 / (1.0 + np.exp(-(X @ newton_logit(X, d)))))


def statsmodels_ra(X: FloatArray, d: FloatArray, y: FloatArray) -> tuple[float, float]:
    import statsmodels.api as sm

    fit = sm.OLS(y, np.column_stack([np.ones_like(d), d, X[:, 1:]])).fit(cov_type="HC3")
    return float(fit.params[1]), float(fit.bse[1])


def numpy_ra(X: FloatArray, d: FloatArray, y: FloatArray) -> tuple[float, float]:
    """OLS of y on [1, d, x] with HC3, full matrices."""
    Z = np.column_stack([np.ones_like(d), d, X[:, 1:]])
    inverse = np.linalg.inv(Z.T @ Z)
    beta = inverse @ (Z.T @ y)
    leverage = np.einsum("ij,ij->i", Z @ inverse, Z)
    weights = ((y - Z @ beta) / (1 - leverage)) ** 2
    cov = inverse @ (Z.T @ (weights[:, None] * Z)) @ inverse
    return float(beta[1]), float(np.sqrt(cov[1, 1]))


def econml_aipw(X: FloatArray, d: FloatArray, y: FloatArray) -> tuple[float, float]:
    from econml.dr import LinearDRLearner
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    def armwise(features: FloatArray) -> FloatArray:  # [w, t] -> [w, t, w t]: one OLS per arm
        w, t = features[:, :-1], features[:, -1:]
        return np.hstack([w, t, w * t])

    learner = LinearDRLearner(
        model_propensity=make_pipeline(
            StandardScaler(), LogisticRegression(C=np.inf, max_iter=1000, tol=1e-10)
        ),
        model_regression=make_pipeline(FunctionTransformer(armwise), LinearRegression()),
        cv=1,
        min_propensity=BOUNDS[0],
        random_state=0,
    )
    learner.fit(y, d.astype(np.int64), X=None, W=X[:, 1:])
    return float(learner.ate()), float(learner.ate_inference().stderr_mean)


def dowhy_ipw(X: FloatArray, d: FloatArray, y: FloatArray) -> tuple[float, float]:
    import pandas as pd
    from dowhy.causal_estimators.propensity_score_weighting_estimator import PropensityScoreWeightingEstimator
    from dowhy.causal_identifier.identified_estimand import IdentifiedEstimand
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    names = [f"x{j}" for j in range(1, X.shape[1])]
    frame = pd.DataFrame(X[:, 1:], columns=names).assign(d=d.astype(np.int64), y=y)
    # The estimand is built by hand: DoWhy 0.12's graph identification calls a networkx function
    # that networkx 3.5 removed; with a back-door set given, nothing is lost.
    estimand = IdentifiedEstimand(
        None,
        treatment_variable=["d"],
        outcome_variable=["y"],
        estimand_type="nonparametric-ate",
        backdoor_variables={"backdoor": names},
        default_backdoor_id="backdoor",
    )
    estimator = PropensityScoreWeightingEstimator(
        estimand,
        min_ps_score=BOUNDS[0],
        max_ps_score=BOUNDS[1],
        weighting_scheme="ips_normalized_weight",
        propensity_score_model=make_pipeline(
            StandardScaler(), LogisticRegression(C=np.inf, max_iter=1000, tol=1e-10)
        ),
    )
    estimator.fit(frame)
    return float(estimator.estimate_effect(frame, target_units="ate").value), math.nan


def statspai_aipw(X: FloatArray, d: FloatArray, y: FloatArray) -> tuple[float, float]:
    import pandas as pd
    import statspai

    names = [f"x{j}" for j in range(1, X.shape[1])]
    frame = pd.DataFrame(X[:, 1:], columns=names).assign(d=d.astype(np.int64), y=y)
    result = statspai.aipw(
        frame, y="y", treat="d", covariates=names, cross_fit=False, trim=BOUNDS[0], outcome_model="linear"
    )
    return float(result.estimate), float(result.se)


# ---------------------------------------------------------------- agreement


def agreement(
    ours: EffectEstimate,
    theirs: tuple[float, float],
    *,
    tolerance: float,
    se_tolerance: float,
    n_minus_one: bool = False,
) -> str:
    """``"yes (...)"`` or ``"NO (...)"`` with the absolute estimate and relative SE differences."""
    estimate, se = theirs
    diff = abs(estimate - ours.estimate)
    ok = diff <= tolerance
    text = f"|diff| {diff:.1e}"
    if not math.isnan(se):
        n = ours.n_treated + ours.n_control
        se_ours = ours.std_error * (math.sqrt(n / (n - 1)) if n_minus_one else 1.0)
        relative = abs(se / se_ours - 1.0)
        ok = ok and relative <= se_tolerance
        text += f", SE rel {relative:.1e}"
    return f"{'yes' if ok else 'NO'} ({text})"


@dataclass(frozen=True)
class Peer:
    benchmark: str
    tool: str
    run: Callable[[FloatArray, FloatArray, FloatArray], tuple[float, float]]
    compares_with: str  # which of our estimators
    tolerance: float
    se_tolerance: float
    n_minus_one: bool = False
    package: str | None = None  # optional import: skipped when missing or above PEER_LIMITS


PEERS = (
    Peer("aipw", "numpy straightforward (Newton, lstsq)", numpy_aipw, "aipw", EXACT, EXACT),
    Peer("aipw", "sklearn textbook (reference)", sklearn_aipw, "aipw", SKLEARN, SKLEARN_SE),
    Peer("aipw", "statsmodels GLM + OLS", statsmodels_aipw, "aipw", EXACT, EXACT),
    Peer("ipw", "statsmodels GLM + sandwich (reference)", statsmodels_ipw, "ipw", EXACT, EXACT),
    Peer("regression_adj", "statsmodels OLS HC3 (reference)", statsmodels_ra, "ra", EXACT, EXACT),
    Peer("aipw", "EconML LinearDRLearner", econml_aipw, "aipw", SKLEARN, SKLEARN_SE, True, "econml"),
    Peer("ipw", "DoWhy propensity weighting", dowhy_ipw, "ipw", SKLEARN, SKLEARN_SE, False, "dowhy"),
    Peer("aipw", "StatsPAI aipw", statspai_aipw, "aipw", EXACT, EXACT, True, "statspai"),
)
# Timing reference (ratio_to_reference) and exact reference (agreement) of each of our estimators.
REFERENCE_OF = {
    "aipw": "sklearn textbook (reference)",
    "ipw": "statsmodels GLM + sandwich (reference)",
    "ra": "statsmodels OLS HC3 (reference)",
}
EXACT_REFERENCE_OF = {
    "aipw": "statsmodels GLM + OLS",
    "ipw": "statsmodels GLM + sandwich (reference)",
    "ra": "statsmodels OLS HC3 (reference)",
}


def _available(package: str | None) -> bool:
    if package is None:
        return True
    try:
        __import__(package)
    except ImportError:
        return False
    return True


def ours_functions(data: Outreach) -> dict[str, Callable[[], EffectEstimate]]:
    design, d, y = data.design, data.treatment, data.outcome
    return {
        "aipw": lambda: aipw_from_arrays(design, d, y, outcome_kind="linear"),
        "ipw": lambda: ipw_from_arrays(design, d, y),
        "ra": lambda: regression_adjustment_from_arrays(design, d, y),
    }


OURS = {
    "aipw": ("aipw", "assimilate"),
    "ipw": ("ipw", "assimilate (sandwich SE)"),
    "ra": ("regression_adj", "assimilate (HC3)"),
}


def thread_counts() -> list[int]:
    """1, 2, 4, ... below the number of cores this process may use, and that number."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return sorted({1, cores, *(2**k for k in range(1, cores.bit_length()) if 2**k < cores)})


def threaded_functions(
    ours: dict[str, Callable[[], EffectEstimate]],
) -> dict[tuple[str, int], Callable[[], EffectEstimate]]:
    """Each of our estimators on each thread count other than the default, keyed ``(name, threads)``."""

    def on(run: Callable[[], EffectEstimate], threads: int) -> Callable[[], EffectEstimate]:
        def call() -> EffectEstimate:
            with parallel_passes(threads):
                return run()

        return call

    default = pass_threads()
    return {(name, t): on(run, t) for name, run in ours.items() for t in thread_counts() if t != default}


def same_as_default(default: EffectEstimate, other: EffectEstimate) -> str:
    """``"yes (...)"`` or ``"NO (...)"``: estimate and SE within ``THREADS_AGREE`` of the default's."""
    gap = max(
        abs(other.estimate - default.estimate) / max(abs(default.estimate), default.std_error),
        abs(other.std_error / default.std_error - 1.0),
    )
    return f"{'yes' if gap <= THREADS_AGREE else 'NO'} (rel {gap:.1e} vs {pass_threads()} threads)"


def target_note(name: str, n: int, median: float, floor: float) -> str:
    """At ``TARGET_SIZE`` rows: the default thread count and whether the floor-pass target is met."""
    if n != TARGET_SIZE:
        return ""
    target = FLOOR_TARGETS[name]
    verdict = "met" if median / floor <= target else "NOT met"
    return f"; {pass_threads()} threads, target <= {target:g} floor passes {verdict}"


def threaded_rows(
    n: int,
    threaded: dict[tuple[str, int], Callable[[], EffectEstimate]],
    estimates: dict[str, EffectEstimate],
    times: dict[str, list[float]],
    floor: float,
) -> list[Row]:
    """One row per estimator and thread count, timed in the same rounds as the default."""
    rows = []
    for (name, threads), run in threaded.items():
        benchmark, tool = OURS[name]
        rows.append(
            make_row(
                benchmark,
                f"{tool} [{threads} thread{'s' if threads > 1 else ''}]",
                n,
                times[f"{name}@{threads}"],
                reference_median=float(np.median(times[name])),  # ratio to the default thread count
                peak_mib=math.nan,
                agreement=same_as_default(estimates[name], run()),
                floor_median=floor,
            )
        )
    return rows


# ---------------------------------------------------------------- rows


def estimator_rows(sizes: list[int], repeats: int) -> list[Row]:
    """Benchmark rows for every size: floor pass, ours, references and peers (see the module doc)."""
    rows: list[Row] = []
    for n in sizes:
        rows += _rows_in_process(n, repeats) if n <= IN_PROCESS_LIMIT else _rows_in_subprocess(n, repeats)
    return rows


def _rows_in_process(n: int, repeats: int) -> list[Row]:
    data = outreach(n)
    X, d, y = data.design.values, data.treatment.astype(np.float64), data.outcome
    weights = np.full(n, 0.25)
    ours = ours_functions(data)
    estimates = {name: run() for name, run in ours.items()}
    peers = [p for p in PEERS if _available(p.package) and n <= PEER_LIMITS.get(p.package or "", n)]
    answers: dict[str, tuple[float, float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peers' FutureWarnings and convergence chatter
        for peer in peers:
            answers[peer.tool] = peer.run(X, d, y)
        threaded = threaded_functions(ours)
        functions: dict[str, Callable[[], Any]] = {"floor": lambda: floor_pass(X, weights)}
        functions |= {name: run for name, run in ours.items()}
        functions |= {f"{name}@{t}": run for (name, t), run in threaded.items()}
        functions |= {p.tool: (lambda p=p: p.run(X, d, y)) for p in peers}
        times = timed_together(functions, repeats, warm={"floor", *ours, *(f"{k}@{t}" for k, t in threaded)})
        peaks = {name: traced_peak(function) for name, function in functions.items() if "@" not in name}
    floor = float(np.median(times["floor"]))
    reference = {name: float(np.median(times[tool])) for name, tool in REFERENCE_OF.items()}
    design_mib = X.nbytes / 2**20
    rows = [
        make_row(
            "floor X'(wX)",
            "numpy",
            n,
            times["floor"],
            reference_median=reference["aipw"],
            peak_mib=peaks["floor"],
            agreement=f"- (design {design_mib:.1f} MiB)",
            floor_median=floor,
        )
    ]
    for name, (benchmark, tool) in OURS.items():
        exact = EXACT_REFERENCE_OF[name]
        check = agreement(estimates[name], answers[exact], tolerance=EXACT, se_tolerance=EXACT)
        rows.append(
            make_row(
                benchmark,
                tool,
                n,
                times[name],
                reference_median=reference[name],
                peak_mib=peaks[name],
                agreement=f"{check} vs {exact.split(' (')[0]}; peak {peaks[name] / design_mib:.2f}x design"
                + target_note(name, n, float(np.median(times[name])), floor),
                floor_median=floor,
            )
        )
    rows += threaded_rows(n, threaded, estimates, times, floor)
    for peer in peers:
        check = agreement(
            estimates[peer.compares_with],
            answers[peer.tool],
            tolerance=peer.tolerance,
            se_tolerance=peer.se_tolerance,
            n_minus_one=peer.n_minus_one,
        )
        rows.append(
            make_row(
                peer.benchmark,
                peer.tool,
                n,
                times[peer.tool],
                reference_median=reference[peer.compares_with],
                peak_mib=peaks[peer.tool],
                agreement=check,
                floor_median=floor,
            )
        )
    for peer in PEERS:
        if peer not in peers:
            reason = (
                "not installed"
                if not _available(peer.package)
                else f"skipped above 1e{round(math.log10(PEER_LIMITS[peer.package or '']))} (too slow)"
            )
            rows.append(skipped_row(peer.benchmark, peer.tool, n, reason))
    return rows


def _rows_in_subprocess(n: int, repeats: int) -> list[Row]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.estimators", "--child", str(n), "--repeats", str(repeats)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the n={n} benchmark subprocess failed:\n{done.stderr[-3000:]}")
    return [Row(**row) for row in json.loads(done.stdout.splitlines()[-1])]


def _resident_mib() -> float:
    """Current resident set size (MiB), from /proc; the peak so far where /proc is missing."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return _peak_mib()
    return pages * resource.getpagesize() / 2**20


def _peak_mib() -> float:
    """Peak resident set size (MiB) since the last :func:`_reset_peak` (or since start)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to clear_refs); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_rows(n: int, repeats: int) -> list[Row]:
    """Rows for a size run in its own process: peak RSS per estimator, times, agreement."""
    data = outreach(n)
    X, d, y = data.design.values, data.treatment.astype(np.float64), data.outcome
    ours = ours_functions(data)
    gc.collect()
    peaks, process_peaks, estimates = {}, {}, {}
    for name, run in ours.items():
        before = _resident_mib() if _reset_peak() else _peak_mib()
        estimates[name] = run()
        process_peaks[name] = _peak_mib()
        peaks[name] = process_peaks[name] - before
        gc.collect()
    weights = np.full(n, 0.25)
    threaded = threaded_functions(ours)
    functions: dict[str, Callable[[], Any]] = {"floor": lambda: floor_pass(X, weights)} | dict(ours)
    functions |= {f"{name}@{t}": run for (name, t), run in threaded.items()}
    times = timed_together(functions, repeats, warm={"floor", *ours, *(f"{k}@{t}" for k, t in threaded)})
    floor = float(np.median(times["floor"]))
    references = {"aipw": numpy_aipw, "ipw": numpy_ipw, "ra": numpy_ra}
    rows = [
        make_row(
            "floor X'(wX)",
            "numpy",
            n,
            times["floor"],
            reference_median=math.nan,
            peak_mib=math.nan,
            agreement=f"- (design {X.nbytes / 2**20:.1f} MiB)",
            floor_median=floor,
        )
    ]
    for name, (benchmark, tool) in OURS.items():
        check = agreement(estimates[name], references[name](X, d, y), tolerance=EXACT, se_tolerance=EXACT)
        within = "within" if process_peaks[name] <= MEMORY_LIMIT_MIB else "ABOVE"
        rows.append(
            make_row(
                benchmark,
                f"{tool} [peak = RSS above data]",
                n,
                times[name],
                reference_median=math.nan,  # no timed reference at this size
                peak_mib=peaks[name],
                agreement=(
                    f"{check} vs numpy straightforward; process peak RSS {process_peaks[name]:.0f} MiB "
                    f"({within} {MEMORY_LIMIT_MIB:.0f}), {peaks[name] / (X.nbytes / 2**20):.2f}x design"
                )
                + target_note(name, n, float(np.median(times[name])), floor),
                floor_median=floor,
            )
        )
    return rows + threaded_rows(n, threaded, estimates, times, floor)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="n = 2000, one repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000, 10_000_000])
    parser.add_argument("--output", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one large size, rows as JSON
    args = parser.parse_args()
    if args.child:
        print(json.dumps([asdict(r) for r in child_rows(args.child, args.repeats)]))
        return
    rows = estimator_rows([2_000], 1) if args.smoke else estimator_rows(args.sizes, args.repeats)
    print_table(rows)
    if args.output:
        args.output.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    if disagreements(rows):
        raise SystemExit("an estimate disagrees with its reference")


if __name__ == "__main__":
    main()
