"""The data gates (data quality, schema) on simulated batch files, through the pipeline's own code.

The other ERROR gates are studied on the library (simulations/gates.py); these two are the shell's,
so this study writes each batch as the CSV a team would deliver and runs the same code a run does:
``read_landed_file`` -> ``judge_landed_file`` (the file-level quality suite) in ``raw_batch``, and
``validate_batch`` (the row rules and the quarantined share) in ``covariate_table``. Scenarios, at
200, 1,000, 10,000 and 100,000 rows:

* clean rows (a correct delivery): both gates must never fail (stated rate 0, by construction);
* 10% of the rows with an invalid treatment (``-1``): the schema gate must fail (power against a
  stated violation: twice the tolerated 5% quarantine share) and the quality gate must not (a bad
  row is a row rule: the batch is excluded once, by the schema gate; docs/DECISIONS.md item 31);
* 4% of rows with a missing covariate at random: reported (the schema gate's bound is a share,
  so below it the chance of crossing it falls with n).
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from checks.covariates import validate_batch
from checks.quality import judge_landed_file
from resources.raw_records import read_landed_file
from resources.study import StudyConfig, load_study
from simulations.table import binomial_mc_error, frame, row

STUDY_FILE = Path(__file__).resolve().parent.parent / "studies" / "ab_checkout.yaml"
SIZES = (200, 1_000, 10_000, 100_000)
FULL_REPS = {200: 100, 1_000: 60, 10_000: 20, 100_000: 5}
FAST_REPS = {200: 3, 1_000: 2, 10_000: 1, 100_000: 1}
NAME = "row gates"
Promise = tuple[str, Callable[[float], bool] | None]  # (target in words, whether a rate keeps it)


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
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{batch}.csv"
        path.write_bytes(content)
        landed = read_landed_file(path, batch=batch)
    quality = judge_landed_file(landed, study, batch=batch, twins=[]).verdict
    schema = validate_batch(landed.raw, study, batch=batch).verdicts["schema"][0]
    return quality.failed, schema.failed


def run(*, fast: bool = True, seed: int = 20261205) -> pd.DataFrame:
    """Failure rates of the two data gates per scenario and batch size."""
    rng = np.random.default_rng(seed)
    study = load_study(STUDY_FILE)
    reps = FAST_REPS if fast else FULL_REPS
    never: Promise = ("== 0", lambda rate: rate == 0.0)
    always: Promise = (">= 0.95", lambda rate: rate >= 0.95)
    # scenario -> (batch options, {gate: (target, promise)}); a gate without a promise is reported
    scenarios: dict[str, tuple[dict[str, float], dict[str, Promise]]] = {
        "clean rows": ({}, {"quality": never, "schema": never}),
        "10% invalid treatment": ({"bad_treatment": 0.10}, {"quality": never, "schema": always}),
        "4% missing covariate": ({"missing_x": 0.04}, {"schema": ("", None)}),
    }
    rows = []
    for scenario, (options, gates) in scenarios.items():
        for n in SIZES:
            results = np.array([judge(study, batch_csv(rng, n, **options)) for _ in range(reps[n])])
            for gate, (target, holds) in gates.items():
                rate = float(results[:, ("quality", "schema").index(gate)].mean())
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
