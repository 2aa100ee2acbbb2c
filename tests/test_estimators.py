"""Per-batch estimators against statsmodels, closed forms and simulations with a known effect."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from assimilate.estimators import (
    aipw,
    difference_in_means,
    encode_covariates,
    estimate_all,
    fit_propensity,
    ipw,
    regression_adjustment,
)
from assimilate.simulate import OUTREACH_COVARIATES, outreach_true_ate, simulate_outreach_batch

REFERENCE = 1e-8  # agreement with statsmodels (relative)
TRUTH = outreach_true_ate()


@pytest.fixture(scope="module")
def outreach() -> pd.DataFrame:
    return simulate_outreach_batch(3000, rng=np.random.default_rng(30))


def _design(frame: pd.DataFrame) -> pd.DataFrame:
    numeric = frame[list(OUTREACH_COVARIATES[:-1])]
    regions = pd.get_dummies(frame["region"], drop_first=True, dtype=float)
    return pd.concat([numeric, regions], axis=1)


def test_regression_adjustment_matches_statsmodels_hc3(outreach: pd.DataFrame) -> None:
    ours = regression_adjustment(
        outreach, treatment="outreach", outcome="churn", covariates=OUTREACH_COVARIATES
    )
    X = sm.add_constant(pd.concat([outreach["outreach"].astype(float), _design(outreach)], axis=1))
    reference = sm.OLS(outreach["churn"].astype(float), X).fit(cov_type="HC3")
    assert ours.estimate == pytest.approx(reference.params["outreach"], rel=REFERENCE)
    assert ours.std_error == pytest.approx(reference.bse["outreach"], rel=REFERENCE)
    assert (ours.method, ours.se_method) == ("regression_adjustment", "hc3")


def test_lin_interacted_matches_statsmodels_on_the_centred_design(outreach: pd.DataFrame) -> None:
    ours = regression_adjustment(
        outreach, treatment="outreach", outcome="churn", covariates=OUTREACH_COVARIATES, interacted=True
    )
    centred = _design(outreach) - _design(outreach).mean()
    d = outreach["outreach"].astype(float)
    X = sm.add_constant(pd.concat([d, centred, centred.mul(d, axis=0).add_suffix("_x_d")], axis=1))
    reference = sm.OLS(outreach["churn"].astype(float), X).fit(cov_type="HC3")
    assert ours.estimate == pytest.approx(reference.params["outreach"], rel=REFERENCE)
    assert ours.std_error == pytest.approx(reference.bse["outreach"], rel=REFERENCE)


def test_propensity_model_matches_statsmodels_logit(outreach: pd.DataFrame) -> None:
    design = encode_covariates(outreach, OUTREACH_COVARIATES)
    ours = fit_propensity(design, outreach["outreach"])
    reference = sm.Logit(outreach["outreach"].astype(float), design.values).fit(disp=0)
    np.testing.assert_allclose(ours.coefficients.to_numpy(), reference.params, rtol=1e-6, atol=1e-9)
    assert ours.converged
    assert ours.report()["n_clipped"] == int(((ours.scores < 0.01) | (ours.scores > 0.99)).sum())


def test_difference_in_means_uses_welch_standard_error() -> None:
    frame = pd.DataFrame({"d": [0, 0, 0, 1, 1], "y": [1.0, 2.0, 4.0, 3.0, 7.0]})
    est = difference_in_means(frame, treatment="d", outcome="y")
    assert est.estimate == pytest.approx(5.0 - 7 / 3)
    assert est.std_error == pytest.approx(math.sqrt(8.0 / 2 + (7 / 3) / 3))
    _, high = est.conf_int(0.1)
    assert high - est.estimate == pytest.approx(1.6448536269514722 * est.std_error)


def test_ipw_with_a_constant_propensity_equals_the_difference_in_means() -> None:
    rng = np.random.default_rng(31)
    frame = pd.DataFrame({"d": rng.binomial(1, 0.3, 500), "y": rng.normal(size=500)})
    weighted = ipw(frame, treatment="d", outcome="y", covariates=[])
    naive = difference_in_means(frame, treatment="d", outcome="y")
    assert weighted.estimate == pytest.approx(naive.estimate, abs=1e-12)


@pytest.mark.slow
def test_on_the_outreach_stream_naive_has_the_wrong_sign_and_adjusted_estimators_recover_the_truth() -> None:
    rng = np.random.default_rng(32)
    results: dict[str, list[float]] = {}
    for _ in range(40):
        batch = simulate_outreach_batch(4000, rng=rng)
        for name, est in estimate_all(
            batch, treatment="outreach", outcome="churn", covariates=OUTREACH_COVARIATES
        ).items():
            results.setdefault(name, []).append(est.estimate)
    assert pytest.approx(-0.046, abs=0.002) == TRUTH
    assert np.mean(results["difference_in_means"]) > 0
    for name in ("regression_adjustment", "lin_interacted", "ipw", "aipw"):
        assert np.mean(results[name]) == pytest.approx(TRUTH, abs=0.01), name


@pytest.mark.slow
def test_aipw_interval_covers_the_truth_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(33)
    covered = []
    for _ in range(200):
        batch = simulate_outreach_batch(2000, rng=rng)
        est = aipw(batch, treatment="outreach", outcome="churn", covariates=OUTREACH_COVARIATES)
        low, high = est.conf_int(0.05)
        covered.append(low <= TRUTH <= high)
    assert 0.91 <= np.mean(covered) <= 0.98


def test_aipw_stays_consistent_when_the_outcome_model_is_wrong() -> None:
    rng = np.random.default_rng(34)
    estimates, regressions = [], []
    for _ in range(30):
        x = rng.standard_normal(4000)
        d = rng.binomial(1, 1 / (1 + np.exp(-1.2 * x)))  # logistic in x: the propensity model is right
        y = 1.0 * d + x + 3.0 * np.maximum(x, 0) ** 2 + rng.standard_normal(4000)  # not linear in x
        frame = pd.DataFrame({"x": x, "d": d, "y": y})
        estimates.append(
            aipw(frame, treatment="d", outcome="y", covariates=["x"], outcome_kind="linear").estimate
        )
        regressions.append(
            regression_adjustment(frame, treatment="d", outcome="y", covariates=["x"]).estimate
        )
    assert np.mean(estimates) == pytest.approx(1.0, abs=0.05)
    assert abs(np.mean(regressions) - 1.0) > 0.06  # the misspecified regression alone is biased


def test_aipw_stays_consistent_when_the_propensity_model_is_wrong() -> None:
    rng = np.random.default_rng(37)
    estimates, weighted = [], []
    for _ in range(30):
        x = rng.standard_normal(4000)
        d = rng.binomial(1, np.where(x > 0.3, 0.8, 0.2) - 0.1 * np.tanh(3 * x) ** 3)  # not logistic in x
        y = 1.0 * d + 2.0 * x + rng.standard_normal(4000)  # linear in x: the outcome model is right
        frame = pd.DataFrame({"x": x, "d": d, "y": y})
        estimates.append(aipw(frame, treatment="d", outcome="y", covariates=["x"]).estimate)
        weighted.append(ipw(frame, treatment="d", outcome="y", covariates=["x"]).estimate)
    assert np.mean(estimates) == pytest.approx(1.0, abs=0.03)
    assert abs(np.mean(weighted) - 1.0) > 0.05  # IPW with the wrong propensity alone is biased


@pytest.mark.slow
def test_ipw_and_aipw_standard_errors_agree_with_a_bootstrap(outreach: pd.DataFrame) -> None:
    rng = np.random.default_rng(35)
    n = len(outreach)
    draws: dict[str, list[float]] = {"ipw": [], "aipw": []}
    for _ in range(300):
        sample = outreach.iloc[rng.integers(0, n, n)]
        draws["ipw"].append(
            ipw(sample, treatment="outreach", outcome="churn", covariates=OUTREACH_COVARIATES).estimate
        )
        draws["aipw"].append(
            aipw(sample, treatment="outreach", outcome="churn", covariates=OUTREACH_COVARIATES).estimate
        )
    analytic = {
        "ipw": ipw(outreach, treatment="outreach", outcome="churn", covariates=OUTREACH_COVARIATES).std_error,
        "aipw": aipw(
            outreach, treatment="outreach", outcome="churn", covariates=OUTREACH_COVARIATES
        ).std_error,
    }
    for name, values in draws.items():
        assert 0.85 <= analytic[name] / np.std(values, ddof=1) <= 1.15, name


def test_cross_fitting_is_reproducible_with_the_same_seed(outreach: pd.DataFrame) -> None:
    def run(seed: int) -> float:
        return aipw(
            outreach,
            treatment="outreach",
            outcome="churn",
            covariates=OUTREACH_COVARIATES,
            n_folds=5,
            rng=np.random.default_rng(seed),
        ).estimate

    assert run(1) == run(1)
    assert run(1) != run(2)
    assert abs(run(1) - run(2)) < 0.01
    with pytest.raises(ValueError, match="needs rng"):
        aipw(outreach, treatment="outreach", outcome="churn", covariates=OUTREACH_COVARIATES, n_folds=5)


def test_clipping_and_trimming_are_reported() -> None:
    rng = np.random.default_rng(36)
    x = rng.normal(0, 2.5, 3000)
    frame = pd.DataFrame(
        {"x": x, "d": rng.binomial(1, 1 / (1 + np.exp(-1.5 * x))), "y": rng.normal(size=3000)}
    )
    clipped = aipw(frame, treatment="d", outcome="y", covariates=["x"], bounds=(0.05, 0.95))
    trimmed = ipw(frame, treatment="d", outcome="y", covariates=["x"], policy="trim", bounds=(0.05, 0.95))
    assert clipped.diagnostics["n_clipped"] > 100
    assert trimmed.diagnostics["n_trimmed"] > 100
    assert trimmed.n_treated + trimmed.n_control == 3000 - trimmed.diagnostics["n_trimmed"]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            pd.DataFrame({"d": [0, 1, 2, 1], "y": [1.0, 2, 3, 4], "x": [1.0, 2, 3, 4]}),
            "treatment column 'd' must be 0 or 1",
        ),
        (pd.DataFrame({"d": [0, 1, -1, 1], "y": [1.0, 2, 3, 4], "x": [1.0, 2, 3, 4]}), "must be 0 or 1"),
        (
            pd.DataFrame({"d": ["no", "yes", "no", "yes"], "y": [1.0, 2, 3, 4], "x": [1.0, 2, 3, 4]}),
            "must be 0 or 1",
        ),
        (
            pd.DataFrame({"d": [0, 1, 0, 1], "y": [1.0, np.nan, 3, 4], "x": [1.0, 2, 3, 4]}),
            "outcome column 'y'",
        ),
        (pd.DataFrame({"d": [0, 1, 0, 1], "y": [1.0, 2, 3, 4], "x": [1.0, np.inf, 3, 4]}), "covariate 'x'"),
        (
            pd.DataFrame({"d": [1, 1, 1, 0], "y": [1.0, 2, 3, 4], "x": [1.0, 2, 3, 4]}),
            "at least 2 treated and 2 control",
        ),
        (pd.DataFrame({"d": [0, 1, 0, 1], "y": [1.0, 2, 3, 4]}), "covariate column"),
        (
            pd.DataFrame(
                {
                    "d": pd.Series([], dtype=int),
                    "y": pd.Series([], dtype=float),
                    "x": pd.Series([], dtype=float),
                }
            ),
            "empty",
        ),
    ],
)
def test_invalid_batches_give_errors_that_name_the_column(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        regression_adjustment(frame, treatment="d", outcome="y", covariates=["x"])


def test_missing_treatment_column_is_named() -> None:
    with pytest.raises(ValueError, match="treatment column 'treated' not in the data"):
        difference_in_means(pd.DataFrame({"y": [1.0]}), treatment="treated", outcome="y")


def test_unknown_category_level_is_named(outreach: pd.DataFrame) -> None:
    batch = outreach.copy()
    batch.loc[0, "region"] = "Antarctica"
    with pytest.raises(ValueError, match="unknown level"):
        aipw(
            batch,
            treatment="outreach",
            outcome="churn",
            covariates=OUTREACH_COVARIATES,
            categories={"region": ["North America", "Europe", "APAC", "Latin America"]},
        )


def test_perfect_separation_is_a_clear_error() -> None:
    x = np.linspace(-3, 3, 200)
    frame = pd.DataFrame({"x": x, "d": (x > 0).astype(int), "y": np.sin(x)})
    with pytest.raises(ValueError, match="separation"):
        ipw(frame, treatment="d", outcome="y", covariates=["x"])


def test_effect_estimate_is_frozen_and_tidy(outreach: pd.DataFrame) -> None:
    est = aipw(outreach, treatment="outreach", outcome="churn", covariates=OUTREACH_COVARIATES)
    with pytest.raises(AttributeError):
        est.estimate = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        est.diagnostics["n_clipped"] = 3  # type: ignore[index]
    frame = est.to_frame()
    assert list(frame.columns) == [
        "method",
        "estimand",
        "estimate",
        "std_error",
        "ci_lower",
        "ci_upper",
        "alpha",
        "p_value",
        "n_treated",
        "n_control",
        "se_method",
    ]
    assert "aipw" in est.summary() and "95% CI" in est.summary()
