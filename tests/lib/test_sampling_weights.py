"""Sampling (survey) weights through every unit-level estimator, against known answers.

The difference in means and regression adjustment against statsmodels' WLS (points to 1e-10, their
HC2/HC3 and cluster SEs to 1e-8); IPW and AIPW against a reference written here (the stacked
estimating equations' sandwich with a numerical Jacobian, and the doubly robust score); constant
weights reproduce the unweighted results bit for bit; integer weights equal row replication; a fast
run of the population-coverage simulation (simulations/sampling_weights.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import special

from assimilate.diagnostics.balance import balance_table, weighted_balance
from assimilate.estimators import EffectEstimate, aipw, difference_in_means, ipw, regression_adjustment
from assimilate.estimators.influence import influence_contributions
from assimilate.estimators.variance import cluster_robust_standard_error, with_standard_error
from simulations.sampling_weights import run

ESTIMANDS = ("ATE", "ATT", "ATC")


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    """An observational batch with a heterogeneous effect and unequal sampling weights."""
    rng = np.random.default_rng(14)
    n = 600
    x = rng.standard_normal(n)
    z = rng.uniform(-1, 1, n)
    d = rng.binomial(1, special.expit(0.6 * x - 0.3 * z))
    y = x + 0.5 * z + d * (1.0 + 0.8 * x) + rng.standard_normal(n)
    w = np.round(rng.uniform(0.5, 4.0, n), 3)
    return pd.DataFrame({"x": x, "z": z, "d": d, "y": y, "w": w, "school": rng.integers(0, 40, n)})


def _fit(frame: pd.DataFrame, method: str, estimand: str = "ATE", **options: Any) -> EffectEstimate:
    common = {"treatment": "d", "outcome": "y", "estimand": estimand, **options}
    if method == "difference_in_means":
        return difference_in_means(frame, **common)
    if method in ("regression_adjustment", "lin_interacted"):
        return regression_adjustment(
            frame, covariates=["x", "z"], interacted=method == "lin_interacted", **common
        )
    return (ipw if method == "ipw" else aipw)(frame, covariates=["x", "z"], policy="none", **common)


def test_weighted_difference_in_means_is_wls_with_hc2(batch: pd.DataFrame) -> None:
    X = sm.add_constant(batch["d"].to_numpy(dtype=float))
    reference = sm.WLS(batch["y"], X, weights=batch["w"]).fit(cov_type="HC2")
    for estimand in ESTIMANDS:
        fit = difference_in_means(batch, treatment="d", outcome="y", estimand=estimand, weights=batch["w"])
        assert abs(fit.estimate - reference.params.iloc[1]) < 1e-10
        assert abs(fit.std_error - reference.bse.iloc[1]) < 1e-8
        assert fit.se_method == "hc2"


@pytest.mark.parametrize("interacted", [False, True])
def test_weighted_regression_adjustment_is_wls_with_hc3(batch: pd.DataFrame, interacted: bool) -> None:
    x = batch[["x", "z"]].to_numpy()
    d = batch["d"].to_numpy(dtype=float)[:, None]
    w = batch["w"].to_numpy()
    if interacted:
        centred = x - w @ x / w.sum()
        X = np.hstack([np.ones_like(d), d, centred, d * centred])
    else:
        X = np.hstack([np.ones_like(d), d, x])
    reference = sm.WLS(batch["y"].to_numpy(), X, weights=w).fit(cov_type="HC3")
    fit = regression_adjustment(
        batch, treatment="d", outcome="y", covariates=["x", "z"], interacted=interacted, weights=w
    )
    assert abs(fit.estimate - reference.params[1]) < 1e-10
    if interacted:
        # The population's ATE also counts the weighted covariate means' noise: WLS's HC3
        # contributions n a_i e_i / (1 - h_ii) on the whitened rows, plus n w_i (x_i - xbar_w)' g / W.
        root = np.sqrt(w)
        whitened = X * root[:, None]
        bread = np.linalg.inv(whitened.T @ whitened)
        leverage = np.einsum("ij,jk,ik->i", whitened, bread, whitened)
        residual = root * (batch["y"].to_numpy() - X @ reference.params)
        n = len(w)
        hc3 = n * (whitened @ bread[:, 1]) * residual / (1 - leverage)
        assert abs(np.sqrt(hc3 @ hc3) / n - reference.bse[1]) < 1e-8  # the reference is statsmodels' HC3
        psi = hc3 + n * w * (centred @ reference.params[4:]) / w.sum()
        assert fit.se_method == "hc3_with_covariate_means"
        assert abs(fit.std_error - np.sqrt(psi @ psi) / n) < 1e-8
    else:
        assert abs(fit.std_error - reference.bse[1]) < 1e-8


@pytest.mark.parametrize("estimand", ["ATT", "ATC"])
def test_weighted_lin_att_centres_at_the_arms_weighted_means(batch: pd.DataFrame, estimand: str) -> None:
    x = batch[["x", "z"]].to_numpy()
    d = batch["d"].to_numpy(dtype=float)[:, None]
    w = batch["w"].to_numpy()
    arm = batch["d"].to_numpy() == (1 if estimand == "ATT" else 0)
    centred = x - w[arm] @ x[arm] / w[arm].sum()
    X = np.hstack([np.ones_like(d), d, centred, d * centred])
    reference = sm.WLS(batch["y"].to_numpy(), X, weights=w).fit()
    fit = regression_adjustment(
        batch,
        treatment="d",
        outcome="y",
        covariates=["x", "z"],
        interacted=True,
        estimand=estimand,
        weights=w,
    )
    assert abs(fit.estimate - reference.params[1]) < 1e-10


def test_cluster_robust_se_of_weighted_ols_is_statsmodels(batch: pd.DataFrame) -> None:
    for method, X in (
        ("difference_in_means", sm.add_constant(batch["d"].to_numpy(dtype=float))),
        ("regression_adjustment", np.column_stack([np.ones(len(batch)), batch["d"], batch["x"], batch["z"]])),
    ):
        reference = sm.WLS(batch["y"].to_numpy(), X, weights=batch["w"]).fit(
            cov_type="cluster", cov_kwds={"groups": batch["school"].to_numpy()}
        )
        fit = _fit(batch, method, weights=batch["w"])
        clustered = with_standard_error(
            fit,
            batch,
            treatment="d",
            outcome="y",
            covariates=["x", "z"],
            cluster="school",
            weights=batch["w"],
        )
        assert clustered.estimate == fit.estimate
        assert abs(clustered.std_error - reference.bse[1]) < 1e-8


def _weighted_logistic(X: np.ndarray, d: np.ndarray, w: np.ndarray) -> np.ndarray:
    model = sm.GLM(d, X, family=sm.families.Binomial(), var_weights=w)
    return np.asarray(model.fit(tol=1e-14, maxiter=100).params)


def _ipw_equations(
    theta: np.ndarray, X: np.ndarray, d: np.ndarray, y: np.ndarray, w: np.ndarray, estimand: str
) -> np.ndarray:
    """Each unit's stacked estimating equations (propensity score, then the two arm means), times w."""
    p = X.shape[1]
    beta, mu1, mu0 = theta[:p], theta[p], theta[p + 1]
    e = special.expit(X @ beta)
    if estimand == "ATE":
        w1, w0 = d / e, (1 - d) / (1 - e)
    elif estimand == "ATT":
        w1, w0 = d, (1 - d) * e / (1 - e)
    else:
        w1, w0 = d * (1 - e) / e, 1 - d
    columns = [X * (d - e)[:, None], (w1 * (y - mu1))[:, None], (w0 * (y - mu0))[:, None]]
    return np.hstack(columns) * w[:, None]


def _reference_ipw(frame: pd.DataFrame, w: np.ndarray, estimand: str) -> tuple[float, float]:
    """The Hajek IPW and its sandwich SE from the stacked equations, by the book: A^-1 B A^-T / n."""
    X = np.column_stack([np.ones(len(frame)), frame["x"], frame["z"]])
    d, y = frame["d"].to_numpy(dtype=float), frame["y"].to_numpy()
    beta = _weighted_logistic(X, d, w)
    e = special.expit(X @ beta)
    w1, w0 = {"ATE": (d / e, (1 - d) / (1 - e)), "ATT": (d, (1 - d) * e / (1 - e))}.get(
        estimand, (d * (1 - e) / e, 1 - d)
    )
    mu1, mu0 = (w * w1) @ y / (w * w1).sum(), (w * w0) @ y / (w * w0).sum()
    theta = np.concatenate([beta, [mu1, mu0]])
    n, k = len(y), len(theta)
    jacobian = np.empty((k, k))
    for j in range(k):  # central differences of the mean equations
        step = np.zeros(k)
        step[j] = 1e-6
        upper = _ipw_equations(theta + step, X, d, y, w, estimand).mean(axis=0)
        lower = _ipw_equations(theta - step, X, d, y, w, estimand).mean(axis=0)
        jacobian[:, j] = (upper - lower) / 2e-6
    g = _ipw_equations(theta, X, d, y, w, estimand)
    bread = np.linalg.inv(jacobian)
    covariance = bread @ (g.T @ g / n) @ bread.T / n
    contrast = np.zeros(k)
    contrast[-2:] = (1.0, -1.0)
    return float(mu1 - mu0), float(np.sqrt(contrast @ covariance @ contrast))


@pytest.mark.parametrize("estimand", ESTIMANDS)
def test_weighted_ipw_is_the_stacked_sandwich(batch: pd.DataFrame, estimand: str) -> None:
    w = batch["w"].to_numpy()
    estimate, std_error = _reference_ipw(batch, w, estimand)
    fit = _fit(batch, "ipw", estimand, weights=w)
    assert abs(fit.estimate - estimate) < 1e-8
    assert abs(fit.std_error - std_error) < 1e-8
    assert fit.diagnostics["sampling_weights"] is True


def _reference_aipw(frame: pd.DataFrame, w: np.ndarray, estimand: str) -> tuple[float, float]:
    """Survey-weighted nuisances (GLM, WLS per arm) and the weighted doubly robust score."""
    X = np.column_stack([np.ones(len(frame)), frame["x"], frame["z"]])
    d, y = frame["d"].to_numpy(dtype=float), frame["y"].to_numpy()
    e = special.expit(X @ _weighted_logistic(X, d, w))
    m = {}
    for arm in (0, 1):
        rows = d == arm
        m[arm] = X @ np.asarray(sm.WLS(y[rows], X[rows], weights=w[rows]).fit().params)
    if estimand == "ATE":
        phi = m[1] - m[0] + d * (y - m[1]) / e - (1 - d) * (y - m[0]) / (1 - e)
        tau = w @ phi / w.sum()
        return float(tau), float(np.sqrt(np.sum((w * (phi - tau)) ** 2)) / w.sum())
    if estimand == "ATT":
        score, target = (d - (1 - d) * e / (1 - e)) * (y - m[0]), d
    else:
        score, target = (d * (1 - e) / e - (1 - d)) * (y - m[1]), 1 - d
    tau = (w * score).sum() / (w * target).sum()
    psi = w * (score - tau * target)
    return float(tau), float(np.sqrt(psi @ psi) / (w * target).sum())


@pytest.mark.parametrize("estimand", ESTIMANDS)
def test_weighted_aipw_is_the_weighted_doubly_robust_score(batch: pd.DataFrame, estimand: str) -> None:
    w = batch["w"].to_numpy()
    estimate, std_error = _reference_aipw(batch, w, estimand)
    fit = _fit(batch, "aipw", estimand, weights=w)
    assert abs(fit.estimate - estimate) < 1e-8
    assert abs(fit.std_error - std_error) < 1e-8


METHODS = ("difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw")


@pytest.mark.parametrize("method", METHODS)
def test_constant_weights_reproduce_the_unweighted_results_exactly(batch: pd.DataFrame, method: str) -> None:
    for estimand in ESTIMANDS:
        plain = _fit(batch, method, estimand)
        assert _fit(batch, method, estimand, weights=np.ones(len(batch))) == plain
        assert _fit(batch, method, estimand, weights=np.full(len(batch), 3.7)) == plain
        values = influence_contributions(
            batch,
            method=method,
            treatment="d",
            outcome="y",
            covariates=["x", "z"],
            estimand=estimand,
            weights=np.ones(len(batch)),
            **({"policy": "none"} if method in ("ipw", "aipw") else {}),
        ).values
        reference = influence_contributions(
            batch,
            method=method,
            treatment="d",
            outcome="y",
            covariates=["x", "z"],
            estimand=estimand,
            **({"policy": "none"} if method in ("ipw", "aipw") else {}),
        ).values
        np.testing.assert_array_equal(values, reference)


@pytest.mark.parametrize("method", METHODS)
def test_integer_weights_equal_row_replication(batch: pd.DataFrame, method: str) -> None:
    counts = np.random.default_rng(3).integers(1, 4, len(batch))
    replicated = batch.loc[batch.index.repeat(counts)].reset_index(drop=True)
    for estimand in ESTIMANDS:
        weighted = _fit(batch, method, estimand, weights=counts)
        plain = _fit(replicated, method, estimand)
        assert abs(weighted.estimate - plain.estimate) < 1e-8, (method, estimand)


@pytest.mark.parametrize("method", METHODS)
def test_influence_values_give_the_weighted_se_and_cluster(batch: pd.DataFrame, method: str) -> None:
    options = {"policy": "none"} if method in ("ipw", "aipw") else {}
    fit = influence_contributions(
        batch, method=method, treatment="d", outcome="y", covariates=["x", "z"], weights=batch["w"], **options
    )
    assert fit.estimate == _fit(batch, method, weights=batch["w"])
    assert abs(fit.variance - fit.estimate.std_error**2) < 1e-12 * fit.variance + 1e-15
    # Clustering sums them within clusters: one cluster per unit is the unclustered SE times sqrt(n/(n-1)).
    one_each = cluster_robust_standard_error(fit.values, np.arange(fit.n))
    assert abs(one_each - fit.estimate.std_error * np.sqrt(fit.n / (fit.n - 1))) < 1e-12


@pytest.mark.parametrize(
    ("weights", "rule"),
    [
        (lambda n: np.r_[-1.0, np.ones(n - 1)], "not > 0"),
        (lambda n: np.r_[0.0, np.ones(n - 1)], "not > 0"),
        (lambda n: np.r_[np.nan, np.ones(n - 1)], "non-finite"),
        (lambda n: np.ones(n - 1), "one weight per row"),
    ],
)
def test_bad_weights_are_refused_with_the_rule(
    batch: pd.DataFrame, weights: Callable[[int], np.ndarray], rule: str
) -> None:
    for method in METHODS:
        with pytest.raises(ValueError, match=rule):
            _fit(batch, method, weights=weights(len(batch)))


def test_weighted_balance_judges_the_population(batch: pd.DataFrame) -> None:
    w = batch["w"].to_numpy()
    d = batch["d"].to_numpy()
    e = special.expit(
        np.column_stack([np.ones(len(batch)), batch["x"], batch["z"]])
        @ _weighted_logistic(
            np.column_stack([np.ones(len(batch)), batch["x"], batch["z"]]), d.astype(float), w
        )
    )
    comparison = weighted_balance(batch[["x", "z"]], d, propensity=e, sample_weights=w)
    before = balance_table(batch[["x", "z"]], d, weights=w)
    after = balance_table(batch[["x", "z"]], d, weights=w * np.where(d == 1, 1 / e, 1 / (1 - e)))
    pd.testing.assert_frame_equal(comparison.before.table, before.table)
    pd.testing.assert_frame_equal(comparison.after.table, after.table)
    # The survey-weighted propensity balances the weighted means exactly (its score equations).
    assert comparison.after.max_abs_smd < 0.15
    assert np.abs(comparison.after.table["mean_treated"] - comparison.after.table["mean_control"]).max() < 0.2


@pytest.mark.slow
def test_weighted_intervals_cover_the_population_estimand_and_unweighted_do_not() -> None:
    table = run(fast=True)
    targeted = table[table["target"] != ""]
    assert len(targeted) == 7  # three randomized ATE estimators, IPW and AIPW for the ATE and the ATT
    failed = targeted[~targeted["passed"].astype(bool)]
    assert failed.empty, failed.to_string()
    unweighted = table[table["scenario"].str.endswith("unweighted")]
    assert len(unweighted) == 7
    assert (unweighted["value"] < 0.2).all(), unweighted.to_string()
