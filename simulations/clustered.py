"""Clustered data: do cluster-robust intervals keep their 95% when units within a cluster correlate?

Model (cluster-randomized): cluster ``g`` of ``m_g ~ U{10..30}`` units, half of the ``G`` clusters
treated by complete randomization, ``y_ig = 0.2 d_g + 0.5 x_ig + u_g + e_ig`` with
``u_g ~ N(0, 0.3)``, ``e_ig ~ N(0, 0.7)`` (intra-cluster correlation 0.3) and a covariate
``x_ig = v_g + w_ig`` correlated within clusters; ``G`` in 40, 100, 200. Every estimator (difference
in means, regression adjustment, IPW, AIPW) is run as a study would run it; its interval is taken
three ways: the estimator's own unit-level SE (normal), CR1 and, for the OLS estimators, CR2 (both
with ``t_{G-1}``, :func:`assimilate.estimators.variance.t_conf_int`). The true effect is 0.2.
A scenario with more unequal clusters (40 clusters of 5..35 units) is reported without a promise:
CR1 is biased down with few unequal clusters (Cameron & Miller 2015), and its coverage there sits
at 0.93-0.95, at the edge of the target within Monte Carlo error.

Duplicated units: 1,000 individually randomized units, ``y = 0.2 d + 0.5 x + e``, the whole batch
delivered twice. The rows taken as independent shrink the SE by ``1/sqrt(2)`` against the SE of
the single copy; clustering on the unit id (:func:`assimilate.estimators.duplicates.duplicate_unit_clusters`)
restores it.

The full run uses 1,000 datasets per scenario and the bare target [0.93, 0.97]; the fast run (CI)
uses fewer and allows 2 Monte Carlo standard errors around it. Run: ``python -m simulations.clustered``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from assimilate.estimators import EffectEstimate, estimate_effect
from assimilate.estimators.duplicates import duplicate_unit_clusters
from assimilate.estimators.variance import t_conf_int, with_standard_error
from simulations.table import binomial_mc_error, frame, row

STUDY = "clustered"
EFFECT = 0.2
ICC = 0.3
LOW, HIGH = 0.93, 0.97
METHODS = ("difference_in_means", "regression_adjustment", "ipw", "aipw")
OLS = ("difference_in_means", "regression_adjustment")
SIZES = (10, 30)
STRESS_SIZES = (5, 35)
CLUSTER_SCENARIOS = ((40, SIZES), (100, SIZES), (200, SIZES), (40, STRESS_SIZES))
"""(G, cluster sizes): the promise is kept at sizes 10..30; 40 clusters of 5..35 units is reported."""
FULL_REPS = 1000
FAST_REPS = (300, 0, 100, 0)
DUPLICATE_UNITS = 1000
DUPLICATE_METHODS = ("difference_in_means", "regression_adjustment", "aipw")
FAST_DUPLICATE_REPS = 100


def cluster_randomized(
    rng: np.random.Generator, n_clusters: int, sizes: tuple[int, int] = SIZES
) -> pd.DataFrame:
    """One batch of a cluster-randomized trial with intra-cluster correlation ``ICC``."""
    sizes_ = rng.integers(sizes[0], sizes[1] + 1, n_clusters)
    cluster = np.repeat(np.arange(n_clusters), sizes_)
    n = len(cluster)
    treated = rng.permutation(np.arange(n_clusters) % 2)[cluster]
    x = rng.standard_normal(n_clusters)[cluster] + rng.standard_normal(n)
    noise = rng.normal(0.0, math.sqrt(ICC), n_clusters)[cluster] + rng.normal(0.0, math.sqrt(1 - ICC), n)
    return pd.DataFrame({"cluster": cluster, "x": x, "d": treated, "y": EFFECT * treated + 0.5 * x + noise})


def _covers(interval: tuple[float, float]) -> bool:
    return interval[0] <= EFFECT <= interval[1]


def _fit(frame_: pd.DataFrame, method: str) -> EffectEstimate:
    return estimate_effect(frame_, method=method, treatment="d", outcome="y", covariates=["x"])  # type: ignore[arg-type]


def _reclustered(
    estimate: EffectEstimate, frame_: pd.DataFrame, cluster: object, se_type: str
) -> EffectEstimate:
    return with_standard_error(
        estimate,
        frame_,
        treatment="d",
        outcome="y",
        covariates=["x"],
        cluster=cluster,  # type: ignore[arg-type]
        se_type=se_type,  # type: ignore[arg-type]
    )


def _coverage_row(
    scenario: str, quantity: str, hits: list[bool], *, fast: bool, target: bool
) -> dict[str, object]:
    share = float(np.mean(hits))
    error = binomial_mc_error(share, len(hits))
    slack = 2 * error if fast else 0.0
    return row(
        STUDY,
        scenario,
        f"{quantity} ({len(hits)} datasets)",
        share,
        target=f"in [{LOW}, {HIGH}]" + (" +- 2 mc_error" if fast else "") if target else "",
        mc_error=error,
        passed=bool(LOW - slack <= share <= HIGH + slack) if target else None,
    )


def clustered_rows(
    rng: np.random.Generator, n_clusters: int, sizes: tuple[int, int], reps: int, *, fast: bool
) -> list[dict[str, object]]:
    """Coverage of the unit-level, CR1 and CR2 intervals of every estimator at ``G`` clusters."""
    hits: dict[tuple[str, str], list[bool]] = {}
    ratios: dict[str, list[float]] = {m: [] for m in METHODS}
    estimates: dict[str, list[float]] = {m: [] for m in METHODS}
    cr1: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(reps):
        batch = cluster_randomized(rng, n_clusters, sizes)
        for method in METHODS:
            unit = _fit(batch, method)
            fits = {"unit": unit, "CR1": _reclustered(unit, batch, "cluster", "CR1")}
            if method in OLS:
                fits["CR2"] = _reclustered(unit, batch, "cluster", "CR2")
            for kind, fit in fits.items():
                hits.setdefault((method, kind), []).append(_covers(t_conf_int(fit)))
            ratios[method].append(fits["CR1"].std_error / unit.std_error)
            estimates[method].append(unit.estimate)
            cr1[method].append(fits["CR1"].std_error)
    scenario = f"cluster-randomized, ICC {ICC}, G={n_clusters}, sizes {sizes[0]}-{sizes[1]}"
    promised = sizes == SIZES
    rows = []
    for (method, kind), covered in hits.items():
        label = "unit-level SE (normal)" if kind == "unit" else f"{kind} SE, t({n_clusters - 1})"
        rows.append(
            _coverage_row(
                scenario,
                f"{method}: {label} coverage",
                covered,
                fast=fast,
                target=promised and kind != "unit",
            )
        )
    for method in METHODS:
        rows.append(
            row(STUDY, scenario, f"{method}: mean CR1 SE / unit-level SE", float(np.mean(ratios[method])))
        )
        spread = float(np.std(estimates[method], ddof=1))
        rows.append(
            row(
                STUDY,
                scenario,
                f"{method}: SD of estimates / mean CR1 SE",
                spread / float(np.mean(cr1[method])),
            )
        )
    return rows


def duplicate_rows(rng: np.random.Generator, reps: int, *, fast: bool) -> list[dict[str, object]]:
    """The SE of a batch delivered twice, unclustered and clustered on the unit, vs the single copy."""
    naive_ratio: dict[str, list[float]] = {m: [] for m in DUPLICATE_METHODS}
    clustered_ratio: dict[str, list[float]] = {m: [] for m in DUPLICATE_METHODS}
    naive_hits: dict[str, list[bool]] = {m: [] for m in DUPLICATE_METHODS}
    clustered_hits: dict[str, list[bool]] = {m: [] for m in DUPLICATE_METHODS}
    n = DUPLICATE_UNITS
    for _ in range(reps):
        once = pd.DataFrame({"unit": np.arange(n), "x": rng.standard_normal(n), "d": rng.binomial(1, 0.5, n)})
        once["y"] = EFFECT * once["d"] + 0.5 * once["x"] + rng.standard_normal(n)
        twice = pd.concat([once, once], ignore_index=True)
        labels = duplicate_unit_clusters(twice, unit_id="unit", policy="cluster")
        for method in DUPLICATE_METHODS:
            honest, naive = _fit(once, method), _fit(twice, method)
            clustered = _reclustered(naive, twice, labels, "CR1")
            naive_ratio[method].append(naive.std_error / honest.std_error)
            clustered_ratio[method].append(clustered.std_error / honest.std_error)
            naive_hits[method].append(_covers(naive.conf_int()))
            clustered_hits[method].append(_covers(t_conf_int(clustered)))
    scenario = f"batch delivered twice, {n} units"
    rows = []
    checks: tuple[tuple[str, dict[str, list[float]], float, float], ...] = (
        ("unclustered SE / SE of one copy", naive_ratio, 0.69, 0.72),
        ("CR1 on unit id SE / SE of one copy", clustered_ratio, 0.98, 1.02),
    )
    for method in DUPLICATE_METHODS:
        for quantity, ratios, low, high in checks:
            mean = float(np.mean(ratios[method]))
            rows.append(
                row(
                    STUDY,
                    scenario,
                    f"{method}: mean {quantity}",
                    mean,
                    target=f"in [{low}, {high}]",
                    mc_error=float(np.std(ratios[method]) / math.sqrt(reps)),
                    passed=bool(low <= mean <= high),
                )
            )
        rows.append(
            _coverage_row(
                scenario, f"{method}: unclustered coverage", naive_hits[method], fast=fast, target=False
            )
        )
        rows.append(
            _coverage_row(
                scenario, f"{method}: CR1 on unit id coverage", clustered_hits[method], fast=fast, target=True
            )
        )
    return rows


def run(*, fast: bool = True, seed: int = 20261214) -> pd.DataFrame:
    """Coverage of clustered and duplicated-unit intervals; one row per estimator and SE type."""
    streams = np.random.default_rng(seed).spawn(len(CLUSTER_SCENARIOS) + 1)
    rows: list[dict[str, object]] = []
    for stream, (n_clusters, sizes), fast_reps in zip(streams, CLUSTER_SCENARIOS, FAST_REPS, strict=False):
        reps = fast_reps if fast else FULL_REPS
        if reps:
            rows += clustered_rows(stream, n_clusters, sizes, reps, fast=fast)
    rows += duplicate_rows(streams[-1], FAST_DUPLICATE_REPS if fast else FULL_REPS, fast=fast)
    return frame(rows)


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    print(run(fast=False).to_string(index=False))
