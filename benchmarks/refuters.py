"""Refuters in a batch's budget: the estimation with and without the study's refuters, as ratios.

The promise (issue: "the refuters reuse the fitted nuisance models and do not multiply the
batch's runtime by more than 2"), measured two ways in one run:

- library: ``fit_batch`` alone (the reference) against ``fit_batch`` plus ``refute_batch`` with the
  fit's estimate and propensity model, on one batch of each shipped observational example
  (studies/retention_outreach.yaml, studies/job_training_att.yaml, each with its own refuters);
- pipeline: a landed batch through to the posterior (sensor, run, every step) for the outreach
  study with its refuters against the same study without them, on an ephemeral instance.

    .venv/bin/python -m benchmarks.refuters            # 2,000-row batches, 5 repeats
    .venv/bin/python -m benchmarks.refuters --smoke    # one repeat (used by the tests)
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np
import pandas as pd

from assimilate.diagnostics.batch_refutations import refute_batch
from assimilate.estimators.batch import fit_batch
from assimilate.simulate import simulate_outreach_batch
from benchmarks.pipeline import _ticks, fresh_setup, retention_study, row
from benchmarks.table import timed_together
from orchestration.instance import PROJECT_ROOT
from resources.study import StudyConfig, load_study
from scripts.example_job_training import SEED as JOB_TRAINING_SEED
from scripts.example_job_training import job_training_months

TARGET_RATIO = 2.0
BENCH = "refuters in a batch's budget"


def example_batch(study: StudyConfig, n_rows: int) -> pd.DataFrame:
    """One batch of the example's own stream (the outreach simulator, or the job-training cohorts)."""
    if study.name == "retention_outreach":
        return simulate_outreach_batch(n_rows, rng=np.random.default_rng(7))
    return job_training_months(np.random.default_rng(JOB_TRAINING_SEED), n=n_rows)[0][1]


def library_rows(study: StudyConfig, n_rows: int, repeats: int) -> list[dict[str, Any]]:
    """``fit_batch`` alone against ``fit_batch`` + ``refute_batch`` on one batch of ``study``."""
    batch = example_batch(study, n_rows)

    def fit() -> Any:
        return fit_batch(batch, study, batch="2025-01-01", rng=np.random.default_rng(0))

    def fit_and_refute() -> None:
        fitted = fit()
        refute_batch(
            batch,
            study,
            rng=np.random.default_rng(1),
            estimate=fitted.estimates.get(study.primary_estimator),
            propensity=fitted.propensity,
        )

    # Interleaved, so both get the same share of whatever else the machine does.
    times = timed_together({"alone": fit, "refuted": fit_and_refute}, repeats)
    alone, refuted = times["alone"], times["refuted"]
    names = ", ".join(study.refuters.configured) if study.refuters else "none"
    reference = statistics.median(alone)
    return [
        row(
            f"{BENCH} ({study.name}, library)", "fit_batch alone (reference)", n_rows, alone, 1.0, "reference"
        ),
        row(
            f"{BENCH} ({study.name}, library)",
            f"fit_batch + refuters ({names})",
            n_rows,
            refuted,
            statistics.median(refuted) / reference,
            "-",
        ),
    ]


def pipeline_rows(n_rows: int, repeats: int) -> list[dict[str, Any]]:
    """A landed batch -> posterior for the outreach study, without and with its refuters."""
    timings: dict[str, list[float]] = {}
    for label, study in (
        ("without refuters (reference)", retention_study()),
        ("with the study's refuters", retention_study(keep=("refuters",))),
    ):
        with fresh_setup(study, "ephemeral") as setup:
            _ticks(setup, n_rows, range(1, 3))  # earlier batches and a warm process
            timings[label] = _ticks(setup, n_rows, range(3, 3 + repeats)).times
    reference = statistics.median(timings["without refuters (reference)"])
    return [
        row(f"{BENCH} (pipeline)", label, n_rows, times, statistics.median(times) / reference, "-")
        for label, times in timings.items()
    ]


def refuter_rows(smoke: bool) -> list[dict[str, Any]]:
    """Every row: each example's library ratio, then the pipeline ratio, and the target."""
    n_rows, repeats = (500, 1) if smoke else (2_000, 5)
    rows = [
        row(BENCH, f"target: at most {TARGET_RATIO:g}x (reference)", n_rows, [TARGET_RATIO], 1.0, "reference")
    ]
    for name in ("retention_outreach", "job_training_att"):
        rows += library_rows(load_study(PROJECT_ROOT / "studies" / f"{name}.yaml"), n_rows, repeats)
    rows += pipeline_rows(n_rows, max(repeats, 2) if not smoke else 1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="small batches, one repeat")
    args = parser.parse_args()
    for r in refuter_rows(args.smoke):
        print(
            f"{r['benchmark']:<58} {r['tool']:<60} {r['size']:>7} "
            f"{r['median_s']:>9.3f} s  x{r['ratio_to_reference']:.2f}"
        )


if __name__ == "__main__":
    main()
