"""The pipeline's difference-in-differences batches: do the period intervals cover, and does the pre-trend gate work?

A did study's batch is one period; the pipeline estimates it from the stored earlier periods and
this one (:func:`assimilate.estimators.did_batch.period_effect`): the effect in the period,
``theta_C(t)``, after the first adoption, the placebo before it. The pre-trend gate
(:func:`assimilate.estimators.did_batch.stored_pre_trend`) tests the stored placebos jointly (Wald
chi-square at 5%, covariance from the stored per-unit influence values) and excludes every post
period when it fails. This study measures, batch by batch as the pipeline runs:

- coverage of the ``t_{G-1}`` interval of ``theta_C(t)`` at the first and the last post period
  (target ``[0.93, 0.97]``);
- the gate's false-alarm rate under parallel trends (target: its size, ``[0.03, 0.07]``);
- its detection rate when every treated cohort drifts away linearly before adoption
  (``delta (t - g)`` for ``t < g``): ``delta = 0.25`` per period (a quarter of an error SD) with a
  power target of 0.8, ``delta = 0.1`` reported (a pass is not proof of parallel trends, Roth 2022).

Panel: ``N = 300`` units, ``T = 10`` monthly periods, cohorts first treated in periods 5, 7, 9 or
never (a quarter each), so periods 2-4 give three placebos (period 1 is their base);
``y_it = a_i + 0.3 t + tau_it + e_it`` with cohort-dependent levels, AR(1) errors within a unit
(``rho = 0.5``) and effects that grow with exposure, ``tau_it = 1 + 0.5 (t - g)``. Not-yet-treated
comparison units. The full run uses 2,000 panels per scenario; the fast run (CI) fewer, with 2
Monte Carlo standard errors around the targets. Run: ``python -m simulations.did_gate``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from assimilate.estimators.did_batch import PeriodFit, period_effect, stored_pre_trend
from assimilate.estimators.variance import t_conf_int
from simulations.did import _errors, _share_row, gate_rate_rows
from simulations.table import frame

STUDY = "did_gate"
UNITS, PERIODS = 300, 10
COHORTS = (5, 7, 9)
LABELS = tuple(f"2025-{t:02d}-01" for t in range(1, PERIODS + 1))
PRE = LABELS[1:4]  # the pre-period placebos (periods 2-4)
POST = (LABELS[4], LABELS[-1])  # the first and the last post period
FULL_REPS = 2000
FAST_REPS = {"coverage": 120, "pre_trend": 80}


def theta(t: int) -> float:
    """``theta_C(t)``: the adopted cohorts' mean effects, weighted by their (equal) population shares."""
    return float(np.mean([1.0 + 0.5 * (t - g) for g in COHORTS if g <= t]))


def panel(rng: np.random.Generator, *, pre_trend: float = 0.0) -> pd.DataFrame:
    """One staggered rollout; the cohort column holds batch labels (empty: never treated)."""
    first = rng.choice(np.array([*COHORTS, 0]), UNITS)
    unit = np.repeat(np.arange(UNITS), PERIODS)
    period = np.tile(np.arange(1, PERIODS + 1), UNITS)
    g = first[unit]
    treated = g > 0
    lag = period - g
    level = rng.standard_normal(UNITS)[unit] + 0.3 * np.where(treated, g, 11)
    tau = np.where(treated & (lag >= 0), 1.0 + 0.5 * lag, 0.0)
    drift = np.where(treated & (lag < 0), pre_trend * lag, 0.0)
    y = level + 0.3 * period + tau + drift + _errors(rng, UNITS, PERIODS).ravel()
    labels = np.array(LABELS, dtype=object)
    cohort = np.where(treated, labels[np.maximum(g, 1) - 1], "")
    return pd.DataFrame({"unit": unit, "month": labels[period - 1], "launch": cohort, "y": y})


def _fit(data: pd.DataFrame, batch: str) -> PeriodFit:
    return period_effect(data, unit="unit", period="month", outcome="y", batch=batch, first_treated="launch")


def coverage_rows(rng: np.random.Generator, reps: int, *, fast: bool) -> list[dict[str, object]]:
    """Coverage of the batch intervals of ``theta_C(t)`` at the first and the last post period."""
    hits: dict[str, list[bool]] = {b: [] for b in POST}
    for _ in range(reps):
        data = panel(rng)
        for batch in POST:
            estimate = _fit(data, batch).estimate
            lower, upper = t_conf_int(estimate)
            hits[batch].append(bool(lower <= theta(LABELS.index(batch) + 1) <= upper))
    scenario = f"did batches, N={UNITS}, T={PERIODS}, cohorts {COHORTS} + never, AR(1) errors"
    return [
        _share_row(scenario, f"theta_C({batch}) t(G-1) coverage", hits[batch], fast=fast, low=0.93, high=0.97)
        for batch in POST
    ]


def gate_fires(data: pd.DataFrame) -> bool:
    """The pipeline's gate on one panel: the stored placebos of periods 2-4, tested at the first post period."""
    leads, influence = [], []
    for batch in PRE:
        fit = _fit(data, batch)
        leads.append({"partition_key": batch, "estimate": fit.estimate.estimate})
        influence.append(fit.influence_frame().assign(partition_key=batch))
    verdict, _ = stored_pre_trend(
        pd.DataFrame(leads), pd.concat(influence), periods=LABELS[:5], first_adoption=LABELS[4]
    )
    return verdict.failed


def pre_trend_rows(rng: np.random.Generator, reps: int, *, fast: bool) -> list[dict[str, object]]:
    """The gate's false-alarm rate (parallel trends) and detection rate (linear pre-trends)."""
    return gate_rate_rows(
        lambda delta: gate_fires(panel(rng, pre_trend=delta)),
        reps,
        fast=fast,
        gate="pipeline pre-trend gate (Wald chi2 of 3 stored placebos, 5%)",
    )


def run(*, fast: bool = True, seed: int = 20261217) -> pd.DataFrame:
    """Coverage of the did batches' intervals; the pipeline gate's false-alarm and detection rates."""
    streams = np.random.default_rng(seed).spawn(2)
    reps = FAST_REPS if fast else dict.fromkeys(FAST_REPS, FULL_REPS)
    rows = coverage_rows(streams[0], reps["coverage"], fast=fast)
    rows += pre_trend_rows(streams[1], reps["pre_trend"], fast=fast)
    return frame(rows).assign(study=STUDY)


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    print(run(fast=False).to_string(index=False))
