"""Study YAML -> StudyConfig: the examples load, every rule fails with file, key path and rule."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from checks.post_treatment import post_treatment_offenders, post_treatment_verdict
from orchestration.study_folder import load_studies
from resources.study import StudyConfig, StudyConfigError, load_study

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((STUDIES / f"{name}.yaml").read_text())
    return data


def write(tmp_path: Path, data: object, name: str = "x.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_ab_checkout_example_loads_with_its_settings() -> None:
    study = load_study(STUDIES / "ab_checkout.yaml")
    assert study.name == "ab_checkout"
    assert study.cadence == "monthly"
    assert study.start_date == date(2025, 1, 1)
    assert study.design.kind == "randomized"
    assert study.design.treated_share == 0.5
    assert study.covariates == ("x",)
    assert study.outcome_type == "continuous"
    assert study.primary_estimator == "regression_adjustment"
    assert study.primary_estimator in study.estimators
    assert study.prior is not None and (study.prior.mean, study.prior.variance) == (0.0, 1.0)
    assert study.process_var == 0.0001
    assert study.backend.kind == "kalman"


def test_retention_outreach_example_loads_with_its_settings() -> None:
    study = load_study(STUDIES / "retention_outreach.yaml")
    assert study.design.kind == "observational"
    assert (study.unit_id, study.treatment, study.outcome) == ("account_id", "outreach", "churn")
    assert study.outcome_type == "binary"
    assert study.covariates == (
        "company_size",
        "tenure_months",
        "usage_score",
        "prior_tickets",
        "health_score",
    )
    assert study.categorical == {"region": ("North America", "Europe", "APAC", "Latin America")}
    assert study.post_treatment == ("post_outreach_engagement",)
    assert study.primary_estimator == "aipw"
    assert study.process_var == "mle"
    assert study.prior is None  # the library's scale-aware default


def test_load_studies_sorts_by_name_and_the_repository_folder_loads() -> None:
    names = [s.name for s in load_studies(STUDIES)]
    assert names == sorted(p.stem for p in STUDIES.glob("*.yaml"))  # every example loads, sorted
    assert {"ab_checkout", "n_of_1_sleep", "retention_outreach"} <= set(names)


def test_defaults_fill_thresholds_alerts_folder_and_estimators(tmp_path: Path) -> None:
    minimal = {
        "name": "tiny",
        "cadence": "daily",
        "start_date": "2025-01-01",
        "unit_id": "id",
        "treatment": "d",
        "outcome": "y",
        "outcome_type": "continuous",
        "design": {"kind": "randomized"},
        "primary_estimator": "difference_in_means",
        "process_var": 0,
    }
    study = load_study(write(tmp_path, minimal))
    assert study.landing_folder == "tiny"
    assert study.estimators == ("difference_in_means",)
    assert study.thresholds.max_abs_smd == 0.1
    assert study.thresholds.overlap_eps == 0.05
    assert study.thresholds.overlap_max_share_outside == 0.1
    assert study.thresholds.srm_alpha == 0.001
    assert study.thresholds.srm_min_units == 100
    assert study.thresholds.innovation_z == 3.0
    assert study.thresholds.min_ess_fraction == 0.2
    assert study.alerts.webhook_url_env == "ASSIMILATE_WEBHOOK_URL"
    assert study.alerts.email_to == ()
    assert study.alerts.email_from == "assimilate@localhost"
    assert study.design.kind == "randomized" and study.design.treated_share == 0.5
    assert study.prior is None
    assert study.backend.kind == "kalman"


def test_particle_backend_and_diffuse_prior_are_accepted(tmp_path: Path) -> None:
    data = example("ab_checkout")
    data["backend"] = {"kind": "particle", "n_particles": 500, "observation": "student_t", "df": 5}
    data["prior"] = {"diffuse": True}
    study = load_study(write(tmp_path, data))
    assert study.backend.kind == "particle"
    assert (study.backend.n_particles, study.backend.observation, study.backend.df) == (500, "student_t", 5.0)
    assert study.prior is not None and study.prior.diffuse


def test_config_is_frozen_and_hash_is_canonical(tmp_path: Path) -> None:
    study = load_study(STUDIES / "ab_checkout.yaml")
    with pytest.raises(ValueError, match="frozen"):
        study.seed = 1
    reordered = dict(reversed(list(example("ab_checkout").items())))
    same = load_study(write(tmp_path, reordered))
    assert same.config_hash == study.config_hash
    assert len(study.config_hash) == 64
    changed = example("ab_checkout")
    changed["thresholds"]["max_abs_smd"] = 0.2
    assert load_study(write(tmp_path, changed, "y.yaml")).config_hash != study.config_hash


Edit = Callable[[dict[str, Any]], None]


def _set(path: str, value: object) -> Edit:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value

    return edit


def _drop(key: str) -> Edit:
    return lambda data: data.pop(key)


# (case id, example, edit, expected "key path: rule" fragment)
RULES: list[tuple[str, str, Edit, str]] = [
    ("threshold_positive", "ab_checkout", _set("thresholds.max_abs_smd", -1),
     "thresholds.max_abs_smd: must be > 0 (got -1)"),
    ("threshold_unknown", "ab_checkout", _set("thresholds.max_smd", 0.1), "thresholds.max_smd: unknown key"),
    ("unknown_top_key", "ab_checkout", _set("estimand", {"target": "ate"}), "estimand: unknown key"),
    ("missing_key", "ab_checkout", _drop("outcome"), "outcome: is required"),
    ("name_pattern", "ab_checkout", _set("name", "AB-Checkout"), "name: must be a study name"),
    ("name_length", "ab_checkout", _set("name", "a" * 41), "name: must be a study name"),
    ("folder_parent", "ab_checkout", _set("landing_folder", "../elsewhere"), "landing_folder: must be a relative"),
    ("folder_absolute", "ab_checkout", _set("landing_folder", "/srv/landing"), "landing_folder: must be a relative"),
    ("cadence_choice", "ab_checkout", _set("cadence", "hourly"), "cadence: must be one of 'daily', 'weekly'"),
    ("bad_date", "ab_checkout", _set("start_date", "2025-13-01"), "start_date: '2025-13-01' is not a valid date (there is no month 13"),
    ("outcome_type", "ab_checkout", _set("outcome_type", "count"), "outcome_type: must be one of"),
    ("column_pattern", "ab_checkout", _set("covariates", ["x", "2.5%"]), "covariates[1]: must be a safe column name"),
    ("unit_pattern", "ab_checkout", _set("unit_id", "unit id"), "unit_id: must be a safe column name"),
    ("categorical_key_pattern", "retention_outreach", _set("categorical", {"bad name": ["a"]}),
     "categorical.bad name: must be a safe column name"),
    ("categorical_level_text", "retention_outreach", _set("categorical", {"flag": [True, False]}),
     "categorical.flag[0]: must be text (quote it in YAML)"),
    ("categorical_no_levels", "retention_outreach", _set("categorical", {"region": []}),
     "categorical.region: needs at least one level"),
    ("post_treatment_covariate", "retention_outreach",
     _set("post_treatment", ["post_outreach_engagement", "health_score"]),
     "covariates: column 'health_score' is listed in post_treatment"),
    ("post_treatment_categorical", "retention_outreach", _set("post_treatment", ["region"]),
     "categorical: column 'region' is listed in post_treatment"),
    ("post_treatment_is_treatment", "retention_outreach", _set("post_treatment", ["outreach"]),
     "post_treatment: column 'outreach' is the treatment"),
    ("covariate_is_outcome", "ab_checkout", _set("covariates", ["x", "outcome"]),
     "covariates: column 'outcome' is the outcome, not a covariate"),
    ("covariate_twice", "ab_checkout", _set("covariates", ["x", "x"]), "covariates: column 'x' is listed twice"),
    ("covariate_and_categorical", "retention_outreach", _set("categorical", {"health_score": ["low"]}),
     "categorical: column 'health_score' is also a numeric covariate"),
    ("roles_distinct", "ab_checkout", _set("outcome", "treatment"),
     "outcome: column 'treatment' is already the treatment"),
    ("primary_in_estimators", "ab_checkout", _set("primary_estimator", "lin_interacted"),
     "primary_estimator: 'lin_interacted' must be among estimators"),
    ("estimator_choice", "ab_checkout", _set("estimators", ["difference_in_means", "tmle"]),
     "estimators[1]: must be one of"),
    ("srm_needs_randomized", "retention_outreach", _set("thresholds.srm_alpha", 0.01),
     "thresholds.srm_alpha: the sample-ratio-mismatch check needs a randomized design"),
    ("treated_share", "ab_checkout", _set("design", {"kind": "randomized", "treated_share": 1.5}),
     "design.treated_share: must be < 1 (got 1.5)"),
    ("design_kind", "ab_checkout", _set("design", {"kind": "rct"}), "design: must be one of 'randomized'"),
    ("design_without_kind", "ab_checkout", _set("design", {"treated_share": 0.5}), "design: needs a 'kind' key"),
    ("propensity_bounds", "ab_checkout", _set("propensity", {"policy": "clip", "bounds": [0.9, 0.1]}),
     "propensity: bounds: lower bound must be < upper bound"),
    ("propensity_policy", "ab_checkout", _set("propensity", {"policy": "winsorize"}), "propensity.policy: must be"),
    ("folds_min", "retention_outreach", _set("cross_fitting_folds", 1), "cross_fitting_folds: must be >= 2 (got 1)"),
    ("folds_need_aipw", "ab_checkout", lambda d: d.update(cross_fitting_folds=5, estimators=["regression_adjustment"]),
     "cross_fitting_folds: applies only to the aipw estimator"),
    ("prior_incomplete", "ab_checkout", _set("prior", {"mean": 0.0}), "prior: needs both mean and variance"),
    ("prior_diffuse_and_mean", "ab_checkout", _set("prior", {"diffuse": True, "mean": 0.0}),
     "prior: a diffuse prior takes no mean or variance"),
    ("prior_variance", "ab_checkout", _set("prior", {"mean": 0.0, "variance": 0}), "prior.variance: must be > 0"),
    ("process_var_negative", "ab_checkout", _set("process_var", -0.1),
     'process_var: must be a number >= 0 or "mle" (got -0.1)'),
    ("process_var_word", "ab_checkout", _set("process_var", "auto"), 'process_var: must be a number >= 0 or "mle"'),
    ("process_var_bool", "ab_checkout", _set("process_var", True), 'process_var: must be a number >= 0 or "mle"'),
    ("student_t_needs_df", "ab_checkout", _set("backend", {"kind": "particle", "observation": "student_t"}),
     "backend: df: is required when observation is student_t"),
    ("particles_min", "ab_checkout", _set("backend", {"kind": "particle", "n_particles": 10}),
     "backend.n_particles: must be >= 100"),
    ("threshold_finite", "ab_checkout", _set("thresholds.innovation_z", float("inf")),
     "thresholds.innovation_z: must be a finite number"),
    ("threshold_bool", "ab_checkout", _set("thresholds.srm_min_units", True), "thresholds.srm_min_units: must be a number"),
    ("binary_range", "retention_outreach", _set("outcome_range", [0, 1]), "outcome_range: a binary outcome is 0 or 1"),
    ("range_order", "ab_checkout", _set("outcome_range", [5, 1]), "outcome_range: lower bound must be < upper bound"),
    ("email", "ab_checkout", _set("alerts.email_to", ["not-an-address"]), "alerts.email_to[0]: must be an e-mail"),
    ("seed", "ab_checkout", _set("seed", -1), "seed: must be >= 0"),
    # --- estimand card and causal graph ---
    ("descendant_covariate", "retention_outreach", lambda d: _add_descendant(d, "covariates"),
     "covariates: 'engagement_score' is a descendant of the treatment 'outreach' in causal_graph (post-treatment), "
     "so it cannot be a control"),
    ("descendant_categorical", "retention_outreach", lambda d: _add_descendant(d, "categorical"),
     "categorical: 'engagement_score' is a descendant of the treatment 'outreach' in causal_graph"),
    ("covariate_not_in_graph", "retention_outreach", _set("covariates", ["company_size", "tenure_months",
     "usage_score", "prior_tickets", "health_score", "seats"]), "covariates: 'seats' is not in causal_graph"),
    ("open_backdoor_path", "retention_outreach", _set("categorical", {}),
     "covariates: the backdoor path outreach <- region -> churn in causal_graph is open given the covariates"),
    ("post_treatment_not_descendant", "retention_outreach",
     _set("post_treatment", ["post_outreach_engagement", "usage_score"]),
     "post_treatment: 'usage_score' is not a descendant of the treatment 'outreach' in causal_graph"),
    ("randomized_treatment_has_a_cause", "ab_checkout",
     _set("causal_graph", {"edges": [["x", "treatment"], ["x", "outcome"]], "roles": {"x": "confounder"}}),
     "causal_graph.edges: 'x' -> 'treatment' contradicts the randomized design"),
    ("graph_cycle", "retention_outreach",
     lambda d: d["causal_graph"]["edges"].append(["post_outreach_engagement", "health_score"]),
     "causal_graph.edges: 'outreach' is on the cycle outreach -> churn -> post_outreach_engagement -> health_score "
     "-> outreach; a causal graph must be acyclic"),
    ("role_contradicts_edges", "retention_outreach", _set("causal_graph.roles.post_outreach_engagement", "confounder"),
     "causal_graph.roles: 'post_outreach_engagement' has role 'confounder' but is a descendant of the treatment "
     "'outreach' (outreach -> post_outreach_engagement)"),
    ("role_treatment_mismatch", "ab_checkout", _set("causal_graph.roles.x", "treatment"),
     "causal_graph.roles: 'x' has role 'treatment' but the study's treatment is 'treatment'"),
    ("role_choice", "ab_checkout", _set("causal_graph.roles.x", "mediatr"), "causal_graph.roles.x: must be one of"),
    ("graph_empty", "ab_checkout", _set("causal_graph", {}), "causal_graph: needs edges, roles or both"),
    ("graph_self_loop", "ab_checkout", _set("causal_graph.edges", [["x", "x"]]),
     "causal_graph: edges: 'x' -> 'x' is a self-loop"),
    ("graph_unknown_key", "ab_checkout", _set("causal_graph.nodes", ["x"]), "causal_graph.nodes: unknown key"),
    ("card_missing_field", "ab_checkout", lambda d: d["estimand_card"].pop("unit"), "estimand_card.unit: is required"),
    ("card_estimand", "ab_checkout", _set("estimand_card.estimand", "CATE"), "estimand_card.estimand: must be one of"),
    ("card_needs_assumptions", "ab_checkout", _set("estimand_card.required_assumptions", []),
     "estimand_card.required_assumptions: List should have at least 1 item"),
    ("card_audit_unknown", "ab_checkout", _set("estimand_card.variables_to_audit", ["x", "basket"]),
     "estimand_card.variables_to_audit: 'basket' is not a column of the study or a variable of causal_graph"),
]  # fmt: skip


def _add_descendant(data: dict[str, Any], key: str) -> None:
    data["causal_graph"]["edges"].append(["outreach", "engagement_score"])
    if key == "covariates":
        data["covariates"] = [*data["covariates"], "engagement_score"]
    else:
        data["categorical"] = {**data["categorical"], "engagement_score": ["low", "high"]}


@pytest.mark.parametrize(("case", "source", "edit", "expected"), RULES, ids=[r[0] for r in RULES])
def test_each_rule_names_file_key_and_rule(
    tmp_path: Path, case: str, source: str, edit: Edit, expected: str
) -> None:
    data = copy.deepcopy(example(source))
    edit(data)
    path = write(tmp_path, data)
    with pytest.raises(StudyConfigError) as raised:
        load_study(path)
    lines = str(raised.value).splitlines()
    assert any(line.startswith(f"{path}: ") and expected in line for line in lines), lines


def test_a_webhook_url_pasted_into_the_config_is_not_echoed(tmp_path: Path) -> None:
    data = example("ab_checkout")
    secret = "https://hooks.slack.com/services/T000/B000/SECRETTOKEN"
    data["alerts"]["webhook_url_env"] = secret
    with pytest.raises(StudyConfigError, match=r"alerts\.webhook_url_env: must be the NAME") as raised:
        load_study(write(tmp_path, data))
    assert "SECRETTOKEN" not in str(raised.value)


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    data = example("ab_checkout")
    data["thresholds"]["max_abs_smd"] = -1
    data["cadence"] = "hourly"
    path = write(tmp_path, data)
    with pytest.raises(StudyConfigError) as raised:
        load_study(path)
    message = str(raised.value)
    assert f"{path}: thresholds.max_abs_smd:" in message
    assert f"{path}: cadence:" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed", "not valid YAML"),
        ("- a\n- b\n", r"must hold a mapping of keys \(got list\)"),
        ("", "got NoneType"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(StudyConfigError, match=expected) as raised:
        load_study(path)
    assert str(raised.value).startswith(f"{path}: ")


def test_missing_file_is_a_study_config_error(tmp_path: Path) -> None:
    with pytest.raises(StudyConfigError, match="cannot be read"):
        load_study(tmp_path / "absent.yaml")


def test_duplicate_study_names_name_both_files(tmp_path: Path) -> None:
    data = example("ab_checkout")
    write(tmp_path, data, "a.yaml")
    write(tmp_path, data, "b.yml")
    with pytest.raises(
        StudyConfigError, match=r"b\.yml: name: study 'ab_checkout' is already defined in .*a\.yaml"
    ):
        load_studies(tmp_path)


def test_load_studies_reports_every_broken_file(tmp_path: Path) -> None:
    good = example("ab_checkout")
    write(tmp_path, good, "good.yaml")
    broken = copy.deepcopy(good)
    broken["name"] = "other"
    broken["cadence"] = "hourly"
    write(tmp_path, broken, "bad1.yaml")
    (tmp_path / "bad2.yaml").write_text("[1, 2]")
    with pytest.raises(StudyConfigError) as raised:
        load_studies(tmp_path)
    assert "bad1.yaml: cadence" in str(raised.value)
    assert "bad2.yaml: must hold a mapping" in str(raised.value)


def test_load_studies_needs_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(StudyConfigError, match="does not exist"):
        load_studies(tmp_path / "nowhere")


def test_direct_construction_applies_the_same_rules() -> None:
    data = example("retention_outreach")
    data["covariates"] = [*data["covariates"], "post_outreach_engagement"]
    with pytest.raises(ValueError, match="post_outreach_engagement"):
        StudyConfig.model_validate(data)


# --- estimand card, causal graph, shortlist and the post-treatment check ------------------------


def test_examples_declare_their_design() -> None:
    ab = load_study(STUDIES / "ab_checkout.yaml")
    assert ab.estimand_card is not None and ab.estimand_card.estimand == "ATE"
    ab_dag = ab.causal_dag()
    assert ab_dag is not None
    assert ab_dag.descendants_of_treatment == {"outcome"}
    assert ab_dag.role_of("x") == "precision"
    assert ab_dag.parents("treatment") == ()
    outreach = load_study(STUDIES / "retention_outreach.yaml")
    dag = outreach.causal_dag()
    assert dag is not None
    assert dag.descendants_of_treatment == {"churn", "post_outreach_engagement"}
    assert dag.check_adjustment(outreach.model_columns).valid
    assert dag.adjustment_set() == (
        "company_size",
        "health_score",
        "prior_tickets",
        "region",
        "tenure_months",
    )


def test_method_shortlist_per_study() -> None:
    def valid(name: str) -> list[str]:
        table = load_study(STUDIES / f"{name}.yaml").method_shortlist()
        assert list(table.columns) == ["method", "valid", "reason"]
        return table.loc[table["valid"], "method"].tolist()

    adjustment = ["regression_adjustment", "lin_interacted", "ipw", "aipw"]
    assert valid("ab_checkout") == ["difference_in_means", *adjustment]
    assert valid("retention_outreach") == adjustment  # observational: confounded without adjustment


def test_studies_without_design_sections_still_load(tmp_path: Path) -> None:
    data = example("retention_outreach")
    del data["estimand_card"], data["causal_graph"]
    study = load_study(write(tmp_path, data))
    assert study.estimand_card is None and study.causal_graph is None
    assert study.causal_dag() is None
    table = study.method_shortlist().set_index("method")
    assert not table.loc["difference_in_means", "valid"]
    assert table.loc["aipw", "valid"] and "no causal graph" in table.loc["aipw", "reason"]


def _leaky_outreach(with_graph: bool) -> StudyConfig:
    """A study whose covariates hold 'calls_logged', caused by the outreach (bypasses load checks)."""
    study = load_study(STUDIES / "retention_outreach.yaml")
    assert study.causal_graph is not None
    graph = study.causal_graph.model_copy(
        update={"edges": [*study.causal_graph.edges, ("outreach", "calls_logged")]}
    )
    return study.model_copy(
        update={
            "covariates": (*study.covariates, "calls_logged"),
            "causal_graph": graph if with_graph else None,
        }
    )


def _outreach_frame(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    outreach = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "company_size": rng.lognormal(4, 1, n),
            "health_score": rng.normal(60, 10, n),
            "outreach": outreach,
            "calls_logged": outreach * 2 + rng.poisson(1, n),
            "post_outreach_engagement": 1.5 * outreach + rng.standard_normal(n),
        }
    )


def test_a_descendant_of_the_treatment_as_a_covariate_never_reaches_a_batch() -> None:
    """The study fails to load, so the per-batch check has no graph-descendant branch to run."""
    with pytest.raises(
        ValueError,
        match=r"covariates: 'calls_logged' is a descendant of the treatment 'outreach' in causal_graph",
    ):
        StudyConfig.model_validate(_leaky_outreach(with_graph=True).model_dump())
    frame = _outreach_frame()
    # Without the graph, neither the name nor the values give 'calls_logged' away: the DAG is what fails it.
    assert post_treatment_verdict(_leaky_outreach(with_graph=False), frame, batch="2025-03").status == "pass"
    assert (
        post_treatment_verdict(load_study(STUDIES / "retention_outreach.yaml"), frame, batch="b").status
        == "pass"
    )


def _with_call_minutes() -> StudyConfig:
    """The outreach study with 'calls_logged' a descendant of the treatment and 'call_minutes' a covariate."""
    study = load_study(STUDIES / "retention_outreach.yaml")
    assert study.causal_graph is not None
    graph = study.causal_graph.model_copy(
        update={"edges": [*study.causal_graph.edges, ("outreach", "calls_logged")]}
    )
    return study.model_copy(update={"covariates": (*study.covariates, "call_minutes"), "causal_graph": graph})


def test_post_treatment_check_catches_a_copy_of_a_graph_descendant() -> None:
    frame = _outreach_frame().assign(call_minutes=lambda f: 4.0 * f["calls_logged"] + 1.0)
    offenders = post_treatment_offenders(_with_call_minutes(), frame)
    assert offenders == {
        "call_minutes": "'call_minutes' is derived from post-treatment column 'calls_logged' (|correlation| >= 0.95)"
    }


def test_post_treatment_copy_is_judged_on_the_rows_where_both_columns_are_finite() -> None:
    leaky = _with_call_minutes()
    frame = _outreach_frame()
    minutes = (4 * frame["calls_logged"] + 1).astype("Int64")  # a nullable integer column with gaps
    minutes.iloc[::7] = pd.NA
    post = frame["calls_logged"].astype(float)
    post.iloc[::5] = np.inf
    leaked = frame.assign(call_minutes=minutes, calls_logged=post)
    assert set(post_treatment_offenders(leaky, leaked)) == {"call_minutes"}
    rng = np.random.default_rng(3)
    noisy = frame.assign(
        call_minutes=frame["calls_logged"] + rng.normal(0, 3 * frame["calls_logged"].std(), len(frame))
    )
    assert post_treatment_offenders(leaky, noisy) == {}
    assert post_treatment_offenders(leaky, frame.assign(call_minutes=frame["calls_logged"].astype(str))) == {}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"covariates": ["x", "partition_key"]}, r"covariates: column name 'partition_key' is reserved"),
        ({"covariates": ["x", "row_index"]}, r"covariates: column name 'row_index' is reserved"),
        ({"covariates": ["x", "X"]}, r"covariates: columns 'x' and 'X' differ only in case"),
        ({"treatment": "T", "covariates": ["t"]}, r"covariates: columns 'T' and 't' differ only in case"),
        ({"name": "temp", "landing_folder": "temp"}, r"name: 'temp' is reserved by the warehouse"),
        ({"name": "information_schema"}, r"name: 'information_schema' is reserved"),
        ({"name": "pg_catalog"}, r"name: 'pg_catalog' is reserved"),
    ],
)
def test_names_the_warehouse_reserves_are_load_errors(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    """Finding M9: these loaded, then made every run fail."""
    data = example("ab_checkout") | change
    data.pop("causal_graph", None)
    data.pop("estimand_card", None)
    with pytest.raises(StudyConfigError, match=expected):
        load_study(write(tmp_path, data))
