"""The study file's estimand and standard-error choices drive the pipeline (ATT, clusters, repeated units)."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assimilate.estimators import estimate_effect
from assimilate.estimators.variance import t_conf_int, with_standard_error
from resources.study import StudyConfigError, load_study
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
    text = (Path(__file__).resolve().parents[2] / "studies" / "n_of_1_sleep.yaml").read_text()
    assert "  estimand: ATE\n" in text
    path = tmp_path / "n_of_1_sleep.yaml"
    path.write_text(text.replace("  estimand: ATE\n", "  estimand: ATT\n"))
    with pytest.raises(
        StudyConfigError, match=r"estimand_card.estimand: ATT cannot be estimated by 'n_of_1'"
    ):
        load_study(path)


def _clustered_batch(seed: int, *, stores: int = 30, per_store: int = 20) -> pd.DataFrame:
    """Stores randomized half and half (the SRM check passes), outcomes sharing a store shock."""
    rng = np.random.default_rng(seed)
    store = np.repeat(np.arange(stores), per_store)
    treated = rng.permutation(np.arange(stores) % 2)[store]
    x = rng.standard_normal(len(store))
    outcome = (
        0.5 * treated + 0.2 * x + rng.normal(0, 1.0, size=stores)[store] + rng.normal(0, 0.3, len(store))
    )
    return pd.DataFrame(
        {
            "unit_id": [f"u{i}" for i in range(len(store))],
            "x": x,
            "treatment": treated,
            "outcome": outcome,
            "store": [f"s{s}" for s in store],
        }
    )


def test_a_cluster_column_gives_cluster_robust_standard_errors(tmp_path: Path) -> None:
    study = example_study("ab_checkout", cluster="store")
    assert study.clustered and study.batch_rules_hash != example_study("ab_checkout").batch_rules_hash
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    batch = _clustered_batch(4)
    write_batch(project.landing("ab_checkout"), "2025-01", batch)
    assert all(r.success for r in project.tick())
    stored = project.warehouse.read_table("ab_checkout", "batch_effects").set_index("method")
    for method in ("difference_in_means", "regression_adjustment", "aipw"):
        options: dict[str, object] = {}
        if method == "aipw":
            options = {"policy": study.propensity.policy, "bounds": tuple(study.propensity.bounds)}
        covariates = [] if method == "difference_in_means" else list(study.model_columns)
        unit = estimate_effect(
            batch, method=method, treatment="treatment", outcome="outcome", covariates=covariates, **options
        )
        clustered = with_standard_error(
            unit,
            batch,
            treatment="treatment",
            outcome="outcome",
            covariates=covariates,
            cluster="store",
            **options,
        )
        row = stored.loc[method]
        assert row["se_method"] == "cr1"
        assert row["std_error"] == pytest.approx(clustered.std_error, rel=1e-9), method
        assert row["std_error"] > 1.5 * unit.std_error  # the store shocks make the clustering matter
        lower, upper = t_conf_int(clustered)  # t with G - 1 = 29 df, wider than the normal interval
        assert (row["ci_lower"], row["ci_upper"]) == pytest.approx((lower, upper), rel=1e-9)


def test_repeated_units_are_quarantined_or_clustered_by_the_study_s_choice(tmp_path: Path) -> None:
    batch = ab_batch(5, n=400)
    twice = pd.concat([batch, batch], ignore_index=True)  # every unit delivered twice
    for policy in ("reject", "cluster"):
        study = example_study("ab_checkout", duplicate_units=policy)
        project = Project(data=tmp_path / policy, studies=[study], instance=dg.DagsterInstance.ephemeral())
        write_batch(project.landing("ab_checkout"), "2025-01", twice)
        project.tick()
        stored = project.warehouse.read_table("ab_checkout", "batch_effects").set_index("method")
        primary = stored.loc[study.primary_estimator]
        if policy == "reject":
            assert primary["error"] != "" or not np.isfinite(primary["estimate"])  # all rows quarantined
        else:
            one_copy = estimate_effect(
                batch,
                method=study.primary_estimator,
                treatment="treatment",
                outcome="outcome",
                covariates=list(study.model_columns),
            )
            assert primary["se_method"] == "cr1"
            # Clustered on the unit id the SE is one copy's again, not 1/sqrt(2) of it.
            assert primary["std_error"] == pytest.approx(one_copy.std_error, rel=0.05)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"standard_errors": "CR1"}, "standard_errors: CR1 needs clusters"),
        ({"standard_errors": "HC2"}, "standard_errors: HC2 needs an OLS fit; 'ipw'"),
        ({"cluster": "store", "standard_errors": "HC1"}, "standard_errors: HC1 ignores the clusters"),
        ({"cluster": "x"}, "cluster: column 'x' is already a column of another role"),
    ],
)
def test_standard_error_choices_are_checked_at_load(
    tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    import yaml

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "studies" / "ab_checkout.yaml").read_text())
    path = tmp_path / "ab_checkout.yaml"
    path.write_text(yaml.safe_dump({**data, **changes}))
    with pytest.raises(StudyConfigError, match=message.replace("(", r"\(")):
        load_study(path)
