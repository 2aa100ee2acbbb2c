"""Returning units: influence values, the shared-unit covariance, and fusion with correlated errors."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from assimilate.assimilative import assimilative_causal
from assimilate.estimators import (
    ESTIMATORS,
    estimate_effect,
    influence_contributions,
)
from assimilate.filters import (
    causal_kalman,
    correlated_kalman,
    psd_correlation,
    shared_unit_covariance,
)
from assimilate.filters.correlated import _condition, _Observations
from assimilate.simulate import simulate_outreach_batch, simulate_outreach_stream

EXACT = 1e-12
TIGHT = 1e-10
COVARIATES = ["x", "group"]


def _observational(rng: np.random.Generator, n: int = 600) -> pd.DataFrame:
    x = rng.standard_normal(n)
    group = rng.choice(["a", "b", "c"], size=n)
    d = rng.binomial(1, 1 / (1 + np.exp(-0.8 * x)))
    y = 0.5 * d + x + 0.3 * (group == "b") + rng.standard_normal(n)
    return pd.DataFrame({"x": x, "group": group, "d": d, "y": y})


def _fit(frame: pd.DataFrame, method: str, **options: object):  # type: ignore[no-untyped-def]
    return influence_contributions(
        frame,
        method=method,
        treatment="d",
        outcome="y",
        covariates=COVARIATES,
        **options,  # type: ignore[arg-type]
    )


# --- influence values ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ESTIMATORS)
def test_influence_values_reproduce_the_reported_standard_error_and_leave_the_estimate_unchanged(
    method: str,
) -> None:
    frame = _observational(np.random.default_rng(1))
    covariates = [] if method == "difference_in_means" else COVARIATES
    fit = influence_contributions(frame, method=method, treatment="d", outcome="y", covariates=covariates)  # type: ignore[arg-type]
    alone = estimate_effect(frame, method=method, treatment="d", outcome="y", covariates=covariates)  # type: ignore[arg-type]
    assert fit.estimate == alone
    assert fit.n == len(frame)
    assert fit.variance == pytest.approx(alone.std_error**2, rel=TIGHT)
    assert not fit.values.flags.writeable


@pytest.mark.parametrize(
    ("method", "tolerance"), [("difference_in_means", EXACT), ("aipw", EXACT), ("ipw", 1e-7)]
)
def test_influence_values_are_centred(method: str, tolerance: float) -> None:
    frame = _observational(np.random.default_rng(2))
    covariates = [] if method == "difference_in_means" else COVARIATES
    fit = influence_contributions(frame, method=method, treatment="d", outcome="y", covariates=covariates)  # type: ignore[arg-type]
    assert abs(float(fit.values.mean())) < tolerance * float(np.abs(fit.values).max())


@pytest.mark.parametrize("method", ["regression_adjustment", "lin_interacted"])
def test_hc3_values_are_centred_only_up_to_the_leverage_correction(method: str) -> None:
    fit = _fit(_observational(np.random.default_rng(3)), method)
    # mean(psi) = sum_i a_i e_i h_ii / (1 - h_ii): O(p/n) of the SE, not zero.
    assert 0 < abs(float(fit.values.mean())) < 0.05 * fit.estimate.std_error * math.sqrt(fit.n)


def test_aipw_values_with_cross_fitting_and_trimming_match_the_estimator() -> None:
    frame = _observational(np.random.default_rng(4))
    options = {"n_folds": 3, "policy": "trim", "bounds": (0.2, 0.8)}
    fit = _fit(frame, "aipw", rng=np.random.default_rng(9), **options)
    alone = estimate_effect(
        frame,
        method="aipw",
        treatment="d",
        outcome="y",
        covariates=COVARIATES,
        rng=np.random.default_rng(9),
        **options,  # type: ignore[arg-type]
    )
    assert fit.estimate == alone
    trimmed = int(alone.diagnostics["n_trimmed"])
    assert trimmed > 0 and int(np.sum(fit.values == 0.0)) == trimmed
    assert fit.variance == pytest.approx(alone.std_error**2, rel=TIGHT)


def test_difference_in_means_values_are_welch_residuals() -> None:
    frame = pd.DataFrame({"d": [0, 0, 0, 1, 1], "y": [1.0, 2.0, 4.0, 3.0, 5.0]})
    fit = influence_contributions(frame, method="difference_in_means", treatment="d", outcome="y")
    control = (np.array([1.0, 2.0, 4.0]) - 7 / 3) * (-5 / math.sqrt(3 * 2))
    treated = (np.array([3.0, 5.0]) - 4.0) * (5 / math.sqrt(2 * 1))
    np.testing.assert_allclose(fit.values, np.concatenate([control, treated]), rtol=EXACT)


# --- covariance from shared units ---------------------------------------------------------------


def test_difference_in_means_on_the_same_units_has_the_within_arm_sample_covariance() -> None:
    rng = np.random.default_rng(5)
    n = 400
    d = rng.binomial(1, 0.4, n)
    u = rng.standard_normal(n)
    y1, y2 = 0.1 * d + u + rng.standard_normal(n), 0.1 * d + u + rng.standard_normal(n)
    fits = [
        influence_contributions(
            pd.DataFrame({"d": d, "y": y}), method="difference_in_means", treatment="d", outcome="y"
        )
        for y in (y1, y2)
    ]
    order = rng.permutation(n)  # the second batch's rows in another order
    shared = shared_unit_covariance([(np.arange(n), fits[0].values), (order, fits[1].values[order])])
    expected = sum(float(np.cov(y1[d == arm], y2[d == arm])[0, 1]) / int(np.sum(d == arm)) for arm in (0, 1))
    assert shared.covariance[0, 1] == pytest.approx(expected, rel=TIGHT)
    assert shared.covariance[0, 0] == pytest.approx(fits[0].estimate.std_error ** 2, rel=TIGHT)
    assert shared.n_shared[0, 1] == n and shared.returning_share.tolist() == [0.0, 1.0]


def test_covariance_equals_a_brute_force_sum_over_shared_units_with_duplicates_and_empty_batches() -> None:
    rng = np.random.default_rng(6)
    batches = []
    for size in (30, 25, 0, 40):
        if size == 0:
            batches.append(None)
            continue
        batches.append((rng.choice([f"u{i}" for i in range(60)], size=size), rng.standard_normal(size)))
    shared = shared_unit_covariance(batches)
    per_unit = []
    for batch in batches:
        contributions: dict[str, float] = defaultdict(float)
        if batch is not None:
            for unit, value in zip(*batch, strict=True):
                contributions[str(unit)] += value / len(batch[1])
        per_unit.append(contributions)
    for s in range(4):
        for t in range(4):
            brute = sum(v * per_unit[t][k] for k, v in per_unit[s].items() if k in per_unit[t])
            assert shared.covariance[s, t] == pytest.approx(brute, rel=1e-12, abs=1e-15)
            assert shared.n_shared[s, t] == len(set(per_unit[s]) & set(per_unit[t]))
    seen: set[str] = set()
    for t, units in enumerate(per_unit):
        assert shared.n_returning[t] == len(set(units) & seen)
        seen |= set(units)
    assert shared.correlation[2].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_disjoint_batches_have_exactly_the_identity_correlation() -> None:
    rng = np.random.default_rng(7)
    shared = shared_unit_covariance(
        [(np.arange(k * 50, k * 50 + 50), rng.standard_normal(50)) for k in range(5)]
    )
    assert np.array_equal(shared.correlation, np.eye(5))
    assert shared.is_disjoint and not shared.psd_adjusted
    assert np.isnan(shared.correlation_with_previous[0])


def test_estimated_correlation_matches_the_monte_carlo_correlation_of_adjusted_estimates() -> None:
    # 300 units in both batches (a persistent unit effect), 200 new in the second: the true
    # correlation of the Lin estimates is what their Monte Carlo correlation says.
    rng = np.random.default_rng(8)
    draws, estimated = [], []
    for _ in range(300):
        x = rng.standard_normal(500)
        u = rng.standard_normal(500)
        d = rng.binomial(1, 0.5, 500)
        frames = []
        for rows in (np.arange(0, 300), np.arange(0, 500)):
            y = 0.3 * d[rows] + x[rows] + u[rows] + rng.standard_normal(len(rows))
            frames.append(pd.DataFrame({"x": x[rows], "d": d[rows], "y": y, "id": rows}))
        fits = [
            influence_contributions(f, method="lin_interacted", treatment="d", outcome="y", covariates=["x"])
            for f in frames
        ]
        draws.append([f.estimate.estimate for f in fits])
        estimated.append(
            shared_unit_covariance(
                [(f["id"], fit.values) for f, fit in zip(frames, fits, strict=True)]
            ).correlation[0, 1]
        )
    empirical = float(np.corrcoef(np.array(draws).T)[0, 1])
    # Closed form: the shared units' share sqrt(300/500) times var(u) / var(u + e) = 0.5.
    assert float(np.mean(estimated)) == pytest.approx(math.sqrt(300 / 500) * 0.5, abs=0.02)
    # The Monte Carlo SE of a correlation near 0.39 from 300 draws is about 0.05.
    assert float(np.mean(estimated)) == pytest.approx(empirical, abs=0.15)


def test_psd_repair_raises_eigenvalues_to_the_floor_and_keeps_a_unit_diagonal() -> None:
    bad = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])
    fixed, smallest, adjusted = psd_correlation(bad)
    assert adjusted and smallest < 0
    assert np.linalg.eigvalsh(fixed).min() > 0
    np.testing.assert_array_equal(np.diagonal(fixed), 1.0)
    np.testing.assert_array_equal(fixed, fixed.T)
    good = np.array([[1.0, 0.3], [0.3, 1.0]])
    same, _, adjusted = psd_correlation(good)
    assert same is good or np.array_equal(same, good)
    assert not adjusted


def test_two_identical_batches_are_repaired_and_still_fuse_to_one_batch() -> None:
    values = np.random.default_rng(9).standard_normal(100)
    shared = shared_unit_covariance([(np.arange(100), values), (np.arange(100), values)])
    assert shared.psd_adjusted and shared.correlation[0, 1] == pytest.approx(1.0, abs=1e-7)
    res = correlated_kalman(
        [0.3, 0.3], [0.1, 0.1], correlation=shared.correlation, prior_mean=0.0, prior_var=1e4
    )
    # The second batch repeats the first: the posterior is that of one batch.
    assert res.final_sd == pytest.approx(1 / math.sqrt(1e-4 + 100), rel=1e-5)


# --- fusion with correlated errors ----------------------------------------------------------------


def _dense_gls(y, se, corr, used, prior_mean, prior_var, q):  # type: ignore[no-untyped-def]
    """Filtered, forecast and smoothed means/variances and log L from the joint Gaussian, by brute force."""
    n = len(y)
    steps = np.arange(n)
    theta_cov = prior_var + q * (np.minimum.outer(steps, steps) + 1.0)
    error_cov = corr * np.outer(se, se)
    out = {k: np.empty(n) for k in ("fm", "fv", "m", "v", "sm", "sv")}

    def conditional(t: int, rows: np.ndarray) -> tuple[float, float]:
        if len(rows) == 0:
            return prior_mean, theta_cov[t, t]
        s = theta_cov[np.ix_(rows, rows)] + error_cov[np.ix_(rows, rows)]
        c = theta_cov[t, rows]
        gain = np.linalg.solve(s, c)
        return prior_mean + gain @ (y[rows] - prior_mean), theta_cov[t, t] - gain @ c

    index = np.flatnonzero(used)
    for t in range(n):
        out["fm"][t], out["fv"][t] = conditional(t, index[index < t])
        out["m"][t], out["v"][t] = conditional(t, index[index <= t])
        out["sm"][t], out["sv"][t] = conditional(t, index)
    s = theta_cov[np.ix_(index, index)] + error_cov[np.ix_(index, index)]
    log_l = stats.multivariate_normal(np.full(len(index), prior_mean), s).logpdf(y[index])
    return out, float(log_l)


@pytest.mark.parametrize("q", [0.0, 0.002])
def test_fusion_equals_brute_force_gaussian_conditioning(q: float) -> None:
    rng = np.random.default_rng(10)
    n = 10
    y = rng.normal(0.2, 0.1, n)
    se = rng.uniform(0.05, 0.15, n)
    a = rng.standard_normal((n, 3)) * 0.5
    cov = a @ a.T + np.diag(rng.uniform(0.2, 1.0, n))
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    used = np.ones(n, dtype=bool)
    used[[3, 7]] = False
    res = correlated_kalman(
        y, se, correlation=corr, prior_mean=0.1, prior_var=0.3, process_var=q, excluded=~used
    )
    dense, log_l = _dense_gls(y, se, corr, used, 0.1, 0.3, q)
    for field, key in [
        ("forecast_mean", "fm"),
        ("forecast_var", "fv"),
        ("posterior_mean", "m"),
        ("posterior_var", "v"),
        ("smoothed_mean", "sm"),
        ("smoothed_var", "sv"),
    ]:
        np.testing.assert_allclose(getattr(res, field), dense[key], rtol=1e-9, atol=1e-14, err_msg=field)
    assert res.log_likelihood == pytest.approx(log_l, rel=1e-10)
    assert res.details["correlated_errors"] and not res.details["psd_adjusted"]
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(res.posterior_upper - res.posterior_mean, z * np.sqrt(dense["v"]), rtol=1e-9)


def test_innovations_are_the_prediction_errors_of_the_estimates() -> None:
    rng = np.random.default_rng(11)
    corr = np.full((6, 6), 0.4) + 0.6 * np.eye(6)
    y, se = rng.normal(0.2, 0.1, 6), np.full(6, 0.1)
    res = correlated_kalman(y, se, correlation=corr, prior_mean=0.0, prior_var=0.5, process_var=0.001)
    steps = np.arange(6)
    joint = 0.5 + 0.001 * (np.minimum.outer(steps, steps) + 1.0) + corr * 0.01  # Cov(y)
    for t in range(1, 6):
        gain = np.linalg.solve(joint[:t, :t], joint[:t, t])
        assert res.innovations[t] == pytest.approx(y[t] - gain @ y[:t], rel=1e-9)
        assert res.innovation_var[t] == pytest.approx(joint[t, t] - gain @ joint[:t, t], rel=1e-9)


@pytest.mark.parametrize(("q", "diffuse"), [(0.0, False), (0.003, False), (0.0, True), (0.003, True)])
def test_the_conditioning_pass_with_independent_errors_is_the_kalman_recursion(
    q: float, diffuse: bool
) -> None:
    rng = np.random.default_rng(12)
    y, se = rng.normal(0.3, 0.1, 9), rng.uniform(0.05, 0.2, 9)
    used = np.ones(9, dtype=bool)
    used[[0, 5]] = False
    prior_var = math.inf if diffuse else 0.5
    ref = causal_kalman(
        y,
        se,
        prior_mean=0.1,
        prior_var=None if diffuse else 0.5,
        process_var=q,
        excluded=~used,
        diffuse=diffuse,
    )
    observed = _Observations(np.flatnonzero(used), y[used], se[used], np.eye(7), 9)
    dense = _condition(observed, prior_mean=0.1, prior_var=prior_var, process_var=q)
    np.testing.assert_allclose(
        dense.table[:6],
        np.vstack(
            [
                ref.forecast_mean,
                ref.forecast_var,
                ref.innovations,
                ref.innovation_var,
                ref.posterior_mean,
                ref.posterior_var,
            ]
        ),
        rtol=1e-10,
        atol=1e-14,
    )
    np.testing.assert_allclose(dense.smoothed_mean, ref.smoothed_mean, rtol=1e-10)
    np.testing.assert_allclose(dense.smoothed_var, ref.smoothed_var, rtol=1e-10)
    assert dense.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-10)


@pytest.mark.parametrize("process_var", [0.0, 0.004, "mle"])
def test_a_diagonal_correlation_gives_causal_kalman_bit_for_bit(process_var: float | str) -> None:
    rng = np.random.default_rng(13)
    y, se = rng.normal(0.3, 0.1, 12), rng.uniform(0.05, 0.2, 12)
    corr = np.eye(12)
    corr[4, 9] = corr[9, 4] = 0.7  # batch 4 is excluded: its correlation never enters
    excluded = [t == 4 for t in range(12)]
    new = correlated_kalman(y, se, correlation=corr, process_var=process_var, excluded=excluded)  # type: ignore[arg-type]
    old = causal_kalman(y, se, process_var=process_var, excluded=excluded)  # type: ignore[arg-type]
    for field in dataclasses.fields(old):
        a, b = getattr(new, field.name), getattr(old, field.name)
        if isinstance(b, np.ndarray):
            assert np.array_equal(a, b, equal_nan=b.dtype.kind == "f"), field.name
        elif field.name != "details":
            assert a == b, field.name
    assert set(new.details) == set(old.details)


def test_static_effect_with_equicorrelated_errors_has_the_gls_variance() -> None:
    rho, se, n = 0.5, 0.1, 12
    corr = np.full((n, n), rho) + (1 - rho) * np.eye(n)
    res = correlated_kalman(np.full(n, 0.1), np.full(n, se), correlation=corr, diffuse=True)
    assert res.final_sd == pytest.approx(se * math.sqrt((1 + (n - 1) * rho) / n), rel=1e-12)
    assert res.final_mean == pytest.approx(0.1, rel=1e-12)
    assert math.isnan(res.innovations[0]) and np.isinf(res.forecast_var[0])


def test_mle_process_variance_maximizes_the_correlated_likelihood() -> None:
    rng = np.random.default_rng(14)
    n = 30
    corr = np.full((n, n), 0.3) + 0.7 * np.eye(n)
    theta = np.cumsum(rng.normal(0, 0.05, n))
    errors = np.linalg.cholesky(corr) @ rng.standard_normal(n) * 0.05
    res = correlated_kalman(
        theta + errors, np.full(n, 0.05), correlation=corr, process_var="mle", prior_mean=0.0, prior_var=1.0
    )
    fit = res.details["process_var_fit"]
    assert fit.process_var == res.process_var > 0
    assert fit.log_likelihood == pytest.approx(res.log_likelihood, rel=1e-12)
    assert fit.log_likelihood >= float(fit.profile["log_likelihood"].max()) - 1e-9


@pytest.mark.parametrize(
    ("correlation", "message"),
    [
        (np.eye(3), "2 x 2"),
        (np.array([[1.0, 0.2], [0.3, 1.0]]), "symmetric"),
        (np.array([[1.0, 0.2], [0.2, 0.9]]), "unit diagonal"),
        (np.array([[1.0, 1.2], [1.2, 1.0]]), r"\[-1, 1\]"),
    ],
)
def test_bad_correlations_are_refused(correlation: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        correlated_kalman([0.1, 0.2], [0.1, 0.1], correlation=correlation)


# --- the unit-aware path of assimilative_causal ------------------------------------------------------


def _panel(rng: np.random.Generator, returning: float) -> list[pd.DataFrame]:
    n, months = 300, 5
    units = np.arange(n)
    u, d = rng.standard_normal(n * months), rng.binomial(1, 0.5, n * months)
    batches, created = [], n
    for t in range(months):
        if t:
            kept = rng.choice(units, size=int(returning * n), replace=False)
            units = np.concatenate([kept, np.arange(created, created + n - len(kept))])
            created += n - len(kept)
        y = 0.2 * d[units] + u[units] + rng.standard_normal(n)
        batches.append(pd.DataFrame({"unit": units.astype(str), "d": d[units], "y": y}))
    return batches


def _influence(batch: pd.DataFrame):  # type: ignore[no-untyped-def]
    return influence_contributions(batch, method="difference_in_means", treatment="d", outcome="y")


def test_unit_aware_assimilation_fuses_with_the_shared_unit_correlation() -> None:
    batches = _panel(np.random.default_rng(15), 0.5)
    res = assimilative_causal(
        batches, _influence, unit_id="unit", process_var=0.0, prior_mean=0.0, prior_var=1.0
    )
    fits = [_influence(b) for b in batches]
    shared = shared_unit_covariance([(b["unit"], f.values) for b, f in zip(batches, fits, strict=True)])
    direct = correlated_kalman(
        [f.estimate.estimate for f in fits],
        [f.estimate.std_error for f in fits],
        correlation=shared.correlation,
        prior_mean=0.0,
        prior_var=1.0,
    )
    np.testing.assert_array_equal(res.posterior_mean, direct.posterior_mean)
    summary = res.details["shared_units"].summary()
    assert summary["returning_share"].tolist() == [0.0, 0.5, 0.5, 0.5, 0.5]
    assert 0.1 < summary["correlation_with_previous"].iloc[1] < 0.4


def test_unit_aware_assimilation_of_disjoint_batches_equals_the_old_path() -> None:
    batches = _panel(np.random.default_rng(16), 0.0)
    new = assimilative_causal(batches, _influence, unit_id="unit", process_var=0.001)
    old = assimilative_causal(batches, lambda b: _influence(b).estimate, process_var=0.001)
    for field in (
        "posterior_mean",
        "posterior_var",
        "posterior_lower",
        "smoothed_mean",
        "smoothed_var",
        "innovations",
    ):
        assert np.array_equal(getattr(new, field), getattr(old, field), equal_nan=True)
    assert new.details["shared_units"].is_disjoint


def test_unit_aware_assimilation_needs_influence_values_and_the_kalman_backend() -> None:
    batches = _panel(np.random.default_rng(17), 0.5)
    with pytest.raises(TypeError, match="InfluenceContributions"):
        assimilative_causal(batches, lambda b: _influence(b).estimate, unit_id="unit")
    with pytest.raises(ValueError, match="backend='kalman'"):
        assimilative_causal(batches, _influence, unit_id="unit", backend="particle")
    with pytest.raises(ValueError, match="not in the data"):
        assimilative_causal(batches, _influence, unit_id="account")


# --- the outreach stream with returning accounts -------------------------------------------------


def test_outreach_stream_by_default_draws_fresh_accounts_as_before() -> None:
    stream = simulate_outreach_stream(rng=np.random.default_rng(18), n_batches=2, n_per_batch=300)
    rng = np.random.default_rng(18)
    for batch in stream.batches:
        pd.testing.assert_frame_equal(batch, simulate_outreach_batch(300, rng=rng))


@pytest.mark.parametrize(("share", "expected"), [(1.0, 1.0), (0.5, 0.5)])
def test_outreach_stream_keeps_the_returning_share_of_accounts(share: float, expected: float) -> None:
    stream = simulate_outreach_stream(
        rng=np.random.default_rng(19), n_batches=3, n_per_batch=1000, returning_share=share
    )
    for before, after in zip(stream.batches, stream.batches[1:], strict=False):
        common = before.merge(after, on="account_id", suffixes=("_before", "_after"))
        assert len(common) / len(after) == expected
        assert np.array_equal(common["health_score_before"], common["health_score_after"])
        assert len(set(after["account_id"])) == len(after)


def test_returning_accounts_keep_the_churn_rate_and_carry_a_persistent_churn_propensity() -> None:
    stream = simulate_outreach_stream(
        rng=np.random.default_rng(20), n_batches=6, n_per_batch=4000, returning_share=1.0
    )
    churn = np.array([b.sort_values("account_id")["churn"].to_numpy() for b in stream.batches])
    fresh = simulate_outreach_stream(rng=np.random.default_rng(21), n_batches=6, n_per_batch=4000)
    fresh_rate = np.mean([b["churn"].mean() for b in fresh.batches])
    assert churn.mean() == pytest.approx(fresh_rate, abs=0.01)
    assert np.corrcoef(churn[0], churn[1])[0, 1] > 0.15
    fits = [
        influence_contributions(
            b, method="aipw", treatment="outreach", outcome="churn", covariates=list(stream.covariates)
        )
        for b in stream.batches[:3]
    ]
    shared = shared_unit_covariance(
        [(b["account_id"], f.values) for b, f in zip(stream.batches[:3], fits, strict=True)]
    )
    assert 0.15 < shared.correlation[0, 1] < 0.9  # the same accounts get outreach and churn again
