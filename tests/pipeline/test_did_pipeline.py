"""A difference-in-differences study through the pipeline: each batch a period of a panel, the
pre-period placebos gating the post-period batches, the posterior over the post-period effects."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import yaml

from assimilate.estimators.did_batch import PLACEBO, PLACEBO_METHOD
from resources.study import StudyConfig
from scripts.example_rollout import EFFECT, rollout_months
from tests.pipeline_support import PROJECT_ROOT, Project, example_study, write_batch

STUDY = "regional_rollout_did"
FIRST_LAUNCH = "2025-04-01"
PRE_TREND = "check_batch_effect_pre_trend"


def _land(project: Project, *, drift: float, months: int = 7) -> None:
    landing = project.landing(STUDY)
    for label, frame in rollout_months(np.random.default_rng(5), pre_trend_drift=drift, stores_per_region=60)[
        :months
    ]:
        write_batch(landing, label[:7], frame)


def _observed(project: Project) -> pd.DataFrame:
    return project.steps(STUDY).assign(batch=lambda s: s["batch"].astype(str)).set_index("batch")


def test_parallel_trends_admit_the_post_periods_and_the_posterior_covers_the_truth(tmp_path: Path) -> None:
    study = example_study(STUDY)
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    _land(project, drift=0.0)
    results = project.tick()
    assert results and all(r.success for r in results)

    effects = project.warehouse.read_table(STUDY, "batch_effects")
    effects["partition_key"] = effects["partition_key"].astype(str)
    placebos = effects[effects["method"] == PLACEBO_METHOD]
    assert sorted(placebos["partition_key"]) == ["2025-02-01", "2025-03-01"]
    post = effects[(effects["method"] == "callaway_santanna") & (effects["partition_key"] >= FIRST_LAUNCH)]
    assert len(post) == 4 and (post["error"] == "").all()
    assert (abs(post["estimate"] - EFFECT) < 4 * post["std_error"]).all()

    verdicts = project.warehouse.read_table(STUDY, "verdicts_batch_effect")
    trend = verdicts[verdicts["check_name"] == PRE_TREND]
    trend_post = trend[trend["partition_key"].astype(str) >= FIRST_LAUNCH]
    assert len(trend_post) == 4 and (trend_post["status"] == "pass").all()
    assert (trend_post["severity"] == "ERROR").all()

    steps = _observed(project)
    for batch in ("2025-01-01", "2025-02-01", "2025-03-01"):
        assert steps.loc[batch, "excluded"] and PLACEBO in steps.loc[batch, "exclusion_reason"]
    assert not steps.loc[steps.index >= FIRST_LAUNCH, "excluded"].any()
    last = steps.iloc[-1]
    assert last["ci_lower"] <= EFFECT <= last["ci_upper"]
    # The post periods share every store: the fusion used their correlation.
    correlations = project.warehouse.read_table(STUDY, "posterior_error_correlation")
    assert not correlations.empty and (correlations["correlation"] > 0.1).any()

    memo = (project.data / "reports" / STUDY / "memo.md").read_text()
    # Pre-period batches are out by design: no alert, and the memo's status is not held back.
    assert project.alerts() == []
    assert "**Status: pass.**" in memo and "3 of them acknowledged" in memo
    assert "Difference in differences" in memo and "parallel trends" in memo
    assert (project.data / "reports" / STUDY / "event_study.png").exists()


def test_a_violated_pre_trend_keeps_post_periods_out_until_acknowledged(tmp_path: Path) -> None:
    study = example_study(STUDY)
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    _land(project, drift=1.5, months=6)
    results = project.tick()
    assert results and all(r.success for r in results)

    verdicts = project.warehouse.read_table(STUDY, "verdicts_batch_effect")
    trend = verdicts[
        (verdicts["check_name"] == PRE_TREND) & (verdicts["partition_key"].astype(str) >= FIRST_LAUNCH)
    ]
    assert len(trend) == 3 and (trend["status"] == "fail").all() and (trend["severity"] == "ERROR").all()
    steps = _observed(project)
    post = steps[steps.index >= FIRST_LAUNCH]
    assert post["excluded"].all() and post["exclusion_reason"].str.contains("pre_trend").all()
    alerted = [a for a in project.alerts() if a.check_name.endswith("pre_trend")]
    assert alerted and alerted[0].severity == "ERROR" and alerted[0].partition_key >= FIRST_LAUNCH

    # The analyst acts: the failed test is acknowledged with a reason in the study file.
    data = yaml.safe_load((PROJECT_ROOT / "studies" / f"{STUDY}.yaml").read_text())
    data["design"]["pre_trend_acknowledged"] = "the East's pre-launch growth is a known store refit; accepted"
    acknowledged = StudyConfig.model_validate(data)
    assert acknowledged.batch_rules_hash != study.batch_rules_hash
    project.studies[:] = [acknowledged]
    results = project.tick()
    assert results and all(r.success for r in results)
    verdicts = project.warehouse.read_table(STUDY, "verdicts_batch_effect")
    trend = verdicts[
        (verdicts["check_name"] == PRE_TREND) & (verdicts["partition_key"].astype(str) >= FIRST_LAUNCH)
    ]
    assert (trend["status"] == "fail").all() and (trend["severity"] == "WARN").all()
    assert "acknowledged" in trend["reason"].iloc[0]
    steps = _observed(project)
    assert not steps.loc[steps.index >= FIRST_LAUNCH, "excluded"].any()
