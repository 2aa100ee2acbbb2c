"""The did design in the plan: its rules, the checks it assesses, the shortlist, the memo's words."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pytest

from assimilate.design.designs import DifferenceInDifferencesDesign, ObservationalDesign, RandomizedDesign
from assimilate.design.plan import AnalysisPlan
from assimilate.report.event_study import did_paragraph, event_study_table

BASE = {
    "unit_id": "store",
    "treatment": "live",
    "outcome": "orders",
    "outcome_type": "continuous",
    "primary_estimator": "callaway_santanna",
    "process_var": 0.0,
}


def _plan(**changes: object) -> AnalysisPlan:
    return AnalysisPlan(**{**BASE, "design": {"kind": "did", "first_treated": "launch"}, **changes})


def test_a_did_plan_estimates_the_att_and_only_did_is_valid_in_its_shortlist() -> None:
    plan = _plan()
    assert plan.estimand == "ATT" and plan.did_columns == ("launch",)
    table = plan.method_shortlist().set_index("method")
    assert table["valid"].to_dict()["difference_in_differences"]
    assert not table.drop(index="difference_in_differences")["valid"].any()
    other = AnalysisPlan(
        **{**BASE, "design": {"kind": "observational"}, "primary_estimator": "ipw", "covariates": ["x"]}
    )
    row = other.method_shortlist().set_index("method").loc["difference_in_differences"]
    assert not row["valid"]


def test_single_adoption_takes_a_yaml_date_and_needs_its_group() -> None:
    plan = _plan(design={"kind": "did", "first_treated": dt.date(2025, 4, 1), "group": "launched"})
    assert plan.design.adoption_label == "2025-04-01" and plan.did_columns == ("launched",)
    with pytest.raises(ValueError, match=re.escape("design.group: a single adoption")):
        _plan(design={"kind": "did", "first_treated": "2025-04-01"})
    with pytest.raises(ValueError, match="not a batch label"):
        _plan(design={"kind": "did", "first_treated": "2025-13-01", "group": "g"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"covariates": ["x"]}, "covariates: the callaway_santanna estimator is unconditional"),
        ({"cluster": "region"}, "cluster: a did study clusters on the unit"),
        (
            {"design": {"kind": "did", "first_treated": "orders"}},
            "design.first_treated: column 'orders' is already the outcome",
        ),
        (
            {"design": {"kind": "did", "first_treated": "launch", "group": "g"}},
            "design.group: first_treated 'launch' is a column",
        ),
        ({"primary_estimator": "aipw"}, "'aipw' cannot run under design.kind 'did'"),
        ({"estimand_card": None, "standard_errors": "HC1"}, "standard_errors"),
    ],
)
def test_did_rules_name_the_key(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _plan(**changes)


def test_which_checks_each_design_assesses() -> None:
    did = DifferenceInDifferencesDesign(kind="did", first_treated="launch")
    assert did.not_assessed("pre_trend") is None and did.not_assessed("estimation") is None
    for check in ("srm", "overlap", "balance", "returning_units", "weak_instrument", "first_stage_sign"):
        assert did.not_assessed(check).startswith("not assessed")
    assert RandomizedDesign(kind="randomized").not_assessed("pre_trend").startswith("not assessed")
    assert ObservationalDesign(kind="observational").not_assessed("pre_trend").startswith("not assessed")


def test_the_memo_paragraph_says_what_the_pre_trend_test_found() -> None:
    effects = pd.DataFrame(
        {
            "partition_key": ["2025-01-01", "2025-02-01", "2025-03-01"],
            "method": ["callaway_santanna", "callaway_santanna_placebo", "callaway_santanna"],
            "is_primary": [True, False, True],
            "estimate": [float("nan"), 0.1, 2.0],
            "ci_lower": [float("nan"), -0.3, 1.5],
            "ci_upper": [float("nan"), 0.5, 2.5],
            "error": ["pre-period placebo: first", "", ""],
        }
    )
    table = event_study_table(effects)
    assert table["event_time"].tolist() == [-1, 0]
    passed = did_paragraph(
        table,
        control="not_yet_treated",
        level=0.05,
        pre_trend={"status": "pass", "p_value": 0.4, "statistic": 0.7},
    )
    assert "no departure from parallel trends (p = 0.4 >= 0.05)" in passed and "not proof" in passed
    failed = did_paragraph(
        table,
        control="never_treated",
        level=0.05,
        pre_trend={"status": "fail", "p_value": 0.001, "statistic": 13.0},
    )
    assert "kept out of the posterior until the analyst acts" in failed and "never-treated" in failed
    kept = did_paragraph(
        table,
        control="never_treated",
        level=0.05,
        acknowledged="known refit",
        pre_trend={"status": "fail", "p_value": 0.001, "statistic": 13.0},
    )
    assert "kept the post periods in the posterior: known refit" in kept
