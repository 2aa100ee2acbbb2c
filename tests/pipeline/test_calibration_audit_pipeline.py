"""The calibration audit through the real pipeline: a team's estimator whose standard error is halved
fails the study-level audit on the posterior (its intervals cover about 68%, not 95%); with
``refuse: true`` its batches are kept out of the posterior and the memo says so; without it they are
fused and the check warns; the same estimator with its true standard error passes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assimilate.diagnostics.plan_audit import audit_plan
from orchestration.runner import run_landed_batches
from resources.study import StudyConfig, load_study
from tests.pipeline_support import Project, write_batch

ROOT = Path(__file__).resolve().parents[2]
TEAM = """
import dataclasses
from assimilate.estimators import difference_in_means

def halved(data, *, treatment, outcome, covariates, estimand, rng):
    fit = difference_in_means(data, treatment=treatment, outcome=outcome)
    return dataclasses.replace(fit, std_error=fit.std_error / 2)  # a plug-in SE that is too small

def honest(data, *, treatment, outcome, covariates, estimand, rng):
    return difference_in_means(data, treatment=treatment, outcome=outcome)
"""
LABELS = ("2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06")
CHECK = "check_effect_posterior_calibration_audit"


def study(tmp_path: Path, name: str, function: str, *, refuse: bool) -> StudyConfig:
    text = (ROOT / "studies" / "ab_checkout.yaml").read_text()
    for old, new in [
        ("name: ab_checkout", f"name: {name}"),
        ("landing_folder: ab_checkout", f"landing_folder: {name}"),
        (
            "primary_estimator: regression_adjustment\nestimators: [difference_in_means, regression_adjustment, ipw, aipw]",
            f'custom_estimators: {{mine: "team_audit_pipeline:{function}"}}\nprimary_estimator: mine\n'
            f"estimators: [mine]\ncalibration_audit: {{placebos: 20, min_batches: 3, refuse: {str(refuse).lower()}}}",
        ),
    ]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_study(path)


def batch(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, d = rng.standard_normal(n), rng.binomial(1, 0.5, n)
    y = 0.5 * d + 0.5 * x + rng.normal(0.0, 1.0, n)
    return pd.DataFrame({"unit_id": [f"s{seed}-{i}" for i in range(n)], "x": x, "treatment": d, "outcome": y})


def evaluation(results: list[dg.ExecuteInProcessResult], study: str) -> dg.AssetCheckEvaluation:
    found = [
        e
        for r in results
        for e in r.get_asset_check_evaluations()
        if e.check_name == CHECK and e.asset_key.path[0] == study
    ]
    assert found, f"{study}: the audit was never assessed"
    return found[-1]  # the last posterior update: every batch landed


def test_a_halved_standard_error_fails_the_audit_and_refuse_keeps_its_batches_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "team_audit_pipeline.py").write_text(TEAM)
    monkeypatch.syspath_prepend(str(tmp_path))
    studies = [
        study(tmp_path, "halved_refused", "halved", refuse=True),
        study(tmp_path, "halved_warned", "halved", refuse=False),
        study(tmp_path, "honest_refused", "honest", refuse=True),
    ]
    project = Project(data=tmp_path / "data", studies=studies, instance=dg.DagsterInstance.ephemeral())
    for item in studies:
        for seed, label in enumerate(LABELS, start=1):
            write_batch(project.landing(item.name), label, batch(seed))
    # One run per study over its six batches (as the demo lands a history): the posterior updates once.
    results = run_landed_batches(
        project.defs, project.instance, studies, cursors=project.cursors, backfill=True
    )
    assert results and all(r.success for r in results)

    # Halved SE: the placebo intervals miss far more often than 5%; the check's numbers say so.
    refused = evaluation(results, "halved_refused")
    assert not refused.passed and refused.severity == dg.AssetCheckSeverity.ERROR
    numbers = {k: v.value for k, v in refused.metadata.items()}
    assert numbers["placebo_intervals"] == 120 and numbers["batches_audited"] == 6
    assert numbers["misses"] >= 20 and numbers["miss_rate"] == pytest.approx(numbers["misses"] / 120)
    assert numbers["z"] > 3 and numbers["p_value"] < 0.01 and numbers["refused"] is True
    # The library alone on the same stored rows reaches the same counts (the check adds nothing).
    stored = project.warehouse.read_table("halved_refused", "covariates")
    stored["partition_key"] = stored["partition_key"].astype(str)
    alone = audit_plan(
        dict(tuple(stored.groupby("partition_key"))), studies[0], custom=studies[0].custom_functions
    )
    assert alone.audit is not None and alone.audit.n_intervals == 120
    assert round((1 - alone.audit.coverage) * 120) == numbers["misses"]

    steps = project.steps("halved_refused")
    assert len(steps) == 6 and steps["excluded"].all()
    assert steps["exclusion_reason"].str.startswith("calibration audit of mine failed").all()
    memo = (project.data / "reports" / "halved_refused" / "memo.md").read_text()
    row = next(line for line in memo.splitlines() if "intervals calibrated (placebo audit)" in line)
    assert "fail" in row and "refuses the estimator" in row and "of 120 times" in row

    # refuse: false: the same failure warns, and the batches are fused.
    warned = evaluation(results, "halved_warned")
    assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    assert not project.steps("halved_warned")["excluded"].any()
    warned_memo = (project.data / "reports" / "halved_warned" / "memo.md").read_text()
    assert "still updated the posterior (refuse: false)" in warned_memo

    # The true SE: the audit passes and the batches are fused.
    honest = evaluation(results, "honest_refused")
    assert honest.passed and {k: v.value for k, v in honest.metadata.items()}["miss_rate"] < 0.15
    assert not project.steps("honest_refused")["excluded"].any()
    table = project.warehouse.read_table("honest_refused", "calibration_audit")
    assert table["status"].tolist() == ["pass"] and not table["refused"].any()
