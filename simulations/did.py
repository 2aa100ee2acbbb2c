"""Difference in differences: do the unit-clustered intervals cover, is TWFE biased, does the pre-trend gate work?

Staggered rollout (panel): ``N = 300`` units, ``T = 8`` periods, first treated in period 3, 5 or 7
or never (a quarter each), ``y_it = a_i + 0.3 t + tau_it + e_it`` with unit levels ``a_i`` that
differ by cohort, AR(1) errors within a unit (``rho = 0.5``, so clustering matters) whose scale
differs by cohort, and effects that vary by cohort and grow with exposure,
``tau_it = (1 + 0.5 (t - g)) (1 + 0.5 [g = 3]) + b_i``, ``b_i ~ N(0, 0.5^2)``. The target is the
simple ATT with the population cohort shares (Callaway & Sant'Anna 2021, ``theta_simple``). The
Callaway-Sant'Anna estimator (not-yet-treated controls, :mod:`assimilate.estimators.did_staggered`)
is run with its unit-clustered SE and ``t_{G-1}`` interval; the static two-way fixed-effects
estimate (:func:`assimilate.estimators.did.difference_in_differences`) of the same data is shown
with its bias and its coverage of the same target (Goodman-Bacon 2021: a weighted average with
weights that can be negative under dynamic effects).

Common adoption, homogeneous effect 1 (panel of 100 units, half treated, AR(1) errors): the 2x2
(two periods) and the multi-period TWFE (six periods, adoption at period 4), CR1 with ``t_{G-1}``.

Pre-trend gate (the joint Wald chi-square test of the Callaway-Sant'Anna event-time leads at 5%,
:func:`assimilate.estimators.did_diagnostics.pre_trend_test`): its false-alarm rate under parallel
trends in the staggered design, and its detection rate when every treated cohort drifts away
linearly before adoption (``delta (t - g)`` for ``t < g``): ``delta = 0.25`` per period (about a
quarter of an error SD) with a power target, ``delta = 0.1`` reported (a small drift is often
missed: passing the gate is not proof of parallel trends, Roth 2022). The false-alarm target is
the test's size, ``[0.03, 0.07]`` around its nominal 5%.

The full run uses 2,000 datasets per scenario and the bare targets; the fast run (CI) uses fewer
and allows 2 Monte Carlo standard errors around them. Run: ``python -m simulations.did``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from assimilate.estimators.did import difference_in_differences
from assimilate.estimators.did_diagnostics import pre_trend_test
from assimilate.estimators.did_staggered import group_time_att
from assimilate.estimators.variance import t_conf_int
from simulations.table import binomial_mc_error, frame, row

STUDY = "did"
LOW, HIGH = 0.93, 0.97
UNITS, PERIODS = 300, 8
COHORTS = (3, 5, 7)
SHARE = 0.25
"""Population share of each cohort and of the never treated."""
RHO = 0.5
PRE_TRENDS = (0.1, 0.25)
"""Pre-adoption drifts per period: the small one is reported, the larger one has the power target."""
COLUMNS = {"unit": "unit", "period": "period", "outcome": "y", "first_treated": "first_treated"}
FULL_REPS = 2000
FAST_REPS = {"staggered": 150, "common": 150, "pre_trend": 100}


def effect(g: float, t: np.ndarray) -> np.ndarray:
    """Mean effect of cohort ``g`` at periods ``t >= g``: grows with exposure, larger for the first cohort."""
    return (1.0 + 0.5 * (t - g)) * (1.0 + 0.5 * (g == COHORTS[0]))


def simple_att() -> float:
    """``theta_simple``: the post-adoption cells' mean effects weighted by the population cohort shares."""
    cells = [float(effect(g, np.array(t))) for g in COHORTS for t in range(g, PERIODS + 1)]
    return float(np.mean(cells))  # equal shares: every cell weighs the same


def _errors(rng: np.random.Generator, n_units: int, n_periods: int) -> np.ndarray:
    """AR(1) errors within each unit, stationary with unit variance, shape (units, periods)."""
    shocks = rng.standard_normal((n_units, n_periods))
    out = np.empty_like(shocks)
    out[:, 0] = shocks[:, 0]
    for t in range(1, n_periods):
        out[:, t] = RHO * out[:, t - 1] + math.sqrt(1.0 - RHO * RHO) * shocks[:, t]
    return out


def staggered(rng: np.random.Generator, *, pre_trend: float = 0.0) -> pd.DataFrame:
    """One panel of the staggered rollout; ``pre_trend`` adds ``delta (t - g)`` before adoption."""
    first = rng.choice(np.array([*COHORTS, np.inf]), UNITS)
    unit = np.repeat(np.arange(UNITS), PERIODS)
    period = np.tile(np.arange(1, PERIODS + 1), UNITS)
    g = first[unit]
    treated = np.isfinite(g)
    lag = period - np.where(treated, g, 0.0)
    after = treated & (lag >= 0)
    level = rng.standard_normal(UNITS)[unit] + 0.3 * np.where(treated, g, 9.0)
    tau = np.where(
        after, effect(np.where(treated, g, 0.0), period) + 0.5 * rng.standard_normal(UNITS)[unit], 0.0
    )
    scale = 1.0 + 0.5 * (g == COHORTS[-1])
    noise = scale * _errors(rng, UNITS, PERIODS).ravel()
    drift = np.where(treated & (lag < 0), pre_trend * lag, 0.0)
    y = level + 0.3 * period + tau + drift + noise
    return pd.DataFrame({"unit": unit, "period": period, "first_treated": g, "y": y})


def common(rng: np.random.Generator, n_periods: int, *, n_units: int = 100) -> pd.DataFrame:
    """Half of ``n_units`` treated from the last ``n_periods // 2`` periods on, effect 1."""
    unit = np.repeat(np.arange(n_units), n_periods)
    period = np.tile(np.arange(1, n_periods + 1), n_units)
    adoption = n_periods // 2 + 1
    treated = unit < n_units // 2
    y = (
        rng.standard_normal(n_units)[unit]
        + 0.5 * treated
        + 0.2 * period
        + _errors(rng, n_units, n_periods).ravel()
    )
    y = y + 1.0 * (treated & (period >= adoption))
    return pd.DataFrame(
        {"unit": unit, "period": period, "treated": treated.astype(int), "y": y, "adoption": adoption}
    )


def _share_row(
    scenario: str, quantity: str, hits: list[bool], *, fast: bool, low: float | None, high: float | None
) -> dict[str, object]:
    """A share with an optional target ``[low, high]`` (widened by 2 MC errors in the fast run)."""
    share = float(np.mean(hits))
    error = binomial_mc_error(share, len(hits))
    slack = 2 * error if fast else 0.0
    name = f"{quantity} ({len(hits)} datasets)"
    if low is None and high is None:
        return row(STUDY, scenario, name, share, mc_error=error)
    if low is not None and high is not None:
        target, passed = f"in [{low}, {high}]", low - slack <= share <= high + slack
    elif high is not None:
        target, passed = f"<= {high}", share <= high + slack
    else:
        assert low is not None
        target, passed = f">= {low}", share >= low - slack
    suffix = " +- 2 mc_error" if fast else ""
    return row(STUDY, scenario, name, share, target=target + suffix, mc_error=error, passed=bool(passed))


def _covers(interval: tuple[float, float], truth: float) -> bool:
    return interval[0] <= truth <= interval[1]


def staggered_rows(rng: np.random.Generator, reps: int, *, fast: bool) -> list[dict[str, object]]:
    """Callaway-Sant'Anna vs two-way fixed effects on the staggered rollout: bias and coverage."""
    truth = simple_att()
    onset_truth = float(np.mean([effect(g, np.array(g)) for g in COHORTS]))  # theta(0), equal shares
    cs_hits, twfe_hits, cs_values, twfe_values, cs_errors, onset_hits = [], [], [], [], [], []
    for _ in range(reps):
        panel = staggered(rng)
        cells = group_time_att(panel, **COLUMNS)
        simple = cells.simple()
        twfe = difference_in_differences(panel, **COLUMNS)
        dynamic = cells.event_time()
        lower, upper = dynamic.conf_int()
        onset = dynamic.event_times.index(0)
        onset_hits.append(bool(lower[onset] <= onset_truth <= upper[onset]))
        cs_hits.append(_covers(t_conf_int(simple), truth))
        twfe_hits.append(_covers(t_conf_int(twfe), truth))
        cs_values.append(simple.estimate)
        twfe_values.append(twfe.estimate)
        cs_errors.append(simple.std_error)
    scenario = f"staggered rollout, N={UNITS}, T={PERIODS}, cohorts {COHORTS} + never, AR(1) errors"
    cs, tw = np.array(cs_values), np.array(twfe_values)
    return [
        _share_row(
            scenario, "Callaway-Sant'Anna simple ATT t(G-1) coverage", cs_hits, fast=fast, low=LOW, high=HIGH
        ),
        _share_row(
            scenario, "Callaway-Sant'Anna event time 0 coverage", onset_hits, fast=fast, low=LOW, high=HIGH
        ),
        row(
            STUDY,
            scenario,
            "Callaway-Sant'Anna mean estimate - simple ATT",
            float(cs.mean() - truth),
            mc_error=float(cs.std(ddof=1) / math.sqrt(reps)),
        ),
        row(
            STUDY,
            scenario,
            "Callaway-Sant'Anna SD of estimates / mean SE",
            float(cs.std(ddof=1) / np.mean(cs_errors)),
        ),
        row(
            STUDY,
            scenario,
            "TWFE mean estimate - simple ATT",
            float(tw.mean() - truth),
            mc_error=float(tw.std(ddof=1) / math.sqrt(reps)),
        ),
        _share_row(
            scenario,
            "TWFE CR1 interval coverage of the simple ATT",
            twfe_hits,
            fast=fast,
            low=None,
            high=None,
        ),
        row(STUDY, scenario, "simple ATT (truth)", truth),
    ]


def common_rows(rng: np.random.Generator, reps: int, *, fast: bool) -> list[dict[str, object]]:
    """The 2x2 and the multi-period TWFE with a homogeneous effect: CR1 coverage."""
    rows = []
    for n_periods, label in ((2, "2x2"), (6, "multi-period (6 periods)")):
        hits = []
        for _ in range(reps):
            panel = common(rng, n_periods)
            fit = difference_in_differences(
                panel,
                unit="unit",
                period="period",
                outcome="y",
                first_treated=n_periods // 2 + 1,
                group="treated",
            )
            hits.append(_covers(t_conf_int(fit), 1.0))
        scenario = f"common adoption, {label}, 100 units, effect 1, AR(1) errors"
        rows.append(_share_row(scenario, "TWFE CR1 t(G-1) coverage", hits, fast=fast, low=LOW, high=HIGH))
    return rows


def pre_trend_rows(rng: np.random.Generator, reps: int, *, fast: bool) -> list[dict[str, object]]:
    """The pre-trend gate's false-alarm rate (parallel trends) and detection rate (linear pre-trend)."""

    def fires(delta: float) -> bool:
        study = group_time_att(staggered(rng, pre_trend=delta), **COLUMNS).event_time()
        return pre_trend_test(study, alpha=0.05).failed

    return gate_rate_rows(
        fires, reps, fast=fast, gate="pre-trend gate (Wald chi2 of the leads, 5%), staggered rollout"
    )


def gate_rate_rows(
    fires: Callable[[float], bool], reps: int, *, fast: bool, gate: str
) -> list[dict[str, object]]:
    """A pre-trend gate's rates: how often ``fires(delta)`` under parallel trends, then each ``PRE_TRENDS``."""
    rows = []
    for delta in (0.0, *PRE_TRENDS):
        fired = [fires(delta) for _ in range(reps)]
        parallel = delta == 0.0
        scenario = gate + ("" if parallel else f", linear pre-trend {delta:g} per period")
        rows.append(
            _share_row(
                scenario,
                "false-alarm rate" if parallel else "detection rate",
                fired,
                fast=fast,
                low=0.03 if parallel else (0.80 if delta == PRE_TRENDS[-1] else None),
                high=0.07 if parallel else None,
            )
        )
    return rows


def run(*, fast: bool = True, seed: int = 20261216) -> pd.DataFrame:
    """Coverage and bias of the DiD estimators, the pre-trend gate's false-alarm and detection rates."""
    streams = np.random.default_rng(seed).spawn(3)
    reps = FAST_REPS if fast else dict.fromkeys(FAST_REPS, FULL_REPS)
    rows = staggered_rows(streams[0], reps["staggered"], fast=fast)
    rows += common_rows(streams[1], reps["common"], fast=fast)
    rows += pre_trend_rows(streams[2], reps["pre_trend"], fast=fast)
    return frame(rows)


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    print(run(fast=False).to_string(index=False))
