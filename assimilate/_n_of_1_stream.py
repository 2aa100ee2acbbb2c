"""A seeded N-of-1 trial: one person's daily outcome under randomized alternating treatment blocks.

Model: ``y_t = baseline + slope t + effect c_t + u_t``, ``u_t = rho u_{t-1} + sqrt(1 - rho^2) sd e_t``
(stationary AR(1) with marginal SD ``sd``), where the exposure ``c_t`` follows the treatment
``d_t`` with a linear carry-over: in the ``k``-th day after a switch (``k = 1 .. carryover_days``)
``c_t = c_old + (d_t - c_old) k / (carryover_days + 1)``, afterwards ``c_t = d_t``.

Treatment comes in blocks of ``block_days`` days, in pairs whose order (treatment first or
control first) is drawn at random: a randomized alternating design. Re-exported by
:mod:`assimilate.simulate`.

Example
-------
>>> import numpy as np
>>> stream = simulate_n_of_1_stream(rng=np.random.default_rng(3), n_batches=2)
>>> stream.batches[0].columns.tolist(), len(stream.batches[0]), stream.labels
(['date', 'day', 'treatment', 'outcome'], 56, ('2025-01-06', '2025-03-03'))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import signal

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class NOf1Stream:
    """Batches of one subject's N-of-1 trial with the true effect.

    Parameters
    ----------
    batches : tuple of DataFrame
        Consecutive batches of days: columns ``date``, ``day`` (days since the trial began),
        ``treatment`` (0/1) and ``outcome``.
    labels : tuple of str
        Each batch's first date (``YYYY-MM-DD``).
    true_effects : ndarray
        The effect after carry-over, per batch (constant).
    treatment, outcome, time : str
        Column names.
    carryover_days : int
        Days the previous treatment lingers after a switch (the washout a study should declare).
    rho : float
        AR(1) coefficient of the daily errors.
    """

    batches: tuple[pd.DataFrame, ...]
    labels: tuple[str, ...]
    true_effects: FloatArray
    treatment: str
    outcome: str
    time: str
    carryover_days: int
    rho: float


def n_of_1_series(
    rng: np.random.Generator,
    *,
    n_streams: int,
    n_days: int,
    block_days: int = 7,
    effect: float = 0.5,
    rho: float = 0.5,
    sd: float = 1.0,
    baseline: float = 5.0,
    slope: float = 0.0,
    carryover_days: int = 2,
) -> tuple[NDArray[np.int64], FloatArray]:
    """Treatment and outcome of ``n_streams`` independent subjects, ``n_days`` each (arrays ``(S, n_days)``)."""
    if block_days < 1 or n_days % (2 * block_days):
        raise ValueError(
            f"n_days ({n_days}) must be a positive multiple of 2 * block_days ({2 * block_days})"
        )
    if not -1.0 < rho < 1.0:
        raise ValueError(f"rho must lie in (-1, 1), got {rho!r}")
    if carryover_days < 0 or carryover_days >= block_days:
        raise ValueError(f"carryover_days must lie in [0, block_days), got {carryover_days!r}")
    pairs = n_days // (2 * block_days)
    first = rng.integers(0, 2, size=(n_streams, pairs))
    blocks = np.stack([first, 1 - first], axis=2).reshape(n_streams, 2 * pairs)
    d = np.repeat(blocks, block_days, axis=1)
    exposure = d.astype(np.float64)
    previous = np.concatenate([blocks[:, :1], blocks[:, :-1]], axis=1)  # the first block has no switch
    for k in range(1, carryover_days + 1):
        day = np.arange(2 * pairs) * block_days + k - 1
        exposure[:, day] = previous + (blocks - previous) * k / (carryover_days + 1)
    shocks = rng.standard_normal((n_streams, n_days)) * sd
    shocks[:, 1:] *= math.sqrt(1.0 - rho * rho)
    errors = signal.lfilter([1.0], [1.0, -rho], shocks, axis=1)
    y = baseline + slope * np.arange(n_days) + effect * exposure + errors
    return d.astype(np.int64), np.asarray(y, dtype=np.float64)


def simulate_n_of_1_stream(
    *,
    rng: np.random.Generator,
    n_batches: int = 6,
    days_per_batch: int = 56,
    block_days: int = 7,
    effect: float = 0.5,
    rho: float = 0.5,
    sd: float = 1.0,
    baseline: float = 5.0,
    slope: float = 0.0,
    carryover_days: int = 2,
    start: str = "2025-01-06",
) -> NOf1Stream:
    """One subject's N-of-1 trial, cut into batches of ``days_per_batch`` days.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n_batches, days_per_batch : int
        Batches and days per batch (a multiple of ``2 * block_days``: whole pairs of blocks).
    block_days : int
        Days per treatment block.
    effect : float
        The effect of treatment on the outcome once the carry-over is over.
    rho : float
        AR(1) coefficient of the daily errors, in (-1, 1).
    sd : float
        Marginal standard deviation of the daily errors.
    baseline, slope : float
        Outcome level without treatment on day 0, and its drift per day.
    carryover_days : int
        Days after a switch during which the exposure moves linearly to the new treatment.
    start : str
        Date of day 0.

    Returns
    -------
    NOf1Stream
        Batches with columns ``date``, ``day``, ``treatment``, ``outcome``.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be at least 1, got {n_batches}")
    if days_per_batch < 1 or days_per_batch % (2 * block_days):
        raise ValueError(f"days_per_batch ({days_per_batch}) must be a multiple of 2 * block_days")
    n_days = n_batches * days_per_batch
    d, y = n_of_1_series(
        rng,
        n_streams=1,
        n_days=n_days,
        block_days=block_days,
        effect=effect,
        rho=rho,
        sd=sd,
        baseline=baseline,
        slope=slope,
        carryover_days=carryover_days,
    )
    dates = pd.date_range(start, periods=n_days, freq="D")
    frame = pd.DataFrame({"date": dates, "day": np.arange(n_days), "treatment": d[0], "outcome": y[0]})
    batches = tuple(
        frame.iloc[b * days_per_batch : (b + 1) * days_per_batch].reset_index(drop=True)
        for b in range(n_batches)
    )
    return NOf1Stream(
        batches=batches,
        labels=tuple(f"{batch['date'].iloc[0]:%Y-%m-%d}" for batch in batches),
        true_effects=np.full(n_batches, float(effect)),
        treatment="treatment",
        outcome="outcome",
        time="date",
        carryover_days=int(carryover_days),
        rho=float(rho),
    )
