"""Instrumental variables: does the 2SLS interval cover, when does it not, and does the AR set always?

Encouragement design (strong instrument): ``n = 1,000`` units, a randomized binary encouragement
``z``, compliance types from an unmeasured confounder ``u`` and a covariate ``x`` (about 27%
always-takers, 42% never-takers, 31% compliers), ``d = always + complier z``, outcome
``y = 0.5 x + 0.3 [region = c] + u + (1 + 0.5 |x|) e + d tau`` with ``tau = 1.5`` for
always-takers and ``tau = 0.5 + N(0, 0.5)`` for compliers: the LATE is 0.5 (the ATE is not), and
naive OLS is biased by ``u``. 2SLS with ``x`` and ``region`` as covariates, HC1 SE, normal
interval; the Anderson-Rubin 95% set. Clustered: the encouragement is assigned to 100 clusters of
10 units that share part of ``u`` (CR1 SE, ``t_{99}``; the AR set with the ``F(k, G - 1)`` critical
value); the interval that ignores the clusters is reported too.

Weak instruments (linear, Staiger & Stock 1997): ``z ~ N(0, I_k)``, ``d = z'pi + v``,
``y = d + u``, ``corr(u, v) = rho``, ``n = 500``, ``n pi'pi = mu^2`` (the concentration parameter;
the expected first-stage F is about ``1 + mu^2 / k``): one instrument with ``mu^2 = 2, rho = 0.99``
(F about 2-3) and three with ``mu^2 = 9, rho = 0.9`` (F about 4). The promise is the AR set's
coverage; the 2SLS interval is shown to undercover (``<= 0.90``).

Weak-instrument gate (effective F < 10, the default threshold): its firing rate with one instrument
at an expected F of 5 (``mu^2 = 4``: the gate should fire, ``>= 0.80``) and of 30 (``mu^2 = 29``: a
false alarm, ``<= 0.05``). Hansen's J at 5% with three valid instruments and heteroskedastic errors
(size in [0.03, 0.07]) and with one invalid (a direct effect ``0.1 z_3`` on ``y``; power reported).

The full run uses 1,000 datasets per scenario (2,000 for the gate rates) and the bare targets; the
fast run (CI) uses fewer and allows 2 Monte Carlo standard errors around them.
Run: ``python -m simulations.iv``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from assimilate.estimators import EffectEstimate
from assimilate.estimators.iv import two_stage_least_squares
from assimilate.estimators.iv_diagnostics import anderson_rubin_set_of, weak_instrument_verdict
from assimilate.estimators.variance import t_conf_int
from simulations.table import binomial_mc_error, frame, row

STUDY = "iv"
LATE = 0.5
BETA = 1.0
LOW, HIGH = 0.93, 0.97
WEAK_N = 500
WEAK = ((1, 2.0, 0.99), (3, 9.0, 0.9))
"""(instruments, mu^2, rho) of the weak-instrument scenarios."""
GATE_F = (5.0, 30.0)
FULL_REPS, FULL_GATE_REPS = 1000, 2000
FAST_REPS = {"strong": 300, "clustered": 200, "weak": 300, "gate": 300, "hansen": 200}


def encouragement(rng: np.random.Generator, n: int = 1000, n_clusters: int | None = None) -> pd.DataFrame:
    """One batch of the encouragement design; with ``n_clusters`` the encouragement is per cluster."""
    x = rng.standard_normal(n)
    region = rng.choice(np.array(["a", "b", "c"]), n)
    if n_clusters is None:
        cluster = np.arange(n)
        z = rng.binomial(1, 0.5, n)
        u = rng.standard_normal(n)
    else:
        cluster = np.repeat(np.arange(n_clusters), n // n_clusters)
        z = rng.binomial(1, 0.5, n_clusters)[cluster]
        u = math.sqrt(0.5) * (rng.standard_normal(n_clusters)[cluster] + rng.standard_normal(n))
    latent = u + 0.3 * x + rng.standard_normal(n)
    always, never = latent > 0.9, latent < -0.3
    complier = ~always & ~never
    d = (always | (complier & (z == 1))).astype(int)
    tau = np.where(always, 1.5, LATE + 0.5 * rng.standard_normal(n))
    y0 = 0.5 * x + 0.3 * (region == "c") + u + (1.0 + 0.5 * np.abs(x)) * rng.standard_normal(n)
    return pd.DataFrame({"y": y0 + d * tau, "d": d, "z": z, "x": x, "region": region, "cluster": cluster})


def linear(
    rng: np.random.Generator,
    *,
    n: int,
    k: int,
    concentration: float,
    rho: float,
    heteroskedastic: bool = False,
    direct: float = 0.0,
) -> pd.DataFrame:
    """The linear model with ``k`` instruments of concentration ``mu^2``; ``direct`` puts ``z_k`` in ``y``."""
    z = rng.standard_normal((n, k))
    v = rng.standard_normal(n)
    u = rho * v + math.sqrt(1.0 - rho * rho) * rng.standard_normal(n)
    if heteroskedastic:
        u = u * (1.0 + 0.5 * np.abs(z[:, 0]))
    u = u + direct * z[:, -1]
    d = z @ np.full(k, math.sqrt(concentration / (n * k))) + v
    return pd.DataFrame({"y": BETA * d + u, "d": d} | {f"z{j + 1}": z[:, j] for j in range(k)})


def _covers(interval: tuple[float, float], truth: float) -> bool:
    return interval[0] <= truth <= interval[1]


def _share_row(
    scenario: str, quantity: str, hits: list[bool], *, fast: bool, low: float | None, high: float | None
) -> dict[str, object]:
    """A share with an optional target ``[low, high]`` (widened by 2 MC errors in the fast run)."""
    share = float(np.mean(hits))
    error = binomial_mc_error(share, len(hits))
    slack = 2 * error if fast else 0.0
    if low is None and high is None:
        return row(STUDY, scenario, f"{quantity} ({len(hits)} datasets)", share, mc_error=error)
    if low is not None and high is not None:
        target, passed = f"in [{low}, {high}]", low - slack <= share <= high + slack
    elif high is not None:
        target, passed = f"<= {high}", share <= high + slack
    else:
        assert low is not None
        target, passed = f">= {low}", share >= low - slack
    return row(
        STUDY,
        scenario,
        f"{quantity} ({len(hits)} datasets)",
        share,
        target=target + (" +- 2 mc_error" if fast else ""),
        mc_error=error,
        passed=bool(passed),
    )


def _fits(
    rng: np.random.Generator,
    reps: int,
    make: Callable[[np.random.Generator], pd.DataFrame],
    **options: object,
) -> list[EffectEstimate]:
    return [
        two_stage_least_squares(make(rng), treatment="d", outcome="y", **options)  # type: ignore[arg-type]
        for _ in range(reps)
    ]


def _effective_f(fit: EffectEstimate) -> float:
    return float(fit.diagnostics["first_stage"]["effective_f"])


def strong_rows(rng: np.random.Generator, reps: int, *, fast: bool) -> list[dict[str, object]]:
    """Coverage of the 2SLS interval and the AR set in the encouragement design."""
    fits = _fits(rng, reps, encouragement, instruments=["z"], covariates=["x", "region"])
    scenario = "encouragement, n=1000, strong instrument, heteroskedastic"
    estimates = np.array([f.estimate for f in fits])
    return [
        _share_row(
            scenario,
            "2SLS HC1 interval coverage of the LATE",
            [_covers(f.conf_int(), LATE) for f in fits],
            fast=fast,
            low=LOW,
            high=HIGH,
        ),
        _share_row(
            scenario,
            "Anderson-Rubin set coverage",
            [anderson_rubin_set_of(f).contains(LATE) for f in fits],
            fast=fast,
            low=LOW,
            high=HIGH,
        ),
        row(
            STUDY,
            scenario,
            "mean estimate - LATE",
            float(estimates.mean() - LATE),
            mc_error=float(estimates.std(ddof=1) / math.sqrt(reps)),
        ),
        row(
            STUDY,
            scenario,
            "SD of estimates / mean SE",
            float(estimates.std(ddof=1) / np.mean([f.std_error for f in fits])),
        ),
        row(STUDY, scenario, "median effective F", float(np.median([_effective_f(f) for f in fits]))),
    ]


def clustered_rows(rng: np.random.Generator, reps: int, *, fast: bool) -> list[dict[str, object]]:
    """CR1 (t with G - 1 df) and clustered AR coverage when the encouragement is per cluster."""
    clustered_hits, ar_hits, naive_hits, f_values = [], [], [], []
    for _ in range(reps):
        batch = encouragement(rng, 1000, n_clusters=100)
        options = {"treatment": "d", "outcome": "y", "instruments": ["z"], "covariates": ["x", "region"]}
        fit = two_stage_least_squares(batch, clusters="cluster", **options)  # type: ignore[arg-type]
        naive = two_stage_least_squares(batch, **options)  # type: ignore[arg-type]
        clustered_hits.append(_covers(t_conf_int(fit), LATE))
        ar_hits.append(anderson_rubin_set_of(fit).contains(LATE))
        naive_hits.append(_covers(naive.conf_int(), LATE))
        f_values.append(_effective_f(fit))
    scenario = "encouragement per cluster, G=100 clusters of 10"
    return [
        _share_row(
            scenario, "2SLS CR1 interval coverage, t(99)", clustered_hits, fast=fast, low=LOW, high=HIGH
        ),
        _share_row(scenario, "Anderson-Rubin set (CR1) coverage", ar_hits, fast=fast, low=LOW, high=HIGH),
        _share_row(
            scenario,
            "2SLS HC1 interval ignoring clusters coverage",
            naive_hits,
            fast=fast,
            low=None,
            high=None,
        ),
        row(STUDY, scenario, "median effective F (CR1)", float(np.median(f_values))),
    ]


def weak_rows(
    rng: np.random.Generator, reps: int, k: int, concentration: float, rho: float, *, fast: bool
) -> list[dict[str, object]]:
    """2SLS undercoverage and AR coverage with weak instruments."""
    instruments = [f"z{j + 1}" for j in range(k)]
    fits = _fits(
        rng,
        reps,
        lambda g: linear(g, n=WEAK_N, k=k, concentration=concentration, rho=rho),
        instruments=instruments,
    )
    sets = [anderson_rubin_set_of(f) for f in fits]
    scenario = f"weak: {k} instrument(s), mu^2={concentration:g}, rho={rho}, n={WEAK_N}"
    return [
        _share_row(
            scenario,
            "2SLS HC1 interval coverage",
            [_covers(f.conf_int(), BETA) for f in fits],
            fast=fast,
            low=None,
            high=0.90,
        ),
        _share_row(
            scenario,
            "Anderson-Rubin set coverage",
            [s.contains(BETA) for s in sets],
            fast=fast,
            low=LOW,
            high=HIGH,
        ),
        _share_row(
            scenario,
            "share of unbounded AR sets",
            [not s.bounded for s in sets],
            fast=fast,
            low=None,
            high=None,
        ),
        row(STUDY, scenario, "median effective F", float(np.median([_effective_f(f) for f in fits]))),
    ]


def gate_rows(rng: np.random.Generator, reps: int, *, fast: bool) -> list[dict[str, object]]:
    """How often the weak-instrument gate (effective F < 10) fires at an expected F of 5 and of 30."""
    rows = []
    for expected_f in GATE_F:
        fits = _fits(
            rng,
            reps,
            lambda g, mu2=expected_f - 1.0: linear(g, n=WEAK_N, k=1, concentration=mu2, rho=0.5),
            instruments=["z1"],
        )
        fired = [weak_instrument_verdict(f).failed for f in fits]
        scenario = f"weak-instrument gate (F < 10), expected F={expected_f:g}"
        weak = expected_f < 10
        rows.append(
            _share_row(
                scenario,
                "detection rate" if weak else "false-alarm rate",
                fired,
                fast=fast,
                low=0.80 if weak else None,
                high=None if weak else 0.05,
            )
        )
    return rows


def hansen_rows(rng: np.random.Generator, reps: int, *, fast: bool) -> list[dict[str, object]]:
    """Hansen's J at 5%: size with three valid instruments, power with one invalid."""
    rows = []
    instruments = ["z1", "z2", "z3"]
    for direct, label in ((0.0, "valid instruments: size"), (0.1, "z3 invalid (0.1 z3 in y): power")):
        fits = _fits(
            rng,
            reps,
            lambda g, a=direct: linear(
                g, n=1000, k=3, concentration=300.0, rho=0.5, heteroskedastic=True, direct=a
            ),
            instruments=instruments,
        )
        rejected = [f.diagnostics["hansen_j"]["p_value"] < 0.05 for f in fits]
        scenario = "Hansen J, 3 instruments, n=1000, heteroskedastic"
        valid = direct == 0.0
        rows.append(
            _share_row(
                scenario,
                label,
                rejected,
                fast=fast,
                low=0.03 if valid else None,
                high=0.07 if valid else None,
            )
        )
    return rows


def run(*, fast: bool = True, seed: int = 20261215) -> pd.DataFrame:
    """Coverage of 2SLS and Anderson-Rubin intervals, the weak-instrument gate's rates, Hansen J's size."""
    streams = np.random.default_rng(seed).spawn(4 + len(WEAK))
    reps = FAST_REPS if fast else dict.fromkeys(FAST_REPS, FULL_REPS) | {"gate": FULL_GATE_REPS}
    rows = strong_rows(streams[0], reps["strong"], fast=fast)
    rows += clustered_rows(streams[1], reps["clustered"], fast=fast)
    for stream, (k, concentration, rho) in zip(streams[2:], WEAK, strict=False):
        rows += weak_rows(stream, reps["weak"], k, concentration, rho, fast=fast)
    rows += gate_rows(streams[-2], reps["gate"], fast=fast)
    rows += hansen_rows(streams[-1], reps["hansen"], fast=fast)
    return frame(rows)


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    print(run(fast=False).to_string(index=False))
