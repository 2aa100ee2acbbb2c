"""The analysis plan as a library object: the design decides the estimators, the estimand and the checks."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from assimilate.design.plan import AnalysisPlan


def iv_plan(**changes: Any) -> AnalysisPlan:
    data: dict[str, Any] = {
        "unit_id": "unit",
        "treatment": "took_up",
        "outcome": "earnings",
        "outcome_type": "continuous",
        "design": {"kind": "iv", "instrument": ["offer"]},
        "covariates": ["age"],
        "primary_estimator": "two_stage_least_squares",
        "process_var": 0.0,
    }
    data.update(changes)
    return AnalysisPlan.model_validate(data)


def problems(**changes: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        iv_plan(**changes)
    return str(caught.value)


def test_an_instrument_design_estimates_the_late_with_two_stage_least_squares() -> None:
    plan = iv_plan()
    assert plan.estimand == "LATE"
    assert plan.estimators == ("two_stage_least_squares",)
    assert plan.design.min_first_stage_f == 10.0
    shortlist = plan.method_shortlist().set_index("method")
    assert bool(shortlist.loc["instrumental_variables", "valid"])
    assert "assumed (no causal_graph)" in shortlist.loc["instrumental_variables", "reason"]


def test_the_design_decides_which_checks_are_assessed() -> None:
    design = iv_plan().design
    assert design.not_assessed("weak_instrument") is None
    assert "weak-instrument gate" in design.not_assessed("overlap")
    assert "randomized" in design.not_assessed("srm")
    randomized = iv_plan(design={"kind": "randomized"}, primary_estimator="aipw").design
    assert randomized.not_assessed("srm") is None
    assert "no instrument" in randomized.not_assessed("weak_instrument")


def test_estimators_the_design_cannot_run_are_load_errors() -> None:
    text = problems(estimators=["two_stage_least_squares", "aipw"])
    assert "estimators: 'aipw' cannot run under design.kind 'iv'" in text
    text = problems(design={"kind": "observational"})
    assert "'two_stage_least_squares' cannot run under design.kind 'observational'" in text


def test_the_card_must_state_the_late_and_only_an_instrument_gives_it() -> None:
    card = {
        "business_question": "q",
        "causal_question": "q",
        "unit": "person",
        "treatment": "training",
        "control_condition": "none",
        "outcome": "earnings",
        "time_window": "a year",
        "target_population": "applicants",
        "required_assumptions": ["exclusion restriction"],
    }
    assert "state LATE on the card" in problems(estimand_card={**card, "estimand": "ATE"})
    assert iv_plan(estimand_card={**card, "estimand": "LATE"}).estimand == "LATE"
    text = problems(
        design={"kind": "observational"}, primary_estimator="aipw", estimand_card={**card, "estimand": "LATE"}
    )
    assert "the LATE (the effect on compliers) needs an instrument" in text


def test_an_instrument_in_another_role_is_refused() -> None:
    assert "design.instrument: column 'age' is a covariate" in problems(
        design={"kind": "iv", "instrument": ["age"]}
    )
    assert "column 'took_up' is treatment" in problems(design={"kind": "iv", "instrument": ["took_up"]})
    assert "'offer' is listed twice" in problems(design={"kind": "iv", "instrument": ["offer", "offer"]})
    assert "HC2 is not offered by 'two_stage_least_squares'" in problems(standard_errors="HC2")


def test_an_instrument_that_bypasses_the_treatment_names_the_open_path() -> None:
    graph = {
        "edges": [["offer", "took_up"], ["ability", "took_up"], ["ability", "earnings"], ["age", "earnings"]]
    }
    plan = iv_plan(causal_graph=graph)
    assert (
        "checked against causal_graph"
        in plan.method_shortlist().set_index("method").loc["instrumental_variables", "reason"]
    )
    # The offer reaches earnings through the region, which the covariates do not block.
    bypass = {"edges": [*graph["edges"], ["offer", "region"], ["region", "earnings"]]}
    text = problems(causal_graph=bypass)
    assert (
        "design.instrument: 'offer' reaches the outcome 'earnings' other than through the treatment" in text
    )
    assert "offer -> region -> earnings" in text
    # Given the region as a covariate, the path is blocked and the design loads.
    assert iv_plan(causal_graph=bypass, covariates=["age", "region"]).estimand == "LATE"
    # A common cause of the offer and the outcome opens a path too.
    confounded = {"edges": [*graph["edges"], ["neighbourhood", "offer"], ["neighbourhood", "earnings"]]}
    assert "offer <- neighbourhood -> earnings" in problems(causal_graph=confounded)
    not_a_cause = {
        "edges": [["ability", "took_up"], ["ability", "earnings"], ["offer", "age"], ["age", "earnings"]]
    }
    assert "'offer' does not cause the treatment 'took_up'" in problems(causal_graph=not_a_cause)


def test_the_shortlist_marks_valid_only_what_the_pipeline_runs() -> None:
    graph = {"edges": [["x", "d"], ["x", "y"]], "roles": {"z": "instrument"}}
    plan = AnalysisPlan.model_validate(
        {
            "unit_id": "unit",
            "treatment": "d",
            "outcome": "y",
            "outcome_type": "continuous",
            "design": {"kind": "observational"},
            "covariates": ["x"],
            "primary_estimator": "aipw",
            "process_var": 0.0,
            "causal_graph": graph,
        }
    )
    table = plan.method_shortlist().set_index("method")
    assert bool(table.loc["aipw", "valid"])
    assert not table.loc["instrumental_variables", "valid"]
    assert "declare design: {kind: iv" in table.loc["instrumental_variables", "reason"]
    assert not table.loc["difference_in_differences", "valid"]
