"""The staggered-rollout example (studies/regional_rollout_did.yaml): a feature launched region by region.

A retailer launches same-day pickup in its stores one region at a time: the North in April 2025, the
South in June, the East in August; the West keeps the old service through October (never treated
in the study). Each monthly batch holds every store's average daily orders that month
(``daily_orders``), whether the feature was live (``pickup_live``) and the store's launch month
(``launch_month``, empty for the West). The regions differ in level (the North is busiest) and every
store has its own level, but without the launch all regions would move together: a common seasonal
path plus independent store noise (parallel trends hold). The feature adds ``EFFECT`` orders a day,
the same in every region from its launch month on, so the effect in every post-launch month is
``EFFECT`` and the fused posterior should cover it.

``pre_trend_drift`` (for the tests): the launching regions' stores drift away by that many orders
per month before their launch, a violation of parallel trends the pre-trend gate should catch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20250105
MONTHS = tuple(f"2025-{m:02d}-01" for m in range(1, 11))
LAUNCH = {"North": "2025-04-01", "South": "2025-06-01", "East": "2025-08-01", "West": ""}
LEVEL = {"North": 60.0, "South": 45.0, "East": 50.0, "West": 40.0}
STORES_PER_REGION = 120
EFFECT = 3.0  # orders a day: the feature's effect in every post-launch store-month (the true ATT)
SEASON = (0.0, -1.0, 1.5, 2.0, 3.0, 4.5, 4.0, 2.5, 1.0, 0.5)  # the common month-to-month path


def rollout_months(
    rng: np.random.Generator, *, pre_trend_drift: float = 0.0, stores_per_region: int = STORES_PER_REGION
) -> list[tuple[str, pd.DataFrame]]:
    """The ten monthly batches of the rollout, ``(label, frame)`` in order."""
    regions = np.repeat(list(LAUNCH), stores_per_region)
    stores = [f"{r[0]}{i:03d}" for i, r in enumerate(regions)]
    level = np.array([LEVEL[r] for r in regions]) + rng.normal(0.0, 5.0, len(regions))
    launch = np.array([LAUNCH[r] for r in regions], dtype=object)
    batches = []
    for t, month in enumerate(MONTHS):
        live = np.array([bool(g) and month >= g for g in launch])
        before = np.array([MONTHS.index(g) - t if g and month < g else 0 for g in launch], dtype=float)
        orders = (
            level + SEASON[t] + EFFECT * live - pre_trend_drift * before + rng.normal(0.0, 2.0, len(regions))
        )
        frame = pd.DataFrame(
            {
                "store_id": stores,
                "region": regions,
                "launch_month": launch,
                "pickup_live": live.astype(np.int64),
                "daily_orders": orders.round(3),
            }
        )
        batches.append((month, frame))
    return batches


def land_regional_rollout(folder: Path) -> list[Path]:
    """The regional rollout's ten monthly CSV files (``YYYY-MM.csv``)."""
    paths = []
    for month, frame in rollout_months(np.random.default_rng(SEED)):
        path = folder / f"{month[:7]}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths
