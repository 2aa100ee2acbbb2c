"""What Dagster shows is what the pipeline found (issue 11, "the UI tells the truth").

A check that was not assessed is skipped in the instance, never passed; a run whose batch is
excluded carries a tag naming the failed gate; the check descriptions are the catalogue's with the
study's numbers; a batch that failed keeps its diagnostics; the unpartitioned posterior gives
Dagster no numbers to plot over materialization time; the instance hides the community modal.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from dagster._core.loader import LoadingContextForTest
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionResolvedStatus

from assimilate.diagnostics.catalogue import ERROR_CONSEQUENCE, WARN_CONSEQUENCE, check_spec
from checks.results import EXCLUDED_TAG
from orchestration.instance import prepare_dagster_home
from resources.study import StudyConfig
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

STUDY = "ab_checkout"


def observational_ab() -> StudyConfig:
    """ab_checkout read as an observational study (x confounds): its SRM check never applies."""
    data = example_study(STUDY).model_dump()
    data["design"] = {"kind": "observational"}
    data["causal_graph"] = {
        "edges": [["x", "treatment"], ["x", "outcome"], ["treatment", "outcome"]],
        "roles": {"x": "confounder"},
    }
    data["thresholds"] = {k: v for k, v in data["thresholds"].items() if not k.startswith("srm_")}
    return StudyConfig.model_validate(data)


def targeted_batch(seed: int, n: int = 600) -> pd.DataFrame:
    """Treatment driven hard by x: a propensity fit exists, but most scores lie outside [0.05, 0.95]."""
    frame = ab_batch(seed, n=n)
    rng = np.random.default_rng(seed + 1000)
    frame["treatment"] = rng.binomial(1, 1 / (1 + np.exp(-6 * frame["x"].to_numpy())))
    return frame


def check_statuses(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict[str, str]:
    """How the instance resolves each check of ``asset`` in one run (the webserver's own resolution)."""
    context = LoadingContextForTest(instance)
    statuses = {}
    for spec_key in _check_keys(instance, asset):
        for record in instance.event_log_storage.get_asset_check_execution_history(spec_key, limit=50):
            if record.run_id == run_id:
                statuses[spec_key.name] = asyncio.run(record.resolve_status(context)).value
    return statuses


def _check_keys(instance: dg.DagsterInstance, asset: str) -> list[dg.AssetCheckKey]:
    names = {
        "covariate_table": ["schema", "post_treatment_exclusion", "sample_ratio_mismatch"],
        "propensity_model": ["overlap"],
        "batch_effect": ["balance", "estimation", "returning_units"],
        "effect_posterior": ["innovation", "one_sided_innovations", "particle_ess", "effect_trend"],
    }[asset]
    return [dg.AssetCheckKey(dg.AssetKey([STUDY, asset]), f"check_{asset}_{name}") for name in names]


def evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return {e.check_name: e for e in (r.get_dagster_event().event_specific_data for r in records)}


def materialization(project: Project, asset: str, partition: str | None = None) -> dict[str, Any]:
    records = project.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey([STUDY, asset]), asset_partitions=[partition] if partition else None
        ),
        limit=1,
    ).records
    assert records, f"{asset} {partition or ''} was never materialized"
    return dict(records[0].asset_materialization.metadata)  # type: ignore[union-attr]


def test_not_assessed_checks_are_skipped_and_excluded_runs_say_why(tmp_path: Path) -> None:
    project = Project(
        data=tmp_path / "data", studies=[observational_ab()], instance=dg.DagsterInstance.ephemeral()
    )
    folder = project.landing(STUDY)
    write_batch(folder, "2025-01", ab_batch(0))
    write_batch(folder, "2025-02", targeted_batch(1))  # overlap fails: excluded
    lonely = ab_batch(2).assign(treatment=0)
    lonely.loc[0, "treatment"] = 1  # one treated unit: nothing can be fitted, overlap not assessed
    write_batch(folder, "2025-03", lonely)
    runs = project.tick()
    assert [r.success for r in runs] == [True] * 3
    january, february, march = runs
    instance = project.instance

    # Not assessed: skipped in the instance, not passed; the warehouse keeps "undefined" and the reason.
    skipped = AssetCheckExecutionResolvedStatus.SKIPPED.value
    for run in runs:
        assert (
            check_statuses(instance, run.run_id, "covariate_table")[
                "check_covariate_table_sample_ratio_mismatch"
            ]
            == skipped
        )
        assert (
            check_statuses(instance, run.run_id, "effect_posterior")["check_effect_posterior_particle_ess"]
            == skipped
        )
        assert "check_effect_posterior_particle_ess" not in evaluations(instance, run.run_id)
    verdicts = project.warehouse.read_table(STUDY, "verdicts_covariate_table").set_index("check_name")
    srm = verdicts.loc["check_covariate_table_sample_ratio_mismatch"]
    assert set(srm["status"]) == {"undefined"} and srm["reason"].str.contains("observational design").all()
    assert (
        "observational design"
        in materialization(project, "covariate_table", "2025-01-01")["not_assessed"].value
    )
    posterior_notes = materialization(project, "effect_posterior")["not_assessed"].value
    assert "check_effect_posterior_particle_ess" in posterior_notes
    assert check_statuses(instance, march.run_id, "propensity_model") == {
        "check_propensity_model_overlap": skipped
    }
    assert check_statuses(instance, january.run_id, "propensity_model") == {
        "check_propensity_model_overlap": AssetCheckExecutionResolvedStatus.SUCCEEDED.value
    }

    # An excluded batch's run is tagged with the gate that failed, and the gate's evaluation says why.
    assert EXCLUDED_TAG not in instance.get_run_by_id(january.run_id).tags  # type: ignore[union-attr]
    tags = instance.get_run_by_id(february.run_id).tags  # type: ignore[union-attr]
    assert "check_propensity_model_overlap" in tags[EXCLUDED_TAG].split(", ")
    overlap = evaluations(instance, february.run_id)["check_propensity_model_overlap"]
    assert not overlap.passed and overlap.severity == dg.AssetCheckSeverity.ERROR
    steps = project.steps(STUDY).set_index("batch")
    assert steps["excluded"].tolist() == [False, True, True]
    assert overlap.metadata["reason"].value in steps.at["2025-02-01", "exclusion_reason"]
    march_tags = instance.get_run_by_id(march.run_id).tags  # type: ignore[union-attr]
    assert march_tags[EXCLUDED_TAG] == "check_batch_effect_estimation"

    # The failed batch keeps its diagnostics: rows, terms, the overlap numbers and the plot.
    propensity = materialization(project, "propensity_model", "2025-02-01")
    assert (propensity["rows"].value, propensity["terms"].value) == (600, 2)
    share = propensity["share_outside"].value
    assert share == overlap.metadata["observed_value"].value and share > 0.1
    assert "propensity_quantiles" in propensity and "overlap" in propensity
    assert (
        materialization(project, "propensity_model", "2025-03-01")["rows"].value == 300
    )  # no fit, rows kept

    # The posterior gives Dagster nothing to plot against run time; the path is per batch.
    posterior = materialization(project, "effect_posterior")
    plotted = [k for k, v in posterior.items() if isinstance(v, dg.FloatMetadataValue)]
    assert plotted == [], plotted
    assert float(posterior["posterior_mean"].value) == steps["posterior_mean"].iloc[-1]
    path = posterior["posterior_path"].value
    assert all(batch in path for batch in steps.index)

    # A withdrawn batch: every check of its partition is skipped.
    (folder / "2025-01.csv").unlink()
    (withdrawn,) = project.tick()
    assert withdrawn.success
    assert set(check_statuses(instance, withdrawn.run_id, "batch_effect").values()) == {skipped}
    assert EXCLUDED_TAG not in instance.get_run_by_id(withdrawn.run_id).tags  # type: ignore[union-attr]


def test_check_descriptions_are_the_catalogue_with_the_study_numbers(tmp_path: Path) -> None:
    studies = [example_study(STUDY), example_study("retention_outreach")]
    defs = Project(data=tmp_path / "data", studies=studies, instance=dg.DagsterInstance.ephemeral()).defs
    descriptions = {
        (spec.asset_key.path[0], spec.name): spec.description or ""
        for assets_def in defs.resolve_asset_graph().assets_defs
        for spec in assets_def.check_specs
    }
    assert len(descriptions) >= 20
    for (_, name), text in descriptions.items():
        entry = check_spec(name)
        assert text.startswith(entry.question), name
        assert text.endswith(ERROR_CONSEQUENCE if entry.severity == "ERROR" else WARN_CONSEQUENCE), name
    assert "keeps the batch out of the posterior" in descriptions[(STUDY, "check_batch_effect_balance")]
    assert "innovation_z = 3.0" in descriptions[(STUDY, "check_effect_posterior_innovation")]
    assert "overlap_eps = 0.05" in descriptions[(STUDY, "check_propensity_model_overlap")]
    assert "not assessed" in descriptions[(STUDY, "check_effect_posterior_particle_ess")]  # Kalman
    assert (
        "not assessed" in descriptions[("retention_outreach", "check_covariate_table_sample_ratio_mismatch")]
    )


def test_the_project_instance_hides_the_community_modal(tmp_path: Path) -> None:
    home = prepare_dagster_home(tmp_path / "dagster_home")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert not instance.nux_enabled
