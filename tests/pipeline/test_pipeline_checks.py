"""The pipeline's checks and metadata as a user meets them: real Dagster instance, real DuckDB file.

The shipped outreach study runs exactly as configured (``process_var: mle``); the posterior's WARN
checks fail when they should (a surprising batch, a drift the filter cannot follow) and alert; the
particle backend runs end to end with its ESS check; a batch the weighting cannot balance is kept
out of the posterior; and the numbers in the materialization metadata are the warehouse's numbers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets.common import code_version
from assimilate import causal_kalman
from assimilate.diagnostics import innovation_diagnostics
from assimilate.filters import particle_filter
from assimilate.simulate import simulate_outreach_stream
from resources.study import StudyConfig
from tests.pipeline_support import Project, ab_batch, example_study, webhook_receiver, write_batch

MONTHS = ["2025-01", "2025-02", "2025-03", "2025-04", "2025-05"]
DRIFT_MONTHS = [f"2025-{month:02d}" for month in range(1, 8)]


def new_project(tmp_path: Path, study: StudyConfig) -> Project:
    return Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())


def primary_estimates(project: Project, study: str) -> pd.DataFrame:
    effects = project.warehouse.read_table(study, "batch_effects")
    return effects[effects["is_primary"]].sort_values("partition_key").reset_index(drop=True)


def check_evaluations(project: Project, run_id: str) -> dict[str, Any]:
    """The asset check evaluations a run recorded in the Dagster event log, by check name."""
    records = project.instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [record.get_dagster_event().event_specific_data for record in records]
    return {evaluation.check_name: evaluation for evaluation in evaluations}


def latest_materialization(
    project: Project, study: str, asset: str, partition: str | None = None
) -> dg.AssetMaterialization:
    records = project.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([study, asset]), asset_partitions=[partition] if partition else None
        ),
        limit=1,
    ).records
    assert records, f"{study}/{asset} {partition or ''} was never materialized"
    materialization = records[0].asset_materialization
    assert materialization is not None
    return materialization


def values(materialization: dg.AssetMaterialization) -> dict[str, Any]:
    return {label: entry.value for label, entry in materialization.metadata.items()}


def test_the_shipped_outreach_study_runs_as_configured_and_equals_the_library_mle_filter(
    tmp_path: Path,
) -> None:
    study = example_study("retention_outreach")  # exactly as shipped: nothing overridden
    assert (study.process_var, study.design.kind, study.primary_estimator) == ("mle", "observational", "aipw")
    project = new_project(tmp_path, study)
    # A drifting programme, so that the maximum-likelihood process variance is not zero.
    stream = simulate_outreach_stream(
        rng=np.random.default_rng(3), n_batches=4, n_per_batch=2000, drift_per_batch=0.04
    )
    for label, batch in zip(stream.labels, stream.batches, strict=True):
        write_batch(project.landing(study.name), label, batch, fmt="parquet")
    runs = project.tick()
    assert [r.success for r in runs] == [True] * 4
    steps = project.steps(study.name)
    assert steps["batch"].tolist() == ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"]
    assert not steps["excluded"].any(), steps["exclusion_reason"].tolist()
    primary = primary_estimates(project, study.name)
    assert (primary["method"] == "aipw").all()
    # No prior configured (or a diffuse one): the pipeline starts the filter exactly diffuse.
    prior = (
        {"diffuse": True}
        if study.prior is None or study.prior.diffuse
        else {"prior_mean": study.prior.mean, "prior_var": study.prior.variance}
    )
    expected = causal_kalman(
        primary["estimate"].to_numpy(), primary["std_error"].to_numpy(), process_var="mle", **prior
    )
    assert expected.process_var > 1e-4  # a pipeline that ignored "mle" (q = 0) would differ
    np.testing.assert_allclose(steps["posterior_mean"], expected.posterior_mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(steps["posterior_var"], expected.posterior_var, rtol=0, atol=1e-12)
    posterior = values(latest_materialization(project, study.name, "effect_posterior"))
    # Posterior numbers are text (not plotted over run time), written exactly (repr).
    assert float(posterior["process_var"]) == pytest.approx(expected.process_var, rel=1e-9)
    assert posterior["steps_recomputed"] == 4  # with mle the whole stream is re-filtered


def test_a_surprising_batch_fails_the_innovation_check_as_a_warning_and_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project(tmp_path, example_study("ab_checkout"))
    folder = project.landing("ab_checkout")
    innovation = "check_effect_posterior_innovation"
    with webhook_receiver() as (url, received):
        monkeypatch.setenv("ASSIMILATE_WEBHOOK_URL", url)
        for seed, month in enumerate(MONTHS[:3]):
            write_batch(folder, month, ab_batch(seed))
        assert all(r.success for r in project.tick())
        assert project.alerts() == [] and received == []
        write_batch(folder, MONTHS[3], ab_batch(3, tau=0.7))  # the effect jumps from 0.5 to 0.7
        (run,) = project.tick()
        assert run.success  # a WARN check never fails the run
        evaluation = check_evaluations(project, run.run_id)[innovation]
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        last = project.steps("ab_checkout").iloc[-1]
        z = last["innovation"] / np.sqrt(last["innovation_var"])
        assert evaluation.metadata["observed_value"].value == pytest.approx(abs(z), rel=1e-9)
        assert abs(z) > 3.0
        assert not last["excluded"]  # a WARN check does not keep the batch out
        # (The jump may also read as a trend: that check alerts on its own subject.)
        (onset,) = [a for a in project.alerts() if a.check_name == innovation]
        assert (onset.kind, onset.partition_key, onset.severity) == ("onset", "2025-04-01", "WARN")
        assert (onset.check_name, onset.scope, onset.asset) == (innovation, "study", "effect_posterior")

        write_batch(folder, MONTHS[4], ab_batch(4))  # back to 0.5: the filter expected about that
        (run,) = project.tick()
        assert check_evaluations(project, run.run_id)[innovation].passed
        # Evaluated in May's run, the study-level check still closes April's onset.
        assert [
            (a["alert"]["kind"], a["alert"]["partition_key"])
            for a in received
            if a["alert"]["check_name"] == innovation
        ] == [("onset", "2025-04-01"), ("recovery", "2025-05-01")]
    recovery = [a for a in project.alerts() if a.check_name == innovation][-1]
    assert (recovery.check_name, recovery.scope, recovery.severity) == (innovation, "study", "INFO")
    assert "passes again" in recovery.message


def test_a_check_is_partitioned_exactly_when_its_asset_is(tmp_path: Path) -> None:
    # Alerting keys a check evaluation without a partition by (study, asset, check) and one with a
    # partition by its batch: an unpartitioned check on a per-batch asset would merge all batches.
    studies = [example_study("ab_checkout"), example_study("retention_outreach")]
    defs = Project(data=tmp_path / "data", studies=studies, instance=dg.DagsterInstance.ephemeral()).defs
    graph = defs.resolve_asset_graph()
    checks = graph.asset_check_keys
    assert len(checks) >= 20

    def partitioned(key: dg.AssetKey | dg.AssetCheckKey) -> bool:
        return graph.get(key).partitions_def is not None

    assert [c for c in checks if partitioned(c) != partitioned(c.asset_key)] == []
    study_level = sorted((c.asset_key.path[0], c.name) for c in checks if not partitioned(c))
    posterior = [
        "check_effect_posterior_" + p
        for p in ("innovation", "one_sided_innovations", "particle_ess", "effect_trend")
    ]
    # A study with effect modifiers also judges its fused segments (segment_posterior is unpartitioned).
    segments = [("retention_outreach", "check_segment_posterior_fused_segment_difference")]
    assert study_level == sorted([*((s.name, name) for s in studies for name in posterior), *segments])


def posterior_alerts(received: list[dict[str, Any]], check: str) -> list[dict[str, Any]]:
    """The alerts naming ``check`` that the webhook received, in the order sent."""
    return [body["alert"] for body in received if check in body["alert"]["check_name"].split(", ")]


def test_a_drift_with_zero_process_variance_fails_the_one_sided_innovations_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = example_study("ab_checkout", process_var=0.0)
    project = new_project(tmp_path, study)
    folder = project.landing("ab_checkout")
    one_sided = "check_effect_posterior_one_sided_innovations"
    with webhook_receiver() as (url, received):
        monkeypatch.setenv("ASSIMILATE_WEBHOOK_URL", url)
        runs = []
        for index, month in enumerate(DRIFT_MONTHS):  # one batch per tick: one run per batch
            write_batch(folder, month, ab_batch(index, tau=0.5 + 0.1 * index))  # the effect keeps rising
            (run,) = project.tick()
            assert run.success
            runs.append(run)
        verdicts = [check_evaluations(project, run.run_id).get(one_sided) for run in runs]
        # Fewer than five innovations: no test, so no evaluation (the instance shows it skipped,
        # never passed); then the drift fails it in every later run.
        assert [v is None for v in verdicts] == [True] * 4 + [False] * (len(DRIFT_MONTHS) - 4)
        assert [v.passed for v in verdicts[4:]] == [False] * (len(DRIFT_MONTHS) - 4)  # type: ignore[union-attr]
        assert verdicts[-1].severity == dg.AssetCheckSeverity.WARN
        primary = primary_estimates(project, "ab_checkout")
        library = causal_kalman(
            primary["estimate"].to_numpy(),
            primary["std_error"].to_numpy(),
            process_var=0.0,
            prior_mean=study.prior.mean,  # type: ignore[union-attr]
            prior_var=study.prior.variance,  # type: ignore[union-attr]
        )
        expected = innovation_diagnostics(library, z_threshold=study.thresholds.innovation_z).one_sided
        assert expected.failed
        observed = verdicts[-1].metadata["observed_value"].value
        assert observed == pytest.approx(expected.value, rel=1e-9, abs=1e-300)
        # The check is about the study, not a batch: one onset, not one per failing run.
        (onset,) = posterior_alerts(received, one_sided)
        assert (onset["kind"], onset["scope"], onset["asset"]) == ("onset", "study", "effect_posterior")
        assert onset["partition_key"] == "2025-05-01" and onset["severity"] == "WARN"  # the run that saw it
        assert "study-level" in onset["message"] and "run of batch 2025-05-01" in onset["message"]

        # The rising effect was a data bug: every batch re-landed with the true effect.
        for index, month in enumerate(DRIFT_MONTHS):
            write_batch(folder, month, ab_batch(100 + index, tau=0.5))
        corrected = project.tick()
        assert [r.success for r in corrected] == [True] * len(DRIFT_MONTHS)
        assert check_evaluations(project, corrected[-1].run_id)[one_sided].passed
        assert [a["kind"] for a in posterior_alerts(received, one_sided)] == ["onset", "recovery"]
    assert {body["alert"]["scope"] for body in received} == {"study"}  # no batch check failed
    recovery = posterior_alerts(received, one_sided)[1]
    assert (recovery["scope"], recovery["partition_key"]) == (
        "study",
        corrected[-1].dagster_run.tags["dagster/partition"],
    )
    logged = [a for a in project.alerts() if a.check_name == one_sided]
    assert [(a.kind, a.scope) for a in logged] == [("onset", "study"), ("recovery", "study")]


def test_the_particle_backend_runs_end_to_end_and_its_ess_check_is_evaluated(tmp_path: Path) -> None:
    shipped = example_study("ab_checkout")
    study = StudyConfig.model_validate(
        {**shipped.model_dump(), "backend": {"kind": "particle", "n_particles": 500}}
    )
    assert study.backend.kind == "particle"
    project = new_project(tmp_path, study)
    for seed, month in enumerate(MONTHS[:3]):
        write_batch(project.landing("ab_checkout"), month, ab_batch(seed))
    runs = project.tick()
    assert [r.success for r in runs] == [True] * 3
    primary = primary_estimates(project, "ab_checkout")
    expected = particle_filter(
        primary["estimate"].to_numpy(),
        primary["std_error"].to_numpy(),
        process_var=float(study.process_var),
        prior_mean=study.prior.mean,  # type: ignore[union-attr]
        prior_var=study.prior.variance,  # type: ignore[union-attr]
        n_particles=500,
        rng=np.random.default_rng(study.seed),
    )
    steps = project.steps("ab_checkout")
    np.testing.assert_allclose(steps["posterior_mean"], expected.posterior_mean, rtol=0, atol=1e-12)
    assert expected.ess is not None
    ess = check_evaluations(project, runs[-1].run_id)["check_effect_posterior_particle_ess"]
    assert ess.metadata["status"].value in ("pass", "fail")  # evaluated, not "does not apply"
    assert ess.metadata["observed_value"].value == pytest.approx(expected.ess[-1] / 500, rel=1e-12)
    assert ess.passed == (expected.ess[-1] / 500 >= study.thresholds.min_ess_fraction)
    assert ess.severity == dg.AssetCheckSeverity.WARN
    assert (project.data / "reports" / "ab_checkout" / "fan_chart.png").stat().st_size > 5_000


def test_a_batch_the_weighting_cannot_balance_is_excluded_naming_the_balance_check(tmp_path: Path) -> None:
    project = new_project(tmp_path, example_study("ab_checkout"))
    folder = project.landing("ab_checkout")
    # 50 treated units far out at x = 30 and no control near them: inverse-propensity weights
    # (clipped at 0.99) cannot bring the arms' means of x together, but only 5% of the units lie
    # outside [0.05, 0.95], so overlap passes and balance is the check that keeps the batch out.
    unbalanced = ab_batch(1, n=1000)
    far = unbalanced.index[unbalanced["treatment"] == 1][:50]
    unbalanced.loc[far, "x"] = 30.0 + np.linspace(-0.5, 0.5, len(far))
    write_batch(folder, MONTHS[0], ab_batch(0))
    write_batch(folder, MONTHS[1], unbalanced)
    write_batch(folder, MONTHS[2], ab_batch(2))
    runs = project.tick()
    assert all(r.success for r in runs)
    balance = check_evaluations(project, runs[1].run_id)["check_batch_effect_balance"]
    assert not balance.passed and balance.severity == dg.AssetCheckSeverity.ERROR
    assert balance.metadata["observed_value"].value > 0.1
    assert check_evaluations(project, runs[1].run_id)["check_propensity_model_overlap"].passed
    steps = project.steps("ab_checkout").set_index("batch")
    assert steps["excluded"].tolist() == [False, True, False]
    reason = steps.at["2025-02-01", "exclusion_reason"]
    assert "check_batch_effect_balance" in reason and "overlap" not in reason
    assert steps.at["2025-02-01", "posterior_mean"] == steps.at["2025-01-01", "posterior_mean"]
    (onset,) = project.alerts()
    # Randomized: x also differs between the arms beyond chance, so the post-treatment screen names it too.
    assert onset.partition_key == "2025-02-01" and "check_batch_effect_balance" in onset.check_name


def test_materialization_metadata_equals_the_warehouse(tmp_path: Path) -> None:
    study = example_study("ab_checkout")
    project = new_project(tmp_path, study)
    paths = [
        write_batch(project.landing("ab_checkout"), month, ab_batch(i)) for i, month in enumerate(MONTHS[:2])
    ]
    assert all(r.success for r in project.tick())
    files = project.warehouse.read_table("ab_checkout", "raw_files").set_index("partition_key")
    effects = primary_estimates(project, "ab_checkout").set_index("partition_key")
    verdicts = project.warehouse.read_table("ab_checkout", "verdicts_batch_effect")
    balance = verdicts[verdicts["check_name"] == "check_batch_effect_balance"].set_index("partition_key")
    for path, batch in zip(paths, ["2025-01-01", "2025-02-01"], strict=True):
        raw = latest_materialization(project, "ab_checkout", "raw_batch", batch)
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        assert values(raw)["sha256"] == files.at[batch, "sha256"] == sha256
        assert values(raw)["rows"] == files.at[batch, "n_rows"] == len(pd.read_csv(path))
        assert raw.tags is not None and raw.tags["dagster/data_version"] == sha256

        effect = latest_materialization(project, "ab_checkout", "batch_effect", batch)
        shown = values(effect)
        row = effects.loc[batch]
        assert shown["primary_estimator"] == study.primary_estimator == row["method"]
        assert shown["estimate"] == row["estimate"] and shown["std_error"] == row["std_error"]
        assert (shown["ci_lower"], shown["ci_upper"]) == (row["ci_lower"], row["ci_upper"])
        assert shown["max_abs_smd_after"] == balance.at[batch, "value"]
        assert shown["seed"] == study.seed
        assert effect.tags is not None and effect.tags["dagster/code_version"] == code_version(study)

    posterior = values(latest_materialization(project, "ab_checkout", "effect_posterior"))
    last = project.steps("ab_checkout").iloc[-1]
    assert float(posterior["posterior_mean"]) == last["posterior_mean"]
    assert float(posterior["posterior_sd"]) == last["posterior_sd"]
    assert (float(posterior["ci_lower"]), float(posterior["ci_upper"])) == (
        last["ci_lower"],
        last["ci_upper"],
    )
    assert float(posterior["alpha"]) == pytest.approx(0.05)
    assert posterior["batches"] == 2
    assert posterior["code_version"] == code_version(study)

    # Re-running January alone: the posterior asset reports the posterior after *that* batch too.
    job = project.defs.resolve_job_def("ab_checkout_batch_job")
    assert job.execute_in_process(partition_key="2025-01-01", instance=project.instance).success
    rerun = values(latest_materialization(project, "ab_checkout", "effect_posterior"))
    steps = project.steps("ab_checkout").set_index("batch")
    assert rerun["batch"] == "2025-01-01" and rerun["batch_excluded"] is False
    assert float(rerun["posterior_mean_after_batch"]) == steps.at["2025-01-01", "posterior_mean"]
    assert float(rerun["posterior_sd_after_batch"]) == pytest.approx(
        np.sqrt(steps.at["2025-01-01", "posterior_var"])
    )
    assert float(rerun["posterior_mean"]) == steps.at["2025-02-01", "posterior_mean"]
    assert rerun["input_sha256"] == hashlib.sha256(paths[0].read_bytes()).hexdigest()


def test_an_outcome_model_fallback_is_shown_in_the_materialization(tmp_path: Path) -> None:
    project = new_project(tmp_path, example_study("ab_checkout"))
    write_batch(project.landing("ab_checkout"), MONTHS[0], ab_batch(0))
    singular = ab_batch(1).assign(x=lambda f: np.where(f["treatment"] == 1, 0.25, f["x"]))
    write_batch(project.landing("ab_checkout"), MONTHS[1], singular)  # x constant among the treated
    assert all(r.success for r in project.tick())
    regular = values(latest_materialization(project, "ab_checkout", "outcome_model", "2025-01-01"))
    assert regular["fallbacks"] == 0 and regular["fallback_reasons"] == []
    shown = values(latest_materialization(project, "ab_checkout", "outcome_model", "2025-02-01"))
    assert shown["fallbacks"] == 1
    (fallback,) = shown["fallback_reasons"]
    assert fallback["arm"] == "treated" and "x" in fallback["reason"]


def test_a_run_of_some_estimation_assets_stores_and_reports_only_those(tmp_path: Path) -> None:
    """propensity_model, outcome_model and batch_effect are one step: a subset run writes only its part."""
    project = new_project(tmp_path, example_study("ab_checkout"))
    write_batch(project.landing("ab_checkout"), MONTHS[0], ab_batch(0))
    assert all(r.success for r in project.tick())
    batch, store = "2025-01-01", project.warehouse
    scores = store.read_table("ab_checkout", "propensity_scores", partition_key=batch)
    effects = store.read_table("ab_checkout", "batch_effects", partition_key=batch)
    store.replace_partition_tables("ab_checkout", batch, {"propensity_scores": pd.DataFrame()})
    store.replace_partition_tables("ab_checkout", batch, {"batch_effects": pd.DataFrame()})

    job = project.defs.resolve_implicit_global_asset_job_def()
    selection = [dg.AssetKey(["ab_checkout", "batch_effect"])]
    result = job.execute_in_process(partition_key=batch, instance=project.instance, asset_selection=selection)
    assert result.success
    assert {event.asset_key for event in result.get_asset_materialization_events()} == set(selection)
    assert set(check_evaluations(project, result.run_id)) == {
        "check_batch_effect_balance",
        "check_batch_effect_estimation",
        "check_batch_effect_returning_units",
    }
    assert store.read_table("ab_checkout", "propensity_scores", partition_key=batch).empty  # not selected
    again = store.read_table("ab_checkout", "batch_effects", partition_key=batch)
    pd.testing.assert_frame_equal(again, effects)  # the same fit of the same rows
    assert len(scores) == 300
