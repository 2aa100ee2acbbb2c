"""The shipped job-training study (ATT, observational) on its example generator: the naive difference is
confounded, AIPW's ATT is stored and fused around the true ATT, the refuters and the calibration audit
run and pass on data without hidden confounding, and the memo states the ATT and its sensitivity."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from orchestration.runner import run_landed_batches
from scripts.example_batches import EXAMPLE_BATCHES
from scripts.example_job_training import MONTHS, SEED, job_training_months, land_job_training, true_att
from tests.pipeline_support import Project, example_study, write_batch

REFUTERS = ("placebo_treatment", "negative_control_outcome", "random_common_cause", "data_subsets")


def test_the_generator_is_the_registered_example_and_its_naive_difference_is_confounded(
    tmp_path: Path,
) -> None:
    assert EXAMPLE_BATCHES["job_training_att"] is land_job_training
    paths = land_job_training(tmp_path)
    assert [p.stem for p in paths] == list(MONTHS)
    study = example_study("job_training_att")
    assert study.estimand == "ATT" and study.design.kind == "observational"
    assert study.causal_graph is not None and study.causal_graph.roles["degree"] == "effect_modifier"
    assert study.refuters is not None and set(study.refuters.configured) == set(REFUTERS)
    assert study.calibration_audit is not None and not study.calibration_audit.refuse
    _, first = job_training_months(np.random.default_rng(SEED))[0]
    naive = (
        first.loc[first["enrolled"] == 1, "earnings"].mean()
        - first.loc[first["enrolled"] == 0, "earnings"].mean()
    )
    assert naive < 0 < 200 < true_att(first)  # the enrollees would have earned less anyway


def test_the_job_training_study_runs_with_its_refuters_and_calibration_audit(tmp_path: Path) -> None:
    study = example_study("job_training_att")
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    months = job_training_months(np.random.default_rng(SEED))[:6]  # the audit is judged from 6 batches
    for month, frame in months:
        write_batch(project.landing(study.name), month, frame)
    results = run_landed_batches(
        project.defs, project.instance, [study], cursors=project.cursors, backfill=True
    )
    assert results and all(r.success for r in results)

    verdicts = project.warehouse.read_table(study.name, "verdicts_batch_effect")
    found = verdicts.assign(check=verdicts["check_name"].str.removeprefix("check_batch_effect_"))
    refuted = found[found["check"].isin(REFUTERS)]
    assert len(refuted) == 6 * len(REFUTERS) and (refuted["severity"] == "WARN").all()
    # No hidden confounder and a negative control the programme cannot move: each refuter fails only
    # at its 5% level, about 1.2 of 24 (4 or more: 3%); a failure warns and the batch stays in.
    failures = refuted[refuted["status"] == "fail"]
    assert len(failures) <= 3, failures[["partition_key", "check", "reason"]]
    assert (refuted["status"] != "undefined").all()  # every refuter applied to every batch

    effects = project.warehouse.read_table(study.name, "batch_effects")
    primary = effects[effects["is_primary"].astype(bool)]
    assert (primary["method"] == "aipw").all() and len(primary) == 6
    steps = project.steps(study.name)
    assert not steps["excluded"].any(), steps["exclusion_reason"].tolist()
    last = steps.iloc[-1]
    truth = float(np.mean([true_att(frame) for _, frame in months]))
    assert abs(last["posterior_mean"] - truth) < 3 * np.sqrt(last["posterior_var"])

    audits = [
        e
        for r in results
        for e in r.get_asset_check_evaluations()
        if e.check_name == "check_effect_posterior_calibration_audit"
    ]
    assert audits and audits[-1].passed
    assert audits[-1].metadata["placebo_intervals"].value == 60

    memo = (project.data / "reports" / study.name / "memo.md").read_text()
    assert "ATT (average effect on the treated)" in memo
    assert "Fused over the 6 admitted batches" in memo
    assert "intervals calibrated (placebo audit)" in memo
    assert pytest.approx(truth, rel=0.5) == float(last["posterior_mean"])
