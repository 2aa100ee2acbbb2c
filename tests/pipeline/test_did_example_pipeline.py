"""The shipped staggered-rollout study (studies/regional_rollout_did.yaml) through the real pipeline.

All ten months, as the demo lands them, in one range run: the three months before the first launch
are placebos kept out of the posterior by design (no alert), the pre-trend gate passes on every
post-launch month, the seven post-launch effects are fused into a posterior that covers the
simulated effect, and the memo shows the design, the pre-trend result and the event study.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assimilate.estimators.did_batch import PLACEBO
from orchestration.runner import run_landed_batches
from scripts.example_rollout import EFFECT, MONTHS, land_regional_rollout
from tests.pipeline_support import Project, example_study

STUDY = "regional_rollout_did"


def test_the_rollout_study_gates_on_its_placebos_and_covers_the_att(tmp_path: Path) -> None:
    study = example_study(STUDY)
    assert study.estimand == "ATT" and study.design.kind == "did" and study.causal_graph is not None
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    land_regional_rollout(project.landing(STUDY))
    results = run_landed_batches(project.defs, project.instance, project.studies, backfill=True)
    assert results and all(r.success for r in results)

    steps = project.steps(STUDY).set_index("batch")
    steps.index = steps.index.astype(str)
    assert list(steps.index) == list(MONTHS)
    assert list(steps.index[steps["excluded"]]) == list(MONTHS[:3])
    assert steps.loc[list(MONTHS[:3]), "exclusion_reason"].str.contains(PLACEBO).all()

    verdicts = project.warehouse.read_table(STUDY, "verdicts_batch_effect")
    verdicts["partition_key"] = verdicts["partition_key"].astype(str)
    trend = verdicts[verdicts["check_name"] == "check_batch_effect_pre_trend"].set_index("partition_key")
    assert (trend.loc[list(MONTHS[3:]), "status"] == "pass").all()
    assert (trend.loc[list(MONTHS[:3]), "status"] == "undefined").all()  # placebos are not gated
    assert project.alerts() == []

    last = steps.iloc[-1]
    assert last["ci_lower"] <= EFFECT <= last["ci_upper"], last.to_dict()
    reports = project.data / "reports" / STUDY
    memo = (reports / "memo.md").read_text()
    assert "**Status: pass.**" in memo and "Difference in differences" in memo
    assert "joint pre-trend test of the placebos found no departure" in memo
    assert (reports / "event_study.png").exists() and (reports / "causal_dag.png").exists()
