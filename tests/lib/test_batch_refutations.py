"""The plan's refuters key: its load rules, and refute_batch against the refuters called directly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from assimilate.design.plan import AnalysisPlan
from assimilate.diagnostics.batch_refutations import refutation_metadata, refute_batch, refuter_columns
from assimilate.diagnostics.refuters import REFUTERS, placebo_treatment
from assimilate.diagnostics.robustness import data_subsets, negative_control_outcome, random_common_cause
from assimilate.estimators.batch import fit_batch

ALL = {"placebo_treatment": {}, "negative_control_outcome": {}, "random_common_cause": {}, "data_subsets": {}}
GRAPH = {"roles": {"x": "confounder", "nc": "negative_control"}}


def plan(**changes: Any) -> AnalysisPlan:
    base: dict[str, Any] = {
        "unit_id": "id",
        "treatment": "d",
        "outcome": "y",
        "outcome_type": "continuous",
        "design": {"kind": "observational"},
        "covariates": ["x"],
        "primary_estimator": "ipw",
        "process_var": 0.0,
        "causal_graph": GRAPH,
        "refuters": ALL,
    }
    return AnalysisPlan(**(base | changes))


def observational(seed: int, n: int = 600, *, unmeasured: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, u = rng.standard_normal(n), rng.standard_normal(n)
    d = rng.binomial(1, 1.0 / (1.0 + np.exp(-(0.8 * x + unmeasured * u))))
    y = 1.0 * d + x + unmeasured * u + rng.standard_normal(n)
    nc = x + unmeasured * u + rng.standard_normal(n)  # the treatment never moves it
    return pd.DataFrame({"id": [f"u{i}" for i in range(n)], "d": d, "x": x, "y": y, "nc": nc})


def failure(**changes: Any) -> str:
    with pytest.raises(ValidationError) as error:
        plan(**changes)
    return str(error.value)


def test_without_the_key_nothing_is_refuted_and_no_column_is_added() -> None:
    bare = plan(refuters=None)
    assert refute_batch(observational(0), bare, rng=np.random.default_rng(0)) == {}
    assert refuter_columns(bare) == ()
    assert refuter_columns(plan()) == ("nc",)


def test_severity_defaults_to_warn_and_error_is_configurable() -> None:
    settings = plan(refuters={"placebo_treatment": {"severity": "ERROR", "n_placebos": 4}}).refuters
    assert settings is not None and settings.placebo_treatment is not None
    assert (settings.placebo_treatment.severity, settings.placebo_treatment.n_placebos) == ("ERROR", 4)
    assert plan().refuters.configured["data_subsets"].severity == "WARN"  # type: ignore[union-attr]
    assert "severity" in failure(refuters={"data_subsets": {"severity": "FATAL"}})
    assert "needs at least one refuter" in failure(refuters={})


def test_negative_control_needs_a_declared_column_in_no_other_role() -> None:
    assert "needs a causal_graph role negative_control" in failure(
        causal_graph={"roles": {"x": "confounder"}}
    )
    assert "needs a causal_graph role negative_control" in failure(causal_graph=None)
    both = {"roles": {"x": "confounder", "nc": "negative_control", "nc2": "negative_control"}}
    assert "name one in column" in failure(causal_graph=both)
    chosen = plan(causal_graph=both, refuters={"negative_control_outcome": {"column": "nc2"}})
    assert refuter_columns(chosen) == ("nc2",)
    assert "has no role negative_control" in failure(refuters={"negative_control_outcome": {"column": "x"}})
    covariate = {"roles": {"x": "negative_control"}}
    assert "column 'x' is a covariate" in failure(
        causal_graph=covariate, refuters={"placebo_treatment": {}, "negative_control_outcome": {}}
    )


def test_a_refuter_the_design_cannot_run_is_a_load_error_naming_it() -> None:
    iv = failure(design={"kind": "iv", "instrument": ["z"]}, primary_estimator="two_stage_least_squares",
                 causal_graph=None, refuters={"placebo_treatment": {}})  # fmt: skip
    assert "refuters.placebo_treatment: does not apply to this study: an iv design" in iv
    n_of_1 = failure(
        design={"kind": "randomized"}, primary_estimator="n_of_1", covariates=[], causal_graph=None,
        n_of_1={"time": "day", "washout_days": 1, "block_days": 7}, refuters={"data_subsets": {}},
    )  # fmt: skip
    assert "refuters.data_subsets: does not apply to this study: an N-of-1 study" in n_of_1
    naive = failure(design={"kind": "randomized"}, primary_estimator="difference_in_means", causal_graph=None,
                    refuters={"random_common_cause": {}})  # fmt: skip
    assert "refuters.random_common_cause: the primary estimator difference_in_means" in naive
    assert "not clustered" in failure(cluster="id2", refuters={"placebo_treatment": {}})


def test_refute_batch_gives_the_refuters_own_numbers_with_the_plan_and_the_batch_fits() -> None:
    study, data = plan(), observational(1)
    fit = fit_batch(data, study, batch="b", rng=np.random.default_rng(9))
    got = refute_batch(data, study, rng=np.random.default_rng(5), estimate=fit.estimates["ipw"],
                       propensity=fit.propensity)  # fmt: skip
    assert list(got) == list(REFUTERS)
    child = dict(zip(REFUTERS, np.random.default_rng(5).spawn(4), strict=True))
    common: dict[str, Any] = {"method": "ipw", "treatment": "d", "covariates": ["x"], "estimand": "ATE",
                              "policy": "clip", "bounds": (0.01, 0.99)}  # fmt: skip
    assert fit.propensity is not None
    direct = {
        "placebo_treatment": placebo_treatment(
            data, outcome="y", design="observational", propensity_scores=fit.propensity.scores,
            rng=child["placebo_treatment"], **common,
        ),
        "negative_control_outcome": negative_control_outcome(
            data, negative_control="nc", propensity=fit.propensity, rng=child["negative_control_outcome"], **common
        ),
        "random_common_cause": random_common_cause(
            data, outcome="y", estimate=fit.estimates["ipw"], rng=child["random_common_cause"], **common
        ),
        "data_subsets": data_subsets(
            data, outcome="y", estimate=fit.estimates["ipw"], rng=child["data_subsets"], **common
        ),
    }  # fmt: skip
    for name, expected in direct.items():
        assert got[name].to_dict() == expected.to_dict(), name
    assert got["negative_control_outcome"].verdict.passed  # a valid control on a correct design
    numbers = refutation_metadata(got["placebo_treatment"])
    assert numbers["replicates"] == 10 and numbers["level"] == 0.05
    assert numbers["effect"] == pytest.approx(direct["placebo_treatment"].effect)


def test_one_refuters_numbers_do_not_depend_on_which_others_are_configured() -> None:
    data = observational(2)
    alone = refute_batch(data, plan(refuters={"data_subsets": {}}), rng=np.random.default_rng(3))
    together = refute_batch(data, plan(), rng=np.random.default_rng(3))
    assert alone["data_subsets"].to_dict() == together["data_subsets"].to_dict()


def test_an_unmeasured_confounder_fails_the_negative_control_and_settings_reach_the_refuters() -> None:
    study = plan(
        refuters={"negative_control_outcome": {"alpha": 0.01}, "placebo_treatment": {"n_placebos": 3}}
    )
    got = refute_batch(observational(3, n=2000, unmeasured=1.0), study, rng=np.random.default_rng(0))
    assert got["negative_control_outcome"].verdict.failed and got["negative_control_outcome"].alpha == 0.01
    assert len(got["placebo_treatment"].replicates) == 3


def test_a_batch_without_a_usable_estimate_is_not_assessed_with_the_reason() -> None:
    got = refute_batch(observational(4), plan(), rng=np.random.default_rng(0), problem="one arm is empty")
    assert {r.verdict.status for r in got.values()} == {"undefined"}
    assert all("one arm is empty" in r.verdict.reason for r in got.values())
    missing = refute_batch(observational(4).drop(columns="nc"), plan(), rng=np.random.default_rng(0))
    assert missing["negative_control_outcome"].verdict.status == "undefined"
    assert "'nc' not in the data" in missing["negative_control_outcome"].verdict.reason
