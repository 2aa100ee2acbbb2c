"""A team's own estimator: the CUPED example against known answers, the plan's rules, fit_batch's contract.

The example package lives in examples/ (a team's package, not one of the project's): the tests put
that folder on sys.path for their duration, as a team's PYTHONPATH or install would.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from pydantic import ValidationError

from assimilate.design.plan import AnalysisPlan
from assimilate.estimators import InfluenceContributions, difference_in_means
from assimilate.estimators.batch import fit_batch
from assimilate.estimators.custom import contract_problem, run_custom_estimator
from assimilate.estimators.variance import cluster_robust_standard_error

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def cuped(monkeypatch: pytest.MonkeyPatch) -> Callable[..., InfluenceContributions]:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    function: Callable[..., InfluenceContributions] = importlib.import_module(
        "team_estimators.cuped"
    ).estimate
    return function


def ab_frame(seed: int, n: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(10.0, 2.0, n)
    d = rng.binomial(1, 0.5, n)
    y = 1.0 + 0.3 * d + 0.8 * x + rng.normal(0.0, 1.0, n)
    return pd.DataFrame({"unit_id": [f"u{i}" for i in range(n)], "x": x, "treatment": d, "outcome": y})


def run(function: Callable[..., Any], frame: pd.DataFrame) -> InfluenceContributions:
    result: InfluenceContributions = function(
        frame, treatment="treatment", outcome="outcome", covariates=("x",), estimand="ATE", rng=None
    )
    return result


# --- CUPED against known answers --------------------------------------------------------------------


def test_cuped_equals_the_hand_computation(cuped: Callable[..., InfluenceContributions]) -> None:
    # control x 1,2,3 y 1,3,2; treated x 2,4,6 y 4,6,8: within-arm sxy = 1 + 8 = 9, sxx = 2 + 8 = 10
    frame = pd.DataFrame(
        {"x": [1.0, 2, 3, 2, 4, 6], "treatment": [0, 0, 0, 1, 1, 1], "outcome": [1.0, 3, 2, 4, 6, 8]}
    )
    fit = run(cuped, frame)
    theta = 0.9
    adjusted = frame["outcome"] - theta * (frame["x"] - 3.0)  # mean x = 18 / 6
    treated, control = adjusted[frame["treatment"] == 1], adjusted[frame["treatment"] == 0]
    assert fit.estimate.diagnostics["theta"] == pytest.approx(theta, rel=1e-12)
    assert fit.estimate.estimate == pytest.approx(treated.mean() - control.mean(), rel=1e-12)
    assert fit.estimate.estimate == pytest.approx(6.0 - 2.0 - theta * (4.0 - 2.0), rel=1e-12)
    welch = math.sqrt(treated.var(ddof=1) / 3 + control.var(ddof=1) / 3)
    assert fit.estimate.std_error == pytest.approx(welch, rel=1e-12)
    assert fit.variance == pytest.approx(welch**2, rel=1e-12)  # sum psi^2 / n^2
    assert abs(fit.values.mean()) < 1e-12


def test_cuped_is_the_ols_coefficient_with_the_centred_pre_period(
    cuped: Callable[..., InfluenceContributions],
) -> None:
    for seed in range(3):
        frame = ab_frame(seed)
        fit = run(cuped, frame)
        x = frame["x"].to_numpy()
        design = sm.add_constant(np.column_stack([frame["treatment"], x - x.mean()]))
        ols = sm.OLS(frame["outcome"].to_numpy(), design).fit(cov_type="HC2")
        assert fit.estimate.estimate == pytest.approx(ols.params[1], rel=1e-10)
        # The documented difference: theta treated as known, O(1/n); within 1% at 500 per arm.
        assert fit.estimate.std_error == pytest.approx(ols.bse[1], rel=0.01)
        naive = difference_in_means(frame, treatment="treatment", outcome="outcome")
        # The variance CUPED removes: SE ratio sqrt(1 - rho^2) = sqrt(1 / (0.8^2 * 2^2 + 1)) = 0.530.
        assert fit.estimate.std_error / naive.std_error == pytest.approx(math.sqrt(1 / 3.56), rel=0.1)


def test_cuped_refuses_a_batch_it_cannot_adjust(cuped: Callable[..., InfluenceContributions]) -> None:
    frame = ab_frame(0, n=20).assign(x=1.0)
    with pytest.raises(ValueError, match="varies within the arms"):
        run(cuped, frame)


# --- the plan's rules ---------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "unit_id": "unit_id",
    "treatment": "treatment",
    "outcome": "outcome",
    "outcome_type": "continuous",
    "design": {"kind": "randomized"},
    "covariates": ["x"],
    "process_var": 0.0,
}
CUPED = {"cuped": "team_estimators.cuped:estimate"}


def plan(**changes: Any) -> AnalysisPlan:
    return AnalysisPlan.model_validate(BASE | changes)


def problems(**changes: Any) -> str:
    with pytest.raises(ValidationError) as raised:
        plan(**changes)
    return str(raised.value)


def test_a_plan_may_name_a_custom_estimator() -> None:
    chosen = plan(custom_estimators=CUPED, primary_estimator="cuped", estimators=["cuped", "aipw"])
    assert chosen.estimators == ("cuped", "aipw") and chosen.custom_estimators == CUPED
    card = {
        **dict.fromkeys(("business_question", "causal_question", "unit", "treatment", "outcome"), "q"),
        **dict.fromkeys(("control_condition", "time_window", "target_population"), "q"),
        "required_assumptions": ["randomization"],
        "estimand": "ATT",
    }
    assert plan(custom_estimators=CUPED, primary_estimator="cuped", estimand_card=card).estimand == "ATT"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"custom_estimators": {"aipw": "team.mod:f"}, "primary_estimator": "aipw"},
         "'aipw' is a built-in estimator's name"),
        ({"custom_estimators": {"cuped": "team.mod"}, "primary_estimator": "cuped"},
         'must be a function as "package.module:function"'),
        ({"custom_estimators": {"cuped": "team/mod.py:f"}, "primary_estimator": "cuped"},
         'must be a function as "package.module:function"'),
        ({"custom_estimators": {"Cuped-2": "team.mod:f"}, "primary_estimator": "aipw"},
         "must be an estimator name matching"),
        ({"custom_estimators": CUPED, "primary_estimator": "cupd"}, "or 'cuped'"),
        ({"primary_estimator": "cuped"}, "'two_stage_least_squares' or 'callaway_santanna'"),
        ({"custom_estimators": CUPED, "primary_estimator": "cuped", "standard_errors": "HC3"},
         "standard_errors: HC3 needs an OLS fit; 'cuped' (custom_estimators)"),
        ({"custom_estimators": CUPED, "primary_estimator": "cuped",
          "design": {"kind": "iv", "instrument": ["z"]}},
         "'cuped' (custom_estimators) cannot run under design.kind 'iv'"),
    ],
)  # fmt: skip
def test_custom_estimator_rules(changes: dict[str, Any], expected: str) -> None:
    assert expected in problems(**changes)


# --- fit_batch runs it under the contract ------------------------------------------------------------


def fitted(function: Callable[..., Any], frame: pd.DataFrame, **changes: Any) -> Any:
    chosen = plan(
        custom_estimators=CUPED,
        primary_estimator="cuped",
        estimators=["cuped", "difference_in_means"],
        **changes,
    )
    return fit_batch(
        frame, chosen, batch="2025-01-01", rng=np.random.default_rng(0), custom={"cuped": function}
    )


def test_fit_batch_runs_the_custom_estimator_as_a_built_in_one(
    cuped: Callable[..., InfluenceContributions],
) -> None:
    frame = ab_frame(1, n=400)
    fit = fitted(cuped, frame)
    alone = run(cuped, frame)
    assert fit.verdicts["estimation"].passed
    assert fit.estimates["cuped"].estimate == alone.estimate.estimate
    assert fit.estimates["cuped"].std_error == alone.estimate.std_error
    np.testing.assert_array_equal(fit.frames["influence"]["influence"], alone.values)
    effects = fit.frames["effects"].set_index("method")
    assert bool(effects.loc["cuped", "is_primary"]) and effects.loc["cuped", "error"] == ""


def test_a_clustered_study_sums_the_custom_influence_values_within_clusters(
    cuped: Callable[..., InfluenceContributions],
) -> None:
    frame = ab_frame(2, n=400).assign(store=[f"s{i % 40}" for i in range(400)])
    fit = fitted(cuped, frame, cluster="store")
    alone = run(cuped, frame)
    expected = cluster_robust_standard_error(alone.values, frame["store"])
    assert fit.estimates["cuped"].std_error == pytest.approx(expected, rel=1e-12)
    assert fit.estimates["cuped"].diagnostics["standard_error"]["df"] == 39


def _returning(value: Any) -> Callable[..., Any]:
    def function(data: pd.DataFrame, **_: Any) -> Any:
        return value(data) if callable(value) else value

    return function


def _naive(data: pd.DataFrame, **changes: Any) -> Any:
    return dataclasses.replace(difference_in_means(data, treatment="treatment", outcome="outcome"), **changes)


def _raises(data: pd.DataFrame, **_: Any) -> Any:
    raise KeyError("pre_period")


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        (_returning("0.3"), "returned a str, not an EffectEstimate or InfluenceContributions"),
        (_returning(lambda d: _naive(d, std_error=-1.0)), "standard error -1.0; it must be finite and >= 0"),
        (_returning(lambda d: _naive(d, std_error=math.inf)), "standard error inf; it must be finite"),
        (_returning(lambda d: _naive(d, estimate=math.nan)), "non-finite estimate"),
        (_returning(lambda d: _naive(d, estimand="ATT")), "returned the ATT for a study of the ATE"),
        (_returning(lambda d: InfluenceContributions(_naive(d), np.zeros(3))),
         "returned 3 influence values for 300 rows"),
        (_raises, "raised KeyError: 'pre_period'"),
    ],
)  # fmt: skip
def test_a_broken_custom_estimator_fails_its_batch_naming_it_and_the_rule(
    behaviour: Callable[..., Any], expected: str
) -> None:
    fit = fitted(behaviour, ab_frame(3, n=300))
    verdict = fit.verdicts["estimation"]
    assert not verdict.passed
    assert (
        "batch 2025-01-01: cuped: custom estimator 'cuped'" in verdict.reason and expected in verdict.reason
    )
    assert "difference_in_means" in fit.estimates  # the built-in ones still run


def test_an_estimate_without_influence_values_passes_and_cannot_be_clustered() -> None:
    frame = ab_frame(4, n=300).assign(store=[f"s{i % 30}" for i in range(300)])
    fit = fitted(_returning(_naive), frame)
    assert fit.verdicts["estimation"].passed and fit.influence is None and fit.frames["influence"].empty
    clustered = fitted(_returning(_naive), frame, cluster="store")
    assert (
        "returned no influence values, so its standard error cannot be clustered" in clustered.errors["cuped"]
    )


def test_an_unresolved_custom_estimator_fails_every_batch() -> None:
    chosen = plan(custom_estimators=CUPED, primary_estimator="cuped")
    fit = fit_batch(ab_frame(5, n=100), chosen, batch="b", rng=np.random.default_rng(0))
    assert "'cuped' (team_estimators.cuped:estimate) was not resolved" in fit.verdicts["estimation"].reason


def test_the_contract_names_what_a_function_lacks() -> None:
    def no_rng(data: Any, *, treatment: Any, outcome: Any, covariates: Any, estimand: Any) -> None: ...

    def keywords(data: Any, **options: Any) -> None: ...

    assert contract_problem(3) == "is a int, not a function"
    assert "does not accept the keyword(s) 'rng'" in str(contract_problem(no_rng))
    assert contract_problem(keywords) is None
    est, influence = run_custom_estimator(
        _returning(_naive), "mine", ab_frame(6, n=50), treatment="treatment", outcome="outcome", covariates=(),
        estimand="ATE", rng=np.random.default_rng(0),
    )  # fmt: skip
    assert est.method == "mine" and influence is None
