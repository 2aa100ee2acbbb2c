"""The row gates (data quality, schema) on simulated batch files, through the pipeline's own reader.

The other ERROR gates are studied on the library (simulations/gates.py); these two are row rules
of the shell, so this study writes each batch as the CSV a team would deliver and runs the same
code a run does: ``read_batch_file`` -> ``type_batch`` -> the Great Expectations suite, and
``split_valid_rows`` -> ``schema_verdict``. Scenarios, at 200, 1,000, 10,000 and 100,000 rows:

* clean rows (a correct delivery): both gates must never fail (stated rate 0, by construction);
* 10% of the rows with an invalid treatment (``-1``): both must fail (power against a stated
  violation: twice the tolerated 5% quarantine share);
* 4% of rows with a missing covariate at random: reported (the schema gate's bound is a share,
  so below it the chance of crossing it falls with n).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from assets.batch_validation import read_batch_file, split_valid_rows
from assets.covariates import schema_verdict
from assets.typed_batch import type_batch
from checks.quality import run_quality_suite
from resources.study import StudyConfig, load_study
from simulations.table import binomial_mc_error, frame, row

STUDY_FILE = Path(__file__).resolve().parent.parent / "studies" / "ab_checkout.yaml"
SIZES = (200, 1_000, 10_000, 100_000)
FULL_REPS = {200: 100, 1_000: 60, 10_000: 20, 100_000: 5}
FAST_REPS = {200: 3, 1_000: 2, 10_000: 1, 100_000: 1}
NAME = "row gates"


def batch_csv(
    rng: np.random.Generator, n: int, *, bad_treatment: float = 0.0, missing_x: float = 0.0
) -> bytes:
    """One A/B batch as the CSV file a team would land (ids, treatment, outcome, covariate x)."""
    x = rng.standard_normal(n)
    d = rng.integers(0, 2, n)
    y = 1.0 + 0.5 * d + 0.8 * x + rng.standard_normal(n)
    frame_ = pd.DataFrame({"unit_id": [f"u{i}" for i in range(n)], "treatment": d, "outcome": y, "x": x})
    frame_["treatment"] = frame_["treatment"].astype(object)
    frame_["x"] = frame_["x"].astype(object)
    frame_.loc[rng.random(n) < bad_treatment, "treatment"] = -1
    frame_.loc[rng.random(n) < missing_x, "x"] = ""
    buffer = io.StringIO()
    frame_.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")


def judge(study: StudyConfig, content: bytes, batch: str = "2025-01-01") -> tuple[bool, bool]:
    """(quality failed, schema failed) for one landed file, as a run judges it."""
    raw = read_batch_file(Path("batch.csv"), batch=batch, content=content)
    judged = [study.unit_id, study.treatment, study.outcome]
    quality = run_quality_suite(type_batch(raw, study, columns=judged).frame, study, batch=batch).verdict
    split = split_valid_rows(raw, study)
    schema = schema_verdict(
        study,
        split.valid,
        split.missing_columns,
        len(raw),
        len(split.quarantine["row_index"].unique()),
        batch,
    )
    return quality.failed, schema.failed


def run(*, fast: bool = True, seed: int = 20261205) -> pd.DataFrame:
    """Failure rates of the two row gates per scenario and batch size."""
    rng = np.random.default_rng(seed)
    study = load_study(STUDY_FILE)
    reps = FAST_REPS if fast else FULL_REPS
    scenarios = {
        "clean rows": ({}, "== 0", lambda rate: rate == 0.0),
        "10% invalid treatment": ({"bad_treatment": 0.10}, ">= 0.95", lambda rate: rate >= 0.95),
        "4% missing covariate": ({"missing_x": 0.04}, "", None),
    }
    rows = []
    for scenario, (options, target, holds) in scenarios.items():
        for n in SIZES:
            results = np.array([judge(study, batch_csv(rng, n, **options)) for _ in range(reps[n])])
            for gate, column in (("quality", 0), ("schema", 1)):
                rate = float(results[:, column].mean())
                if holds is None and gate == "quality":
                    continue  # the suite judges ids, treatment and outcome only
                what = "false-alarm rate" if scenario == "clean rows" else "failure rate"
                rows.append(
                    row(
                        NAME,
                        f"{scenario}, n={n}",
                        f"{gate} gate {what} ({reps[n]} batches)",
                        rate,
                        target=target,
                        mc_error=binomial_mc_error(rate, reps[n]),
                        passed=None if holds is None else bool(holds(rate)),
                    )
                )
    return frame(rows)


if __name__ == "__main__":
    print(run(fast=False).to_string(index=False))
