"""Effects by segment in the pipeline: a real Dagster instance, a real warehouse, known segment effects.

A randomized study whose causal graph names two effect modifiers, a region (categorical, three
levels) and ``x`` (continuous, two quantile bins of the first batch). In one stream the effect is
0.5 everywhere but in the east, where it is 1.0: the fused check warns naming the east, with its
difference, adjusted p-value and rule; the fused intervals cover every segment's true effect; the
forest plot is in the metadata and in the memo. In the other stream the effect is 0.5 everywhere:
no check warns. A study without effect modifiers gets no segment asset at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from resources.study import StudyConfig
from tests.pipeline_support import Project, example_study, write_batch

REGIONS = ("north", "south", "east")
MONTHS = [f"2025-{m:02d}" for m in range(1, 5)]
N = 900
BASE, EAST = 0.5, 1.0


def segment_study(name: str) -> StudyConfig:
    return StudyConfig.model_validate(
        {
            "name": name,
            "cadence": "monthly",
            "start_date": "2025-01-01",
            "unit_id": "unit_id",
            "treatment": "treatment",
            "outcome": "outcome",
            "outcome_type": "continuous",
            "design": {"kind": "randomized", "treated_share": 0.5},
            "covariates": ["x"],
            "categorical": {"region": list(REGIONS)},
            "primary_estimator": "difference_in_means",
            "process_var": 0.0,
            "causal_graph": {"roles": {"region": "effect_modifier", "x": "effect_modifier"}},
            "segments": {"bins": 2, "multiplicity": "holm", "level": 0.05},
            "seed": 7,
        }
    )


def batch(rng: np.random.Generator, month: int, east: float) -> pd.DataFrame:
    region = rng.choice(REGIONS, N)
    d = rng.binomial(1, 0.5, N)
    x = rng.standard_normal(N)
    tau = np.where(region == "east", east, BASE)
    y = d * tau + 0.3 * x + rng.standard_normal(N)
    ids = [f"u{month:02d}{i:05d}" for i in range(N)]
    return pd.DataFrame({"unit_id": ids, "region": region, "x": x, "treatment": d, "outcome": y})


def run(tmp_path: Path, study: StudyConfig, east: float, seed: int) -> Project:
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    rng = np.random.default_rng(seed)
    for month, label in enumerate(MONTHS, start=1):
        write_batch(project.landing(study.name), label, batch(rng, month, east))
    assert all(r.success for r in project.tick())
    return project


def evaluations(project: Project, study: str, asset: str, check: str) -> list[Any]:
    records = project.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey([study, asset]), check), limit=100
    )
    return [r.event.dagster_event.event_specific_data for r in records if r.event is not None]


def latest_evaluation(project: Project, study: str) -> Any:
    """The fused check after the last batch (evaluated once per run: the newest)."""
    found = evaluations(
        project, study, "segment_posterior", "check_segment_posterior_fused_segment_difference"
    )
    assert len(found) == len(MONTHS)
    return found[0]


def materialization_values(project: Project, study: str, asset: str) -> dict[str, Any]:
    records = project.instance.fetch_materializations(dg.AssetKey([study, asset]), limit=1).records
    assert records, f"{study}/{asset} was never materialized"
    materialization = records[0].asset_materialization
    assert materialization is not None
    return {label: entry.value for label, entry in materialization.metadata.items()}


def test_a_segment_with_a_different_effect_is_flagged_fused_covered_and_drawn(tmp_path: Path) -> None:
    study = segment_study("segments_differ")
    project = run(tmp_path, study, EAST, seed=11)
    store = project.warehouse
    table = store.read_table(study.name, "segment_effects")
    # Every batch: three regions and two x-bins, the bins cut once (the first batch's median) for all.
    assert len(table) == len(MONTHS) * 5
    x_rows = table[table["modifier"] == "x"]
    assert x_rows.groupby("partition_key")["edges"].nunique().eq(1).all()
    assert x_rows["edges"].nunique() == 1
    labels = sorted(x_rows["segment"].unique())
    assert len(labels) == 2
    # A segment's estimate is the difference in means on the segment's rows: checked on one batch.
    raw = store.read_table(study.name, "covariates", partition_key="2025-03-01")
    east_rows = raw[raw["region"] == "east"]
    dim = (
        east_rows.loc[east_rows["treatment"] == 1, "outcome"].mean()
        - east_rows.loc[east_rows["treatment"] == 0, "outcome"].mean()
    )
    stored = table[(table["partition_key"] == "2025-03-01") & (table["segment"] == "east")]
    assert float(stored["estimate"].iloc[0]) == pytest.approx(dim, rel=1e-10)

    # The fused check warns, naming the segment, its difference, its adjusted p-value and the rule.
    fused_check = latest_evaluation(project, study.name)
    assert not fused_check.passed and fused_check.severity == dg.AssetCheckSeverity.WARN
    reason = fused_check.metadata["reason"].value
    assert "region = east" in reason and "adjusted p" in reason and "Holm" in reason
    assert "Holm" in fused_check.metadata["rule"].value
    tests = store.read_table(study.name, "segment_differences")
    flagged = tests[tests["differs"]]
    assert ("region", "east") in set(zip(flagged["modifier"], flagged["segment"], strict=True))
    # The east is the most different; the others may be flagged too, since "the rest" includes the east.
    east = tests.loc[tests["adjusted_p_value"].idxmin()]
    assert (east["modifier"], east["segment"]) == ("region", "east")
    # Its contrast: 1.0 against the precision-weighted mean of the other regions' 0.5.
    assert float(east["difference"]) == pytest.approx(EAST - BASE, abs=0.2)
    assert f"{float(east['adjusted_p_value']):.3g}" in reason

    # The fused intervals after the last batch cover every segment's truth.
    fused = store.read_table(study.name, "segment_posterior")
    latest = fused[fused["batch"] == "2025-04-01"]
    mixed = BASE + (EAST - BASE) / len(REGIONS)
    truth = {
        **{("region", r): EAST if r == "east" else BASE for r in REGIONS},
        **{("x", s): mixed for s in labels},
    }
    for row in latest.itertuples(index=False):
        assert row.lower <= truth[(row.modifier, row.segment)] <= row.upper, row
    assert not fused["batches_share_units"].any() and (fused["se_inflation"] == 1.0).all()

    # The forest plot is in the metadata (shown in the UI) and beside the memo, whose section names the east.
    metadata = materialization_values(project, study.name, "segment_posterior")
    assert metadata["forest_plot"].startswith("![forest_plot](data:image/png;base64,")
    assert Path(metadata["forest_plot_path"]).read_bytes()[:4] == b"\x89PNG"
    memo = (project.data / "reports" / study.name / "memo.md").read_text()
    section = memo[memo.index("## Who benefits") :]
    assert "region = east" in section.split("## ")[1] and "(forest_plot.png)" in section
    html = (project.data / "reports" / study.name / "memo.html").read_text()
    assert "Who benefits" in html and html.count("data:image/png;base64,") >= 2


def test_no_segment_warns_when_the_effect_is_the_same_everywhere(tmp_path: Path) -> None:
    study = segment_study("segments_same")
    # Holm keeps each batch's chance of a false warning at 5% (over four batches, up to 19%: measured in
    # simulations/segments.py); this fixed stream is one without a false warning.
    project = run(tmp_path, study, BASE, seed=13)
    per_batch = evaluations(
        project, study.name, "segment_effects", "check_segment_effects_segment_difference"
    )
    assert len(per_batch) == len(MONTHS) and all(e.passed for e in per_batch)
    assert latest_evaluation(project, study.name).passed
    assert project.warehouse.read_table(study.name, "segment_differences")["differs"].sum() == 0
    memo = (project.data / "reports" / study.name / "memo.md").read_text()
    assert "No segment's effect differs from the rest beyond chance" in memo


def test_a_study_without_effect_modifiers_has_no_segment_assets(tmp_path: Path) -> None:
    project = Project(
        data=tmp_path / "data",
        studies=[example_study("ab_checkout")],
        instance=dg.DagsterInstance.ephemeral(),
    )
    names = {key.path[-1] for key in project.defs.resolve_asset_graph().get_all_asset_keys()}
    assert "segment_effects" not in names and "segment_posterior" not in names
    assert "batch_effect" in names


def test_the_first_batch_edges_are_stored_as_json(tmp_path: Path) -> None:
    """Edges are readable text: the infinite outer edges as strings, the inner one a number."""
    study = segment_study("segments_edges")
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    rng = np.random.default_rng(3)
    write_batch(project.landing(study.name), MONTHS[0], batch(rng, 1, BASE))
    assert all(r.success for r in project.tick())
    table = project.warehouse.read_table(study.name, "segment_effects")
    edges = json.loads(table.loc[table["modifier"] == "x", "edges"].iloc[0])
    first = project.warehouse.read_table(study.name, "covariates", partition_key="2025-01-01")
    assert edges[0] == "-inf" and edges[2] == "inf"
    assert edges[1] == pytest.approx(float(np.quantile(first["x"], 0.5)), rel=1e-12)
