"""The example studies' batch files, as the demo lands them: one function per study in studies/.

Each function writes a study's whole history into its landing folder (the study's
``landing_folder`` under the demo's ``landing/``) and returns the paths in batch order. A new
example study adds its function (here or in a module of its own) and one entry of
``EXAMPLE_BATCHES``; the demo lands, runs and summarizes every study listed there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from assimilate.simulate import n_of_1_series, simulate_ab_stream, simulate_outreach_stream
from scripts.example_encouragement import land_encouragement_iv
from scripts.example_job_training import land_job_training
from scripts.example_rollout import land_regional_rollout

BAD_OUTREACH_MONTH = 7  # the 7th batch is assigned by a health rule: no overlap, kept out
HEALTH_RULE = 62.0  # that month every account with health below it gets outreach, and no other
OUTREACH_REGION_EFFECT = {"APAC": -0.10}  # outreach's extra effect on churn in APAC (the others: none)


REFUND_RATE = 0.05  # the checkout's refund rate, the same in both arms: no harm to find


def land_ab_checkout(folder: Path) -> list[Path]:
    """The randomized checkout A/B test: twelve monthly CSV files.

    Each visitor also carries ``refunded`` (0/1, 5% in both arms), the column a refund-rate
    guardrail reads (README, "Guardrail outcomes"). It is drawn from a generator of its own, so the
    other columns are exactly ``simulate_ab_stream``'s.
    """
    ab = simulate_ab_stream(rng=np.random.default_rng(20250101))
    refunds = np.random.default_rng(20250111)
    paths = []
    for label, batch in zip(ab.labels, ab.batches, strict=True):
        path = folder / f"{label}.csv"
        batch.assign(refunded=refunds.binomial(1, REFUND_RATE, size=len(batch))).to_csv(path, index=False)
        paths.append(path)
    return paths


def land_retention_outreach(folder: Path) -> list[Path]:
    """The observational outreach programme: twelve monthly Parquet files.

    The study's population is "all active accounts at the start of the month": the same 2,000
    accounts come back every month (``returning_share=1``), so its monthly estimates are correlated
    and the pipeline fuses them with that correlation. The 7th month is assigned by a health rule
    (no overlap), which the overlap gate keeps out. Outreach works better in APAC (its effect on the
    churn probability is 10 points stronger there): the segment by region that the pipeline should find.
    """
    outreach = simulate_outreach_stream(
        rng=np.random.default_rng(20250102),
        n_per_batch=2000,
        returning_share=1.0,
        region_effect=OUTREACH_REGION_EFFECT,
    )
    paths = []
    for month, (label, batch) in enumerate(zip(outreach.labels, outreach.batches, strict=True), start=1):
        if month == BAD_OUTREACH_MONTH:  # the same accounts, reached out to by a rule: no overlap
            batch = batch.assign(outreach=(batch["health_score"] < HEALTH_RULE).astype(np.int64))
        path = folder / f"{label}.parquet"
        batch.to_parquet(path, index=False)
        paths.append(path)
    return paths


def land_n_of_1_sleep(folder: Path) -> list[Path]:
    """The N-of-1 sleep trial: one person's nights of 2025, a CSV file per month."""
    paths = []
    for label, batch in sleep_trial_months(np.random.default_rng(20250103)):
        path = folder / f"{label}.csv"
        batch.to_csv(path, index=False)
        paths.append(path)
    return paths


def sleep_trial_months(rng: np.random.Generator) -> list[tuple[str, pd.DataFrame]]:
    """The N-of-1 example (studies/n_of_1_sleep.yaml): one person's nights of 2025, a file per month.

    Magnesium in weekly blocks, the order within each pair of weeks drawn at random; it lingers
    2 days after a switch (the study's washout); it raises the sleep score by 5 points; day-to-day
    scores are autocorrelated (AR(1), rho 0.5, SD 5 around 70).
    """
    days = pd.date_range("2025-01-01", "2025-12-31", freq="D")
    n_days = 14 * -(-len(days) // 14)  # whole pairs of weekly blocks
    treatment, score = n_of_1_series(
        rng, n_streams=1, n_days=n_days, block_days=7, effect=5.0, rho=0.5, sd=5.0, baseline=70.0
    )
    frame = pd.DataFrame(
        {
            "date": days.strftime("%Y-%m-%d"),
            "magnesium": treatment[0, : len(days)],
            "sleep_score": score[0, : len(days)].round(1),
        }
    )
    return [
        (str(month), batch.reset_index(drop=True)) for month, batch in frame.groupby(days.strftime("%Y-%m"))
    ]


# Study name (its file in studies/) -> the function that lands its batches; the demo's order.
EXAMPLE_BATCHES: dict[str, Callable[[Path], list[Path]]] = {
    "ab_checkout": land_ab_checkout,
    "retention_outreach": land_retention_outreach,
    "n_of_1_sleep": land_n_of_1_sleep,
    "encouragement_iv": land_encouragement_iv,
    "regional_rollout_did": land_regional_rollout,
    "job_training_att": land_job_training,
}


def land_example_batches(landing: Path) -> dict[str, list[Path]]:
    """Write every example study's batches into ``landing/<study>/``; the paths by study name."""
    written = {}
    for name, land in EXAMPLE_BATCHES.items():
        folder = landing / name
        folder.mkdir(parents=True, exist_ok=True)
        written[name] = land(folder)
    return written
