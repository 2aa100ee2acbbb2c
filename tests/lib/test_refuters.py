"""Refuters against known answers: a placebo permuted by hand, the omitted-variable identity of the
random common cause, the subset variance formula, the negative control, determinism and failures."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from assimilate.design.card import CausalGraphSpec
from assimilate.diagnostics.refuters import (
    Refutation,
    negative_controls,
    permute_within,
    placebo_treatment,
    propensity_strata,
)
from assimilate.diagnostics.robustness import (
    COMMON_CAUSE_SCALE,
    SUBSET_ALLOWANCE,
    data_subsets,
    negative_control_outcome,
    product_normal_isf,
    product_normal_tail,
    random_common_cause,
)
from assimilate.estimators import estimate_effect
from assimilate.estimators.design_matrix import encode_covariates
from assimilate.estimators.models import fit_propensity

EXACT = 1e-10


def batch(seed: int, n: int = 400, *, confounded: bool = False, unmeasured: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 2))
    u = rng.standard_normal(n)
    logit = (1.2 * x[:, 0] - 0.6 * x[:, 1] if confounded else 0.0) + unmeasured * u
    d = (rng.random(n) < special.expit(logit)).astype(np.int64)
    y = 1.0 * d + 2.0 * x[:, 0] + x[:, 1] + unmeasured * u + rng.standard_normal(n)
    nc = x[:, 0] - x[:, 1] + unmeasured * u + rng.standard_normal(n)
    return pd.DataFrame({"d": d, "y": y, "nc": nc, "x1": x[:, 0], "x2": x[:, 1]})


def welch(y: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    y1, y0 = y[d == 1], y[d == 0]
    return y1.mean() - y0.mean(), math.sqrt(y1.var(ddof=1) / len(y1) + y0.var(ddof=1) / len(y0))


# ------------------------------------------------------------------------------------- placebo
def test_placebo_on_a_randomized_batch_matches_a_permutation_done_by_hand() -> None:
    data = batch(1)
    result = placebo_treatment(
        data,
        method="difference_in_means",
        treatment="d",
        outcome="y",
        rng=np.random.default_rng(7),
        n_placebos=6,
    )
    rng, d, y = np.random.default_rng(7), data["d"].to_numpy(), data["y"].to_numpy()
    by_hand = [welch(y, d[rng.permutation(len(d))]) for _ in range(6)]
    estimates = [e for e, _ in by_hand]
    scale = math.sqrt(np.mean([se**2 for _, se in by_hand]))
    assert result.replicates == pytest.approx(estimates, abs=EXACT)
    assert result.effect == pytest.approx(np.mean(estimates), abs=EXACT)
    assert result.std_error == pytest.approx(scale, abs=EXACT)
    assert result.statistic == pytest.approx(np.mean(estimates) / scale, abs=EXACT)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(result.statistic)), abs=EXACT)
    assert result.verdict.status == "pass"
    assert result.verdict.false_alarm_rate == 0.05
    assert "whole batch" in result.null_hypothesis


def test_permutation_stays_within_strata_and_propensity_strata_have_the_asked_size() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(["a", "b", "c"], [5, 7, 8])
    values = np.arange(20)
    permuted = permute_within(values, labels, rng)
    for level in ("a", "b", "c"):
        assert sorted(permuted[labels == level]) == sorted(values[labels == level])
    assert not np.array_equal(permuted, values)
    strata = propensity_strata(rng.random(1000), units_per_stratum=50)
    assert np.bincount(strata).tolist() == [50] * 20
    scores = np.linspace(0.1, 0.9, 200)
    assert np.all(np.diff(propensity_strata(scores, units_per_stratum=40)) >= 0)  # ordered by score


def test_placebo_keeps_the_confounding_so_an_estimator_that_ignores_it_fails() -> None:
    data = batch(2, n=2000, confounded=True)
    kwargs = {"treatment": "d", "outcome": "y", "covariates": ["x1", "x2"], "design": "observational"}
    naive = placebo_treatment(data, method="difference_in_means", rng=np.random.default_rng(1), **kwargs)
    adjusted = placebo_treatment(data, method="regression_adjustment", rng=np.random.default_rng(1), **kwargs)
    assert naive.verdict.failed and naive.effect > 1.0  # the confounding by x1 passes to the placebo
    assert adjusted.verdict.passed and abs(adjusted.effect) < 2 * adjusted.std_error
    assert "strata of about 50 units by fitted propensity" in adjusted.null_hypothesis
    # A confounder left out of the estimator but in the design's propensity: the placebo sees it.
    left_out = placebo_treatment(
        data,
        method="aipw",
        treatment="d",
        outcome="y",
        covariates=["x2"],
        propensity_covariates=["x1", "x2"],
        design="observational",
        rng=np.random.default_rng(1),
    )
    assert left_out.verdict.failed


def test_placebo_reuses_given_scores_and_never_a_fitted_propensity_model() -> None:
    data = batch(4, n=600, confounded=True)
    design = encode_covariates(data, ["x1", "x2"])
    model = fit_propensity(design, data["d"].to_numpy())
    kwargs = {"method": "ipw", "treatment": "d", "outcome": "y", "covariates": ["x1", "x2"]}
    plain = placebo_treatment(data, design="observational", rng=np.random.default_rng(5), **kwargs)
    scored = placebo_treatment(
        data, design="observational", propensity_scores=model.scores, rng=np.random.default_rng(5), **kwargs
    )
    with_model = placebo_treatment(
        data, design="observational", propensity=model, rng=np.random.default_rng(5), **kwargs
    )
    assert scored.replicates == pytest.approx(plain.replicates, abs=1e-8)  # the same fit, given
    assert with_model.replicates == plain.replicates  # the real treatment's model is not the placebo's


def test_placebo_within_a_strata_column_and_undefined_when_no_propensity_exists() -> None:
    data = batch(5).assign(block=lambda f: np.where(f["x1"] > 0, "high", "low"))
    result = placebo_treatment(
        data, method="regression_adjustment", treatment="d", outcome="y", covariates=["x1"], strata="block",
        rng=np.random.default_rng(0),
    )  # fmt: skip
    assert "levels of 'block'" in result.null_hypothesis
    separated = data.assign(d=(data["x1"] > 0).astype(int))
    undefined = placebo_treatment(
        separated, method="ipw", treatment="d", outcome="y", covariates=["x1"], design="observational",
        rng=np.random.default_rng(0),
    )  # fmt: skip
    assert undefined.verdict.status == "undefined"
    assert "Separation" in undefined.verdict.reason


# ----------------------------------------------------------------------------- random common cause
def test_random_common_cause_for_regression_is_the_omitted_variable_identity() -> None:
    data = batch(6, n=300, confounded=True)
    result = random_common_cause(
        data, method="regression_adjustment", treatment="d", outcome="y", covariates=["x1", "x2"],
        rng=np.random.default_rng(11), n_draws=3,
    )  # fmt: skip
    full = estimate_effect(
        data, method="regression_adjustment", treatment="d", outcome="y", covariates=["x1", "x2"]
    )
    rng, n = np.random.default_rng(11), len(data)
    base = np.column_stack([np.ones(n), data[["x1", "x2"]].to_numpy()])
    d, y = data["d"].to_numpy(float), data["y"].to_numpy()
    moves = []
    for k in range(3):
        w = rng.standard_normal(n)
        long = np.linalg.lstsq(np.column_stack([d, base, w]), y, rcond=None)[0]
        delta = np.linalg.lstsq(np.column_stack([d, base]), w, rcond=None)[0][0]  # W on D and X
        assert result.replicates[k] == pytest.approx(long[0], abs=1e-9)
        moves.append(-long[-1] * delta)  # theta_W - theta = -beta_W * delta (omitted-variable formula)
        assert long[0] - full.estimate == pytest.approx(moves[-1], abs=1e-9)
    m_stat = math.sqrt(n) * max(abs(v) for v in moves) / full.std_error
    assert result.statistic == pytest.approx(m_stat, rel=1e-9)
    p = 1 - (1 - product_normal_tail(m_stat / COMMON_CAUSE_SCALE)) ** 3
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert result.verdict.passed


def test_the_regression_move_scaled_by_se_over_root_n_is_a_product_of_two_normals() -> None:
    data = batch(7, n=500)
    result = random_common_cause(
        data, method="regression_adjustment", treatment="d", outcome="y", covariates=["x1", "x2"],
        rng=np.random.default_rng(2), n_draws=800,
    )  # fmt: skip
    scaled = math.sqrt(500) * (np.asarray(result.replicates) - result.details["estimate"]) / result.std_error
    assert np.mean(scaled**2) == pytest.approx(1.0, abs=0.3)  # E (Z1 Z2)^2 = 1; SE of the mean 0.1
    assert np.mean(np.abs(scaled) > product_normal_isf(0.05)) == pytest.approx(0.05, abs=0.025)


def test_product_normal_tail_against_numerical_integration() -> None:
    for x in (0.3, 1.0, 2.5, 6.0):
        density = integrate.quad(lambda t: special.k0(t) / math.pi, x, np.inf)[0]
        assert product_normal_tail(x) == pytest.approx(2 * density, abs=1e-9)
    assert product_normal_tail(0.0) == 1.0
    assert product_normal_tail(product_normal_isf(0.01)) == pytest.approx(0.01, abs=1e-9)
    assert product_normal_isf(0.05) == pytest.approx(2.18195, abs=1e-4)


def test_random_common_cause_needs_a_covariate_adjusting_estimator() -> None:
    result = random_common_cause(
        batch(8), method="difference_in_means", treatment="d", outcome="y", rng=np.random.default_rng(0)
    )
    assert result.verdict.status == "undefined"
    assert "does not adjust" in result.verdict.reason


# ------------------------------------------------------------------------------------ data subsets
def test_subset_differences_have_the_finite_population_variance() -> None:
    data = batch(9, n=400)
    result = data_subsets(
        data, method="difference_in_means", treatment="d", outcome="y", rng=np.random.default_rng(4),
        n_subsets=1500, fraction=0.8,
    )  # fmt: skip
    diffs = np.asarray(result.replicates) - result.details["estimate"]
    full = estimate_effect(data, method="difference_in_means", treatment="d", outcome="y")
    assert result.std_error == pytest.approx(full.std_error * math.sqrt(400 / 320 - 1), rel=1e-12)
    assert np.mean(diffs) == pytest.approx(0.0, abs=4 * result.std_error / math.sqrt(1500))
    # (1/m - 1/n) S^2 = (n/m - 1) SE^2; the variance of 1,500 draws is known to about 4%
    assert np.var(diffs) == pytest.approx(result.std_error**2, rel=0.12)
    q = float(np.sum((diffs / result.std_error) ** 2))
    assert result.statistic == pytest.approx(q, rel=1e-12)
    assert result.p_value == pytest.approx(stats.chi2.sf(q / SUBSET_ALLOWANCE, 1500), rel=1e-9)


def test_subsets_fail_when_the_estimate_needs_a_few_rows() -> None:
    data = batch(10, n=300)
    vip = np.zeros(300)
    vip[:20] = 1.0
    data = data.assign(vip=vip, d=np.where(vip == 1, 1, data["d"]))
    data.loc[0, "d"] = 0  # the segment's only control: without it the propensity fit separates
    result = data_subsets(
        data, method="ipw", treatment="d", outcome="y", covariates=["x1", "vip"], rng=np.random.default_rng(0),
        fraction=0.5, n_subsets=20,
    )  # fmt: skip
    assert result.verdict.failed
    assert result.n_failed > 0 and result.p_value is None
    assert "SeparationError" in result.verdict.reason


def test_too_small_a_subset_is_undefined() -> None:
    result = data_subsets(
        batch(11, n=20), method="difference_in_means", treatment="d", outcome="y", fraction=0.01,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    assert result.verdict.status == "undefined"


# -------------------------------------------------------------------------------- negative control
def test_negative_control_is_the_estimator_on_the_control_outcome() -> None:
    clean = batch(12, n=1500, confounded=True)
    kwargs = {"method": "aipw", "treatment": "d", "covariates": ["x1", "x2"], "rng": np.random.default_rng(0)}
    result = negative_control_outcome(clean, negative_control="nc", **kwargs)
    direct = estimate_effect(clean, method="aipw", treatment="d", outcome="nc", covariates=["x1", "x2"])
    assert result.effect == direct.estimate and result.std_error == direct.std_error
    assert result.interval == pytest.approx(direct.conf_int(0.05))
    assert result.verdict.passed
    confounded = batch(12, n=1500, confounded=True, unmeasured=1.0)
    assert negative_control_outcome(confounded, negative_control="nc", **kwargs).verdict.failed
    with pytest.raises(ValueError, match="among the covariates"):
        negative_control_outcome(clean, negative_control="x1", **kwargs)


def test_negative_control_reuses_a_fitted_propensity_of_the_same_rows() -> None:
    data = batch(13, n=500, confounded=True)
    model = fit_propensity(encode_covariates(data, ["x1", "x2"]), data["d"].to_numpy(), bounds=(0.05, 0.95))
    result = negative_control_outcome(
        data, method="ipw", treatment="d", negative_control="nc", covariates=["x1", "x2"], propensity=model,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    direct = estimate_effect(
        data, method="ipw", treatment="d", outcome="nc", covariates=["x1", "x2"], propensity=model
    )
    assert result.effect == direct.estimate


def test_negative_controls_are_read_from_the_graph_roles() -> None:
    spec = CausalGraphSpec(roles={"nc": "negative_control", "x1": "confounder", "a_nc": "negative_control"})
    assert negative_controls(spec.roles) == ("a_nc", "nc")


# ------------------------------------------------------------------------ results and determinism
def run_all(data: pd.DataFrame, seed: int, **options: object) -> list[Refutation]:
    common = {"method": "aipw", "treatment": "d", "covariates": ["x1", "x2"], **options}
    return [
        placebo_treatment(
            data, outcome="y", design="observational", rng=np.random.default_rng(seed), **common
        ),
        random_common_cause(data, outcome="y", rng=np.random.default_rng(seed), **common),
        data_subsets(data, outcome="y", rng=np.random.default_rng(seed), **common),
        negative_control_outcome(data, negative_control="nc", rng=np.random.default_rng(seed), **common),
    ]


def test_same_seed_same_refutations_and_results_are_frozen_and_serialisable() -> None:
    data = batch(14, n=500, confounded=True)
    first, again, other = run_all(data, 3), run_all(data, 3), run_all(data, 4)
    assert [r.to_dict() for r in first] == [r.to_dict() for r in again]
    assert first[0].replicates != other[0].replicates
    for result in first:
        json.dumps(result.to_dict())
        assert copy.deepcopy(result) == result
        assert result.verdict.false_alarm_rate == result.alpha == 0.05
        assert result.null_hypothesis.endswith(".")
        assert result.refuter in str(result)
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.effect = 0.0  # type: ignore[misc]


def test_options_pass_through_to_the_estimator() -> None:
    data = batch(15, n=500, confounded=True)
    att = run_all(data, 3, estimand="ATT", n_folds=2)
    assert all(r.verdict.status in ("pass", "fail") for r in att)
    assert att == run_all(data, 3, estimand="ATT", n_folds=2)  # cross-fitting folds drawn from rng
    assert att[3].effect == pytest.approx(
        estimate_effect(
            data,
            method="aipw",
            treatment="d",
            outcome="nc",
            covariates=["x1", "x2"],
            estimand="ATT",
            n_folds=2,
            rng=np.random.default_rng(3),
        ).estimate
    )
    with pytest.raises(ValueError, match="method must be one of"):
        data_subsets(data, method="n_of_1", treatment="d", outcome="y", rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        data_subsets(data, method="aipw", treatment="d", outcome="y", rng=3)  # type: ignore[arg-type]
