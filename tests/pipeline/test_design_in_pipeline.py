"""The study design in the pipeline: the memo leads with an excluded batch, the DAG and the card in the UI."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from tests.pipeline_support import Project, ab_batch, example_study, write_batch


@pytest.fixture
def project(tmp_path: Path) -> Project:
    instance = dg.DagsterInstance.ephemeral()
    return Project(data=tmp_path / "data", studies=[example_study("ab_checkout")], instance=instance)


def _first_section(markdown: str) -> str:
    sections = markdown.split("\n## ")
    return sections[1] if markdown.startswith("# ") else sections[0]


def test_the_memo_of_a_study_with_an_excluded_batch_says_so_first(project: Project) -> None:
    folder = project.landing("ab_checkout")
    write_batch(folder, "2025-01", ab_batch(0))
    skewed = ab_batch(9, n=1000).assign(treatment=lambda f: (np.arange(len(f)) % 10 < 3).astype(int))
    write_batch(folder, "2025-02", skewed)  # sample-ratio mismatch: kept out of the posterior
    write_batch(folder, "2025-03", ab_batch(2))
    assert all(r.success for r in project.tick())
    reports = project.data / "reports" / "ab_checkout"
    memo = (reports / "memo.md").read_text()
    first = _first_section(memo)
    assert "2025-02-01: excluded from the posterior: Sample-ratio mismatch" in first
    assert "provisional" in first.lower() and "sample_ratio_mismatch" not in first
    assert "USD per visitor" in first  # the study's outcome_unit, per the card's unit
    assert "](causal_dag.png)" in memo and "](fan_chart.png)" in memo  # the files beside it
    html = (reports / "memo.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html>") and "2025-02-01" in html
    assert html.count('<img src="data:image/png;base64,') == 2 and "http" not in html
    steps = project.steps("ab_checkout")
    assert f"{steps['posterior_mean'].iloc[-1]:.3f}"[:4] in memo  # the memo quotes the stored posterior

    event = project.instance.get_latest_materialization_event(
        dg.AssetKey(["ab_checkout", "posterior_report"])
    )
    assert event is not None and event.asset_materialization is not None
    metadata = event.asset_materialization.metadata
    assert metadata["memo_status"].value == "provisional"
    assert "data:image/png;base64," in metadata["causal_dag"].value
    dag = (reports / "causal_dag.png").read_bytes()
    assert dag[:4] == b"\x89PNG" and len(dag) > 2_000


def test_the_estimand_card_is_every_asset_s_description(project: Project) -> None:
    study = project.studies[0]
    assert study.estimand_card is not None
    graph = project.defs.resolve_asset_graph()
    for name in ("raw_batch", "covariate_table", "batch_effect", "effect_posterior", "posterior_report"):
        description = graph.get(dg.AssetKey(["ab_checkout", name])).description or ""
        assert study.estimand_card.business_question in description, name
        assert study.estimand_card.estimand in description
