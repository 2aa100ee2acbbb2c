"""Sampling weights: do the weighted intervals cover the population's effect when the sample is not the population?

Population: ``x ~ N(0, 1)``, ``y0 = x + e``, ``e ~ N(0, 1)``, an effect that grows with the effect
modifier, ``tau(x) = 1 + x``, so the population ATE is 1. Sample: Poisson sampling of ``N = 2,000``
candidates with inclusion probability ``pi(x) = 0.1 + 0.8 expit(1.5 x)`` (units with a large effect
are over-sampled, about 1,000 units a dataset) and sampling weight ``w = 1 / pi(x)``. The included
units are then independent draws of ``(x, w)``, so the with-replacement linearization variance (the
influence values' ``sum psi^2 / n^2``) is the right one.

Two designs on the sampled units. Randomized: ``d ~ Bernoulli(0.5)``; the difference in means,
regression adjustment and Lin's interacted regression estimate the ATE. Observational:
``d ~ Bernoulli(expit(0.5 x))``; IPW and AIPW estimate the ATE and the ATT. The population ATT is
``1 + E[x e(x)] / E[e(x)]`` under the same assignment applied to the whole population (Gauss-Hermite
quadrature). Each estimator runs weighted (the study's ``weights:``) and unweighted; the weighted
95% interval should cover the population estimand in [0.93, 0.97] of datasets, the unweighted one
answers for the sample (whose mean effect is about 1.3) and should not.

The full run uses 1,000 datasets per design; the fast run (the test) fewer and allows 2 Monte Carlo
standard errors around the target. Run: ``python -m simulations.sampling_weights``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from assimilate.estimators import EffectEstimate, aipw, difference_in_means, ipw, regression_adjustment
from simulations.table import binomial_mc_error, frame, row

STUDY = "sampling_weights"
LOW, HIGH = 0.93, 0.97
CANDIDATES = 2000
FULL_REPS = 1000
FAST_REPS = 300
RANDOMIZED = ("difference_in_means", "regression_adjustment", "lin_interacted")
OBSERVATIONAL = (("ipw", "ATE"), ("aipw", "ATE"), ("ipw", "ATT"), ("aipw", "ATT"))


def inclusion_probability(x: np.ndarray) -> np.ndarray:
    """``pi(x) = 0.1 + 0.8 expit(1.5 x)``: units with a larger effect are more likely sampled."""
    return np.asarray(0.1 + 0.8 * special.expit(1.5 * x), dtype=np.float64)


def propensity(x: np.ndarray) -> np.ndarray:
    """The observational design's ``e(x) = expit(0.5 x)``."""
    return np.asarray(special.expit(0.5 * x), dtype=np.float64)


def population_estimand(estimand: str) -> float:
    """The population's ATE (1) or ATT (``1 + E[x e(x)] / E[e(x)]``) by Gauss-Hermite quadrature."""
    if estimand == "ATE":
        return 1.0
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    e = propensity(nodes)
    return float(1.0 + (weights * nodes * e).sum() / (weights * e).sum())


def sampled_batch(
    rng: np.random.Generator, *, observational: bool, candidates: int = CANDIDATES
) -> pd.DataFrame:
    """One Poisson sample of the population, with its sampling weights and treatment."""
    x = rng.standard_normal(candidates)
    x = x[rng.random(candidates) < inclusion_probability(x)]
    chance = inclusion_probability(x)
    n = len(x)
    d = rng.binomial(1, propensity(x) if observational else np.full(n, 0.5))
    y = x + rng.standard_normal(n) + d * (1.0 + x)
    return pd.DataFrame({"x": x, "d": d, "y": y, "w": 1.0 / chance})


def fit(batch: pd.DataFrame, method: str, estimand: str, *, weighted: bool) -> EffectEstimate:
    """One estimator on one batch, with the sampling weights or without."""
    weights = batch["w"] if weighted else None
    common = {"treatment": "d", "outcome": "y", "estimand": estimand, "weights": weights}
    if method == "difference_in_means":
        return difference_in_means(batch, **common)  # type: ignore[arg-type]
    if method in ("regression_adjustment", "lin_interacted"):
        return regression_adjustment(
            batch,
            covariates=["x"],
            interacted=method == "lin_interacted",
            **common,  # type: ignore[arg-type]
        )
    function = ipw if method == "ipw" else aipw
    return function(batch, covariates=["x"], **common)  # type: ignore[arg-type]


def coverage(
    rng: np.random.Generator, reps: int, *, observational: bool
) -> dict[tuple[str, str, bool], list[bool]]:
    """(method, estimand, weighted) -> whether each dataset's 95% interval held the population estimand."""
    fits = OBSERVATIONAL if observational else tuple((m, "ATE") for m in RANDOMIZED)
    hits: dict[tuple[str, str, bool], list[bool]] = {}
    for _ in range(reps):
        batch = sampled_batch(rng, observational=observational)
        for method, estimand in fits:
            truth = population_estimand(estimand)
            for weighted in (True, False):
                low, high = fit(batch, method, estimand, weighted=weighted).conf_int(0.05)
                hits.setdefault((method, estimand, weighted), []).append(bool(low <= truth <= high))
    return hits


def run(*, fast: bool = False, seed: int = 20261205) -> pd.DataFrame:
    """Coverage of the population estimand by the weighted and the unweighted intervals."""
    rng = np.random.default_rng(seed)
    reps = FAST_REPS if fast else FULL_REPS
    rows = []
    for observational in (False, True):
        design = "observational" if observational else "randomized"
        for (method, estimand, weighted), hits in coverage(rng, reps, observational=observational).items():
            share = float(np.mean(hits))
            error = binomial_mc_error(share, len(hits))
            slack = 2 * error if fast else 0.0
            scenario = f"{design}, {method}, {estimand}, {'weighted' if weighted else 'unweighted'}"
            target = f"in [{LOW}, {HIGH}]" + (" +- 2 mc_error" if fast else "") if weighted else ""
            passed = bool(LOW - slack <= share <= HIGH + slack) if weighted else None
            rows.append(
                row(
                    STUDY,
                    scenario,
                    f"coverage of the population {estimand} ({len(hits)} datasets)",
                    share,
                    target=target,
                    mc_error=error,
                    passed=passed,
                )
            )
    return frame(rows)


if __name__ == "__main__":
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(run().to_string(index=False))
