"""The encouragement example (studies/encouragement_iv.yaml): an e-mail that nudges customers to enrol.

Each month a fresh cohort of customers is drawn; half of them, at random, get an e-mail encouraging
them to enrol in the automatic savings feature (``encouraged``, the instrument). Who enrols
(``enrolled``, the treatment) depends on an unmeasured ``motivation`` that also raises monthly
savings (``monthly_savings``, USD), so comparing enrolled with not-enrolled customers is biased
upwards; the randomized e-mail is not, and two-stage least squares recovers the effect on the
customers the e-mail moved (the compliers).

Compliance types follow a latent propensity ``motivation + 0.01 (age - 45) + noise``: the most
motivated enrol anyway (always-takers, about 15%), the least never do (never-takers, about 55%),
the rest enrol only when encouraged (compliers, about 30%): two-sided noncompliance, no defiers.
Enrolling raises savings by ``COMPLIER_EFFECT`` for a complier on average (the LATE) and by
``ALWAYS_TAKER_EFFECT`` for an always-taker, so the LATE is not the effect on the enrolled.

Month ``BOUNCED_MONTH`` (August): a mail-delivery outage bounced almost every e-mail
(``DELIVERED_IN_OUTAGE`` reached their customer), so the assignment is still recorded but moved
almost no one: the first stage collapses (effective F near 1) and the weak-instrument gate keeps
the month out of the posterior.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20250104
MONTHS = 12
ROWS_PER_MONTH = 3_000
BOUNCED_MONTH = 8  # the 8th batch (2025-08): the encouragement e-mails bounced
DELIVERED_IN_OUTAGE = 0.02  # share of that month's encouragement e-mails that still arrived
COMPLIER_EFFECT = 40.0  # USD a month: the true LATE (the compliers' average effect)
ALWAYS_TAKER_EFFECT = 70.0  # USD a month for those who enrol anyway (not what 2SLS estimates)
ALWAYS_CUT, NEVER_CUT = 1.05, 0.15  # latent propensity cut-offs: about 15% always, 55% never
FEES_SEED = 20250105  # the guardrail outcome's own generator
OVERDRAFT_EFFECT = 0.8  # USD a month of overdraft fees from enrolling: the guardrail's true effect


def encouragement_month(
    rng: np.random.Generator, month: str, *, n: int = ROWS_PER_MONTH, delivered: float = 1.0
) -> pd.DataFrame:
    """One month's cohort: ids, covariates, the e-mail (instrument), enrolment and savings.

    Parameters
    ----------
    rng : numpy.random.Generator
        The source of randomness.
    month : str
        The batch label (``YYYY-MM``), used in the customer ids (each month a fresh cohort).
    n : int
        Customers in the cohort.
    delivered : float
        Share of the encouragement e-mails that reached their customer (1 in a normal month).

    Returns
    -------
    pandas.DataFrame
        Columns ``customer_id, age, tenure_months, encouraged, enrolled, monthly_savings``; the
        unmeasured motivation is not among them.
    """
    age = rng.integers(22, 71, n)
    tenure = rng.integers(1, 121, n)
    motivation = rng.standard_normal(n)  # unmeasured: drives enrolment and savings
    encouraged = rng.binomial(1, 0.5, n)
    reached = encouraged * rng.binomial(1, delivered, n)
    latent = motivation + 0.01 * (age - 45) + 0.5 * rng.standard_normal(n)
    always, never = latent > ALWAYS_CUT, latent < NEVER_CUT
    complier = ~always & ~never
    enrolled = (always | (complier & (reached == 1))).astype(np.int64)
    effect = np.where(always, ALWAYS_TAKER_EFFECT, COMPLIER_EFFECT + 15.0 * rng.standard_normal(n))
    baseline = 120.0 + 1.5 * (age - 45) + 0.6 * tenure + 60.0 * motivation + 50.0 * rng.standard_normal(n)
    return pd.DataFrame(
        {
            "customer_id": [f"{month}-{i:05d}" for i in range(n)],
            "age": age,
            "tenure_months": tenure,
            "encouraged": encouraged,
            "enrolled": enrolled,
            "monthly_savings": (baseline + enrolled * effect).round(2),
        }
    )


def encouragement_months(rng: np.random.Generator, months: int = MONTHS) -> list[tuple[str, pd.DataFrame]]:
    """The study's 2025 history, ``(label, batch)`` per month; the ``BOUNCED_MONTH``-th bounced.

    Each month also carries the guardrail outcome ``overdraft_fees`` (USD in the month), drawn from
    a generator of its own so that the other columns do not depend on it: automatic transfers
    leave some accounts short, so enrolling adds ``OVERDRAFT_EFFECT`` in fees on average.
    """
    labels = [f"2025-{m:02d}" for m in range(1, months + 1)]
    fees = np.random.default_rng(FEES_SEED)
    history = []
    for index, label in enumerate(labels, start=1):
        batch = encouragement_month(
            rng, label, delivered=DELIVERED_IN_OUTAGE if index == BOUNCED_MONTH else 1.0
        )
        overdraft = fees.gamma(2.0, 2.0, len(batch)) + OVERDRAFT_EFFECT * batch["enrolled"].to_numpy()
        history.append((label, batch.assign(overdraft_fees=overdraft.round(2))))
    return history


def land_encouragement_iv(folder: Path) -> list[Path]:
    """The encouragement study: twelve monthly CSV files, the 8th with the bounced e-mails."""
    paths = []
    for label, batch in encouragement_months(np.random.default_rng(SEED)):
        path = folder / f"{label}.csv"
        batch.to_csv(path, index=False)
        paths.append(path)
    return paths
