"""Returning units, the always-valid interval and acknowledged exclusions through the real pipeline.

Real Dagster instance, real warehouse (DuckDB, or PostgreSQL with --warehouse=postgres). A standing
holdout (the same units, the same arms, a persistent unit effect every month) gives correlated
monthly estimates: the stored posterior is the library's ``correlated_kalman`` on the batches'
estimates and the correlation of their units' influence values; fresh units every month keep
today's posterior bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assimilate import causal_kalman
from assimilate.estimators import influence_contributions
from assimilate.filters import correlated_kalman, shared_unit_covariance
from assimilate.incremental import OBSERVATION_COLUMNS, FilterSettings, refilter_from_first_change
from assimilate.sequential import confidence_sequence
from checks.returning_units import MATERIAL_SE_CHANGE
from resources.study import StudyConfig
from tests.backend_support import back_in_module_warehouse, module_warehouse
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

MONTHS = ["2025-01", "2025-02", "2025-03", "2025-04"]
KEYS = [f"{m}-01" for m in MONTHS]
TIGHT = 1e-10
STUDY = "ab_checkout"


def new_project(tmp_path: Path, study: StudyConfig) -> Project:
    return Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())


def standing_holdout(n_months: int, *, n: int = 400, seed: int = 0) -> list[pd.DataFrame]:
    """The same units in the same arm every month; y = 0.5 d + 0.2 x + u_i + e_it, var(u) = var(e) = 1."""
    rng = np.random.default_rng(seed)
    d, x, u = rng.binomial(1, 0.5, n), rng.standard_normal(n), rng.standard_normal(n)
    ids = [f"unit-{i}" for i in range(n)]
    return [
        pd.DataFrame(
            {
                "unit_id": ids,
                "x": x,
                "treatment": d,
                "outcome": 0.5 * d + 0.2 * x + u + rng.standard_normal(n),
            }
        )
        for _ in range(n_months)
    ]


def library_fits(frames: list[pd.DataFrame], study: StudyConfig) -> list[Any]:
    return [
        influence_contributions(
            frame,
            method=study.primary_estimator,
            treatment=study.treatment,
            outcome=study.outcome,
            covariates=list(study.model_columns),
        )
        for frame in frames
    ]


def latest_values(project: Project, asset: str, partition: str | None = None) -> dict[str, Any]:
    records = project.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([STUDY, asset]), asset_partitions=[partition] if partition else None
        ),
        limit=1,
    ).records
    assert records and records[0].asset_materialization is not None
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def returning_check(project: Project, partition: str) -> dg.AssetCheckEvaluation:
    """The latest evaluation of the returning-units check on one partition, from the event log."""
    found = []
    for run in project.instance.get_runs():
        records = project.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        for record in records:
            evaluation = record.get_dagster_event().event_specific_data
            if (
                evaluation.check_name == "check_batch_effect_returning_units"
                and evaluation.partition == partition
            ):
                found.append((record.timestamp, evaluation))
    assert found, f"no returning-units check evaluation for {partition}"
    return max(found, key=lambda pair: pair[0])[1]


@pytest.fixture(scope="module")
def holdout_built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Project, list[pd.DataFrame], str | None]]:
    """Built once for the module; on PostgreSQL in a database of its own (the per-test one is another)."""
    with module_warehouse(request) as url:
        project = new_project(tmp_path_factory.mktemp("holdout"), example_study(STUDY))
        frames = standing_holdout(len(MONTHS))
        for month, frame in zip(MONTHS, frames, strict=True):
            write_batch(project.landing(STUDY), month, frame)
        assert all(r.success for r in project.tick())
        yield project, frames, url


@pytest.fixture
def holdout(
    holdout_built: tuple[Project, list[pd.DataFrame], str | None], monkeypatch: pytest.MonkeyPatch
) -> tuple[Project, list[pd.DataFrame]]:
    project, frames, url = holdout_built
    back_in_module_warehouse(monkeypatch, url)
    return project, frames


def test_returning_units_are_fused_with_their_correlation_as_the_library_does(
    holdout: tuple[Project, list[pd.DataFrame]],
) -> None:
    project, frames = holdout
    study = project.studies[0]
    fits = library_fits(frames, study)
    stored = project.warehouse.read_table(STUDY, "batch_influence")
    for key, frame, fit in zip(KEYS, frames, fits, strict=True):
        rows = stored[stored["partition_key"] == key]
        assert rows["unit_id"].tolist() == frame["unit_id"].tolist()
        np.testing.assert_allclose(rows["influence"], fit.values, rtol=0, atol=TIGHT)
    shared = shared_unit_covariance([(f["unit_id"], fit.values) for f, fit in zip(frames, fits, strict=True)])
    assert shared.returning_share.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert shared.correlation[1, 0] > 0.3  # the persistent unit effect
    estimates = [fit.estimate.estimate for fit in fits]
    errors = [fit.estimate.std_error for fit in fits]
    expected = correlated_kalman(
        estimates,
        errors,
        correlation=shared.correlation,
        process_var=float(study.process_var),
        prior_mean=study.prior.mean,
        prior_var=study.prior.variance,
    )
    steps = project.steps(STUDY)
    np.testing.assert_allclose(steps["posterior_mean"], expected.posterior_mean, rtol=0, atol=TIGHT)
    np.testing.assert_allclose(steps["posterior_var"], expected.posterior_var, rtol=0, atol=TIGHT)
    naive = causal_kalman(
        estimates,
        errors,
        process_var=float(study.process_var),
        prior_mean=study.prior.mean,
        prior_var=study.prior.variance,
    )
    assert steps["posterior_var"].iloc[-1] > 1.2 * naive.posterior_var[-1]  # independence would overstate

    # The report smooths the stored fusion: its trajectory is the same correlated posterior.
    trajectory = pd.read_csv(project.data / "reports" / STUDY / "trajectory.csv")
    np.testing.assert_allclose(trajectory["posterior_mean"], expected.posterior_mean, rtol=0, atol=TIGHT)
    np.testing.assert_allclose(trajectory["smoothed_mean"], expected.smoothed_mean, rtol=0, atol=TIGHT)
    posterior = latest_values(project, "effect_posterior")
    assert "share units with earlier ones" in posterior["error_correlation"]
    assert float(posterior["returning_share_latest"]) == 1.0


def test_the_returning_units_check_warns_with_the_share_and_the_correlation(
    holdout: tuple[Project, list[pd.DataFrame]],
) -> None:
    project, frames = holdout
    fits = library_fits(frames, project.studies[0])
    first = returning_check(project, KEYS[0])
    assert first.passed and first.metadata["returning_share"].value == 0.0
    second = returning_check(project, KEYS[1])
    assert not second.passed and second.severity == dg.AssetCheckSeverity.WARN
    shown = {k: v.value for k, v in second.metadata.items()}
    pair = shared_unit_covariance(
        [(f["unit_id"], fit.values) for f, fit in zip(frames[:2], fits[:2], strict=True)]
    )
    assert shown["returning_share"] == 1.0 and shown["returning_units"] == 400
    assert shown["correlation_with_previous"] == pytest.approx(pair.correlation[1, 0], abs=TIGHT)
    assert shown["observed_value"] > MATERIAL_SE_CHANGE and shown["threshold"] == MATERIAL_SE_CHANGE
    assert "the posterior and the always-valid interval use the estimated correlation" in shown["reason"]
    verdicts = project.warehouse.read_table(STUDY, "verdicts_batch_effect")
    warned = verdicts[verdicts["check_name"] == "check_batch_effect_returning_units"]
    assert warned["severity"].unique().tolist() == ["WARN"]
    assert warned.set_index("partition_key")["status"].tolist() == ["pass", "fail", "fail", "fail"]
    assert not project.steps(STUDY)["excluded"].any()  # a warning never keeps a batch out


def test_the_always_valid_interval_is_in_the_metadata_the_steps_and_the_memo(
    holdout: tuple[Project, list[pd.DataFrame]],
) -> None:
    project, frames = holdout
    study = project.studies[0]
    fits = library_fits(frames, study)
    shared = shared_unit_covariance([(f["unit_id"], fit.values) for f, fit in zip(frames, fits, strict=True)])
    errors = np.array([fit.estimate.std_error for fit in fits])
    sequence = confidence_sequence(
        [fit.estimate.estimate for fit in fits],
        errors,
        covariance=shared.correlation * np.outer(errors, errors),
        planned_looks=study.looks_planned,
    )
    steps = project.steps(STUDY)
    np.testing.assert_allclose(steps["always_valid_lower"], sequence.lower, rtol=0, atol=TIGHT)
    np.testing.assert_allclose(steps["always_valid_upper"], sequence.upper, rtol=0, atol=TIGHT)
    assert steps["always_valid_correlated"].all()
    posterior = latest_values(project, "effect_posterior")
    assert float(posterior["always_valid_lower"]) == steps["always_valid_lower"].iloc[-1]
    assert float(posterior["always_valid_upper"]) == steps["always_valid_upper"].iloc[-1]
    assert posterior["always_valid_promise"] == sequence.promise and "GLS-weighted" in sequence.promise
    report = latest_values(project, "posterior_report")
    memo = report["memo"]
    assert sequence.promise in memo
    lower, upper = sequence.conf_int()
    assert report["always_valid_interval"] == f"[{lower:.4g}, {upper:.4g}]"
    assert report["memo_decision"] == "act"  # a clear effect in the desired direction
    audit = project.warehouse.read_table(STUDY, "audit_trail").sort_values("recorded_at").iloc[-1]
    assert audit["always_valid_lower"] == pytest.approx(lower, abs=TIGHT)


def test_disjoint_batches_keep_todays_posterior_bit_for_bit(tmp_path: Path) -> None:
    project = new_project(tmp_path, example_study(STUDY))
    for seed, month in enumerate(MONTHS[:3]):
        write_batch(project.landing(STUDY), month, ab_batch(seed))
        assert all(r.success for r in project.tick())  # one batch a tick: the incremental path
    steps = project.steps(STUDY)
    posterior = latest_values(project, "effect_posterior")
    assert posterior["steps_recomputed"] == 1
    assert posterior["error_correlation"].startswith("none")
    today = refilter_from_first_change(
        steps[OBSERVATION_COLUMNS], None, FilterSettings.from_plan(project.studies[0])
    )
    for column in (
        "posterior_mean",
        "posterior_var",
        "ci_lower",
        "ci_upper",
        "state_json",
        "settings_fingerprint",
    ):
        assert steps[column].tolist() == today.steps[column].tolist(), column
    assert project.warehouse.read_table(STUDY, "posterior_error_correlation").empty
    assert not steps["always_valid_correlated"].any()
    check = returning_check(project, KEYS[2])
    assert check.passed and check.metadata["returning_share"].value == 0.0


def srm_batch(seed: int) -> pd.DataFrame:
    """A batch whose split is 80/20 where 50/50 was designed: the sample-ratio check (ERROR) fails."""
    frame = ab_batch(seed, n=400)
    treated = np.random.default_rng(seed).binomial(1, 0.8, size=len(frame))
    return frame.assign(treatment=treated, outcome=frame["outcome"] + 0.5 * (treated - frame["treatment"]))


def test_an_acknowledged_exclusion_changes_the_memo_status_and_is_in_the_audit_trail(tmp_path: Path) -> None:
    project = new_project(tmp_path, example_study(STUDY))
    folder = project.landing(STUDY)
    for seed, month in enumerate(MONTHS[:2]):
        write_batch(folder, month, ab_batch(seed))
    write_batch(folder, MONTHS[2], srm_batch(7))
    assert all(r.success for r in project.tick())
    steps = project.steps(STUDY).set_index("batch")
    assert bool(steps.at[KEYS[2], "excluded"]) and "sample_ratio" in steps.at[KEYS[2], "exclusion_reason"]
    assert latest_values(project, "posterior_report")["memo_status"] == "provisional"

    reason = "logging outage on the new flow's servers; fixed on 2025-04-02"
    project.studies = [example_study(STUDY, acknowledged_exclusions={date(2025, 3, 1): reason})]
    job = project.defs.resolve_job_def(f"{STUDY}_batch_job")
    assert job.execute_in_process(partition_key=KEYS[2], instance=project.instance).success
    report = latest_values(project, "posterior_report")
    assert report["memo_status"] == "pass"
    assert reason in report["memo"] and KEYS[2] in report["memo"]
    assert bool(project.steps(STUDY).set_index("batch").at[KEYS[2], "excluded"])  # still kept out

    audit = project.warehouse.read_table(STUDY, "audit_trail").sort_values("recorded_at")
    configs = [json.loads(text)["acknowledged_exclusions"] for text in audit["config_json"]]
    assert configs[-1] == {KEYS[2]: reason}
    assert configs[0] == {}
    assert json.loads(audit["excluded_json"].iloc[-1]) == {KEYS[2]: steps.at[KEYS[2], "exclusion_reason"]}


def test_steps_fused_with_a_correlation_are_refiltered_from_the_start_once_batches_are_disjoint() -> None:
    observed = pd.DataFrame(
        {
            "batch": KEYS,
            "estimate": [0.50, 0.55, 0.48, 0.52],
            "std_error": [0.1, 0.1, 0.1, 0.1],
            "excluded": [False] * 4,
            "exclusion_reason": [""] * 4,
        }
    )
    settings = FilterSettings.from_plan(example_study(STUDY))
    correlation = np.full((4, 4), 0.4) + 0.6 * np.eye(4)
    fused = refilter_from_first_change(observed, None, settings, correlation=correlation)
    assert fused.steps["settings_fingerprint"].str.startswith("correlated:").all()
    # A withdrawn shared batch leaves the rest disjoint: today's path, from the start, never a stale resume.
    disjoint = refilter_from_first_change(observed, fused.steps, settings, correlation=np.eye(4))
    fresh = refilter_from_first_change(observed, None, settings)
    assert disjoint.n_recomputed == 4
    assert disjoint.steps.equals(fresh.steps)
