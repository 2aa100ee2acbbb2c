"""A team's own estimator through the real pipeline: CUPED as the primary estimator, and a broken one.

The CUPED example package (examples/team_estimators) and a broken team module in tmp_path are put on
sys.path for the test, as a team's installed package would be.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from resources.study import StudyConfig, load_study
from tests.pipeline_support import Project, write_batch

ROOT = Path(__file__).resolve().parents[2]
BROKEN = """
def estimate(data, *, treatment, outcome, covariates, estimand, rng):
    return "0.3"  # a number as text: not an EffectEstimate
"""


def study(tmp_path: Path, name: str, custom: str) -> StudyConfig:
    text = (ROOT / "studies" / "ab_checkout.yaml").read_text()
    for old, new in [
        ("name: ab_checkout", f"name: {name}"),
        ("landing_folder: ab_checkout", f"landing_folder: {name}"),
        (
            "primary_estimator: regression_adjustment\nestimators: [difference_in_means, regression_adjustment, ipw, aipw]",
            f"custom_estimators: {custom}\nprimary_estimator: mine\nestimators: [mine, difference_in_means]",
        ),
    ]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_study(path)


def pre_period_batch(seed: int, n: int = 400, tau: float = 0.5) -> pd.DataFrame:
    """An A/B batch whose outcome its pre-period value x explains: CUPED's variance reduction."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    d = rng.binomial(1, 0.5, n)
    y = tau * d + 2.0 * x + rng.normal(0.0, 0.5, n)
    return pd.DataFrame({"unit_id": [f"s{seed}-{i}" for i in range(n)], "x": x, "treatment": d, "outcome": y})


def test_cuped_runs_through_the_pipeline_and_a_broken_estimator_excludes_its_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "team_ce_pipeline_broken.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    cuped = study(tmp_path, "cuped_ab", '{mine: "team_estimators.cuped:estimate"}')
    broken = study(tmp_path, "broken_ab", '{mine: "team_ce_pipeline_broken:estimate"}')
    project = Project(
        data=tmp_path / "data", studies=[cuped, broken], instance=dg.DagsterInstance.ephemeral()
    )
    batches = {"2025-01": pre_period_batch(1), "2025-02": pre_period_batch(2)}
    for label, frame in batches.items():
        write_batch(project.landing("cuped_ab"), label, frame)
    write_batch(project.landing("broken_ab"), "2025-01", batches["2025-01"])
    results = project.tick()
    assert results and all(r.success for r in results)  # a broken estimator never crashes a run

    estimate = importlib.import_module("team_estimators.cuped").estimate
    effects = project.warehouse.read_table("cuped_ab", "batch_effects")
    stored = effects[effects["method"] == "mine"].set_index("partition_key")
    stored.index = stored.index.astype(str)
    for label, frame in batches.items():
        alone = estimate(
            frame, treatment="treatment", outcome="outcome", covariates=("x",), estimand="ATE", rng=None
        ).estimate
        row = stored.loc[f"{label}-01"]
        assert row["estimate"] == pytest.approx(alone.estimate, rel=1e-10)
        assert row["std_error"] == pytest.approx(alone.std_error, rel=1e-10)
        assert bool(row["is_primary"])
    steps = project.steps("cuped_ab")
    assert len(steps) == 2 and not steps["excluded"].any()
    last = steps.sort_values("batch").iloc[-1]
    assert abs(last["posterior_mean"] - 0.5) < 4 * np.sqrt(last["posterior_var"])  # the fused CUPED estimates
    assert last["posterior_var"] < stored["std_error"].min() ** 2  # both batches fused
    influence = project.warehouse.read_table("cuped_ab", "batch_influence")
    assert len(influence) == 800  # CUPED gives influence values: returning units are assessed

    broken_steps = project.steps("broken_ab").set_index("batch")
    broken_steps.index = broken_steps.index.astype(str)
    assert bool(broken_steps.loc["2025-01-01", "excluded"])
    reason = broken_steps.loc["2025-01-01", "exclusion_reason"]
    assert "custom estimator 'mine' returned a str, not an EffectEstimate or InfluenceContributions" in reason
