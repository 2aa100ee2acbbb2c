"""Post-treatment screening: false alarms on genuine pre-treatment covariates, power against leaks.

The screen (``assimilate.diagnostics.post_treatment_screen``, as the pipeline calls it: WARN at a
family-wise 1% a batch, the arm test's ERROR at the daily per-look level 2.75e-5) is run on batches
of 200, 1,000, 10,000 and 100,000 units.

Genuine covariates (all pre-treatment): ``age`` ~ N(0, 1); ``size``, a standardized lognormal(0,
0.5); ``member`` ~ Bernoulli(expit(-0.85 + 0.5 age)); ``prior_visits`` ~ Poisson(exp(0.2 + 0.4
age)); ``region``, four levels (40/30/20/10%). Designs: randomized 50/50, or observational with
strong confounding ``logit e = -0.2 + 1.0 age + 0.5 size + 0.8 member + 0.2 prior_visits +
region``. With ``lin = 1.5 age + 0.5 size + 1.0 member + 0.3 prior_visits + region + 0.5 d``:

* continuous: ``y = lin + N(0, 1)`` (R² of the covariates with y 0.78, of age alone 0.64);
* spend: zero with probability ``1 - expit(0.5 + 0.6 lin)`` (29%), else
  ``exp(1 + 0.4 lin + N(0, 0.5²))`` (R² 0.42);
* binary: ``y ~ Bernoulli(expit(lin - 1.5))`` (R² 0.36);
* count: negative binomial, mean ``exp(0.4 lin - 0.6)``, shape 5 (45% zeros, R² 0.31).

Single strong predictors (observational, the predictor also drives the treatment): a continuous
covariate with R² 0.8 alone; a 50% binary covariate with R² 0.8 alone; prior-period visits
predicting this period's visits (gamma-Poisson, R² about 0.8). Reported without a target (the
screen's stated limit): a 10% binary covariate with R² 0.8 alone, whose groups lie 6.7 SD apart.

Planted post-treatment columns, one kind a batch: the indicator "outcome is zero" (spend, count;
for a binary outcome "outcome is 0"), the outcome in other units (``round(0.92 y, 2)``), and the
outcome's parts (two columns summing to the outcome). Reported: one part whose rest is not a
model column, a noisy copy of the outcome (R² 0.98) and a threshold flag ``y > median``.

Real data: the RAND Health Insurance Experiment shipped with statsmodels (``randhie``, 20,190
person-years; outcome ``mdvis``, 31% zeros), treatment "free care" (``lncoins == 0``), genuine
covariates physical limitation, chronic disease index and self-rated health (categorical); the
three post-treatment columns are planted from the real outcome. It runs as an observational design:
rows are person-years of families assigned by site (not independent draws), which breaks the arm
test's null; the arm test is reported on it for that reason.

Run ``python -m simulations.post_treatment`` for the full table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from assimilate.diagnostics import post_treatment_screen
from simulations.table import binomial_mc_error, frame, row

STUDY = "post_treatment"
SIZES = (200, 1_000, 10_000, 100_000)
FAST_SIZES = (200, 1_000)
OUTCOMES = ("continuous", "spend", "binary", "count")
DESIGNS = ("randomized", "observational")
NUMERIC = ("age", "size", "member", "prior_visits")
RATE = 0.01  # per column per batch
REGION = np.array(["north", "south", "east", "west"])
Batch = tuple[pd.DataFrame, list[str], list[str]]  # frame, numeric model columns, categorical ones


def _reps(n: int, fast: bool, kind: str) -> int:
    full = {
        "null": {200: 600, 1_000: 400, 10_000: 100, 100_000: 10},
        "stress": {200: 400, 1_000: 300, 10_000: 60, 100_000: 6},
        "power": {200: 50, 1_000: 30, 10_000: 10, 100_000: 2},
    }
    quick = {"null": {200: 16, 1_000: 8}, "stress": {200: 8, 1_000: 4}, "power": {200: 3, 1_000: 2}}
    return (quick if fast else full)[kind][n]


def _genuine(rng: np.random.Generator, n: int, design: str) -> tuple[pd.DataFrame, np.ndarray]:
    age = rng.standard_normal(n)
    size = np.exp(0.5 * rng.standard_normal(n))
    size = (size - np.exp(0.125)) / np.sqrt((np.exp(0.25) - 1) * np.exp(0.25))
    member = (rng.random(n) < special.expit(-0.85 + 0.5 * age)).astype(float)
    prior = rng.poisson(np.exp(0.2 + 0.4 * age)).astype(float)
    region = rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])
    if design == "randomized":
        d = (rng.random(n) < 0.5).astype(float)
    else:
        score = -0.2 + age + 0.5 * size + 0.8 * member + 0.2 * prior + np.array([0, 0.5, -0.5, 1.0])[region]
        d = (rng.random(n) < special.expit(score)).astype(float)
    lin = 1.5 * age + 0.5 * size + member + 0.3 * prior + np.array([0, 0.4, -0.4, 0.8])[region] + 0.5 * d
    covariates = pd.DataFrame({"age": age, "size": size, "member": member, "prior_visits": prior})
    return covariates.assign(region=REGION[region], d=d), lin


def _outcome(rng: np.random.Generator, lin: np.ndarray, kind: str) -> np.ndarray:
    n = len(lin)
    if kind == "continuous":
        return lin + rng.standard_normal(n)
    if kind == "spend":
        positive = rng.random(n) < special.expit(0.5 + 0.6 * lin)
        return np.where(positive, np.exp(1 + 0.4 * lin + 0.5 * rng.standard_normal(n)), 0.0)
    if kind == "binary":
        return (rng.random(n) < special.expit(lin - 1.5)).astype(float)
    mean = np.exp(0.4 * lin - 0.6)
    return rng.poisson(rng.gamma(5.0, mean / 5.0)).astype(float)


def _parts(rng: np.random.Generator, y: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Two parts summing to ``y`` exactly (visits split by doctor, spend by channel, churn by cause)."""
    if kind == "count":
        first = rng.binomial(y.astype(np.int64), 0.6).astype(float)
    elif kind == "binary":
        first = y * (rng.random(len(y)) < 0.5)
    elif kind == "spend":
        first = y * rng.uniform(0.3, 0.7, len(y))
    else:
        first = 0.4 * y + 0.3 * rng.standard_normal(len(y))
    return first, y - first


PLANTS: dict[str, Callable[[np.random.Generator, np.ndarray, str], dict[str, np.ndarray]]] = {
    "outcome is zero": lambda rng, y, kind: {"no_outcome": (y == 0).astype(float)},
    "outcome in other units": lambda rng, y, kind: {"outcome_eur": np.round(0.92 * y, 2)},
    "outcome's parts": lambda rng, y, kind: dict(
        zip(("part_a", "part_b"), _parts(rng, y, kind), strict=True)
    ),
}
REPORTED: dict[str, Callable[[np.random.Generator, np.ndarray, str], dict[str, np.ndarray]]] = {
    "one part (the rest not a model column)": lambda rng, y, kind: {"part_a": _parts(rng, y, kind)[0]},
    "noisy copy of the outcome (R² 0.98)": lambda rng, y, kind: {
        "copy": y + np.std(y) * np.sqrt(0.02 / 0.98) * rng.standard_normal(len(y))
    },
    "flag y > median": lambda rng, y, kind: {"high": (y > np.median(y)).astype(float)},
}


def _batch(
    rng: np.random.Generator, n: int, design: str, kind: str, plant: Callable[..., Any] | None = None
) -> tuple[Batch, list[str]]:
    covariates, lin = _genuine(rng, n, design)
    y = _outcome(rng, lin, kind)
    planted = plant(rng, y, kind) if plant is not None else {}
    data = covariates.assign(y=y, **planted)
    return (data, [*NUMERIC, *planted], ["region"]), list(planted)


def _screen(batch: Batch, randomized: bool, *, outcome: str = "y", treatment: str = "d") -> pd.DataFrame:
    data, numeric, categorical = batch
    screen = post_treatment_screen(
        data,
        outcome=outcome,
        treatment=treatment,
        covariates=numeric,
        categorical=categorical,
        randomized=randomized,
    )
    return screen.to_frame().set_index("column")


def _rate_row(
    scenario: str, quantity: str, flags: list[bool], *, false_alarm: bool, target: bool = True
) -> dict[str, Any]:
    value, trials = float(np.mean(flags)), len(flags)
    if not target:
        return row(STUDY, scenario, quantity, value, mc_error=binomial_mc_error(value, trials))
    if false_alarm:
        error = binomial_mc_error(RATE, trials)
        return row(
            STUDY,
            scenario,
            quantity,
            value,
            target=f"<= {RATE:g} (+3 MC SE)",
            mc_error=error,
            passed=value <= RATE + 3 * error,
        )
    return row(
        STUDY,
        scenario,
        quantity,
        value,
        target=">= 0.99",
        mc_error=binomial_mc_error(value, trials),
        passed=value >= 0.99,
    )


def _null_rows(rng: np.random.Generator, sizes: tuple[int, ...], fast: bool) -> list[dict[str, Any]]:
    rows = []
    for design in DESIGNS:
        for kind in OUTCOMES:
            for n in sizes:
                tables = [
                    _screen(_batch(rng, n, design, kind)[0], design == "randomized")
                    for _ in range(_reps(n, fast, "null"))
                ]
                statuses = np.concatenate([t["status"].to_numpy() for t in tables])
                scenario = f"genuine covariates, {design}, {kind} outcome, n={n}"
                rows.append(
                    _rate_row(
                        scenario,
                        "false-alarm rate per column (WARN or ERROR)",
                        list(statuses != "pass"),
                        false_alarm=True,
                    )
                )
                rows.append(
                    _rate_row(
                        scenario,
                        "ERROR rate per column",
                        list(statuses == "error"),
                        false_alarm=False,
                        target=False,
                    )
                )
                rows.append(
                    row(
                        STUDY,
                        scenario,
                        "largest P (outcome)",
                        max(float(t["outcome_partial_r2"].max()) for t in tables),
                    )
                )
    return rows


def _single_predictor(rng: np.random.Generator, n: int, kind: str) -> Batch:
    """One strong genuine predictor ``x`` that also drives the treatment, and two weak covariates."""
    w1, w2 = rng.standard_normal(n), (rng.random(n) < 0.4).astype(float)
    if kind == "count":
        rate = rng.gamma(0.8, 1.5, n)
        x = rng.poisson(6 * rate).astype(float)
        signal = 6 * rate
    else:
        p = {"continuous": None, "binary 50%": 0.5, "binary 10%": 0.1}[kind]
        x = rng.standard_normal(n) if p is None else (rng.random(n) < p).astype(float)
        signal = 2.0 * x if p is None else np.sqrt(4 / (p * (1 - p))) * x  # R² 0.8 with unit noise
    z = (x - x.mean()) / x.std()
    d = (rng.random(n) < special.expit(1.2 * z + 0.3 * w1)).astype(float)
    noise = rng.poisson(signal) - signal if kind == "count" else rng.standard_normal(n)
    y = signal + noise + 0.3 * w1 + 0.3 * w2 + 0.5 * d
    return pd.DataFrame({"x": x, "w1": w1, "w2": w2, "d": d, "y": y}), ["x", "w1", "w2"], []


def _stress_rows(rng: np.random.Generator, sizes: tuple[int, ...], fast: bool) -> list[dict[str, Any]]:
    rows = []
    cases = {
        "continuous": "continuous covariate, R² 0.8 alone",
        "binary 50%": "50% binary covariate, R² 0.8 alone",
        "count": "prior visits predicting visits, R² about 0.8",
        "binary 10%": "limit: 10% binary covariate, R² 0.8 alone (groups 6.7 SD apart)",
    }
    for kind, label in cases.items():
        for n in sizes:
            tables = [
                _screen(_single_predictor(rng, n, kind), False) for _ in range(_reps(n, fast, "stress"))
            ]
            flags = [t.loc["x", "status"] != "pass" for t in tables]
            scenario = f"{label}, observational, n={n}"
            rows.append(
                _rate_row(
                    scenario,
                    "false-alarm rate of the strong predictor",
                    flags,
                    false_alarm=True,
                    target=not kind.endswith("10%"),
                )
            )
            rows.append(
                row(
                    STUDY,
                    scenario,
                    "mean P (outcome) of the strong predictor",
                    float(np.mean([t.loc["x", "outcome_partial_r2"] for t in tables])),
                )
            )
    return rows


def _power_rows(rng: np.random.Generator, sizes: tuple[int, ...], fast: bool) -> list[dict[str, Any]]:
    rows = []
    for plants, targeted in ((PLANTS, True), (REPORTED, False)):
        for name, plant in plants.items():
            for design in DESIGNS:
                for kind in OUTCOMES:
                    if name == "outcome is zero" and kind == "continuous":
                        continue  # no zero mass
                    for n in sizes:
                        caught, warned, genuine = [], [], []
                        for _ in range(_reps(n, fast, "power")):
                            batch, planted = _batch(rng, n, design, kind, plant)
                            table = _screen(batch, design == "randomized")
                            caught.append(all(table.loc[c, "status"] == "error" for c in planted))
                            warned.append(all(table.loc[c, "status"] != "pass" for c in planted))
                            genuine += list(table.drop(index=planted)["status"] != "pass")
                        scenario = f"planted: {name}, {design}, {kind} outcome, n={n}"
                        rows.append(
                            _rate_row(scenario, "power (ERROR)", caught, false_alarm=False, target=targeted)
                        )
                        rows.append(
                            _rate_row(
                                scenario, "power (WARN or ERROR)", warned, false_alarm=False, target=False
                            )
                        )
                        if targeted:
                            rows.append(
                                _rate_row(
                                    scenario,
                                    "false-alarm rate of the genuine columns beside it",
                                    genuine,
                                    false_alarm=True,
                                )
                            )
    return rows


RANDHIE = {"outcome": "mdvis", "treatment": "free_care"}


def randhie_batch(rng: np.random.Generator) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The RAND HIE rows (statsmodels), with free care as the treatment and the planted columns."""
    from statsmodels.datasets import randhie  # a dev dependency: the real data ships with it

    data = randhie.load_pandas().data
    health = np.select(
        [data["hlthp"] == 1, data["hlthf"] == 1, data["hlthg"] == 1], ["poor", "fair", "good"], "excellent"
    )
    visits = data["mdvis"].to_numpy()
    gp = rng.binomial(visits.astype(np.int64), 0.6).astype(float)
    frame_ = pd.DataFrame(
        {
            "mdvis": visits,
            "free_care": (data["lncoins"] == 0).astype(float),
            "physlm": data["physlm"],
            "disea": data["disea"],
            "health": health,
            "no_visit": (visits == 0).astype(float),
            "visit_hours": 0.25 * visits,
            "gp_visits": gp,
            "specialist_visits": visits - gp,
        }
    )
    return frame_, ["physlm", "disea"], ["health"]


def _real_rows(rng: np.random.Generator, fast: bool) -> list[dict[str, Any]]:
    data, genuine, categorical = randhie_batch(rng)
    plantings = {
        "none": [],
        "outcome is zero": ["no_visit"],
        "outcome in other units": ["visit_hours"],
        "outcome's parts": ["gp_visits", "specialist_visits"],
    }
    shuffled = rng.permutation(len(data))
    splits = [data] + ([] if fast else [data.iloc[rows] for rows in np.array_split(shuffled, 10)])
    rows = []
    for name, planted in plantings.items():
        caught, passed = [], []
        for part in splits:
            table = _screen((part, [*genuine, *planted], categorical), False, **RANDHIE)
            caught += [table.loc[c, "status"] == "error" for c in planted]
            passed += list(table.loc[[*genuine, *categorical], "status"] == "pass")
        scenario = f"real data (RAND HIE, statsmodels randhie), planted: {name}, whole sample" + (
            "" if fast else " and 10 batches of 2,019"
        )
        rows.append(
            row(
                STUDY,
                scenario,
                "share of genuine columns passing",
                float(np.mean(passed)),
                target="= 1",
                passed=bool(np.all(passed)),
            )
        )
        if planted:
            rows.append(
                row(
                    STUDY,
                    scenario,
                    "share of planted columns failed (ERROR)",
                    float(np.mean(caught)),
                    target="= 1",
                    passed=bool(np.all(caught)),
                )
            )
    arms = _screen((data, genuine, categorical), True, **RANDHIE)
    rows.append(
        row(
            STUDY,
            "real data (RAND HIE), run as randomized: person-year rows, assigned by family and site",
            "genuine columns failing the arm test",
            float((arms["status"] != "pass").sum()),
        )
    )
    return rows


def run(*, fast: bool = True, seed: int = 20260214) -> pd.DataFrame:
    """False-alarm rates and power of the post-treatment screen (see the module docstring)."""
    sizes = FAST_SIZES if fast else SIZES
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    return frame(
        [
            *_null_rows(streams[0], sizes, fast),
            *_stress_rows(streams[1], sizes, fast),
            *_power_rows(streams[2], sizes, fast),
            *_real_rows(streams[3], fast),
        ]
    )


if __name__ == "__main__":
    table = run(fast="--fast" in sys.argv)
    with pd.option_context("display.max_rows", None, "display.width", 220, "display.max_colwidth", 100):
        print(table.to_string(index=False))
