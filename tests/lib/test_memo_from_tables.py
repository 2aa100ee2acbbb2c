"""The memo's inputs from a plan and stored tables: the rows the pipeline stores, back into objects."""

from __future__ import annotations

import pandas as pd
import pytest

from assimilate import causal_kalman
from assimilate.design.plan import AnalysisPlan
from assimilate.report import DesignSummary
from assimilate.report.from_tables import (
    baseline,
    failed_gates,
    latest_admitted,
    latest_estimates,
    memo_inputs,
)

LABELS = ["2025-01-01", "2025-02-01", "2025-03-01"]


def plan(**changes: object) -> AnalysisPlan:
    return AnalysisPlan.model_validate(
        {
            "unit_id": "visitor",
            "treatment": "treated",
            "outcome": "order_value",
            "outcome_type": "continuous",
            "outcome_unit": "USD",
            "design": {"kind": "randomized", "treated_share": 0.5},
            "covariates": ["age"],
            "primary_estimator": "regression_adjustment",
            "estimators": ["difference_in_means", "regression_adjustment"],
            "process_var": "mle",
            "thresholds": {"innovation_z": 2.5},
            **changes,
        }
    )


def result():  # type: ignore[no-untyped-def]
    return causal_kalman(
        [0.5, 0.9, 0.55],
        [0.1, 0.1, 0.1],
        labels=LABELS,
        excluded=[False, True, False],
        exclusion_reasons=["", "failed sample_ratio (p 1e-06)", ""],
        prior_mean=0.0,
        prior_var=1.0,
    )


def effects(primary_error: str = "") -> pd.DataFrame:
    rows = [
        ("difference_in_means", 0.56, 0.1, ""),
        ("regression_adjustment", 0.55, 0.09, primary_error),
        ("ipw", float("nan"), 0.1, ""),  # a non-finite estimate is left out
    ]
    return pd.DataFrame(
        [
            {
                "partition_key": LABELS[-1],
                "method": m,
                "estimate": e,
                "std_error": s,
                "error": err or None,
                "n_treated": 50,
                "n_control": 50,
                "se_method": "HC2",
            }
            for m, e, s, err in rows
        ]
    )


VERDICTS = pd.DataFrame(
    {
        "partition_key": [LABELS[1], LABELS[1], LABELS[2]],
        "check_name": ["sample_ratio", "balance", "balance"],
        "severity": ["ERROR", "WARN", "WARN"],
        "status": ["fail", "fail", "pass"],
        "value": [1e-6, 0.2, 0.05],
        "threshold": [0.001, 0.1, 0.1],
        "reason": ["", "", ""],
    }
)


def test_the_memo_reads_the_plan_and_the_stored_rows() -> None:
    rows = pd.DataFrame({"treated": [0, 0, 1, 0], "order_value": ["10", "12", "30", "bad"]})
    inputs = memo_inputs(
        plan(),
        result(),
        study="checkout",
        effects=effects(),
        verdicts=VERDICTS,
        latest_rows=rows,
        planned_looks=24,
        acknowledged_exclusions={LABELS[1]: "tracking outage"},
    )
    assert [e.method for e in inputs.latest_estimates] == ["difference_in_means", "regression_adjustment"]
    assert inputs.exclusions == {LABELS[1]: ("sample_ratio",)}  # only the failed ERROR check
    assert inputs.design == DesignSummary(kind="randomized", treated_share=0.5, adjustment_set=("age",))
    assert inputs.baseline is not None and (inputs.baseline.mean, inputs.baseline.n_control) == (11.0, 2)
    assert inputs.baseline.batch == LABELS[2]
    assert inputs.innovation is not None and inputs.innovation.latest_innovation.threshold == 2.5
    assert (inputs.process_var_source, inputs.planned_looks, inputs.outcome_unit) == ("estimated", 24, "USD")
    assert inputs.status == "pass"  # the one exclusion is acknowledged


def test_without_the_primary_estimate_the_latest_batch_adds_no_estimates() -> None:
    inputs = memo_inputs(
        plan(process_var=0.0),
        result(),
        study="checkout",
        effects=effects("singular"),
        verdicts=pd.DataFrame(),
    )
    assert inputs.latest_estimates == () and inputs.process_var_source == "set"
    assert inputs.verdicts == {} and inputs.exclusions == {} and inputs.baseline is None


def test_helpers_on_empty_or_missing_rows() -> None:
    assert latest_estimates(pd.DataFrame(), LABELS[0]) == ()
    assert latest_admitted(result()) == LABELS[2]
    assert baseline(pd.DataFrame({"other": [1]}), plan(), LABELS[2]) is None
    assert baseline(pd.DataFrame({"treated": [1], "order_value": [3.0]}), plan(), LABELS[2]) is None
    assert failed_gates(VERDICTS, result()) == {LABELS[1]: ["sample_ratio"]}


@pytest.mark.parametrize(
    ("design", "kind"),
    [({"kind": "observational"}, "observational"), ({"kind": "randomized"}, "randomized")],
)
def test_design_summary_from_the_plan(design: dict[str, object], kind: str) -> None:
    summary = DesignSummary.from_plan(plan(design=design))
    assert summary.kind == kind and summary.adjustment_set == ("age",)
    assert summary.method_shortlist is not None and "regression_adjustment" in set(
        summary.method_shortlist["method"]
    )
