"""Refuters: how often each fails a batch of a correct design, and its power against a planted flaw.

The four refuters of :mod:`assimilate.diagnostics.refuters` and :mod:`assimilate.diagnostics.robustness`
(placebo treatment, negative-control outcome, random common cause, data subsets), each at its
default settings and level 0.05, fed one batch at a time as the pipeline feeds them.

Designs (``x1, x2, x3 ~ N(0, 1)``, ``y = d + x1 + 0.5 x2 - x3 + N(0, 1)``, a negative control
``nc = 0.5 (x1 + x2 + x3) + N(0, 1)`` the treatment does not affect):

* ``randomized``: ``d ~ Bernoulli(0.5)``;
* ``observational``: ``logit e = 0.5 x1 - 0.5 x2 + 0.5 x3``, every confounder measured and adjusted for;
* ``omitted_confounder`` (flaw for the placebo): as observational, but the estimator's covariates
  leave out ``x3``, which the design's propensity (the placebo strata) includes;
* ``unmeasured_confounder`` (flaw for the negative control; the placebo's blind spot): an
  unmeasured ``u ~ N(0, 1)`` with ``logit e += 0.8 u`` adds ``u`` to both ``y`` and ``nc``;
* ``rare_segment`` (flaw for subsets and the random common cause: a few rows carry the weights):
  3% of units form a segment treated with probability 0.97 whose outcome is 3 higher; IPW gives
  its few controls weights of about 30. Batches whose estimator fails (the segment has no
  control: separation) have no estimate to refute and are left out of the power;
* ``wide_propensity`` (reported): ``logit e = 2.5 (0.5 x1 - 0.5 x2 + 0.5 x3)``, propensities out
  to [0.02, 0.98] (clipped at [0.01, 0.99]): where a weighting estimator leans on heavy weights.

Run ``python -m simulations.refuters`` for the full table (about half an hour on one core).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from assimilate.diagnostics.refuters import Refutation, placebo_treatment
from assimilate.diagnostics.robustness import data_subsets, negative_control_outcome, random_common_cause
from simulations.table import binomial_mc_error, frame, row

STUDY = "refuters"
ALPHA = 0.05
SIZES = (200, 1_000, 10_000)
COVARIATES = ["x1", "x2", "x3"]
PROPENSITY = np.array([0.5, -0.5, 0.5])
OUTCOME = np.array([1.0, 0.5, -1.0])
CONTROL = np.array([0.5, 0.5, 0.5])
REFUTERS = ("placebo_treatment", "negative_control_outcome", "random_common_cause", "data_subsets")
DESIGN_WORDS = {
    "randomized": "randomized 50/50",
    "observational": "observational, confounders measured",
    "omitted_confounder": "flaw: confounder x3 left out of the estimator",
    "unmeasured_confounder": "flaw: unmeasured confounder moves outcome and control",
    "rare_segment": "flaw: 3% segment treated at 0.97 (few heavy weights)",
    "wide_propensity": "propensities out to [0.02, 0.98]",
}
# (design, method, refuters, kind): "null" rows are false-alarm rates, "flaw" rows power, "reported" rows
# the failure rate of a design that is neither.
CELLS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    (
        "randomized",
        "difference_in_means",
        ("placebo_treatment", "negative_control_outcome", "data_subsets"),
        "null",
    ),
    ("randomized", "regression_adjustment", REFUTERS, "null"),
    ("observational", "regression_adjustment", REFUTERS, "null"),
    ("observational", "ipw", REFUTERS, "null"),
    ("observational", "aipw", REFUTERS, "null"),
    ("omitted_confounder", "aipw", ("placebo_treatment",), "flaw"),
    ("unmeasured_confounder", "aipw", ("negative_control_outcome", "placebo_treatment"), "flaw"),
    ("rare_segment", "ipw", ("data_subsets", "random_common_cause"), "flaw"),
    ("wide_propensity", "ipw", ("data_subsets", "random_common_cause", "placebo_treatment"), "reported"),
)
FAST_CELLS: tuple[tuple[str, str, int, int], ...] = (  # (design, method, n, batches)
    ("observational", "aipw", 200, 70),
    ("randomized", "regression_adjustment", 200, 40),
    ("omitted_confounder", "aipw", 1_000, 15),
    ("unmeasured_confounder", "aipw", 1_000, 15),
    ("rare_segment", "ipw", 1_000, 25),
)
# Promised power (flaw, refuter, smallest n): the rest is reported.
POWER_TARGETS = {
    ("omitted_confounder", "placebo_treatment"): 1_000,
    ("unmeasured_confounder", "negative_control_outcome"): 1_000,
}


def _batches(n: int, kind: str) -> int:
    """Batches per cell of the full run: fewer for big batches and for the power of a flaw."""
    return {200: 1000, 1_000: 1000, 10_000: 200}[n] // (1 if kind == "null" else 2)


def simulate_batch(rng: np.random.Generator, n: int, design: str) -> pd.DataFrame:
    """One batch of the named design (module docstring)."""
    x = rng.standard_normal((n, 3))
    u = rng.standard_normal(n) if design == "unmeasured_confounder" else np.zeros(n)
    index = x @ PROPENSITY
    segment = rng.random(n) < 0.03 if design == "rare_segment" else np.zeros(n, dtype=bool)
    if design == "randomized":
        e = np.full(n, 0.5)
    elif design == "wide_propensity":
        e = special.expit(2.5 * index)
    else:
        e = np.where(segment, 0.97, special.expit(index + 0.8 * u))
    d = (rng.random(n) < e).astype(np.int64)
    frame = pd.DataFrame(x, columns=COVARIATES)
    frame["d"] = d
    frame["y"] = d + x @ OUTCOME + u + 3.0 * segment + rng.standard_normal(n)
    frame["nc"] = x @ CONTROL + u + rng.standard_normal(n)
    frame["segment"] = segment.astype(np.float64)
    return frame


def refute(
    name: str, batch: pd.DataFrame, *, design: str, method: str, rng: np.random.Generator
) -> Refutation:
    """One refuter on one batch, with the estimator's covariates of the design."""
    covariates = ["x1", "x2"] if design == "omitted_confounder" else list(COVARIATES)
    if design == "rare_segment":
        covariates.append("segment")
    common: dict[str, Any] = {"method": method, "treatment": "d", "covariates": covariates, "rng": rng}
    if name == "placebo_treatment":
        kind = "randomized" if design == "randomized" else "observational"
        return placebo_treatment(
            batch, outcome="y", design=kind, propensity_covariates=[*COVARIATES, *covariates[3:]], **common
        )
    if name == "negative_control_outcome":
        return negative_control_outcome(batch, negative_control="nc", **common)
    run: Callable[..., Refutation] = random_common_cause if name == "random_common_cause" else data_subsets
    return run(batch, outcome="y", **common)


def _cell(
    rng: np.random.Generator, design: str, method: str, names: tuple[str, ...], n: int, batches: int
) -> dict[str, tuple[int, int]]:
    """(failed, defined) counts per refuter over ``batches`` batches."""
    counts = dict.fromkeys(names, (0, 0))
    for _ in range(batches):
        batch = simulate_batch(rng, n, design)
        for name in names:
            verdict = refute(name, batch, design=design, method=method, rng=rng).verdict
            failed, defined = counts[name]
            counts[name] = (failed + verdict.failed, defined + (verdict.status != "undefined"))
    return counts


def _rows(
    design: str, method: str, kind: str, n: int, batches: int, counts: dict[str, tuple[int, int]]
) -> list[dict[str, Any]]:
    rows = []
    for name, (failed, defined) in counts.items():
        scenario = f"{name}, {DESIGN_WORDS[design]}, {method}, n={n}"
        rate = failed / defined if defined else float("nan")
        if kind == "null":
            error = binomial_mc_error(ALPHA, defined)
            target, passed = f"<= {ALPHA:g} (+3 MC SE)", bool(rate <= ALPHA + 3 * error)
            rows.append(
                row(STUDY, scenario, "false-alarm rate", rate, target=target, mc_error=error, passed=passed)
            )
        elif kind == "reported":
            rows.append(row(STUDY, scenario, "failure rate", rate, mc_error=binomial_mc_error(rate, defined)))
        else:
            smallest = POWER_TARGETS.get((design, name))
            promised = smallest is not None and n >= smallest
            target, passed = (">= 0.8", bool(rate >= 0.8)) if promised else ("", None)
            rows.append(
                row(STUDY, scenario, "power", rate, target=target, mc_error=binomial_mc_error(rate, defined),
                    passed=passed)
            )  # fmt: skip
        if defined < batches:
            rows.append(row(STUDY, scenario, "share of batches with no estimate", 1 - defined / batches))
    return rows


def run(*, fast: bool = True, seed: int = 20260216) -> pd.DataFrame:
    """False-alarm rate (correct designs) and power (flaws) of every refuter, by design, estimator and size."""
    plan = (
        [(design, method, n, batches) for design, method, n, batches in FAST_CELLS]
        if fast
        else [(design, method, n, _batches(n, kind)) for design, method, _, kind in CELLS for n in SIZES]
    )
    names_of = {(design, method): (names, kind) for design, method, names, kind in CELLS}
    streams = np.random.SeedSequence(seed).spawn(len(plan))
    rows = []
    for (design, method, n, batches), stream in zip(plan, streams, strict=True):
        names, kind = names_of[(design, method)]
        counts = _cell(np.random.default_rng(stream), design, method, names, n, batches)
        rows.extend(_rows(design, method, kind, n, batches, counts))
    return frame(rows)


if __name__ == "__main__":
    table = run(fast="--fast" in sys.argv)
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 90):
        print(table.to_string(index=False))
