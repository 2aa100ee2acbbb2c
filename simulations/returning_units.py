"""Returning units: does the fused interval keep its 95% when batches share units?

Model: unit i in month t has ``y_it = theta_t d_i + u_i + e_it`` with ``u_i, e_it ~ N(0, 1)``, a
standing assignment ``d_i ~ Bernoulli(0.5)`` and 2,000 units a month for 12 months; each month's
effect is the difference in means. Scenarios:

* ``standing_holdout``: the same 2,000 units every month (estimates correlated about 0.5);
* ``rotating_panel``: a random half of last month's units return, the other half are new;
* ``standing_holdout_drifting``: as the first, with ``theta_t`` a random walk (step SD 0.03),
  filtered with that process variance;
* ``outreach_panel_aipw``: the observational retention-outreach stream keeping the same 2,000
  accounts every month (:func:`assimilate.simulate.simulate_outreach_stream` with
  ``returning_share=1``), AIPW per month, true effect the population ATE;
* ``disjoint``: new units every month: the unit-aware path must equal the old one bit for bit.

Each stream is fused twice with the same prior: by :func:`assimilate.filters.correlated_kalman`
with the correlation estimated from the shared units' influence values
(:func:`assimilate.filters.shared_unit_covariance`), and by the independent
:func:`assimilate.filters.causal_kalman`, shown beside it. Coverage is the share of streams (or of
stream-months) whose filtered 95% interval holds the true effect; its Monte Carlo error is
computed over streams. The fast run (CI) uses 400 streams (30 for the outreach stream) and allows
2 Monte Carlo standard errors around [0.93, 0.97]; the full run uses 2,000 streams (1,000 for the
outreach stream) and the bare interval.

Run: ``python -m simulations.returning_units`` (full) prints the table.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from assimilate.assimilative import assimilative_causal
from assimilate.estimators import InfluenceContributions, influence_contributions, influence_from_arrays
from assimilate.filters import causal_kalman, correlated_kalman, shared_unit_covariance
from assimilate.simulate import simulate_outreach_stream
from simulations.table import binomial_mc_error, frame, row

STUDY = "returning_units"
N_UNITS = 2000
N_MONTHS = 12
EFFECT = 0.1
DRIFT_SD = 0.03
LOW, HIGH = 0.93, 0.97
StreamFits = tuple[list[Any], list[InfluenceContributions], NDArray[np.float64]]


def _stream(
    rng: np.random.Generator, returning_share: float, drift_sd: float
) -> tuple[list[NDArray[np.int64]], list[NDArray[np.int64]], list[NDArray[np.float64]], NDArray[np.float64]]:
    """One stream: per month the unit ids, treatments and outcomes; and the true effects."""
    n_back = round(returning_share * N_UNITS)
    n_total = N_UNITS + (N_MONTHS - 1) * (N_UNITS - n_back)
    u = rng.standard_normal(n_total)
    d = rng.binomial(1, 0.5, size=n_total)
    theta = EFFECT + np.concatenate([[0.0], np.cumsum(rng.normal(0.0, drift_sd, N_MONTHS - 1))])
    ids, treatments, outcomes = [], [], []
    current = np.arange(N_UNITS)
    created = N_UNITS
    for t in range(N_MONTHS):
        if t > 0:
            kept = rng.choice(current, size=n_back, replace=False)
            current = np.concatenate([kept, np.arange(created, created + N_UNITS - n_back)])
            created += N_UNITS - n_back
        ids.append(current)
        treatments.append(d[current])
        outcomes.append(theta[t] * d[current] + u[current] + rng.standard_normal(N_UNITS))
    return ids, treatments, outcomes, theta


def _holdout_fits(
    rng: np.random.Generator, returning_share: float, drift_sd: float
) -> tuple[list[Any], list[InfluenceContributions], NDArray[np.float64]]:
    """Difference in means with influence values per month of one holdout stream."""
    ids, treatments, outcomes, theta = _stream(rng, returning_share, drift_sd)
    fits = [
        influence_from_arrays(None, d, y, method="difference_in_means")
        for d, y in zip(treatments, outcomes, strict=True)
    ]
    return list(ids), fits, theta


def _outreach_fits(
    rng: np.random.Generator,
) -> tuple[list[Any], list[InfluenceContributions], NDArray[np.float64]]:
    """AIPW with influence values per month of one outreach stream with the same accounts every month."""
    stream = simulate_outreach_stream(rng=rng, n_batches=N_MONTHS, n_per_batch=N_UNITS, returning_share=1.0)
    fits = [
        influence_contributions(
            batch,
            method="aipw",
            treatment=stream.treatment,
            outcome=stream.outcome,
            covariates=stream.covariates,
        )
        for batch in stream.batches
    ]
    return [batch["account_id"].to_numpy() for batch in stream.batches], fits, stream.true_effects


def _coverage(
    scenario: str, n_streams: int, draw: Callable[[], StreamFits], process_var: float
) -> dict[str, Any]:
    """Coverage of both fusions over ``n_streams`` streams, and the mean returning share and correlation."""
    q = process_var
    hits: dict[str, list[NDArray[np.bool_]]] = {"correlated": [], "naive": []}
    shares, correlations = [], []
    for _ in range(n_streams):
        ids, fits, theta = draw()
        estimates = np.array([f.estimate.estimate for f in fits])
        ses = np.array([f.estimate.std_error for f in fits])
        shared = shared_unit_covariance([(i, f.values) for i, f in zip(ids, fits, strict=True)])
        fused = correlated_kalman(estimates, ses, correlation=shared.correlation, process_var=q)
        naive = causal_kalman(estimates, ses, process_var=q)
        for name, result in (("correlated", fused), ("naive", naive)):
            hits[name].append((result.posterior_lower <= theta) & (theta <= result.posterior_upper))
        shares.append(float(shared.returning_share[1:].mean()))
        correlations.append(float(np.nanmean(shared.correlation_with_previous)))
    return {
        "hits": {k: np.array(v) for k, v in hits.items()},
        "returning_share": float(np.mean(shares)),
        "correlation": float(np.mean(correlations)),
        "scenario": scenario,
    }


def _coverage_rows(measured: dict[str, Any], n_streams: int, fast: bool) -> list[dict[str, Any]]:
    scenario = measured["scenario"]
    slack = 2.0 if fast else 0.0
    rows = [
        row(STUDY, scenario, "streams", n_streams),
        row(STUDY, scenario, "mean_returning_share", measured["returning_share"]),
        row(STUDY, scenario, "mean_correlation_with_previous", measured["correlation"]),
    ]
    for name, hits in measured["hits"].items():
        for quantity, share, n in (
            ("coverage_final", float(hits[:, -1].mean()), hits.shape[0]),
            ("coverage_all_batches", float(hits.mean()), hits.shape[0]),
        ):
            error = binomial_mc_error(share, n)
            if name == "correlated":
                target = f"in [{LOW}, {HIGH}]" + (" +- 2 MC s.e." if fast else "")
                passed = LOW - slack * error <= share <= HIGH + slack * error
                rows.append(
                    row(STUDY, scenario, quantity, share, target=target, mc_error=error, passed=passed)
                )
            else:
                rows.append(row(STUDY, scenario, f"naive_{quantity}", share, mc_error=error))
    return rows


def _disjoint_rows(n_streams: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """New units every month: the unit-aware path through ``assimilative_causal`` equals the old one."""
    fields = (
        "posterior_mean",
        "posterior_var",
        "posterior_lower",
        "posterior_upper",
        "smoothed_mean",
        "smoothed_var",
    )
    worst, identical = 0.0, 0
    for _ in range(n_streams):
        ids, treatments, outcomes, _ = _stream(rng, 0.0, 0.0)
        batches = [
            pd.DataFrame({"unit_id": i, "d": d, "y": y})
            for i, d, y in zip(ids, treatments, outcomes, strict=True)
        ]
        new = assimilative_causal(
            batches,
            lambda b: influence_contributions(b, method="difference_in_means", treatment="d", outcome="y"),
            unit_id="unit_id",
        )
        old = assimilative_causal(
            batches,
            lambda b: (
                influence_contributions(b, method="difference_in_means", treatment="d", outcome="y").estimate
            ),
        )
        same = all(np.array_equal(getattr(new, f), getattr(old, f)) for f in fields)
        identical += int(same and new.log_likelihood == old.log_likelihood)
        worst = max(worst, *(float(np.max(np.abs(getattr(new, f) - getattr(old, f)))) for f in fields))
    return [
        row(STUDY, "disjoint", "streams", n_streams),
        row(STUDY, "disjoint", "max_abs_difference_new_vs_old", worst, target="== 0", passed=worst == 0.0),
        row(
            STUDY,
            "disjoint",
            "identical_stream_share",
            identical / n_streams,
            target="== 1",
            passed=identical == n_streams,
        ),
    ]


def run(*, fast: bool = True, seed: int = 20250613) -> pd.DataFrame:
    """The study's table: one row per measured quantity (see the module docstring)."""
    n_streams, n_outreach = (400, 30) if fast else (2000, 1000)
    children = [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(5)]
    rows: list[dict[str, Any]] = []
    for rng, (scenario, share, drift) in zip(
        children[:3],
        (
            ("standing_holdout", 1.0, 0.0),
            ("rotating_panel", 0.5, 0.0),
            ("standing_holdout_drifting", 1.0, DRIFT_SD),
        ),
        strict=True,
    ):
        measured = _coverage(scenario, n_streams, partial(_holdout_fits, rng, share, drift), drift**2)
        rows += _coverage_rows(measured, n_streams, fast)
    measured = _coverage("outreach_panel_aipw", n_outreach, partial(_outreach_fits, children[3]), 0.0)
    rows += _coverage_rows(measured, n_outreach, fast)
    rows += _disjoint_rows(20 if fast else 200, children[4])
    return frame(rows)


if __name__ == "__main__":
    pd.set_option("display.width", 160)
    print(run(fast=False).to_string(index=False))
