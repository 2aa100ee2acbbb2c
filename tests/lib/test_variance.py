"""HC0-HC3 and cluster-robust standard errors against statsmodels and plain reference computations."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from assimilate.estimators import aipw, difference_in_means, estimate_effect, ipw, regression_adjustment
from assimilate.estimators.duplicates import (
    DuplicateUnitsError,
    duplicate_unit_clusters,
    find_duplicate_units,
)
from assimilate.estimators.influence import influence_contributions
from assimilate.estimators.result import EffectEstimate
from assimilate.estimators.variance import (
    SE_TYPES,
    cluster_robust_standard_error,
    ols_standard_error,
    t_conf_int,
    with_standard_error,
)

RTOL = 1e-8
COVARIATES = ["x", "region"]


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    rng = np.random.default_rng(14)
    n = 240
    school = rng.integers(0, 30, n)
    x = rng.standard_normal(n) + 0.5 * rng.standard_normal(30)[school]
    region = rng.choice(["north", "south", "west"], n)
    d = rng.binomial(1, 1 / (1 + np.exp(-0.5 * x)))
    y = 1.0 + 0.7 * d + x + (region == "west") + rng.standard_normal(30)[school]
    y = y + rng.standard_normal(n) * (1 + 0.5 * d)
    return pd.DataFrame({"school": school, "x": x, "region": region, "d": d, "y": y})


def reference_design(frame: pd.DataFrame, method: str) -> np.ndarray:
    """The regression each OLS estimator fits, built here independently of the library."""
    d = frame["d"].to_numpy(float)
    if method == "difference_in_means":
        return sm.add_constant(d)
    x = np.column_stack([frame["x"], frame["region"] == "south", frame["region"] == "west"]).astype(float)
    if method == "lin_interacted":
        x = x - x.mean(axis=0)
        return np.column_stack([np.ones_like(d), d, x, d[:, None] * x])
    return np.column_stack([np.ones_like(d), d, x])


def own_estimate(frame: pd.DataFrame, method: str) -> EffectEstimate:
    if method == "difference_in_means":
        return difference_in_means(frame, treatment="d", outcome="y")
    return regression_adjustment(
        frame, treatment="d", outcome="y", covariates=COVARIATES, interacted=method == "lin_interacted"
    )


def recomputed(estimate: EffectEstimate, frame: pd.DataFrame, **kwargs: Any) -> EffectEstimate:
    return with_standard_error(estimate, frame, treatment="d", outcome="y", covariates=COVARIATES, **kwargs)


OLS = ("difference_in_means", "regression_adjustment", "lin_interacted")


@pytest.mark.parametrize("method", OLS)
@pytest.mark.parametrize("se_type", ["HC0", "HC1", "HC2", "HC3"])
def test_hc_standard_errors_equal_statsmodels(batch: pd.DataFrame, method: str, se_type: str) -> None:
    estimate = own_estimate(batch, method)
    reference = sm.OLS(batch["y"].to_numpy(), reference_design(batch, method)).fit()
    result = recomputed(estimate, batch, se_type=se_type)
    assert result.std_error == pytest.approx(getattr(reference, f"{se_type}_se")[1], rel=RTOL)
    assert result.estimate == estimate.estimate
    assert result.se_method == se_type.lower()
    assert result.diagnostics["standard_error"]["n_clusters"] is None


@pytest.mark.parametrize("method", OLS)
def test_cr1_equals_statsmodels_cluster_covariance(batch: pd.DataFrame, method: str) -> None:
    estimate = own_estimate(batch, method)
    reference = sm.OLS(batch["y"].to_numpy(), reference_design(batch, method)).fit(
        cov_type="cluster", cov_kwds={"groups": batch["school"].to_numpy(), "use_correction": True}
    )
    result = recomputed(estimate, batch, cluster="school")
    assert result.std_error == pytest.approx(reference.bse[1], rel=RTOL)
    entry = result.diagnostics["standard_error"]
    assert (entry["se_type"], entry["cluster"], entry["n_clusters"], entry["df"]) == ("CR1", "school", 30, 29)
    assert entry["replaced_se_method"] == estimate.se_method
    assert result.to_dict()["diagnostics"]["standard_error"]["df"] == 29


@pytest.mark.parametrize("method", OLS)
def test_default_without_clusters_is_the_estimators_own_standard_error(
    batch: pd.DataFrame, method: str
) -> None:
    # Welch's SE is HC2 of y ~ 1 + d; regression adjustment reports HC3.
    estimate = own_estimate(batch, method)
    result = recomputed(estimate, batch)
    assert result.std_error == pytest.approx(estimate.std_error, rel=1e-10)
    assert result.se_method == ("hc2" if method == "difference_in_means" else "hc3")


def dense_cr2(X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """Bell & McCaffrey's CR2 of coefficient 1, written out with n_g x n_g matrices."""
    bread = np.linalg.inv(X.T @ X)
    e = y - X @ bread @ X.T @ y
    meat = np.zeros_like(bread)
    for g in np.unique(groups):
        rows = groups == g
        Xg = X[rows]
        values, vectors = np.linalg.eigh(np.eye(rows.sum()) - Xg @ bread @ Xg.T)
        adjusted = vectors @ np.diag(values**-0.5) @ vectors.T @ e[rows]
        score = Xg.T @ adjusted
        meat += np.outer(score, score)
    return math.sqrt((bread @ meat @ bread)[1, 1])


@pytest.mark.parametrize("method", OLS)
def test_cr2_equals_the_dense_bell_mccaffrey_formula(batch: pd.DataFrame, method: str) -> None:
    X, y = reference_design(batch, method), batch["y"].to_numpy()
    result = recomputed(own_estimate(batch, method), batch, cluster="school", se_type="CR2")
    assert result.std_error == pytest.approx(dense_cr2(X, y, batch["school"].to_numpy()), rel=RTOL)
    assert result.diagnostics["standard_error"]["df"] == 29


def test_cr2_with_one_unit_per_cluster_is_hc2(batch: pd.DataFrame) -> None:
    X, y = reference_design(batch, "regression_adjustment"), batch["y"].to_numpy()
    singletons = ols_standard_error(X, y, column=1, se_type="CR2", clusters=np.arange(len(y)))
    assert singletons.std_error == pytest.approx(sm.OLS(y, X).fit().HC2_se[1], rel=RTOL)


def test_cr2_refuses_a_cluster_that_determines_a_coefficient() -> None:
    frame = pd.DataFrame(
        {"d": [1, 1, 1, 0, 0, 0, 0], "y": [1.0, 2, 4, 0, 1, 3, 2], "g": [0, 0, 0, 1, 1, 2, 2]}
    )
    estimate = difference_in_means(frame, treatment="d", outcome="y")
    with pytest.raises(ValueError, match="CR2 is undefined"):
        with_standard_error(estimate, frame, treatment="d", outcome="y", cluster="g", se_type="CR2")


def plain_cr1(values: np.ndarray, groups: np.ndarray) -> float:
    totals = pd.Series(values).groupby(groups).sum().to_numpy()
    g, n = len(totals), len(values)
    return math.sqrt(g / (g - 1) * sum(t * t for t in totals)) / n


@pytest.mark.parametrize("method", ["ipw", "aipw"])
@pytest.mark.parametrize("policy", ["clip", "trim"])
def test_cr1_of_ipw_and_aipw_equals_a_plain_sum_over_clusters(
    batch: pd.DataFrame, method: str, policy: str
) -> None:
    options = {"policy": policy, "bounds": (0.2, 0.8)}
    estimator = ipw if method == "ipw" else aipw
    estimate = estimator(batch, treatment="d", outcome="y", covariates=COVARIATES, **options)
    values = influence_contributions(
        batch, method=method, treatment="d", outcome="y", covariates=COVARIATES, **options
    ).values
    result = recomputed(estimate, batch, cluster="school", **options)
    assert result.std_error == pytest.approx(plain_cr1(values, batch["school"].to_numpy()), rel=RTOL)
    assert result.estimate == estimate.estimate
    assert result.se_method == "cr1"
    assert result.diagnostics["propensity_policy"] == policy  # the estimator's own facts are kept


@pytest.mark.parametrize("method", ["ipw", "aipw", "lin_interacted"])
@pytest.mark.parametrize("estimand", ["ATT", "ATC"])
def test_cr1_of_att_and_atc_sums_their_influence_values(
    batch: pd.DataFrame, method: str, estimand: str
) -> None:
    estimate = estimate_effect(
        batch, method=method, treatment="d", outcome="y", covariates=COVARIATES, estimand=estimand
    )
    values = influence_contributions(
        batch, method=method, treatment="d", outcome="y", covariates=COVARIATES, estimand=estimand
    ).values
    result = recomputed(estimate, batch, cluster="school")
    assert result.std_error == pytest.approx(plain_cr1(values, batch["school"].to_numpy()), rel=RTOL)
    assert (result.estimate, result.estimand) == (estimate.estimate, estimand)
    unclustered = recomputed(estimate, batch)
    assert (unclustered.std_error, unclustered.se_method) == (estimate.std_error, estimate.se_method)
    with pytest.raises(ValueError, match="needs the hat matrix"):
        recomputed(estimate, batch, cluster="school", se_type="CR2")


@pytest.mark.parametrize("method", ["difference_in_means", "regression_adjustment"])
def test_the_att_of_the_plain_ols_estimators_takes_every_se_type(batch: pd.DataFrame, method: str) -> None:
    estimate = estimate_effect(
        batch, method=method, treatment="d", outcome="y", covariates=COVARIATES, estimand="ATT"
    )
    reference = sm.OLS(batch["y"].to_numpy(), reference_design(batch, method)).fit()
    assert recomputed(estimate, batch, se_type="HC2").std_error == pytest.approx(
        reference.HC2_se[1], rel=RTOL
    )
    clustered = recomputed(estimate, batch, cluster="school", se_type="CR2")
    assert clustered.estimand == "ATT" and clustered.se_method == "cr2"


def test_aipw_with_cross_fitting_needs_the_same_folds(batch: pd.DataFrame) -> None:
    estimate = aipw(
        batch, treatment="d", outcome="y", covariates=COVARIATES, n_folds=2, rng=np.random.default_rng(3)
    )
    same = recomputed(estimate, batch, cluster="school", n_folds=2, rng=np.random.default_rng(3))
    assert same.estimate == estimate.estimate
    with pytest.raises(ValueError, match="is not the one these data and options give"):
        recomputed(estimate, batch, cluster="school", n_folds=2, rng=np.random.default_rng(4))


def test_cluster_robust_from_influence_values_with_one_unit_per_cluster_is_the_plain_se() -> None:
    values = np.random.default_rng(0).standard_normal(50)
    n = len(values)
    plain = math.sqrt(values @ values) / n
    assert cluster_robust_standard_error(values, np.arange(n)) == pytest.approx(
        plain * math.sqrt(n / (n - 1))
    )


def test_choices_that_do_not_apply_are_refused(batch: pd.DataFrame) -> None:
    estimate = ipw(batch, treatment="d", outcome="y", covariates=COVARIATES)
    with pytest.raises(ValueError, match="offers its own influence-function SE"):
        recomputed(estimate, batch, se_type="HC2")
    with pytest.raises(ValueError, match="needs cluster labels"):
        recomputed(estimate, batch, se_type="CR1")
    unchanged = recomputed(estimate, batch)
    assert (unchanged.std_error, unchanged.se_method) == (estimate.std_error, estimate.se_method)
    ols = own_estimate(batch, "regression_adjustment")
    with pytest.raises(ValueError, match="is not cluster-robust"):
        recomputed(ols, batch, se_type="HC1", cluster="school")
    with pytest.raises(ValueError, match="needs cluster labels"):
        recomputed(ols, batch, se_type="CR2")
    with pytest.raises(ValueError, match="se_type must be one of"):
        recomputed(ols, batch, se_type="HC4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not in the data"):
        recomputed(ols, batch, cluster="classroom")
    with pytest.raises(ValueError, match="at least 2 clusters"):
        recomputed(ols, batch, cluster=np.zeros(len(batch)))
    with pytest.raises(ValueError, match="missing cluster label"):
        recomputed(ols, batch, cluster=batch["school"].where(batch["school"] > 0))
    with pytest.raises(ValueError, match="is not the one these data"):
        recomputed(ols, batch.assign(y=batch["y"] + batch["d"]))
    assert set(SE_TYPES) == {"HC0", "HC1", "HC2", "HC3", "CR1", "CR2"}


def test_the_clustered_interval_uses_t_with_g_minus_1_degrees_of_freedom(batch: pd.DataFrame) -> None:
    result = recomputed(own_estimate(batch, "difference_in_means"), batch, cluster="school")
    lower, upper = t_conf_int(result, alpha=0.05)
    assert (upper - lower) / 2 == pytest.approx(2.045229642132703 * result.std_error, rel=1e-12)  # t_{29}
    assert (
        t_conf_int(own_estimate(batch, "difference_in_means"))
        == own_estimate(batch, "difference_in_means").conf_int()
    )


def test_a_batch_delivered_twice_shrinks_the_se_by_about_1_over_sqrt2_and_clustering_restores_it() -> None:
    rng = np.random.default_rng(5)
    n = 400
    once = pd.DataFrame({"unit": np.arange(n), "d": rng.binomial(1, 0.5, n)})
    once["y"] = 0.3 * once["d"] + rng.standard_normal(n)
    twice = pd.concat([once, once], ignore_index=True)
    honest = difference_in_means(once, treatment="d", outcome="y")
    naive = difference_in_means(twice, treatment="d", outcome="y")
    n1, n0 = int(once["d"].sum()), n - int(once["d"].sum())
    # Welch on doubled rows: s^2 -> s^2 (2 n_a - 2) / (2 n_a - 1) over 2 n_a units.
    welch = [
        once.loc[once["d"] == a, "y"].var() * (2 * m - 2) / (2 * m - 1) / (2 * m)
        for a, m in ((1, n1), (0, n0))
    ]
    assert naive.std_error == pytest.approx(math.sqrt(sum(welch)), rel=1e-10)
    assert naive.std_error / honest.std_error == pytest.approx(1 / math.sqrt(2), abs=0.002)
    labels = duplicate_unit_clusters(twice, unit_id="unit", policy="cluster")
    clustered = with_standard_error(naive, twice, treatment="d", outcome="y", cluster=labels)
    # Exactly HC0 of the single copy, times G/(G-1) (N-1)/(N-k) with G = n, N = 2n, k = 2.
    hc0 = sm.OLS(once["y"].to_numpy(), sm.add_constant(once["d"].to_numpy(float))).fit().HC0_se[1]
    assert clustered.std_error == pytest.approx(
        hc0 * math.sqrt(n / (n - 1) * (2 * n - 1) / (2 * n - 2)), rel=RTOL
    )
    assert clustered.std_error / honest.std_error == pytest.approx(1.0, abs=0.01)
    assert clustered.diagnostics["standard_error"]["cluster"] == "labels"


def test_duplicates_are_found_named_and_rejected_or_clustered() -> None:
    frame = pd.DataFrame({"unit": ["u7", "u1", "u7", "u2", "u1", "u3"], "store": [1, 2, 3, 2, 2, 4]})
    found = find_duplicate_units(frame, unit_id="unit")
    assert (found.n_repeated_units, found.n_extra_rows, found.examples) == (2, 2, ("u7", "u1"))
    assert found.verdict().status == "fail" and "'u7', 'u1'" in found.verdict().reason
    with pytest.raises(DuplicateUnitsError, match="'u7', 'u1'") as error:
        duplicate_unit_clusters(frame, unit_id="unit", policy="reject")
    assert error.value.report == found
    # u7 lies in stores 1 and 3: they merge; store 2 holds u1 and u2; store 4 holds u3.
    labels = duplicate_unit_clusters(frame, unit_id="unit", policy="cluster", cluster="store")
    assert labels is not None
    assert labels[0] == labels[2] and labels[1] == labels[3] == labels[4]
    assert len(set(labels.tolist())) == 3
    clean = frame.drop_duplicates("unit")
    assert find_duplicate_units(clean, unit_id="unit").verdict().status == "pass"
    assert duplicate_unit_clusters(clean, unit_id="unit", policy="reject") is None
    assert duplicate_unit_clusters(clean, unit_id="unit", policy="reject", cluster="store") is not None
    many = pd.DataFrame({"unit": [f"u{i % 9}" for i in range(30)]})
    assert "and 4 more" in find_duplicate_units(many, unit_id="unit").message()
    with pytest.raises(ValueError, match="policy must be one of"):
        duplicate_unit_clusters(frame, unit_id="unit", policy="ignore")  # type: ignore[arg-type]
