"""Kalman filter: closed forms, exact step API, predict-only steps, smoother, likelihood, MLE."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from assimilate import causal_kalman, fit_process_variance
from assimilate.filters import KalmanState, initial_state, predict, step, update

EXACT = 1e-12


def test_zero_process_variance_equals_the_precision_weighted_posterior_at_every_step() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(0.4, 0.2, 25)
    se = rng.uniform(0.05, 0.3, 25)
    res = causal_kalman(y, se, prior_mean=0.1, prior_var=0.5, process_var=0.0)
    precision = 1 / 0.5 + np.cumsum(1 / se**2)
    mean = (0.1 / 0.5 + np.cumsum(y / se**2)) / precision
    np.testing.assert_allclose(res.posterior_var, 1 / precision, rtol=1e-12)
    np.testing.assert_allclose(res.posterior_mean, mean, rtol=1e-12)
    lower, upper = res.final_ci
    assert upper - res.final_mean == pytest.approx(
        stats.norm.ppf(0.975) / math.sqrt(precision[-1]), rel=1e-12
    )
    assert lower < res.final_mean < upper


def test_the_step_api_looped_over_a_stream_equals_the_batch_call_exactly() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(0.5, 0.1, 40)
    y[[5, 17]] = np.nan
    se = np.full(40, 0.08)
    res = causal_kalman(y, se, prior_mean=0.0, prior_var=1.0, process_var=0.003)
    state = initial_state(prior_mean=0.0, prior_var=1.0)
    for t in range(40):
        state, record = step(state, None if np.isnan(y[t]) else float(y[t]), float(se[t]), process_var=0.003)
        assert record.posterior_mean == res.posterior_mean[t]
        assert record.posterior_var == res.posterior_var[t]
    assert state.log_likelihood == res.log_likelihood
    assert state.n_steps == 40


def test_missing_and_excluded_batches_are_predict_only_steps() -> None:
    y = np.array([0.5, np.nan, 0.9, 0.55])
    res = causal_kalman(
        y,
        [0.1] * 4,
        prior_mean=0.0,
        prior_var=1.0,
        process_var=0.01,
        excluded=[False, False, True, False],
        exclusion_reasons=["", "", "failed overlap", ""],
    )
    assert res.excluded.tolist() == [False, True, True, False]
    for t in (1, 2):
        assert res.posterior_mean[t] == res.posterior_mean[t - 1]
        assert res.posterior_var[t] == pytest.approx(res.posterior_var[t - 1] + 0.01, abs=EXACT)
        assert math.isnan(res.innovations[t])
    assert res.exclusion_reasons == ("", "no estimate", "failed overlap", "")
    assert np.isfinite(res.posterior_mean).all()


def test_update_without_observation_keeps_the_state() -> None:
    state = predict(initial_state(prior_mean=0.2, prior_var=0.5), process_var=0.1)
    after, record = update(state, None, None)
    assert (after.mean, after.var) == (0.2, 0.6)
    assert record.excluded


def _joint_gaussian(y: np.ndarray, se: np.ndarray, observed: np.ndarray, m0: float, p0: float, q: float):
    """Exact joint covariance of theta_1..T and the observed estimates."""
    t = np.arange(1, len(y) + 1)
    cov_theta = p0 + q * np.minimum.outer(t, t)
    obs = np.flatnonzero(observed)
    cov_yy = cov_theta[np.ix_(obs, obs)] + np.diag(se[obs] ** 2)
    cov_ty = cov_theta[:, obs]
    return cov_theta, cov_yy, cov_ty, obs


def test_smoother_and_likelihood_equal_brute_force_gaussian_conditioning() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(0.3, 0.2, 8)
    y[4] = np.nan
    se = rng.uniform(0.05, 0.2, 8)
    m0, p0, q = 0.1, 0.4, 0.02
    res = causal_kalman(y, se, prior_mean=m0, prior_var=p0, process_var=q)
    cov_theta, cov_yy, cov_ty, obs = _joint_gaussian(y, se, ~np.isnan(y), m0, p0, q)
    gain = cov_ty @ np.linalg.inv(cov_yy)
    smoothed_mean = m0 + gain @ (y[obs] - m0)
    smoothed_var = np.diag(cov_theta - gain @ cov_ty.T)
    np.testing.assert_allclose(res.smoothed_mean, smoothed_mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.smoothed_var, smoothed_var, rtol=0, atol=1e-10)
    log_density = stats.multivariate_normal(mean=np.full(len(obs), m0), cov=cov_yy).logpdf(y[obs])
    assert res.log_likelihood == pytest.approx(log_density, abs=1e-9)
    # filtered belief at t conditions on batches up to t only
    for t in range(8):
        seen = obs[obs <= t]
        k = cov_theta[t, seen] @ np.linalg.inv(
            cov_yy[np.ix_(np.searchsorted(obs, seen), np.searchsorted(obs, seen))]
        )
        assert res.posterior_mean[t] == pytest.approx(m0 + k @ (y[seen] - m0), abs=1e-10)


def test_diffuse_start_takes_the_first_estimate_exactly() -> None:
    res = causal_kalman([np.nan, 0.7, 0.5], [0.1, 0.2, 0.2], process_var=0.0, diffuse=True)
    assert math.isinf(res.posterior_var[0])
    assert res.posterior_mean[1] == 0.7 and res.posterior_var[1] == pytest.approx(0.04)
    assert res.posterior_mean[2] == pytest.approx(0.6)
    assert math.isnan(res.innovations[1])
    assert res.smoothed_mean is not None and res.smoothed_mean[0] == pytest.approx(0.6)


def test_default_prior_is_scale_aware() -> None:
    res = causal_kalman([1000.0, 1010.0], [5.0, 5.0], process_var=0.0)
    assert res.prior_mean == 0.0
    assert res.prior_var == pytest.approx((10 * 1005.0) ** 2)
    assert res.final_mean == pytest.approx(1005.0, rel=1e-3)


def test_kalman_state_round_trips_through_json() -> None:
    state, _ = step(initial_state(prior_mean=0.0, prior_var=math.inf), 0.3, 0.1, process_var=0.01)
    for value in (state, initial_state(prior_mean=0.0, prior_var=math.inf)):
        assert KalmanState.from_dict(json.loads(json.dumps(value.to_dict()))) == value


def _random_walk_stream(
    rng: np.random.Generator, t: int, q: float, se: float
) -> tuple[np.ndarray, np.ndarray]:
    theta = 0.5 + np.cumsum(rng.normal(0, math.sqrt(q), t))
    return theta, theta + rng.normal(0, se, t)


def test_mle_recovers_a_known_process_variance() -> None:
    rng = np.random.default_rng(4)
    q_true = 0.0025
    estimates = []
    for _ in range(30):
        _, y = _random_walk_stream(rng, 200, q_true, 0.1)
        estimates.append(fit_process_variance(y, np.full(200, 0.1)).process_var)
    # Across streams the MLE is close to the truth (its sampling SD at T=200 is about 0.001).
    assert np.mean(estimates) == pytest.approx(q_true, rel=0.25)
    _, y = _random_walk_stream(rng, 400, q_true, 0.1)
    fit = fit_process_variance(y, np.full(400, 0.1))
    assert abs(fit.process_var - q_true) < 3 * fit.std_error
    assert fit.conf_int[0] <= q_true <= fit.conf_int[1]
    assert fit.p_value_static < 1e-6


def test_mle_standard_error_matches_the_spread_of_the_estimates_across_streams() -> None:
    # At q / se^2 = 0.25 and T = 200 the MLE is essentially never on the boundary q = 0, where no
    # SE is reported; the check uses the interior fits and first makes sure they are nearly all.
    rng = np.random.default_rng(14)
    q_true, n_streams, t = 0.0025, 400, 200
    fits = [
        fit_process_variance(_random_walk_stream(rng, t, q_true, 0.1)[1], np.full(t, 0.1))
        for _ in range(n_streams)
    ]
    q_hat = np.array([fit.process_var for fit in fits])
    reported = np.array([fit.std_error for fit in fits])
    interior = q_hat > 0
    assert interior.mean() >= 0.98
    assert np.isfinite(reported[interior]).all()
    # The observed-information SE is calibrated: its mean is the sampling SD of q_hat across streams
    # (that SD is itself known to about 1 / sqrt(2 * 399) = 3.5% from 400 streams).
    ratio = reported[interior].mean() / q_hat[interior].std(ddof=1)
    assert 0.7 <= ratio <= 1.3


def test_lr_test_of_a_static_effect_holds_its_level_under_the_null() -> None:
    rng = np.random.default_rng(5)
    n_streams, t = 2000, 60
    fits = [fit_process_variance(rng.normal(0.5, 0.1, t), np.full(t, 0.1)) for _ in range(n_streams)]
    statistic = np.array([fit.lr_statistic for fit in fits])
    p_values = np.array([fit.p_value_static for fit in fits])
    # The library refers the LR statistic to the chi-bar-square null: a 50:50 mixture of a point
    # mass at 0 and chi2(1), so p = chi2(1).sf(LR) / 2 (1 at LR = 0) and nominal 5% is LR > 2.71.
    expected = np.where(statistic > 0, 0.5 * stats.chi2.sf(statistic, 1), 1.0)
    np.testing.assert_allclose(p_values, expected, rtol=1e-12, atol=0)
    rejection = float(np.mean(p_values < 0.05))
    # Never above the nominal 5% beyond binomial noise (3 SD of 2000 streams: 6.5%). Only the upper
    # side is asserted: in the local level model q_hat lands on 0 in about 65% of null streams,
    # not 50% (Shephard and Harvey 1990), so this chi-bar-square test is conservative (about 3%).
    assert rejection <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n_streams)


def test_lr_test_of_a_static_effect_detects_a_real_drift() -> None:
    rng = np.random.default_rng(15)
    t = 60
    p_values = [
        fit_process_variance(_random_walk_stream(rng, t, 0.0025, 0.1)[1], np.full(t, 0.1)).p_value_static
        for _ in range(200)
    ]
    # simulated power at q / se^2 = 0.25 over 60 batches is about 99%
    assert np.mean(np.array(p_values) < 0.05) >= 0.9


def test_causal_kalman_with_mle_reports_the_fit() -> None:
    rng = np.random.default_rng(6)
    _, y = _random_walk_stream(rng, 100, 0.004, 0.05)
    res = causal_kalman(y, np.full(100, 0.05), process_var="mle")
    fit = res.details["process_var_fit"]
    assert res.process_var == fit.process_var > 0
    assert set(fit.profile.columns) == {"process_var", "log_likelihood"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"estimates": [], "standard_errors": []}, "empty"),
        ({"estimates": [0.1, 0.2], "standard_errors": [0.1]}, "differ in length"),
        ({"estimates": [0.1], "standard_errors": [0.0]}, "standard_errors must be finite and > 0"),
        ({"estimates": [0.1], "standard_errors": [np.inf]}, "standard_errors must be finite and > 0"),
        ({"estimates": [0.1], "standard_errors": [0.1], "alpha": 1.5}, "alpha"),
        ({"estimates": [0.1], "standard_errors": [0.1], "prior_var": 0.0}, "prior_var"),
        ({"estimates": [0.1], "standard_errors": [0.1], "process_var": -1.0}, "process_var"),
        ({"estimates": [np.inf], "standard_errors": [0.1]}, "finite or NaN"),
    ],
)
def test_invalid_input_gives_a_clear_error(kwargs: dict, message: str) -> None:
    estimates = kwargs.pop("estimates")
    standard_errors = kwargs.pop("standard_errors")
    with pytest.raises(ValueError, match=message):
        causal_kalman(estimates, standard_errors, **kwargs)


def test_a_missing_estimate_may_have_any_standard_error() -> None:
    res = causal_kalman([0.1, np.nan], [0.1, np.nan], prior_mean=0.0, prior_var=1.0)
    assert res.excluded.tolist() == [False, True]


# --- the compiled pass: agreement with statsmodels, the step API and long streams ---

STATSMODELS = 1e-8


def _statsmodels_local_level(y: np.ndarray, se: np.ndarray, q: float, m0: float, p0: float):  # type: ignore[no-untyped-def]
    """statsmodels' Kalman filter on the same model; its state at t=1 is our forecast (P0 + q)."""
    from statsmodels.tsa.statespace.mlemodel import MLEModel

    model = MLEModel(
        y,
        k_states=1,
        k_posdef=1,
        initialization="known",
        initial_state=[m0],
        initial_state_cov=[[p0 + q]],
    )
    model["design"] = model["transition"] = model["selection"] = np.ones((1, 1))
    model["state_cov"] = np.array([[q]])
    model["obs_cov"] = (se * se).reshape(1, 1, -1)
    return model.ssm.filter()


@pytest.mark.parametrize(("t", "q"), [(50, 0.0), (2000, 1e-4), (20_000, 0.3)])
def test_filter_agrees_with_statsmodels_with_time_varying_standard_errors(t: int, q: float) -> None:
    rng = np.random.default_rng(t)
    se = rng.uniform(0.05, 0.5, t)
    y = 0.4 + np.cumsum(rng.normal(0, np.sqrt(q), t)) + rng.normal(0, se)
    y[rng.random(t) < 0.05] = np.nan
    ours = causal_kalman(y, se, prior_mean=0.1, prior_var=2.0, process_var=q, smooth=False)
    theirs = _statsmodels_local_level(y, se, q, 0.1, 2.0)
    np.testing.assert_allclose(ours.posterior_mean, theirs.filtered_state[0], rtol=0, atol=STATSMODELS)
    np.testing.assert_allclose(ours.posterior_var, theirs.filtered_state_cov[0, 0], rtol=STATSMODELS)
    np.testing.assert_allclose(ours.forecast_mean, theirs.predicted_state[0, :-1], rtol=0, atol=STATSMODELS)
    used = ~np.isnan(y)
    np.testing.assert_allclose(ours.innovations[used], theirs.forecasts_error[0, used], atol=STATSMODELS)
    np.testing.assert_allclose(ours.innovation_var[used], theirs.forecasts_error_cov[0, 0, used], rtol=1e-10)
    assert ours.log_likelihood == pytest.approx(float(theirs.llf), rel=1e-10)


def test_long_stream_batch_call_equals_the_step_api_with_a_diffuse_start() -> None:
    rng = np.random.default_rng(9)
    n = 3000
    y = rng.normal(0.2, 0.3, n)
    y[rng.random(n) < 0.1] = np.nan
    y[:3] = np.nan  # the diffuse belief waits for the first estimate
    se = rng.uniform(0.1, 0.4, n)
    flags = rng.random(n) < 0.05
    res = causal_kalman(y, se, process_var=1e-3, diffuse=True, excluded=flags.tolist(), smooth=False)
    state = initial_state(prior_mean=0.0, prior_var=math.inf)
    means, variances = [], []
    for t in range(n):
        use = not (flags[t] or np.isnan(y[t]))
        state, record = step(state, float(y[t]) if use else None, float(se[t]), process_var=1e-3)
        means.append(record.posterior_mean)
        variances.append(record.posterior_var)
    np.testing.assert_array_equal(res.posterior_mean, means)
    np.testing.assert_array_equal(res.posterior_var, variances)
    assert res.log_likelihood == state.log_likelihood
    assert res.labels[0] == "batch_1" and res.labels[-1] == f"batch_{n}" and len(set(res.labels)) == n
    assert res.exclusion_reasons[0] == "no estimate"
    assert res.exclusion_reasons[int(np.flatnonzero(flags & ~np.isnan(y))[0])] == "excluded"


def test_smoother_of_a_long_stream_equals_the_textbook_recursion() -> None:
    rng = np.random.default_rng(10)
    n, q = 5000, 2e-4
    y = 0.5 + np.cumsum(rng.normal(0, np.sqrt(q), n)) + rng.normal(0, 0.1, n)
    res = causal_kalman(y, np.full(n, 0.1), prior_mean=0.0, prior_var=1.0, process_var=q)
    mean, var = res.posterior_mean.copy(), res.posterior_var.copy()
    for t in range(n - 2, -1, -1):
        gain = res.posterior_var[t] / (res.posterior_var[t] + q)
        mean[t] = res.posterior_mean[t] + gain * (mean[t + 1] - res.posterior_mean[t])
        var[t] = res.posterior_var[t] + gain**2 * (var[t + 1] - res.posterior_var[t] - q)
    np.testing.assert_allclose(res.smoothed_mean, mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.smoothed_var, var, rtol=1e-9)


def test_resume_finds_the_first_changed_batch_exactly_as_the_fingerprints_do() -> None:
    import pandas as pd

    from assimilate.incremental import FilterSettings, refilter_from_first_change
    from assimilate.stored_steps import fingerprints, first_change, unchanged_prefix

    rng = np.random.default_rng(11)
    n = 60
    base = pd.DataFrame(
        {
            "batch": [f"w{i:03d}" for i in range(n)],
            "estimate": rng.normal(0.3, 0.1, n),
            "std_error": rng.uniform(0.05, 0.2, n),
            "excluded": rng.random(n) < 0.1,
            "exclusion_reason": "",
        }
    )
    base.loc[base["excluded"], "exclusion_reason"] = "failed overlap"
    base.loc[[5, 40], "estimate"] = np.nan
    base.loc[3, "estimate"] = 0.0
    stored = refilter_from_first_change(
        base, None, FilterSettings(process_var=1e-3, prior_mean=0.0, prior_var=1.0)
    )
    edits = {
        "append": lambda f: pd.concat([f, f.iloc[[-1]].assign(batch="w999")], ignore_index=True),
        "estimate": lambda f: f.assign(estimate=f["estimate"].where(f.index != 17, 0.31)),
        "negative zero": lambda f: f.assign(estimate=f["estimate"].where(f.index != 3, -0.0)),
        "newly excluded": lambda f: f.assign(excluded=f["excluded"] | (f.index == 22)),
        "missing batch gets a reason": lambda f: f.assign(
            exclusion_reason=f["exclusion_reason"].where(f.index != 5, "no estimate")
        ),
        "missing batch changes its SE": lambda f: f.assign(
            std_error=f["std_error"].where(f.index != 40, 9.0)
        ),
        "relabelled": lambda f: f.assign(batch=f["batch"].where(f.index != 30, "w030b")),
        "shortened": lambda f: f.iloc[:50],
        "unchanged": lambda f: f,
    }
    for name, edit in edits.items():
        changed = edit(base.copy())
        expected = first_change(stored.steps["fingerprint"].tolist(), fingerprints(changed))
        assert unchanged_prefix(stored.steps, changed) == expected, name
