"""ATT and ATC: each estimator against a plain reference and statsmodels, influence values, gates.

References are written out plainly here: the IPW standard error is the stacked M-estimation
sandwich over (propensity coefficients, both weighted means) with its Jacobian taken by complex
step (exact to rounding, no formula shared with the library); AIPW's is its doubly robust score
with statsmodels' nuisance fits; the regression's ATT is the mean over the treated of the two
arm-wise OLS fits' difference.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from numpy.typing import NDArray
from scipy import special, stats

from assimilate.diagnostics import balance_table, overlap_report, weighted_balance
from assimilate.estimators import (
    ESTIMANDS,
    ESTIMATORS,
    DesignMatrix,
    EffectEstimate,
    aipw_from_arrays,
    estimate_all,
    estimate_effect,
    influence_contributions,
    ipw_from_arrays,
    regression_adjustment_from_arrays,
    supported_estimands,
)
from assimilate.estimators.weighting import bounded_scores

REFERENCE = 1e-8  # estimates (absolute) and standard errors (relative) against the references
TIGHT = 1e-10  # sum psi^2 / n^2 against SE^2 (relative)
FloatArray = NDArray[np.float64]


class Data:
    """An observational batch with a heterogeneous effect, so ATE, ATT and ATC differ."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, 2))
        self.d = (rng.random(n) < special.expit(-0.3 + 0.9 * x[:, 0] + 0.4 * x[:, 1])).astype(np.int64)
        self.y = 1 + x[:, 0] + 0.5 * x[:, 1] + self.d * (1 + x[:, 0]) + rng.standard_normal(n)
        self.X = np.column_stack([np.ones(n), x])
        self.design = DesignMatrix(self.X, ("intercept", "x1", "x2"))
        self.frame = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "d": self.d, "y": self.y})
        glm = sm.GLM(self.d.astype(float), self.X, family=sm.families.Binomial()).fit(tol=1e-13)
        self.beta = np.asarray(glm.params)
        self.scores = np.asarray(glm.fittedvalues)


@pytest.fixture(scope="module")
def data() -> Data:
    return Data(2_000, seed=11)


def _bounded_reference(
    raw: FloatArray, estimand: str, policy: str, bounds: tuple[float, float]
) -> tuple[FloatArray, NDArray[np.bool_], NDArray[np.bool_]]:
    """Scores used, kept units, and the clipped units (fixed): one bound per estimand."""
    low, high = bounds
    outside = raw > high if estimand == "ATT" else raw < low
    if policy == "none":
        outside = np.zeros(len(raw), dtype=bool)
    used = np.where(outside & (policy == "clip"), high if estimand == "ATT" else low, raw)
    keep = ~outside if policy == "trim" else np.ones(len(raw), dtype=bool)
    return used, keep, outside & (policy == "clip")


def ipw_reference(
    data: Data, estimand: str, policy: str = "none", bounds: tuple[float, float] = (0.01, 0.99)
) -> tuple[float, float]:
    """Odds-weighted Hajek ATT/ATC and its stacked sandwich with a complex-step Jacobian."""
    X, d, y = data.X, data.d.astype(float), data.y
    n, p = X.shape
    used, keep, fixed = _bounded_reference(data.scores, estimand, policy, bounds)
    target = d if estimand == "ATT" else 1 - d

    def odds(e: NDArray[np.complex128] | FloatArray) -> NDArray[np.complex128] | FloatArray:
        return e / (1 - e) if estimand == "ATT" else (1 - e) / e

    weight = keep * (target + (1 - target) * odds(used))
    mu_t = float(np.sum(weight * target * y) / np.sum(weight * target))
    mu_o = float(np.sum(weight * (1 - target) * y) / np.sum(weight * (1 - target)))

    def psi(theta: NDArray[np.complex128]) -> NDArray[np.complex128]:
        e = 1 / (1 + np.exp(-(X @ theta[:p])))
        w = keep * (1 - target) * odds(np.where(fixed, used, e))
        return np.column_stack([X * (d - e)[:, None], keep * target * (y - theta[p]), w * (y - theta[p + 1])])

    theta = np.concatenate([data.beta, [mu_t, mu_o]]).astype(complex)
    step = 1e-30
    jacobian = np.column_stack(
        [psi(theta + 1j * step * np.eye(p + 2)[k]).mean(axis=0).imag / step for k in range(p + 2)]
    )
    scores = psi(theta).real
    inverse = np.linalg.inv(jacobian)
    cov = inverse @ (scores.T @ scores / n) @ inverse.T / n
    sign = 1.0 if estimand == "ATT" else -1.0
    contrast = np.zeros(p + 2)
    contrast[p], contrast[p + 1] = sign, -sign
    return sign * (mu_t - mu_o), float(np.sqrt(contrast @ cov @ contrast))


def aipw_reference(
    data: Data, estimand: str, scores: FloatArray, keep: NDArray[np.bool_]
) -> tuple[float, float]:
    """The doubly robust ATT/ATC score with statsmodels' arm-wise OLS outcome fits (on all units)."""
    X, treated = data.X, data.d == 1
    mu0 = (X @ sm.OLS(data.y[~treated], X[~treated]).fit().params)[keep]
    mu1 = (X @ sm.OLS(data.y[treated], X[treated]).fit().params)[keep]
    d, y, e = data.d[keep].astype(float), data.y[keep], scores[keep]
    if estimand == "ATT":
        numerator = d * (y - mu0) - (1 - d) * e / (1 - e) * (y - mu0)
        tau = numerator.sum() / d.sum()
        psi = (numerator - tau * d) / d.mean()
    else:
        numerator = (1 - d) * (mu1 - y) + d * (1 - e) / e * (y - mu1)
        tau = numerator.sum() / (1 - d).sum()
        psi = (numerator - tau * (1 - d)) / (1 - d).mean()
    return float(tau), float(np.sqrt(psi @ psi) / len(y))


def assert_agrees(ours: EffectEstimate, estimate: float, std_error: float) -> None:
    assert abs(ours.estimate - estimate) <= REFERENCE
    assert ours.std_error == pytest.approx(std_error, rel=REFERENCE)


# ---------------------------------------------------------------- IPW


@pytest.mark.parametrize("estimand", ["ATT", "ATC"])
@pytest.mark.parametrize(
    ("policy", "bounds"), [("none", (0.01, 0.99)), ("clip", (0.1, 0.9)), ("trim", (0.1, 0.9))]
)
def test_ipw_att_and_atc_equal_the_stacked_sandwich_reference(
    data: Data, estimand: str, policy: str, bounds: tuple[float, float]
) -> None:
    ours = ipw_from_arrays(data.design, data.d, data.y, estimand=estimand, policy=policy, bounds=bounds)  # type: ignore[arg-type]
    assert ours.estimand == estimand
    assert_agrees(ours, *ipw_reference(data, estimand, policy, bounds))
    # One bound only: the ATT clips or trims above the upper bound, the ATC below the lower one.
    outside = int((data.scores > bounds[1]).sum() if estimand == "ATT" else (data.scores < bounds[0]).sum())
    if policy != "none":
        assert ours.diagnostics["n_clipped" if policy == "clip" else "n_trimmed"] == outside > 0
        assert ours.diagnostics["propensity_bounded_side"] == ("upper" if estimand == "ATT" else "lower")


@pytest.mark.parametrize("estimand", ["ATT", "ATC"])
def test_ipw_att_and_atc_equal_a_statsmodels_weighted_least_squares_fit(data: Data, estimand: str) -> None:
    e = data.scores
    weights = (
        np.where(data.d == 1, 1.0, e / (1 - e))
        if estimand == "ATT"
        else np.where(data.d == 1, (1 - e) / e, 1.0)
    )
    wls = sm.WLS(data.y, sm.add_constant(data.d.astype(float)), weights=weights).fit()
    ours = ipw_from_arrays(data.design, data.d, data.y, estimand=estimand, policy="none")  # type: ignore[arg-type]
    assert abs(ours.estimate - float(wls.params[1])) <= REFERENCE


def test_ipw_att_with_an_intercept_only_propensity_is_the_difference_in_means(data: Data) -> None:
    design = DesignMatrix(np.ones((len(data.y), 1)), ("intercept",))
    naive = estimate_effect(data.frame, method="difference_in_means", treatment="d", outcome="y")
    for estimand in ("ATT", "ATC"):
        ours = ipw_from_arrays(design, data.d, data.y, estimand=estimand)  # type: ignore[arg-type]
        assert ours.estimate == pytest.approx(naive.estimate, abs=1e-12)


def test_a_control_with_a_tiny_score_is_not_clipped_up_for_the_att(data: Data) -> None:
    # Clipping the lower bound would lift such controls' odds weight from ~0 to low / (1 - low).
    ours = ipw_from_arrays(data.design, data.d, data.y, estimand="ATT", bounds=(0.2, 0.99))
    plain = ipw_from_arrays(data.design, data.d, data.y, estimand="ATT", policy="none")
    assert int((data.scores < 0.2).sum()) > 100 and ours.diagnostics["n_clipped"] == 0
    assert ours.estimate == plain.estimate


# ---------------------------------------------------------------- AIPW


@pytest.mark.parametrize("estimand", ["ATT", "ATC"])
@pytest.mark.parametrize(
    ("policy", "bounds"), [("none", (0.01, 0.99)), ("clip", (0.1, 0.9)), ("trim", (0.1, 0.9))]
)
def test_aipw_att_and_atc_equal_the_score_with_statsmodels_nuisances(
    data: Data, estimand: str, policy: str, bounds: tuple[float, float]
) -> None:
    used, keep, _ = _bounded_reference(data.scores, estimand, policy, bounds)
    ours = aipw_from_arrays(
        data.design,
        data.d,
        data.y,
        estimand=estimand,
        outcome_kind="linear",
        policy=policy,
        bounds=bounds,  # type: ignore[arg-type]
    )
    assert ours.estimand == estimand and ours.n == int(keep.sum())
    assert_agrees(ours, *aipw_reference(data, estimand, used, keep))


def test_cross_fitted_aipw_att_equals_a_manual_k_fold_loop(data: Data) -> None:
    n, folds = len(data.y), 4
    X, d, y = data.X, data.d, data.y
    e, mu0 = np.empty(n), np.empty(n)
    for fold in np.array_split(np.random.default_rng(3).permutation(n), folds):
        train = np.ones(n, dtype=bool)
        train[fold] = False
        glm = sm.GLM(d[train].astype(float), X[train], family=sm.families.Binomial()).fit(tol=1e-13)
        e[fold] = special.expit(X[fold] @ glm.params)
        control = train & (d == 0)
        mu0[fold] = X[fold] @ sm.OLS(y[control], X[control]).fit().params
    e = np.minimum(e, 0.9)  # the ATT's clip: the upper bound only
    numerator = d * (y - mu0) - (1 - d) * e / (1 - e) * (y - mu0)
    tau = numerator.sum() / d.sum()
    psi = (numerator - tau * d) / d.mean()
    ours = aipw_from_arrays(
        data.design, d, y, estimand="ATT", n_folds=folds, rng=np.random.default_rng(3),
        outcome_kind="linear", bounds=(0.1, 0.9),
    )  # fmt: skip
    assert_agrees(ours, tau, float(np.sqrt(psi @ psi)) / n)


# ---------------------------------------------------------------- regression and difference in means


def test_plain_regression_att_and_atc_are_the_ate_coefficient(data: Data) -> None:
    ate = regression_adjustment_from_arrays(data.design, data.d, data.y)
    for estimand in ("ATT", "ATC"):
        other = regression_adjustment_from_arrays(data.design, data.d, data.y, estimand=estimand)  # type: ignore[arg-type]
        assert (other.estimate, other.std_error, other.estimand) == (ate.estimate, ate.std_error, estimand)


@pytest.mark.parametrize("estimand", ["ATT", "ATC"])
def test_lin_att_is_the_mean_over_the_arm_of_the_armwise_fits_difference(data: Data, estimand: str) -> None:
    X, d, y = data.X, data.d, data.y
    beta1 = np.linalg.lstsq(X[d == 1], y[d == 1], rcond=None)[0]
    beta0 = np.linalg.lstsq(X[d == 0], y[d == 0], rcond=None)[0]
    arm = d == (1 if estimand == "ATT" else 0)
    direct = float(np.mean(X[arm] @ (beta1 - beta0)))
    ours = regression_adjustment_from_arrays(data.design, d, y, interacted=True, estimand=estimand)  # type: ignore[arg-type]
    ate = regression_adjustment_from_arrays(data.design, d, y, interacted=True)
    assert abs(ours.estimate - direct) <= 1e-10
    assert abs(ours.estimate - ate.estimate) > 0.2  # heterogeneous effect: the estimands differ
    # The SE: statsmodels' HC3 influence of the coefficient, centred at the arm's means, plus the
    # part of the estimated means g' 1{arm} (x - xbar_arm) n / n_arm.
    centred = X[:, 1:] - X[arm, 1:].mean(axis=0)
    design = np.column_stack([np.ones(len(y)), d, centred, d[:, None] * centred])
    fit = sm.OLS(y, design).fit()
    leverage = fit.get_influence().hat_matrix_diag
    row = (np.linalg.inv(design.T @ design) @ design.T)[1]
    psi = len(y) * row * fit.resid / (1 - leverage)
    assert float(psi @ psi) / len(y) ** 2 == pytest.approx(float(fit.cov_HC3[1, 1]), rel=TIGHT)
    psi[arm] += centred[arm] @ fit.params[4:] * (len(y) / int(arm.sum()))
    assert ours.estimate == pytest.approx(float(fit.params[1]), abs=1e-10)
    assert ours.std_error == pytest.approx(math.sqrt(float(psi @ psi)) / len(y), rel=TIGHT)
    assert ours.se_method == "hc3_with_covariate_means"


def test_difference_in_means_labels_the_same_number_with_the_estimand(data: Data) -> None:
    ate = estimate_effect(data.frame, method="difference_in_means", treatment="d", outcome="y")
    att = estimate_effect(
        data.frame, method="difference_in_means", treatment="d", outcome="y", estimand="ATT"
    )
    assert (att.estimate, att.std_error, att.estimand, ate.estimand) == (
        ate.estimate,
        ate.std_error,
        "ATT",
        "ATE",
    )


# ---------------------------------------------------------------- entry points and the result


def test_estimate_all_passes_the_estimand_to_every_estimator(data: Data) -> None:
    results = estimate_all(data.frame, treatment="d", outcome="y", covariates=["x1", "x2"], estimand="ATC")
    assert set(results) == set(ESTIMATORS)
    assert {fit.estimand for fit in results.values()} == {"ATC"}
    assert results["ipw"] == ipw_from_arrays(data.design, data.d, data.y, estimand="ATC")


def test_n_of_1_refuses_an_att_naming_both() -> None:
    assert supported_estimands("n_of_1") == ("ATE",)
    assert all(supported_estimands(m) == ESTIMANDS for m in ESTIMATORS)
    frame = pd.DataFrame({"d": [0, 1] * 20, "y": np.arange(40.0), "day": np.arange(40)})
    with pytest.raises(ValueError, match=r"'n_of_1' cannot estimate the ATT .*ATE only"):
        estimate_effect(frame, method="n_of_1", treatment="d", outcome="y", time="day", estimand="ATT")
    with pytest.raises(ValueError, match="estimand must be one of"):
        estimate_effect(frame, method="ipw", treatment="d", outcome="y", estimand="CATE")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method must be one of"):
        supported_estimands("cuped")


def test_the_estimand_survives_a_copy_and_json_and_an_old_record_reads_as_ate(data: Data) -> None:
    fit = aipw_from_arrays(data.design, data.d, data.y, estimand="ATT")
    assert copy.deepcopy(fit) == fit and copy.deepcopy(fit).estimand == "ATT"
    assert EffectEstimate.from_dict(json.loads(json.dumps(fit.to_dict()))) == fit
    old = {k: v for k, v in fit.to_dict().items() if k != "estimand"}
    assert EffectEstimate.from_dict(old).estimand == "ATE"
    assert fit.to_frame()["estimand"].tolist() == ["ATT"] and "estimate of the ATT" in fit.summary()
    with pytest.raises(ValueError, match="estimand must be one of"):
        EffectEstimate.from_dict({**fit.to_dict(), "estimand": "CATE"})


# ---------------------------------------------------------------- influence values


@pytest.mark.parametrize("estimand", ["ATT", "ATC"])
@pytest.mark.parametrize("method", ESTIMATORS)
def test_influence_values_reproduce_the_att_and_atc_standard_errors(
    data: Data, method: str, estimand: str
) -> None:
    covariates = [] if method == "difference_in_means" else ["x1", "x2"]
    options = {
        "frame": data.frame,
        "treatment": "d",
        "outcome": "y",
        "covariates": covariates,
        "estimand": estimand,
    }
    fit = influence_contributions(options.pop("frame"), method=method, **options)  # type: ignore[arg-type]
    alone = estimate_effect(data.frame, method=method, **options)  # type: ignore[arg-type]
    assert fit.estimate == alone and alone.estimand == estimand
    assert fit.variance == pytest.approx(alone.std_error**2, rel=TIGHT)
    if method in ("aipw", "difference_in_means"):
        assert abs(float(fit.values.mean())) < 1e-12 * float(np.abs(fit.values).max())


def test_aipw_att_influence_with_trimming_and_cross_fitting(data: Data) -> None:
    options = {"n_folds": 3, "policy": "trim", "bounds": (0.2, 0.8), "estimand": "ATT"}
    fit = influence_contributions(
        data.frame, method="aipw", treatment="d", outcome="y", covariates=["x1", "x2"],
        rng=np.random.default_rng(9), **options,  # type: ignore[arg-type]
    )  # fmt: skip
    alone = estimate_effect(
        data.frame, method="aipw", treatment="d", outcome="y", covariates=["x1", "x2"],
        rng=np.random.default_rng(9), **options,  # type: ignore[arg-type]
    )  # fmt: skip
    assert fit.estimate == alone
    trimmed = int(alone.diagnostics["n_trimmed"])
    assert trimmed > 0 and int(np.sum(fit.values == 0.0)) == trimmed
    assert fit.variance == pytest.approx(alone.std_error**2, rel=TIGHT)


# ---------------------------------------------------------------- balance and overlap


def test_att_balance_compares_the_treated_with_odds_weighted_controls_on_the_treated_sd(data: Data) -> None:
    e, d, x = data.scores, data.d == 1, data.X[:, 1]
    comparison = weighted_balance(data.frame[["x1", "x2"]], data.d, propensity=e, estimand="ATT")
    odds = e[~d] / (1 - e[~d])
    expected = (x[d].mean() - odds @ x[~d] / odds.sum()) / x[d].std(ddof=1)
    assert comparison.after.table["smd"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert comparison.after.denominator == comparison.before.denominator == "treated"
    assert comparison.estimand == "ATT" and comparison.to_dict()["estimand"] == "ATT"
    assert (
        comparison.before.max_abs_smd > 0.3 > 0.05 > comparison.after.max_abs_smd
    )  # the odds weights balance
    atc = weighted_balance(data.frame[["x1", "x2"]], data.d, propensity=e, estimand="ATC")
    inverse_odds = (1 - e[d]) / e[d]
    expected = (inverse_odds @ x[d] / inverse_odds.sum() - x[~d].mean()) / x[~d].std(ddof=1)
    assert atc.after.table["smd"].iloc[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("rule", ["fixed", "calibrated"])
def test_ate_balance_is_unchanged(data: Data, rule: str) -> None:
    e = data.scores
    ours = weighted_balance(data.frame[["x1", "x2"]], data.d, propensity=e, rule=rule)  # type: ignore[arg-type]
    plain = balance_table(
        data.frame[["x1", "x2"]], data.d, weights=np.where(data.d == 1, 1 / e, 1 / (1 - e)), rule=rule
    )  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(ours.after.table, plain.table)
    assert ours.after.denominator == "pooled" and ours.verdict == plain.verdict


def test_att_overlap_needs_overlap_only_where_the_treated_are() -> None:
    rng = np.random.default_rng(4)
    n = 2_000
    x = rng.standard_normal(n)
    e = special.expit(-3.5 + 1.2 * x)  # a large control pool, most with e < 0.05; few treated near 1
    d = (rng.random(n) < e).astype(np.int64)
    options = {"eps": 0.05, "max_share_outside": 0.1}
    ate = overlap_report(e, d, **options)
    att = overlap_report(e, d, estimand="ATT", **options)
    atc = overlap_report(e, d, estimand="ATC", **options)
    assert ate.verdict.failed and atc.verdict.failed and att.verdict.passed
    treated = d == 1
    assert att.share_outside == pytest.approx(float(np.mean(e[treated] > 0.95)))
    assert atc.share_outside == pytest.approx(float(np.mean(e[~treated] < 0.05)))
    odds = np.where(treated, 1.0, e / (1 - e))
    assert att.ess == pytest.approx(odds.sum() ** 2 / (odds @ odds))
    # The mirror image: the treated above 1 - eps fail the ATT.
    flipped = overlap_report(1 - e, 1 - d, estimand="ATT", **options)
    assert flipped.verdict.failed and flipped.share_outside == pytest.approx(atc.share_outside)
    assert "above 0.95 among the treated" in att.verdict.rule and att.to_dict()["estimand"] == "ATT"


def test_calibrated_att_overlap_with_known_scores_is_binomial_over_the_treated() -> None:
    e = np.array([0.2, 0.5, 0.97, 0.99, 0.6, 0.3, 0.02, 0.01] * 25)
    d = np.array([1, 1, 1, 1, 0, 0, 0, 0] * 25)
    report = overlap_report(e, d, estimand="ATT", max_share_outside=0.1, rule="calibrated", alpha=0.01)
    n_treated = 100
    assert report.share_outside == 0.5
    assert report.verdict.threshold == pytest.approx(stats.binom.isf(0.01, n_treated, 0.1) / n_treated)
    assert report.p_value == pytest.approx(stats.binom.sf(49, n_treated, 0.1))


def test_the_estimand_side_of_the_bounds() -> None:
    raw = np.array([0.001, 0.5, 0.999])
    assert bounded_scores(raw, "clip", (0.01, 0.99), side="upper")[0].tolist() == [0.001, 0.5, 0.99]
    assert bounded_scores(raw, "trim", (0.01, 0.99), side="lower")[1].tolist() == [False, True, True]
    assert bounded_scores(raw, "clip", (0.01, 0.99))[0].tolist() == [0.01, 0.5, 0.99]
