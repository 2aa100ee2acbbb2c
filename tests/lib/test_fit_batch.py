"""fit_batch: the nuisance models fitted once, and every estimate as the estimators give it alone.

The reference is the path the pipeline took before fit_batch (assets/effects.py, removed in issue
12): each estimator by name through ``estimate_effect``, each fitting its own nuisance models, then
``with_standard_error`` refitting them for the study's clustered or HC standard error.
"""

from __future__ import annotations

import importlib
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from assimilate.design.plan import ONE_SUBJECT, AnalysisPlan
from assimilate.diagnostics import weighted_balance
from assimilate.estimators import (
    duplicate_unit_clusters,
    encode_covariates,
    estimate_effect,
    fit_outcome_model,
    fit_propensity,
    influence_contributions,
    t_conf_int,
    with_standard_error,
)
from assimilate.estimators.aipw import aipw_with_influence
from assimilate.estimators.batch import EFFECT_COLUMNS, TABLES, fit_batch

UNIT = ("difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw")
OLS = ("difference_in_means", "regression_adjustment", "lin_interacted")
CARD = {
    "business_question": "q",
    "causal_question": "q",
    "unit": "account",
    "treatment": "outreach",
    "control_condition": "none",
    "outcome": "spend",
    "time_window": "a month",
    "target_population": "accounts",
    "required_assumptions": ["no unmeasured confounding"],
}
TOLERANCE = 1e-12  # bit for bit in practice: the same arithmetic on the same fits


def batch_frame(n: int = 400, *, seed: int = 0, repeats: int = 0) -> pd.DataFrame:
    """Confounded observational rows with two covariates, a region, schools and ``repeats`` repeated ids."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    region = rng.choice(["north", "south", "east"], n)
    shift = np.select([region == "south", region == "east"], [0.4, -0.3], 0.0)
    d = rng.binomial(1, 1 / (1 + np.exp(-(0.8 * x1 - 0.5 * x2 + shift))))
    school = rng.integers(0, 25, n)
    y = 1.5 * d + x1 + 0.5 * x2 * d + shift + rng.normal(0, 0.5, 25)[school] + rng.standard_normal(n)
    units = np.array([f"u{i}" for i in range(n)], dtype=object)
    units[n - repeats :] = units[:repeats]
    return pd.DataFrame(
        {
            "row_index": np.arange(n) + 7,
            "unit": units,
            "d": d,
            "y": y,
            "x1": x1,
            "x2": x2,
            "region": region,
            "school": school,
        }
    )


def make_plan(**changes: Any) -> AnalysisPlan:
    data: dict[str, Any] = {
        "unit_id": "unit",
        "treatment": "d",
        "outcome": "y",
        "outcome_type": "continuous",
        "design": {"kind": "observational"},
        "covariates": ["x1", "x2"],
        "primary_estimator": "aipw",
        "estimators": list(UNIT),
        "process_var": 0.0,
    }
    estimand = changes.pop("estimand", "ATE")
    if estimand != "ATE":
        data["estimand_card"] = {**CARD, "estimand": estimand}
    data.update(changes)
    return AnalysisPlan.model_validate(data)


def options_of(plan: AnalysisPlan, method: str, rng: np.random.Generator) -> dict[str, Any]:
    """The old path's options of one estimator (the declared levels: fit_batch's one design)."""
    options: dict[str, Any] = {"estimand": plan.estimand}
    if method in ("ipw", "aipw"):
        options |= {"policy": plan.propensity.policy, "bounds": tuple(plan.propensity.bounds)}
        if plan.categorical:
            options["categories"] = plan.categorical
    if method == "aipw" and plan.cross_fitting_folds:
        options |= {"n_folds": plan.cross_fitting_folds, "rng": rng}
    return options


def old_row(plan: AnalysisPlan, valid: pd.DataFrame, method: str, rng: np.random.Generator) -> dict[str, Any]:
    """One estimator as the pipeline ran it before fit_batch: its own fits, then the SE's refit."""
    covariates = list(plan.model_columns) if method != "difference_in_means" else []
    columns = {"treatment": plan.treatment, "outcome": plan.outcome}
    try:
        est = estimate_effect(
            valid, method=method, covariates=covariates, **columns, **options_of(plan, method, rng)
        )
        if plan.clustered or plan.standard_errors is not None:
            labels = duplicate_unit_clusters(
                valid, unit_id=plan.unit_id, policy=plan.duplicate_units, cluster=plan.cluster
            )
            options = options_of(plan, method, np.random.default_rng(SEED))  # the same folds, refitted
            options.pop("estimand")
            est = with_standard_error(
                est,
                valid,
                covariates=list(plan.model_columns),
                cluster=labels,
                se_type=plan.standard_errors,
                **columns,
                **options,
            )
    except ValueError as error:
        return {"error": str(error)}
    lower, upper = t_conf_int(est, alpha=0.05)
    return {
        "estimate": est.estimate,
        "std_error": est.std_error,
        "ci_lower": lower,
        "ci_upper": upper,
        "se_method": est.se_method,
        "error": "",
        "diagnostics": {**est.diagnostics, "estimand": est.estimand},
    }


SEED = 11


def assert_same_as_old_path(plan: AnalysisPlan, valid: pd.DataFrame) -> None:
    fit = fit_batch(valid, plan, batch="2025-01-01", rng=np.random.default_rng(SEED))
    effects = fit.tables()["effects"].set_index("method")
    rng = np.random.default_rng(SEED)  # one generator for the batch, as before
    for method in plan.estimators:
        old, new = old_row(plan, valid, method, rng), effects.loc[method]
        assert new["error"] == old["error"], method
        if old["error"]:
            continue
        for name in ("estimate", "std_error", "ci_lower", "ci_upper"):
            assert new[name] == pytest.approx(old[name], rel=TOLERANCE, abs=TOLERANCE), (method, name)
        assert new["se_method"] == old["se_method"]
        assert json.loads(new["diagnostics_json"]) == json.loads(json.dumps(old["diagnostics"], default=str))


@pytest.mark.parametrize("estimand", ["ATE", "ATT", "ATC"])
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"propensity": {"policy": "trim", "bounds": [0.1, 0.9]}},
        {"propensity": {"policy": "none"}},
        {"cluster": "school"},
        {
            "cluster": "school",
            "standard_errors": "CR2",
            "estimators": list(OLS),
            "primary_estimator": "lin_interacted",
        },
        {"standard_errors": "HC1", "estimators": list(OLS), "primary_estimator": "regression_adjustment"},
        {"cross_fitting_folds": 3},
        {"cross_fitting_folds": 2, "cluster": "school"},
        {"categorical": {"region": ["north", "south", "east"]}},
    ],
    ids=["default", "trim", "none", "cr1", "cr2", "hc1", "cross_fitted", "cross_fitted_cr1", "categorical"],
)
def test_every_estimate_equals_the_estimators_run_alone(estimand: str, settings: dict[str, Any]) -> None:
    assert_same_as_old_path(make_plan(estimand=estimand, **settings), batch_frame())


def test_repeated_units_clustered_equal_the_old_path() -> None:
    plan = make_plan(duplicate_units="cluster", cluster="school")
    assert_same_as_old_path(plan, batch_frame(repeats=30))
    rejecting = make_plan(
        standard_errors="HC3", estimators=list(OLS), primary_estimator="regression_adjustment"
    )
    assert_same_as_old_path(rejecting, batch_frame(repeats=30))  # every row names the repeated ids
    error = fit_batch(batch_frame(repeats=30), rejecting, batch="b", rng=np.random.default_rng(0)).errors
    assert set(error) == set(OLS) and all("u0" in text for text in error.values())


@pytest.mark.parametrize("repeats", [0, 30])
def test_arrow_backed_ids_give_the_same_fit_and_are_stored_without_python_objects(repeats: int) -> None:
    """The pipeline reads unit ids as pandas' Arrow-backed text (no Python object per id)."""
    plan = make_plan(duplicate_units="cluster")
    valid = batch_frame(repeats=repeats)
    arrow = valid.assign(unit=valid["unit"].astype(pd.StringDtype("pyarrow")))
    fits = [fit_batch(frame, plan, batch="b", rng=np.random.default_rng(0)) for frame in (valid, arrow)]
    for name, table in fits[0].tables().items():
        other = fits[1].tables()[name]
        if "unit_id" in table.columns:
            assert other["unit_id"].dtype == pd.StringDtype("pyarrow"), name  # kept as Arrow text
            assert other["unit_id"].tolist() == table["unit_id"].tolist(), name
            table, other = table.drop(columns="unit_id"), other.drop(columns="unit_id")
        pd.testing.assert_frame_equal(other, table, check_exact=True)
    assert fits[0].verdicts == fits[1].verdicts


def test_the_primary_influence_is_the_estimators_own() -> None:
    plan = make_plan(estimand="ATT")
    valid = batch_frame()
    fit = fit_batch(valid, plan, batch="b", rng=np.random.default_rng(0))
    alone = influence_contributions(
        valid, method="aipw", treatment="d", outcome="y", covariates=["x1", "x2"], estimand="ATT"
    )
    np.testing.assert_allclose(fit.tables()["influence"]["influence"], alone.values, rtol=0, atol=1e-12)
    assert fit.tables()["influence"]["row_index"].tolist() == valid["row_index"].tolist()


def test_stored_tables_are_those_of_the_fitted_models() -> None:
    plan = make_plan(propensity={"policy": "trim", "bounds": [0.2, 0.8]})
    valid = batch_frame()
    fit = fit_batch(valid, plan, batch="b", rng=np.random.default_rng(0))
    tables = fit.tables(batch_rules="abc")
    assert tuple(tables) == TABLES
    assert list(tables["effects"].columns) == EFFECT_COLUMNS and set(tables["effects"]["batch_rules"]) == {
        "abc"
    }
    scores = tables["propensity_scores"]
    assert fit.propensity is not None and not scores["kept"].all()
    np.testing.assert_array_equal(scores["propensity"], fit.propensity.scores)
    # the balance the old path computed, from the stored scores merged back onto the rows
    merged = valid.merge(scores[["row_index", "used_propensity"]], on="row_index")
    merged = merged[merged["used_propensity"].notna()]
    old = weighted_balance(
        merged[["x1", "x2"]],
        merged["d"],
        propensity=merged["used_propensity"],
        threshold=0.1,
        rule="calibrated",
        alpha=0.01,
    )
    pd.testing.assert_frame_equal(tables["balance"], old.to_frame(), check_exact=True)
    assert fit.verdicts["balance"] == old.verdict
    outcome = tables["outcome_coefficients"]
    assert (
        list(outcome["arm"].unique()) == ["control", "treated"] and len(tables["outcome_predictions"]) == 400
    )
    tables["effects"].loc[0, "estimate"] = 99.0  # a copy: the fit stays as it was
    assert fit.tables()["effects"].loc[0, "estimate"] != 99.0
    assert not np.shares_memory(
        tables["influence"]["influence"].to_numpy(), fit.frames["influence"]["influence"]
    )


def test_tables_to_write_are_the_fits_own_per_row_frames_and_a_labelled_copy_of_the_effects() -> None:
    fit = fit_batch(batch_frame(), make_plan(), batch="b", rng=np.random.default_rng(0))
    tables = fit.tables(batch_rules="abc", copy=False)
    for name in ("propensity_scores", "outcome_predictions", "influence"):
        assert tables[name] is fit.frames[name]  # at 1e7 rows a copy is most of a gigabyte
    assert set(tables["effects"]["batch_rules"]) == {"abc"}
    assert fit.frames["effects"]["batch_rules"].isna().all()  # the fit's own effects are not labelled
    pd.testing.assert_frame_equal(tables["effects"], fit.tables(batch_rules="abc")["effects"])


def counting(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count every propensity and outcome fit, wherever an estimator would call it."""
    calls: Counter[str] = Counter()

    def counted(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    for name in ("batch", "weighting", "aipw"):  # every module that fits one (aipw: also a function)
        module = importlib.import_module(f"assimilate.estimators.{name}")
        monkeypatch.setattr(module, "fit_propensity", counted("propensity", module.fit_propensity))
        if hasattr(module, "fit_outcome_model"):
            monkeypatch.setattr(module, "fit_outcome_model", counted("outcome", module.fit_outcome_model))
    return calls


@pytest.mark.parametrize("settings", [{}, {"cluster": "school"}, {"estimand": "ATC"}])
def test_each_nuisance_model_is_fitted_once_per_batch(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any]
) -> None:
    calls = counting(monkeypatch)
    fit = fit_batch(batch_frame(), make_plan(**settings), batch="b", rng=np.random.default_rng(0))
    assert set(fit.estimates) == set(UNIT)
    assert calls == {"propensity": 1, "outcome": 1}


@pytest.mark.parametrize(
    ("settings", "encodings"),
    [
        ({}, 1),
        ({"categorical": {"region": ["north", "south", "east"]}}, 1),
        ({"categorical": {"region": ["east", "north", "south", "west"]}}, 2),
    ],
    ids=["levels_seen", "levels_declared", "declared_one_unseen"],
)
def test_the_design_is_encoded_once_per_set_of_levels(
    monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any], encodings: int
) -> None:
    """The nuisance models' design serves IPW and AIPW too; the regressions encode the levels seen
    when a level the plan declares is absent from the batch (it would make them singular); with
    every declared level seen, the nuisance models' design spans the same columns and serves them."""
    calls: list[tuple[str, ...]] = []
    for name in ("batch", "_inputs"):  # fit_batch's own encoding, and every estimator's
        module = importlib.import_module(f"assimilate.estimators.{name}")
        encode = module.encode_covariates

        def counted(
            data: pd.DataFrame, columns: Any, *args: Any, _encode: Any = encode, **kwargs: Any
        ) -> Any:
            calls.append(tuple(columns))
            return _encode(data, columns, *args, **kwargs)

        monkeypatch.setattr(module, "encode_covariates", counted)
    fit = fit_batch(batch_frame(), make_plan(**settings), batch="b", rng=np.random.default_rng(0))
    unseen = "west" in settings.get("categorical", {}).get("region", [])  # the propensity model is singular
    assert set(fit.estimates) == (set(OLS) if unseen else set(UNIT))
    assert len([columns for columns in calls if columns]) == encodings  # difference_in_means: no covariates


def test_cross_fitting_fits_on_each_folds_complement_and_once_in_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = counting(monkeypatch)
    fit_batch(batch_frame(), make_plan(cross_fitting_folds=3), batch="b", rng=np.random.default_rng(0))
    assert calls == {"propensity": 1 + 3, "outcome": 1 + 3}


def test_too_few_units_assess_nothing_and_store_empty_tables() -> None:
    valid = batch_frame(40)
    valid["d"] = 0
    valid.loc[0, "d"] = 1
    fit = fit_batch(valid, make_plan(), batch="2025-03-01", rng=np.random.default_rng(0))
    reason = "needs at least 2 treated and 2 control units, got 1 treated and 39 control"
    assert fit.verdicts["overlap"].status == "undefined"
    assert fit.verdicts["overlap"].reason == f"batch 2025-03-01: {reason}"
    assert fit.verdicts["balance"].reason == "batch 2025-03-01: no propensity scores"
    assert fit.verdicts["estimation"].status == "fail"
    assert fit.verdicts["estimation"].reason == f"batch 2025-03-01: aipw: {reason}"
    assert set(fit.errors.values()) == {reason} and fit.influence is None
    tables = fit.tables()
    assert all(tables[name].empty for name in TABLES if name != "effects")
    assert list(tables["propensity_scores"].columns)[:2] == ["row_index", "unit_id"]
    assert fit.outcome_summary() == {"model": "not fitted", "fallbacks": 0, "fallback_reasons": []}
    assert fit.propensity_summary() == {}


def test_a_batch_without_rows_is_not_assessed() -> None:
    fit = fit_batch(pd.DataFrame(), make_plan(), batch="b", rng=np.random.default_rng(0))
    assert fit.verdicts["overlap"].reason == "batch b: no valid rows" and fit.n_rows == 0
    assert fit.tables()["influence"].empty


def test_a_model_that_cannot_be_fitted_fails_overlap_and_the_estimators_that_need_it() -> None:
    valid = batch_frame()
    valid["x2"] = 2.0 * valid["d"] + np.random.default_rng(2).uniform(0, 1, len(valid))  # separates the arms
    plan = make_plan(primary_estimator="ipw")
    fit = fit_batch(valid, plan, batch="b", rng=np.random.default_rng(0))
    overlap = fit.verdicts["overlap"]
    assert overlap.status == "fail" and overlap.value is None and "separat" in overlap.reason
    assert overlap.reason == f"batch b: {fit.propensity_error}"
    assert fit.propensity_summary() == {"fit": f"not fitted: {fit.propensity_error}"}
    assert fit.errors["ipw"] == fit.errors["aipw"] == fit.propensity_error
    assert fit.verdicts["balance"].reason == "batch b: no propensity scores"
    assert fit.verdicts["estimation"].status == "fail" and "difference_in_means" in fit.estimates
    assert fit.errors == {m: e for m, e in fit.errors.items() if m in ("ipw", "aipw")}
    assert_same_as_old_path(plan, valid)  # the same errors as each estimator's own fit


def test_one_subject_has_no_units_to_compare() -> None:
    rng = np.random.default_rng(3)
    days = pd.date_range("2025-01-01", periods=60, freq="D")
    d = np.repeat(rng.permutation([0, 1] * 6), 5)
    valid = pd.DataFrame(
        {
            "row_index": np.arange(60),
            "day": days.strftime("%Y-%m-%d"),
            "d": d,
            "y": d + rng.standard_normal(60),
        }
    )
    plan = make_plan(
        unit_id="day",
        design={"kind": "randomized"},
        covariates=[],
        primary_estimator="n_of_1",
        estimators=["n_of_1"],
        n_of_1={"time": "day", "washout_days": 1, "block_days": 5},
    )
    fit = fit_batch(valid, plan, batch="b", rng=np.random.default_rng(0))
    assert fit.verdicts["overlap"].reason == f"batch b: {ONE_SUBJECT}"
    assert fit.verdicts["balance"].reason == ONE_SUBJECT and fit.verdicts["balance"].status == "undefined"
    assert fit.verdicts["estimation"].passed and fit.propensity is None and fit.influence is None
    assert fit.outcome is not None  # the outcome model is fitted on the days, as the asset always did
    expected = estimate_effect(
        valid, method="n_of_1", treatment="d", outcome="y", time="day", washout=1, fusion_correction=True
    )
    assert fit.estimates["n_of_1"].estimate == expected.estimate


def test_a_design_without_a_propensity_does_not_fit_one() -> None:
    valid = batch_frame().assign(offer=lambda frame: np.random.default_rng(1).binomial(1, 0.5, len(frame)))
    plan = make_plan(
        design={"kind": "iv", "instrument": ["offer"]},
        primary_estimator="two_stage_least_squares",
        estimators=["two_stage_least_squares"],
    )
    fit = fit_batch(valid, plan, batch="b", rng=np.random.default_rng(0))
    reason = plan.design.not_assessed("overlap")
    assert reason is not None and fit.propensity is None
    assert fit.verdicts["overlap"].reason == f"batch b: {reason}" and fit.verdicts["balance"].reason == reason


def arrays_of(valid: pd.DataFrame) -> tuple[Any, np.ndarray, np.ndarray]:
    design = encode_covariates(valid, ["x1", "x2"])
    return design, valid["d"].to_numpy(dtype=np.int64), valid["y"].to_numpy(dtype=float)


@pytest.mark.parametrize("estimand", ["ATE", "ATT", "ATC"])
@pytest.mark.parametrize("policy", ["clip", "trim"])
def test_aipw_with_fitted_models_is_aipw_fitting_its_own(estimand: str, policy: str) -> None:
    design, d, y = arrays_of(batch_frame())
    bounds = (0.05, 0.95)
    own = aipw_with_influence(design, d, y, policy=policy, bounds=bounds, estimand=estimand)
    given = aipw_with_influence(
        design,
        d,
        y,
        policy=policy,
        bounds=bounds,
        estimand=estimand,
        propensity=fit_propensity(design, d, policy=policy, bounds=bounds),
        outcome_fit=fit_outcome_model(design, d, y),
    )
    assert given[0] == own[0]
    np.testing.assert_array_equal(given[1], own[1])


def test_aipw_refuses_fitted_models_it_cannot_use() -> None:
    design, d, y = arrays_of(batch_frame())
    clipped, outcome = fit_propensity(design, d), fit_outcome_model(design, d, y)
    with pytest.raises(ValueError, match="cross-fitting"):
        aipw_with_influence(design, d, y, n_folds=2, rng=np.random.default_rng(0), propensity=clipped)
    with pytest.raises(ValueError, match="bounded by policy 'clip'"):
        aipw_with_influence(design, d, y, policy="trim", propensity=clipped, outcome_fit=outcome)
    with pytest.raises(ValueError, match="scores 400 rows, not these 399"):
        aipw_with_influence(design, d[1:], y[1:], propensity=clipped)
    with pytest.raises(ValueError, match="is linear, not the logistic"):
        aipw_with_influence(design, d, y, outcome_kind="logistic", outcome_fit=outcome)


@pytest.mark.parametrize("method", ["ipw", "aipw"])
def test_a_clustered_se_from_given_influence_values_is_the_refitted_one(method: str) -> None:
    valid = batch_frame()
    columns: dict[str, Any] = {"treatment": "d", "outcome": "y", "covariates": ["x1", "x2"]}
    fit = influence_contributions(valid, method=method, estimand="ATT", **columns)
    refitted = with_standard_error(fit.estimate, valid, cluster="school", **columns)
    given = with_standard_error(fit.estimate, valid, cluster="school", influence=fit, **columns)
    assert given == refitted and given.se_method == "cr1"
    with pytest.raises(TypeError, match="would refit"):
        with_standard_error(fit.estimate, valid, cluster="school", influence=fit, policy="trim", **columns)


def test_a_failed_check_of_the_batch_fails_every_estimator_that_reads_the_covariates() -> None:
    valid = batch_frame().assign(x2=1.0)  # constant in this batch
    plan = make_plan(primary_estimator="difference_in_means")
    fit = fit_batch(valid, plan, batch="b", rng=np.random.default_rng(0))
    assert set(fit.errors) == {"regression_adjustment", "lin_interacted", "ipw", "aipw"}
    assert all("['x2'] are constant" in text for text in fit.errors.values())
    assert fit.verdicts["estimation"].passed
    assert_same_as_old_path(plan, valid)
