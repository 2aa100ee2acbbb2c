"""The N-of-1 example study through the pipeline: the study file's washout, gates that do not apply, posterior, memo."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.common import read_verdicts
from assimilate import causal_kalman
from assimilate.design.plan import ONE_SUBJECT
from assimilate.estimators import n_of_1
from scripts.example_batches import sleep_trial_months
from tests.pipeline_support import Project, example_study, write_batch

STUDY = "n_of_1_sleep"


def test_the_fusion_correction_widens_the_kenward_roger_error_by_its_df() -> None:
    _, month = sleep_trial_months(np.random.default_rng(20250103))[0]
    options = {"treatment": "magnesium", "outcome": "sleep_score", "time": "date", "washout": 2}
    plain = n_of_1(month, **options)
    fused = n_of_1(month, **options, fusion_correction=True)
    df = plain.diagnostics["kenward_roger_df"]
    assert fused.estimate == plain.estimate
    assert fused.std_error == pytest.approx(plain.std_error * math.sqrt(1 + 4 / df), rel=1e-12)
    assert fused.diagnostics["kenward_roger_std_error"] == plain.std_error
    with pytest.raises(ValueError, match="fusion_correction needs se_method='ar1_kenward_roger'"):
        n_of_1(month, **options, se_method="hac", fusion_correction=True)


def test_the_n_of_1_study_runs_end_to_end_with_its_washout_posterior_and_memo(tmp_path: Path) -> None:
    study = example_study(STUDY)
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    months = sleep_trial_months(np.random.default_rng(20250103))[:4]
    for label, frame in months[:3]:
        write_batch(project.landing(STUDY), label, frame)
    # April's file misspells the outcome column: its check names the study key and the closest column.
    write_batch(project.landing(STUDY), "2025-04", months[3][1].rename(columns={"sleep_score": "sleep_scor"}))
    months = months[:3]
    runs = project.tick()
    assert len(runs) == 4 and all(r.success for r in runs)

    effects = project.warehouse.read_table(STUDY, "batch_effects").sort_values("partition_key")
    assert effects["method"].tolist() == ["n_of_1"] * 4 and effects["is_primary"].all()
    # The study file's washout and day column reach the estimator, with the fusion correction.
    for (_, frame), row in zip(months, effects.iloc[:3].itertuples(index=False), strict=True):
        expected = n_of_1(
            frame,
            treatment="magnesium",
            outcome="sleep_score",
            time="date",
            washout=2,
            fusion_correction=True,
        )
        assert row.estimate == pytest.approx(expected.estimate, abs=1e-10)
        assert row.std_error == pytest.approx(expected.std_error, abs=1e-10)
        assert row.n_treated + row.n_control == len(frame) - expected.diagnostics["n_washout_dropped"]

    # Unit-level gates do not apply to one subject: not assessed, never failed; the others pass.
    verdicts = read_verdicts(project.warehouse, study).set_index(["partition_key", "check_name"])
    for batch in ("2025-01-01", "2025-02-01", "2025-03-01"):
        for check in (
            "check_covariate_table_sample_ratio_mismatch",
            "check_propensity_model_overlap",
            "check_batch_effect_balance",
            "check_batch_effect_returning_units",
        ):
            assert verdicts.at[(batch, check), "status"] == "undefined"
            assert ONE_SUBJECT in verdicts.at[(batch, check), "reason"]
        for check in (
            "check_raw_batch_data_quality",
            "check_covariate_table_schema",
            "check_batch_effect_estimation",
        ):
            assert verdicts.at[(batch, check), "status"] == "pass", verdicts.loc[batch]

    # The same posterior as any study: the library's filter on the primary estimates, exactly diffuse.
    steps = project.steps(STUDY)
    assert steps["batch"].tolist() == ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"]
    assert steps["excluded"].tolist() == [False, False, False, True]
    missing = "outcome: column 'sleep_score' is not in the file; closest column: 'sleep_scor'"
    reason = steps["exclusion_reason"].iloc[3]
    # A missing column is a file-level rule: the quality check excludes the batch, once; the rows are
    # not judged (the schema check is not assessed, and says why).
    assert "check_raw_batch_data_quality" in reason and "check_covariate_table_schema" not in reason
    assert reason.count(missing) == 1, reason
    schema = verdicts.loc[("2025-04-01", "check_covariate_table_schema")]
    assert schema["status"] == "undefined" and "['sleep_score']" in schema["reason"]
    admitted = effects[effects["partition_key"] != "2025-04-01"]
    expected = causal_kalman(
        [*admitted["estimate"], np.nan], [*admitted["std_error"], np.nan], process_var=0.0, diffuse=True
    )
    np.testing.assert_allclose(steps["posterior_mean"], expected.posterior_mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(steps["posterior_var"], expected.posterior_var, rtol=0, atol=1e-10)

    memo = (project.data / "reports" / STUDY / "memo.md").read_text()
    assert "n_of_1" in memo and "2025-03-01" in memo


def test_a_day_that_is_not_a_date_is_quarantined_with_the_rule(tmp_path: Path) -> None:
    from checks.covariates import split_valid_rows
    from checks.typed_batch import DAY_DATE

    study = example_study(STUDY)
    frame = sleep_trial_months(np.random.default_rng(1))[0][1].astype(str)
    frame.loc[3, "date"] = "2025-01-32"
    split = split_valid_rows(frame.reset_index(drop=True), study)
    assert split.quarantine[["row_index", "column", "rule"]].values.tolist() == [[3, "date", DAY_DATE]]
    assert len(split.valid) == len(frame) - 1
    assert isinstance(split.valid, pd.DataFrame)
