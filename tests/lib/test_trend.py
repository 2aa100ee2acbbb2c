"""Trend test (novelty / primacy) and the steady-state effect: known answers, level, power, coverage."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from assimilate import causal_kalman
from assimilate.diagnostics import TrendTest, trend_test, trend_test_of

EXACT = 1e-10
SE = 0.05
T = 24
TIMES = np.arange(T, dtype=np.float64)


def _dense_gls(y: np.ndarray, se: np.ndarray, times: np.ndarray, q: float) -> tuple[float, float]:
    """GLS slope and its SE with Sigma = diag(se^2) + q min(s, t), by dense algebra."""
    sigma = np.diag(se**2) + q * np.minimum.outer(times, times)
    x = np.column_stack([np.ones(len(y)), times - times.mean()])
    inverse = np.linalg.inv(sigma)
    cov = np.linalg.inv(x.T @ inverse @ x)
    coef = cov @ x.T @ inverse @ y
    return float(coef[1]), math.sqrt(float(cov[1, 1]))


def _stream(rng: np.random.Generator, effect: np.ndarray | float, q: float) -> tuple[np.ndarray, np.ndarray]:
    theta = effect + np.cumsum(math.sqrt(q) * rng.standard_normal(T))
    return theta, theta + SE * rng.standard_normal(T)


def test_static_model_equals_weighted_least_squares_from_statsmodels() -> None:
    rng = np.random.default_rng(1)
    se = rng.uniform(0.03, 0.08, T)
    y = 0.2 + se * rng.standard_normal(T)
    test = trend_test(y, se, process_var=0.0)
    x = sm.add_constant(TIMES)
    wls = sm.WLS(y, x, weights=1 / se**2).fit(cov_type="fixed scale")  # known variances: scale 1
    assert test.slope == pytest.approx(wls.params[1], abs=EXACT)
    assert test.slope_std_error == pytest.approx(wls.bse[1], rel=1e-9)
    assert test.statistic == pytest.approx(wls.tvalues[1], rel=1e-9)
    assert test.p_value == pytest.approx(wls.pvalues[1], rel=1e-9)


@pytest.mark.parametrize("q", [1e-6, 1e-4, 0.01, 1.0])
def test_random_walk_model_equals_dense_gls_with_gaps_for_excluded_batches(q: float) -> None:
    rng = np.random.default_rng(2)
    se = rng.uniform(0.03, 0.08, T)
    y = 0.2 + np.cumsum(rng.normal(0, 0.01, T)) + se * rng.standard_normal(T)
    excluded = np.zeros(T, dtype=bool)
    excluded[[3, 4, 15]] = True
    y[10] = np.nan
    test = trend_test(y, se, process_var=q, excluded=excluded.tolist())
    used = ~excluded & np.isfinite(y)
    slope, slope_se = _dense_gls(y[used], se[used], TIMES[used] + 1.0, q)
    assert test.n_batches == int(used.sum())
    assert test.slope == pytest.approx(slope, rel=1e-8, abs=1e-12)
    assert test.slope_std_error == pytest.approx(slope_se, rel=1e-8)
    assert test.p_value == pytest.approx(2 * stats.norm.sf(abs(slope / slope_se)), rel=1e-7)


def test_steady_state_is_the_precision_weighted_late_mean_for_a_static_effect() -> None:
    rng = np.random.default_rng(3)
    se = rng.uniform(0.03, 0.08, T)
    y = 0.2 + se * rng.standard_normal(T)
    steady = trend_test(y, se, process_var=0.0).steady_state
    assert steady is not None
    w = 1 / se[-8:] ** 2
    assert steady.estimate == pytest.approx(float(np.sum(w * y[-8:]) / w.sum()), abs=EXACT)
    assert steady.std_error == pytest.approx(1 / math.sqrt(w.sum()), rel=1e-12)
    assert (steady.first_batch, steady.last_batch, steady.n_batches) == ("batch_17", "batch_24", 8)
    high = steady.conf_int[1]
    assert high - steady.estimate == pytest.approx(stats.norm.ppf(0.975) * steady.std_error, rel=1e-12)


def test_steady_state_under_a_random_walk_equals_the_smoother_and_the_dense_posterior() -> None:
    rng = np.random.default_rng(4)
    se = rng.uniform(0.03, 0.08, T)
    y = 0.2 + np.cumsum(rng.normal(0, 0.02, T)) + se * rng.standard_normal(T)
    q = 4e-4
    steady = trend_test(y, se, process_var=q).steady_state
    assert steady is not None
    window_y, window_se = y[-8:], se[-8:]
    smoothed = causal_kalman(window_y, window_se, process_var=q, diffuse=True).smoothed_mean
    assert smoothed is not None
    assert steady.estimate == pytest.approx(float(smoothed.mean()), abs=1e-10)
    difference = np.diff(np.eye(8), axis=0)
    precision = difference.T @ difference / q + np.diag(1 / window_se**2)
    average = np.full(8, 1 / 8)
    assert steady.std_error**2 == pytest.approx(
        float(average @ np.linalg.solve(precision, average)), rel=1e-9
    )


def test_level_on_a_static_effect_and_under_a_known_random_walk() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    mc = 3 * math.sqrt(0.05 * 0.95 / n)
    static = [trend_test(_stream(rng, 0.2, 0.0)[1], np.full(T, SE), process_var=0.0) for _ in range(n)]
    assert abs(np.mean([t.verdict.failed for t in static]) - 0.05) <= mc
    q = 0.25 * SE**2
    walks = [_stream(rng, 0.2, q)[1] for _ in range(n)]
    told = np.mean([trend_test(y, np.full(T, SE), process_var=q).verdict.failed for y in walks])
    blind = np.mean([trend_test(y, np.full(T, SE), process_var=0.0).verdict.failed for y in walks])
    assert abs(told - 0.05) <= mc
    assert blind > 0.3  # the autocorrelation a random walk creates, ignored


def test_power_and_direction_on_decaying_and_growing_effects() -> None:
    rng = np.random.default_rng(6)
    decay = 0.1 + 0.2 * np.exp(-TIMES / 6)
    novelty = [trend_test(_stream(rng, decay, 0.0)[1], np.full(T, SE), process_var=0.0) for _ in range(300)]
    assert np.mean([t.direction == "novelty" for t in novelty]) >= 0.9
    assert all(t.direction in ("novelty", "none") for t in novelty)
    primacy = [
        trend_test(_stream(rng, 0.3 - 0.2 * np.exp(-TIMES / 6), 0.0)[1], np.full(T, SE), process_var=0.0)
    ]
    assert primacy[0].direction == "primacy"
    # a harm that wears off moves toward zero: novelty too, though the slope is positive
    harm = trend_test(_stream(rng, -decay, 0.0)[1], np.full(T, SE), process_var=0.0)
    assert harm.slope is not None and harm.slope > 0 and harm.direction == "novelty"


def test_steady_state_interval_covers_the_late_effect_of_a_decaying_stream() -> None:
    rng = np.random.default_rng(7)
    decay = 0.1 + 0.2 * np.exp(-TIMES / 6)
    covered = []
    for _ in range(1000):
        theta, y = _stream(rng, decay, 0.0)
        steady = trend_test(y, np.full(T, SE), process_var=0.0).steady_state
        assert steady is not None
        covered.append(steady.conf_int[0] <= theta[-8:].mean() <= steady.conf_int[1])
    assert abs(np.mean(covered) - 0.95) <= 3 * math.sqrt(0.05 * 0.95 / 1000)


def test_too_few_batches_give_an_undefined_verdict_with_a_reason() -> None:
    test = trend_test([0.1, 0.2, float("nan"), 0.3], [0.1] * 4, process_var=0.0)
    assert test.verdict.status == "undefined" and "3 used batches" in test.verdict.reason
    assert test.statistic is None and test.steady_state is None and test.direction == "none"
    assert "not tested" in test.summary()
    assert trend_test_of(None).verdict.status == "undefined"


def test_trend_test_of_a_result_uses_the_filters_process_variance_and_labels() -> None:
    rng = np.random.default_rng(8)
    y = _stream(rng, 0.1 + 0.2 * np.exp(-TIMES / 6), 0.0)[1]
    labels = [f"2025-{m:02d}" for m in range(1, T + 1)]
    result = causal_kalman(y, np.full(T, SE), process_var=1e-4, labels=labels)
    test = trend_test_of(result)
    direct = trend_test(y, np.full(T, SE), process_var=1e-4, labels=labels)
    assert test == direct
    assert test.process_var == 1e-4 and "step variance 0.0001" in test.null
    assert test.steady_state is not None and test.steady_state.last_batch == "2025-24"


def test_result_is_frozen_serialisable_and_speaks_in_sentences() -> None:
    test = trend_test(0.1 + 0.2 * np.exp(-TIMES / 6), np.full(T, SE), process_var=0.0)
    assert isinstance(test, TrendTest)
    with pytest.raises(dataclasses.FrozenInstanceError):
        test.p_value = 1.0  # type: ignore[misc]
    payload = json.loads(json.dumps(test.to_dict()))
    assert payload["verdict"]["name"] == "effect_trend" and payload["direction"] == "novelty"
    assert test.null == "the effect is constant over batches (no trend)"
    assert "wears off" in test.verdict.reason and "Steady-state effect" in str(test)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"process_var": -1.0}, "process_var"),
        ({"alpha": 1.5}, "alpha"),
        ({"late_fraction": 0.0}, "late_fraction"),
    ],
)
def test_bad_options_are_rejected(kwargs: dict[str, float], message: str) -> None:
    options = {"process_var": 0.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        trend_test(np.zeros(T), np.full(T, SE), **options)
