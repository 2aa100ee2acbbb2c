"""A study with sampling weights through the real pipeline: every estimator weighted, bad weights quarantined.

The study is the checkout A/B test with ``weights: w``: each stored estimate is the library's
weighted estimate on the batch's valid rows, and a row whose weight is negative, zero or missing
is quarantined with the column and the rule (the rest of the batch is estimated).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assimilate.estimators import aipw, difference_in_means, ipw, regression_adjustment
from checks.typed_batch import MISSING
from resources.study import StudyConfig, load_study
from tests.pipeline_support import Project, write_batch

ROOT = Path(__file__).resolve().parents[2]
NAME = "weighted_ab"


def weighted_study(tmp_path: Path) -> StudyConfig:
    text = (ROOT / "studies" / "ab_checkout.yaml").read_text()
    for old, new in [
        ("name: ab_checkout", f"name: {NAME}"),
        ("landing_folder: ab_checkout", f"landing_folder: {NAME}"),
        ("covariates: [x]", "covariates: [x]\nweights: w"),
    ]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / f"{NAME}.yaml"
    path.write_text(text)
    return load_study(path)


def sampled_batch(seed: int, n: int = 400) -> pd.DataFrame:
    """An A/B batch whose effect grows with x, sampled with probability rising in x (weight 1/pi)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    d = rng.binomial(1, 0.5, n)
    y = (0.5 + 0.4 * x) * d + 0.3 * x + rng.normal(0.0, 0.5, n)
    w = 1.0 / (0.1 + 0.8 / (1.0 + np.exp(-1.5 * x)))
    return pd.DataFrame(
        {"unit_id": [f"s{seed}-{i}" for i in range(n)], "x": x, "treatment": d, "outcome": y, "w": w}
    )


def library_estimates(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    common = {"treatment": "treatment", "outcome": "outcome", "weights": frame["w"].to_numpy()}
    fits = {
        "difference_in_means": difference_in_means(frame, **common),
        "regression_adjustment": regression_adjustment(frame, covariates=["x"], **common),
        "ipw": ipw(frame, covariates=["x"], **common),
        "aipw": aipw(frame, covariates=["x"], **common),
    }
    return {method: (fit.estimate, fit.std_error) for method, fit in fits.items()}


def test_a_weighted_study_gives_the_library_s_weighted_estimates_and_quarantines_bad_weights(
    tmp_path: Path,
) -> None:
    study = weighted_study(tmp_path)
    assert study.weights == "w"
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    first, second = sampled_batch(1), sampled_batch(2)
    landed = second.astype({"w": object})
    landed.loc[3, "w"] = -2.0  # negative
    landed.loc[7, "w"] = 0.0  # zero
    landed.loc[11, "w"] = ""  # missing
    write_batch(project.landing(NAME), "2025-01", first)
    write_batch(project.landing(NAME), "2025-02", landed)
    results = project.tick()
    assert results and all(r.success for r in results)

    quarantine = project.warehouse.read_table(NAME, "quarantine")
    rules = sorted(zip(quarantine["row_index"], quarantine["column"], quarantine["rule"], strict=True))
    assert rules == [
        (3, "w", "sampling weight 'w' must be > 0"),
        (7, "w", "sampling weight 'w' must be > 0"),
        (11, "w", MISSING),
    ]

    effects = project.warehouse.read_table(NAME, "batch_effects")
    effects["partition_key"] = effects["partition_key"].astype(str)
    valid_second = second.drop(index=[3, 7, 11]).reset_index(drop=True)
    for label, frame in (("2025-01-01", first), ("2025-02-01", valid_second)):
        stored = effects[effects["partition_key"] == label].set_index("method")
        for method, (estimate, std_error) in library_estimates(frame).items():
            assert stored.loc[method, "error"] == ""
            assert stored.loc[method, "estimate"] == pytest.approx(estimate, rel=1e-10)
            assert stored.loc[method, "std_error"] == pytest.approx(std_error, rel=1e-10)
        unweighted = regression_adjustment(frame, treatment="treatment", outcome="outcome", covariates=["x"])
        # The weights moved the estimate: the sample over-represents units with a large effect.
        assert abs(stored.loc["regression_adjustment", "estimate"] - unweighted.estimate) > 1e-3
    steps = project.steps(NAME)
    assert len(steps) == 2 and not steps["excluded"].any()
