"""The study card's estimand drives the pipeline: an ATT study estimates the ATT, and the memo says so."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from assimilate.estimators import estimate_effect
from orchestration.study_config import StudyConfigError, load_study
from tests.pipeline_support import Project, ab_batch, example_study, write_batch


def test_an_att_study_estimates_the_att_with_every_estimator(tmp_path: Path) -> None:
    base = example_study("ab_checkout")
    assert base.estimand_card is not None
    card = base.estimand_card.model_copy(update={"estimand": "ATT"})
    study = example_study("ab_checkout", estimand_card=card)
    assert study.estimand == "ATT" and study.batch_rules_hash != base.batch_rules_hash
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    batch = ab_batch(3, n=600)
    write_batch(project.landing("ab_checkout"), "2025-01", batch)
    assert all(r.success for r in project.tick())

    stored = project.warehouse.read_table("ab_checkout", "batch_effects").set_index("method")
    for method in study.estimators:
        options: dict[str, object] = {}
        if method in ("ipw", "aipw"):
            options = {"policy": study.propensity.policy, "bounds": tuple(study.propensity.bounds)}
        expected = estimate_effect(
            batch,
            method=method,
            treatment="treatment",
            outcome="outcome",
            covariates=() if method == "difference_in_means" else list(study.model_columns),
            estimand="ATT",
            **options,
        )
        row = stored.loc[method]
        assert row["estimate"] == pytest.approx(expected.estimate, rel=1e-10, abs=1e-12), method
        assert row["std_error"] == pytest.approx(expected.std_error, rel=1e-10), method
        assert json.loads(row["diagnostics_json"])["estimand"] == "ATT"
    memo = (project.data / "reports" / "ab_checkout" / "memo.md").read_text()
    assert "ATT (average effect on the treated)" in memo


def test_an_estimand_the_estimators_cannot_deliver_is_a_load_error(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parent.parent / "studies" / "n_of_1_sleep.yaml").read_text()
    assert "  estimand: ATE\n" in text
    path = tmp_path / "n_of_1_sleep.yaml"
    path.write_text(text.replace("  estimand: ATE\n", "  estimand: ATT\n"))
    with pytest.raises(
        StudyConfigError, match=r"estimand_card.estimand: ATT cannot be estimated by 'n_of_1'"
    ):
        load_study(path)
