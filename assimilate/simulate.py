"""Seeded example streams with a known true effect, for tests, the demo and benchmarks.

Two streams:

* a randomized A/B stream: ``y = tau_t d + 0.2 x + N(0, 0.3^2)``, ``d ~ Bernoulli(0.5)``, with
  ``tau_t`` drifting linearly from 0.5 to 0.6 over the batches;
* an observational retention-outreach stream: accounts at risk of churning are more likely to get
  outreach, so the naive difference in churn has the wrong sign; the true ATE is about -0.046;
* an N-of-1 trial (:func:`simulate_n_of_1_stream`, from ``assimilate._n_of_1_stream``): one
  person's daily outcome with AR(1) errors under randomized alternating treatment blocks with
  carry-over.

Example
-------
>>> import numpy as np
>>> stream = simulate_ab_stream(rng=np.random.default_rng(1))
>>> len(stream.batches), stream.labels[0], round(float(stream.true_effects[0]), 2)
(12, '2025-01', 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import special

from assimilate._n_of_1_stream import NOf1Stream as NOf1Stream
from assimilate._n_of_1_stream import n_of_1_series as n_of_1_series
from assimilate._n_of_1_stream import simulate_n_of_1_stream as simulate_n_of_1_stream
from assimilate._validation import check_choice

Assignment = Literal["propensity", "health_rule"]

REGIONS: tuple[str, ...] = ("North America", "Europe", "APAC", "Latin America")
REGION_PROBABILITIES: tuple[float, ...] = (0.45, 0.25, 0.22, 0.08)
REGION_RISK: tuple[float, ...] = (0.0, -0.08, 0.05, 0.12)
OUTREACH_COVARIATES: tuple[str, ...] = (
    "company_size",
    "tenure_months",
    "usage_score",
    "prior_tickets",
    "health_score",
    "region",
)
OUTREACH_POST_TREATMENT: tuple[str, ...] = ("post_outreach_engagement",)
AB_COVARIATES: tuple[str, ...] = ("x",)


@dataclass(frozen=True)
class SimulatedStream:
    """A stream of batches with the true effect of each batch.

    Parameters
    ----------
    batches : tuple of DataFrame
        One data frame per batch, in time order.
    labels : tuple of str
        Batch labels (``YYYY-MM`` months).
    true_effects : ndarray
        The population ATE in force for each batch.
    treatment, outcome : str
        Column names of the treatment and the outcome.
    covariates : tuple of str
        Pre-treatment covariates.
    """

    batches: tuple[pd.DataFrame, ...]
    labels: tuple[str, ...]
    true_effects: NDArray[np.float64]
    treatment: str
    outcome: str
    covariates: tuple[str, ...]


def month_labels(n: int, *, start: str = "2025-01") -> tuple[str, ...]:
    """``n`` consecutive ``YYYY-MM`` labels from ``start``."""
    periods = pd.period_range(start=start, periods=n, freq="M")
    return tuple(str(p) for p in periods)


def simulate_ab_stream(
    *,
    rng: np.random.Generator,
    n_batches: int = 12,
    n_per_batch: int = 300,
    tau_start: float = 0.5,
    tau_end: float = 0.6,
    start: str = "2025-01",
) -> SimulatedStream:
    """Randomized A/B stream with a linearly drifting effect.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n_batches, n_per_batch : int
        Number of batches and units per batch.
    tau_start, tau_end : float
        True effect in the first and the last batch; linear in between.
    start : str
        Month label of the first batch.

    Returns
    -------
    SimulatedStream
        Columns ``unit_id``, ``x``, ``treatment``, ``outcome``.

    Notes
    -----
    ``d ~ Bernoulli(0.5)``, ``x ~ N(0, 1)``, ``y = tau_t d + 0.2 x + e``, ``e ~ N(0, 0.3^2)``.
    """
    if n_batches < 1 or n_per_batch < 1:
        raise ValueError("n_batches and n_per_batch must be at least 1")
    taus = np.linspace(tau_start, tau_end, n_batches)
    batches = []
    for t, tau in enumerate(taus):
        d = rng.binomial(1, 0.5, size=n_per_batch)
        x = rng.standard_normal(n_per_batch)
        y = tau * d + 0.2 * x + rng.normal(0.0, 0.3, size=n_per_batch)
        ids = np.arange(n_per_batch) + t * n_per_batch
        batches.append(
            pd.DataFrame({"unit_id": [f"u{i:07d}" for i in ids], "x": x, "treatment": d, "outcome": y})
        )
    return SimulatedStream(
        batches=tuple(batches),
        labels=month_labels(n_batches, start=start),
        true_effects=taus.astype(np.float64),
        treatment="treatment",
        outcome="outcome",
        covariates=AB_COVARIATES,
    )


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-z))


def _outreach_population(
    n: int, rng: np.random.Generator, drift: float, region_shift: tuple[float, ...] = ()
) -> dict[str, NDArray[np.float64]]:
    """Covariates, propensity, baseline churn and individual effects of ``n`` accounts."""
    return _outreach_probabilities(_outreach_accounts(n, rng), drift, region_shift)


def region_shifts(region_effect: Mapping[str, float] | None) -> tuple[float, ...]:
    """``region_effect`` (region -> extra effect) as one number per region of ``REGIONS`` (0 if absent)."""
    given = dict(region_effect or {})
    unknown = sorted(set(given) - set(REGIONS))
    if unknown:
        raise ValueError(f"region_effect: unknown region(s) {unknown}; regions are {list(REGIONS)}")
    shifts = tuple(float(given.get(region, 0.0)) for region in REGIONS)
    if not all(math.isfinite(x) for x in shifts):
        raise ValueError(f"region_effect: every extra effect must be finite, got {given}")
    return shifts if any(shifts) else ()


def _outreach_accounts(n: int, rng: np.random.Generator) -> dict[str, NDArray[np.float64]]:
    """The covariates of ``n`` new accounts."""
    size = np.exp(rng.normal(4.2, 0.75, size=n))
    tenure = np.clip(rng.gamma(2.8, 8.0, size=n), 1.0, 96.0)
    usage = np.clip(rng.standard_normal(n), -3.0, 3.0)
    large = (size > 120).astype(np.float64)
    tickets = rng.poisson(np.exp(0.35 - 0.35 * usage + 0.25 * large)).astype(np.float64)
    health = np.clip(67 + 9 * usage - 3.8 * tickets + 0.06 * tenure + rng.normal(0.0, 8.0, size=n), 1, 99)
    region = rng.choice(len(REGIONS), size=n, p=REGION_PROBABILITIES)
    return {
        "company_size": size,
        "tenure_months": tenure,
        "usage_score": usage,
        "prior_tickets": tickets,
        "health_score": health,
        "region": region.astype(np.float64),
    }


def _outreach_probabilities(
    accounts: dict[str, NDArray[np.float64]], drift: float, region_shift: tuple[float, ...] = ()
) -> dict[str, NDArray[np.float64]]:
    """The accounts with their propensity, baseline churn ``p0`` and treated churn ``p1``."""
    size, tenure, tickets, health = (
        accounts[k] for k in ("company_size", "tenure_months", "prior_tickets", "health_score")
    )
    large = (size > 120).astype(np.float64)
    risk = np.asarray(REGION_RISK)[accounts["region"].astype(np.int64)]
    propensity = _sigmoid(
        -1.15 + 0.045 * (70 - health) + 0.19 * tickets + 0.45 * large - 0.015 * tenure + risk
    )
    p0 = _sigmoid(-1.65 + 0.055 * (70 - health) + 0.15 * tickets - 0.018 * tenure + risk)
    effect = -0.025 - 0.055 * (health < 55) - 0.025 * (tickets >= 4) - 0.015 * large + drift
    if region_shift:  # a region where outreach works differently (off by default)
        effect = effect + np.asarray(region_shift)[accounts["region"].astype(np.int64)]
    p1 = np.clip(p0 + effect, 0.01, 0.95)
    return {**accounts, "propensity": propensity, "p0": p0, "p1": p1}


def simulate_outreach_batch(
    n: int, *, rng: np.random.Generator, drift: float = 0.0, assignment: Assignment = "propensity"
) -> pd.DataFrame:
    """One batch of the observational retention-outreach stream.

    Parameters
    ----------
    n : int
        Number of accounts.
    rng : numpy.random.Generator
        Source of randomness.
    drift : float
        Added to every account's individual effect (a drifting programme).
    assignment : {"propensity", "health_rule"}
        ``"propensity"`` draws outreach from the propensity model; ``"health_rule"`` reaches out to
        exactly the accounts with health below 62: no overlap, the batch a check must keep out.

    Returns
    -------
    DataFrame
        Columns ``account_id``, ``company_size``, ``tenure_months``, ``usage_score``,
        ``prior_tickets``, ``health_score``, ``region``, ``outreach`` (0/1), ``churn`` (0/1) and
        ``post_outreach_engagement`` (caused by outreach and by churn: never adjust for it).

    Notes
    -----
    ``company_size ~ lognormal(4.2, 0.75)``; ``tenure = clip(Gamma(2.8, 8), 1, 96)``;
    ``usage = clip(N(0, 1), -3, 3)``; ``tickets ~ Poisson(exp(0.35 - 0.35 usage + 0.25 large))``;
    ``health = clip(67 + 9 usage - 3.8 tickets + 0.06 tenure + N(0, 8^2), 1, 99)``; region with
    probabilities (.45, .25, .22, .08) and risk offsets (0, -0.08, 0.05, 0.12);
    ``P(outreach) = sigmoid(-1.15 + 0.045 (70 - health) + 0.19 tickets + 0.45 large - 0.015 tenure
    + risk)``; ``p0 = sigmoid(-1.65 + 0.055 (70 - health) + 0.15 tickets - 0.018 tenure + risk)``;
    individual effect ``-0.025 - 0.055 [health < 55] - 0.025 [tickets >= 4] - 0.015 large + drift``;
    treated churn probability ``clip(p0 + effect, 0.01, 0.95)``. Engagement after outreach is
    ``1.5 outreach + 0.04 (health - 67) - 1.2 churn + N(0, 1)``.
    """
    return _outreach_batch(n, rng, drift, assignment, ())


def _outreach_batch(
    n: int, rng: np.random.Generator, drift: float, assignment: Assignment, region_shift: tuple[float, ...]
) -> pd.DataFrame:
    """:func:`simulate_outreach_batch`, with a region's extra effect (``region_shift``)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    check_choice("assignment", assignment, ("propensity", "health_rule"))
    pop = _outreach_population(n, rng, drift, region_shift)
    if assignment == "health_rule":
        outreach = (pop["health_score"] < 62).astype(np.int64)
    else:
        outreach = rng.binomial(1, pop["propensity"])
    churn_probability = np.where(outreach == 1, pop["p1"], pop["p0"])
    churn = rng.binomial(1, churn_probability)
    engagement = 1.5 * outreach + 0.04 * (pop["health_score"] - 67) - 1.2 * churn + rng.standard_normal(n)
    regions = np.asarray(REGIONS, dtype=object)[pop["region"].astype(np.int64)]
    account = rng.integers(0, 10**12, size=1)[0]
    return pd.DataFrame(
        {
            "account_id": [f"acct-{account + i:013d}" for i in range(n)],
            "company_size": pop["company_size"],
            "tenure_months": pop["tenure_months"],
            "usage_score": pop["usage_score"],
            "prior_tickets": pop["prior_tickets"].astype(np.int64),
            "health_score": pop["health_score"],
            "region": regions,
            "outreach": outreach.astype(np.int64),
            "churn": churn.astype(np.int64),
            "post_outreach_engagement": engagement,
        }
    )


@lru_cache(maxsize=64)
def outreach_true_ate(drift: float = 0.0, region_shift: tuple[float, ...] = ()) -> float:
    """Population ATE of the outreach stream (Monte Carlo over 4 million accounts, fixed seed).

    The Monte Carlo error is below 1e-4; the value without drift is about -0.046. ``region_shift``:
    :func:`region_shifts` of a stream's ``region_effect``.
    """
    total = 0.0
    rng = np.random.default_rng(20240917)
    chunks = 4
    for _ in range(chunks):
        pop = _outreach_population(1_000_000, rng, drift, region_shift)
        total += float(np.mean(pop["p1"] - pop["p0"]))
    return total / chunks


@lru_cache(maxsize=16)
def outreach_true_region_ates(drift: float = 0.0, region_shift: tuple[float, ...] = ()) -> dict[str, float]:
    """Each region's ATE of the outreach stream (the same Monte Carlo as :func:`outreach_true_ate`)."""
    sums, counts = np.zeros(len(REGIONS)), np.zeros(len(REGIONS))
    rng = np.random.default_rng(20240917)
    for _ in range(4):
        pop = _outreach_population(1_000_000, rng, drift, region_shift)
        region = pop["region"].astype(np.int64)
        sums += np.bincount(region, weights=pop["p1"] - pop["p0"], minlength=len(REGIONS))
        counts += np.bincount(region, minlength=len(REGIONS))
    return {name: float(total / count) for name, total, count in zip(REGIONS, sums, counts, strict=True)}


def simulate_outreach_stream(
    *,
    rng: np.random.Generator,
    n_batches: int = 12,
    n_per_batch: int = 2000,
    drift_per_batch: float = 0.0,
    start: str = "2025-01",
    returning_share: float = 0.0,
    persistence: float = 0.8,
    region_effect: Mapping[str, float] | None = None,
) -> SimulatedStream:
    """Observational retention-outreach stream; batch t has drift ``t * drift_per_batch``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n_batches, n_per_batch : int
        Number of batches and accounts per batch.
    drift_per_batch : float
        Change of every individual effect from one batch to the next.
    start : str
        Month label of the first batch.
    returning_share : float
        Share of each month's accounts that were in the previous month's batch (a random subset of
        it, keeping their ``account_id`` and covariates); 1 is the same accounts every month, 0
        (the default) fresh accounts every month, exactly as before this option existed.
    persistence : float
        With returning accounts: the correlation, between months, of an account's latent
        propensities to get outreach and to churn (persistent unit effects). Each month's
        outreach and churn probabilities are unchanged.
    region_effect : Mapping[str, float], optional
        Region -> extra effect of outreach on the churn probability of that region's accounts (added
        to every individual effect there, e.g. ``{"APAC": -0.06}``); None (the default) leaves the
        effect the same in every region, exactly as before this option existed. The truths (the
        stream's ``true_effects``, :func:`outreach_true_region_ates`) include it.

    Returns
    -------
    SimulatedStream
        Batches from :func:`simulate_outreach_batch`, true effects from :func:`outreach_true_ate`.

    Notes
    -----
    With returning accounts, ``outreach_it = 1{Phi(sqrt(rho) a_i + sqrt(1 - rho) v_it) < e_it}`` and
    ``churn_it = 1{Phi(sqrt(rho) z_i + sqrt(1 - rho) u_it) < p_it}`` with ``a_i, z_i, v_it, u_it``
    independent N(0, 1) (Gaussian copulas): the same accounts tend to get outreach and to churn
    month after month, while ``P(outreach_it = 1) = e_it`` and ``P(churn_it = 1) = p_it`` as for a new
    account, so the population ATE is still :func:`outreach_true_ate`. A returning account keeps its covariates (tenure does not
    age) and churn is an outcome, not an exit.
    """
    if not 0.0 <= returning_share <= 1.0:
        raise ValueError(f"returning_share must lie in [0, 1], got {returning_share!r}")
    if not 0.0 <= persistence < 1.0:
        raise ValueError(f"persistence must lie in [0, 1), got {persistence!r}")
    drifts = [t * drift_per_batch for t in range(n_batches)]
    shift = region_shifts(region_effect)
    if returning_share > 0.0:
        batches = _outreach_panel(n_per_batch, drifts, rng, returning_share, persistence, shift)
    else:
        batches = tuple(_outreach_batch(n_per_batch, rng, d, "propensity", shift) for d in drifts)
    truths = np.array([outreach_true_ate(round(d, 12), shift) for d in drifts], dtype=np.float64)
    return SimulatedStream(
        batches=batches,
        labels=month_labels(n_batches, start=start),
        true_effects=truths,
        treatment="outreach",
        outcome="churn",
        covariates=OUTREACH_COVARIATES,
    )


def _outreach_panel(
    n: int,
    drifts: list[float],
    rng: np.random.Generator,
    returning_share: float,
    persistence: float,
    region_shift: tuple[float, ...] = (),
) -> tuple[pd.DataFrame, ...]:
    """Monthly batches in which ``returning_share`` of the accounts come back from the month before."""
    if n < 1:
        raise ValueError(f"n_per_batch must be at least 1, got {n}")
    first_id = int(rng.integers(0, 10**12))
    accounts: dict[str, NDArray[np.float64]] = {}
    n_created = 0
    batches = []
    for t, drift in enumerate(drifts):
        n_back = 0 if t == 0 else round(returning_share * n)
        kept = rng.choice(n, size=n_back, replace=False) if n_back else np.empty(0, dtype=np.int64)
        new = _outreach_accounts(n - n_back, rng)
        new["number"] = np.arange(n_created, n_created + n - n_back, dtype=np.float64)
        new["latent_outreach"] = rng.standard_normal(n - n_back)
        new["latent_churn"] = rng.standard_normal(n - n_back)
        n_created += n - n_back
        accounts = {k: np.concatenate([accounts[k][kept], v]) if t else v for k, v in new.items()}
        pop = _outreach_probabilities(accounts, drift, region_shift)
        outreach = (
            _persistent_uniform(accounts["latent_outreach"], persistence, rng) < pop["propensity"]
        ).astype(np.int64)
        churn_probability = np.where(outreach == 1, pop["p1"], pop["p0"])
        churn = (_persistent_uniform(accounts["latent_churn"], persistence, rng) < churn_probability).astype(
            np.int64
        )
        engagement = 1.5 * outreach + 0.04 * (pop["health_score"] - 67) - 1.2 * churn + rng.standard_normal(n)
        numbers = accounts["number"].astype(np.int64) + first_id
        batches.append(
            pd.DataFrame(
                {
                    "account_id": [f"acct-{number:013d}" for number in numbers],
                    "company_size": pop["company_size"],
                    "tenure_months": pop["tenure_months"],
                    "usage_score": pop["usage_score"],
                    "prior_tickets": pop["prior_tickets"].astype(np.int64),
                    "health_score": pop["health_score"],
                    "region": np.asarray(REGIONS, dtype=object)[pop["region"].astype(np.int64)],
                    "outreach": outreach.astype(np.int64),
                    "churn": churn,
                    "post_outreach_engagement": engagement,
                }
            )
        )
    return tuple(batches)


def _persistent_uniform(
    latent: NDArray[np.float64], persistence: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Uniform(0, 1) draws correlated across months through each account's fixed ``latent``."""
    shock = rng.standard_normal(len(latent))
    return np.asarray(special.ndtr(math.sqrt(persistence) * latent + math.sqrt(1.0 - persistence) * shock))
