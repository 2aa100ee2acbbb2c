"""Per-batch estimators against statsmodels, closed forms and simulations with a known effect."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from numpy.typing import NDArray
from scipy import special

from assimilate.estimators import (
    DesignMatrix,
    aipw,
    difference_in_means,
    encode_covariates,
    estimate_all,
    fit_outcome_model,
    fit_propensity,
    ipw,
    regression_adjustment,
)
from assimilate.estimators.aipw import nuisances
from assimilate.simulate import OUTREACH_COVARIATES, outreach_true_ate, simulate_outreach_batch

REFERENCE = 1e-8  # agreement with statsmodels (relative)
CROSS_FIT = 1e-10  # the library's cross-fitted AIPW against the manual K-fold loop (absolute, relative)
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


# ---------------------------------------------------------------- outcome-model fallbacks


def _arm_singular_frame(
    rng: np.random.Generator, *, singular: bool, binary: bool, n: int = 1500
) -> pd.DataFrame:
    """``z`` is 1 for every treated unit (collinear with the intercept in that arm) unless ``regular``."""
    x = rng.standard_normal(n)
    d = rng.binomial(1, special.expit(0.5 * x))
    levels = rng.integers(0, 3, n).astype(float)
    z = np.where(d == 1, 1.0, levels) if singular else levels
    y = 1.0 * d + x + 0.5 * z + rng.standard_normal(n)
    return pd.DataFrame({"x": x, "z": z, "d": d, "y": (y > 1.0).astype(float) if binary else y})


@pytest.mark.filterwarnings(
    "ignore:An ill-conditioned matrix:scipy.linalg.LinAlgWarning"
)  # Newton, then ridge
@pytest.mark.parametrize("n_folds", [None, 5])
@pytest.mark.parametrize(("binary", "fit"), [(False, "minimum_norm"), (True, "ridge")])
def test_an_arm_with_a_singular_design_falls_back_and_the_estimate_says_so(
    n_folds: int | None, binary: bool, fit: str
) -> None:
    frame = _arm_singular_frame(np.random.default_rng(38), singular=True, binary=binary)
    est = aipw(
        frame,
        treatment="d",
        outcome="y",
        covariates=["x", "z"],
        n_folds=n_folds,
        rng=np.random.default_rng(1),
    )
    fallbacks = est.diagnostics["outcome_fallbacks"]
    assert [record["fold"] for record in fallbacks] == ([None] if n_folds is None else list(range(5)))
    for record in fallbacks:
        assert (record["arm"], record["fit"]) == ("treated", fit)
        assert record["ridge"] == (1e-3 if fit == "ridge" else 0.0)
        assert "['intercept', 'z']" in record["reason"] and "singular" in record["reason"]
    assert abs(est.estimate) < 2 and est.is_finite  # the normal equations alone gave about -3e10


@pytest.mark.parametrize("n_folds", [None, 5])
@pytest.mark.parametrize("binary", [False, True])
def test_a_regular_design_reports_no_outcome_fallback(n_folds: int | None, binary: bool) -> None:
    frame = _arm_singular_frame(np.random.default_rng(38), singular=False, binary=binary)
    est = aipw(
        frame,
        treatment="d",
        outcome="y",
        covariates=["x", "z"],
        n_folds=n_folds,
        rng=np.random.default_rng(1),
    )
    assert est.diagnostics["outcome_fallbacks"] == []
    assert "outcome_fallbacks: []" in est.summary()


def test_the_minimum_norm_fallback_fits_the_reduced_model_in_its_arm_whatever_the_units() -> None:
    frame = _arm_singular_frame(np.random.default_rng(39), singular=True, binary=False)
    d, treated = frame["d"].to_numpy(), frame["d"].to_numpy() == 1
    fit = fit_outcome_model(encode_covariates(frame, ["x", "z"]), d, frame["y"])
    reduced = sm.OLS(frame["y"][treated], sm.add_constant(frame["x"][treated])).fit()
    np.testing.assert_allclose(fit.mu1[treated], reduced.fittedvalues, rtol=0, atol=1e-10)
    control = sm.OLS(frame["y"][~treated], sm.add_constant(frame[["x", "z"]][~treated])).fit()
    np.testing.assert_allclose(fit.mu0[~treated], control.fittedvalues, rtol=0, atol=1e-10)
    assert [f.arm for f in fit.fallbacks] == ["treated"]
    assert fit.report()["outcome_fallbacks"][0]["arm"] == "treated"
    rescaled = fit_outcome_model(
        encode_covariates(frame.assign(z=1000 * frame["z"]), ["x", "z"]), d, frame["y"]
    )
    np.testing.assert_allclose(
        rescaled.mu1, fit.mu1, rtol=1e-9
    )  # the extrapolation does not follow z's units


def test_the_ridge_fallback_of_a_logistic_arm_is_close_to_the_reduced_maximum_likelihood() -> None:
    frame = _arm_singular_frame(np.random.default_rng(39), singular=True, binary=True)
    treated = frame["d"].to_numpy() == 1
    fit = fit_outcome_model(encode_covariates(frame, ["x", "z"]), frame["d"], frame["y"])
    reduced = sm.Logit(frame["y"][treated], sm.add_constant(frame["x"][treated])).fit(disp=0)
    np.testing.assert_allclose(fit.mu1[treated], reduced.predict(), rtol=0, atol=1e-4)
    assert [(f.arm, f.fit, f.ridge) for f in fit.fallbacks] == [("treated", "ridge", 1e-3)]


@pytest.mark.filterwarnings("ignore:An ill-conditioned matrix:scipy.linalg.LinAlgWarning")  # weights vanish
def test_a_separated_logistic_arm_falls_back_to_ridge_with_the_separation_as_reason() -> None:
    rng = np.random.default_rng(40)
    x, w, d = rng.standard_normal(1000), rng.binomial(1, 0.2, 1000).astype(float), rng.binomial(1, 0.5, 1000)
    y = rng.binomial(1, special.expit(x)).astype(float)
    y[(d == 1) & (w == 1)] = 0.0  # among the treated, w = 1 means y = 0: quasi-separation
    fit = fit_outcome_model(encode_covariates(pd.DataFrame({"x": x, "w": w}), ["x", "w"]), d, y)
    assert [(f.arm, f.fit) for f in fit.fallbacks] == [("treated", "ridge")]
    assert "separation" in fit.fallbacks[0].reason
    assert np.all(np.isfinite(fit.mu1)) and np.max(fit.mu1[w == 1]) < 1e-3 < np.min(fit.mu1[w == 0])


# ---------------------------------------------------------------- cross-fitting


def _observational(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, NDArray[np.float64]]:
    """Logistic propensity, arm-wise linear potential outcomes; ``E[y1 - y0] = 2 + 0.7 * 0.4`` exactly."""
    x1, x2, x3 = rng.standard_normal(n), rng.binomial(1, 0.4, n).astype(float), rng.uniform(-1, 1, n)
    d = rng.binomial(1, special.expit(-0.4 + 0.9 * x1 - 0.6 * x2 + 0.5 * x3))
    y0 = 1.0 + 1.5 * x1 + 0.8 * x2 - x3 + rng.standard_normal(n)
    y1 = 3.0 + 2.0 * x1 + 1.5 * x2 - x3 + 1.2 * rng.standard_normal(n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "d": d, "y": np.where(d == 1, y1, y0)})
    return frame, y1 - y0


OBSERVATIONAL_ATE = 2.0 + 0.5 * 0.0 + 0.7 * 0.4  # E[y1 - y0] = 2 + 0.5 E[x1] + 0.7 E[x2]


def test_each_folds_nuisances_are_fitted_without_that_fold() -> None:
    frame, _ = _observational(1000, np.random.default_rng(41))
    design = encode_covariates(frame, ["x1", "x2", "x3"])
    d, y = frame["d"].to_numpy(np.int64), frame["y"].to_numpy()
    held = np.array_split(np.random.default_rng(5).permutation(len(y)), 5)[2]  # the library's fold 2
    others = np.setdiff1d(np.arange(len(y)), held)
    wild_y, flipped_d = y.copy(), d.copy()
    wild_y[held] += 1e4 * np.random.default_rng(6).standard_normal(len(held))
    flipped_d[held] = 1 - flipped_d[held]

    def run(treatment: NDArray[np.int64], outcome: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        fitted = nuisances(design, treatment, outcome, n_folds=5, rng=np.random.default_rng(5))
        return fitted.scores, fitted.mu0, fitted.mu1

    base, wild, flipped = run(d, y), run(d, wild_y), run(flipped_d, y)
    for before, after in [*zip(base, wild, strict=True), *zip(base, flipped, strict=True)]:
        np.testing.assert_array_equal(after[held], before[held])  # fold 2 never saw its own rows
    np.testing.assert_array_equal(wild[0], base[0])  # the outcome does not enter the propensity
    for before, after in zip(base[1:], wild[1:], strict=True):
        assert np.median(np.abs(after[others] - before[others])) > 10  # the other folds did see them
    assert np.median(np.abs(flipped[0][others] - base[0][others])) > 0.01


@pytest.mark.parametrize("binary", [False, True], ids=["linear", "logistic"])
def test_cross_fitted_aipw_equals_a_manual_k_fold_loop(outreach: pd.DataFrame, binary: bool) -> None:
    y = outreach["churn"].to_numpy(np.float64)
    if not binary:
        y = y + outreach["health_score"].to_numpy() / 100
    frame, design = outreach.assign(y=y), encode_covariates(outreach, OUTREACH_COVARIATES)
    d, X, n, bounds = outreach["outreach"].to_numpy(np.int64), design.values, len(y), (0.05, 0.95)
    e, mu0, mu1 = np.empty(n), np.empty(n), np.empty(n)
    for fold in np.array_split(np.random.default_rng(7).permutation(n), 5):
        train = np.setdiff1d(np.arange(n), fold)
        rows = DesignMatrix(X[train], design.columns)
        propensity = fit_propensity(rows, d[train], policy="none")
        e[fold] = np.clip(special.expit(X[fold] @ propensity.coefficients.to_numpy()), *bounds)
        outcome = fit_outcome_model(rows, d[train], y[train])
        link = special.expit if binary else np.asarray
        mu0[fold] = link(X[fold] @ outcome.coefficients_control.to_numpy())
        mu1[fold] = link(X[fold] @ outcome.coefficients_treated.to_numpy())
    phi = mu1 - mu0 + d * (y - mu1) / e - (1 - d) * (y - mu0) / (1 - e)
    options = {"treatment": "outreach", "outcome": "y", "covariates": OUTREACH_COVARIATES, "bounds": bounds}
    ours = aipw(frame, n_folds=5, rng=np.random.default_rng(7), **options)  # type: ignore[arg-type]
    assert ours.estimate == pytest.approx(phi.mean(), rel=CROSS_FIT, abs=CROSS_FIT)
    assert ours.std_error == pytest.approx(phi.std() / np.sqrt(n), rel=CROSS_FIT)
    assert ours.diagnostics["n_clipped"] == int(np.sum((e == bounds[0]) | (e == bounds[1]))) > 0
    in_sample = aipw(frame, **options)  # type: ignore[arg-type]
    assert abs(in_sample.estimate - phi.mean()) > 1e-6  # the comparison tells the two apart


@pytest.mark.slow
def test_cross_fitted_aipw_covers_the_true_ate_of_an_observational_design_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(42)
    covered, estimates, errors, effects = [], [], [], []
    for _ in range(1000):
        frame, effect = _observational(2000, rng)
        est = aipw(frame, treatment="d", outcome="y", covariates=["x1", "x2", "x3"], n_folds=5, rng=rng)
        low, high = est.conf_int(0.05)
        covered.append(low <= OBSERVATIONAL_ATE <= high)
        estimates.append(est.estimate)
        errors.append(est.std_error)
        effects.append(effect)
    # The closed form is the simulation's: the mean of y1 - y0 over 2e6 units (sd 1.7) is within 4 SEs.
    assert np.mean(effects) == pytest.approx(OBSERVATIONAL_ATE, abs=4 * 1.7 / np.sqrt(2e6))
    # 1000 intervals: the binomial sd of the rate is 0.007 at 95%; a 15% too small SE covers 0.90.
    assert 0.93 <= np.mean(covered) <= 0.97
    assert np.mean(estimates) == pytest.approx(OBSERVATIONAL_ATE, abs=4 * np.std(estimates) / np.sqrt(1000))
    assert 0.93 <= np.mean(errors) / np.std(estimates, ddof=1) <= 1.07
