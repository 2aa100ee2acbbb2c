"""Simulation studies of the filter: band coverage of a drifting effect, and the drift alarm."""

from __future__ import annotations

import numpy as np
import pytest

from assimilate import causal_kalman, innovation_diagnostics

N_STREAMS = 150
T = 60
SE = 0.05
Q = 0.0004


def _drifting_stream(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    theta = 0.3 + np.cumsum(rng.normal(0, np.sqrt(Q), T))
    return theta, theta + rng.normal(0, SE, T)


@pytest.mark.slow
def test_filtered_bands_cover_the_drifting_effect_when_process_variance_is_estimated() -> None:
    rng = np.random.default_rng(20)
    hits = []
    for _ in range(N_STREAMS):
        theta, y = _drifting_stream(rng)
        res = causal_kalman(y, np.full(T, SE), process_var="mle", prior_mean=0.0, prior_var=1.0)
        lower, upper = res.posterior_ci
        hits.append((lower <= theta) & (theta <= upper))
    coverage = float(np.mean(hits))
    assert 0.92 <= coverage <= 0.97, coverage


def test_innovation_test_flags_zero_process_variance_under_drift_and_not_under_the_true_one() -> None:
    rng = np.random.default_rng(21)
    flagged_static, flagged_true = 0, 0
    n = 100
    for _ in range(n):
        theta = np.linspace(0.2, 0.8, T)  # a steady drift
        y = theta + rng.normal(0, SE, T)
        static = causal_kalman(y, np.full(T, SE), process_var=0.0, prior_mean=0.0, prior_var=1.0)
        flagged_static += innovation_diagnostics(static).one_sided.failed
        _, y_rw = _drifting_stream(rng)
        right = causal_kalman(y_rw, np.full(T, SE), process_var=Q, prior_mean=0.3, prior_var=SE**2)
        flagged_true += innovation_diagnostics(right).one_sided.failed
    assert flagged_static / n >= 0.95
    assert flagged_true / n <= 0.05  # test level 0.01


def test_latest_innovation_and_nis_verdicts() -> None:
    y = np.array([0.5, 0.51, 0.49, 0.5, 0.52, 0.48, 1.5])
    res = causal_kalman(y, np.full(7, 0.02), process_var=1e-5, prior_mean=0.5, prior_var=0.01)
    report = innovation_diagnostics(res, z_threshold=3.0)
    assert report.latest_innovation.failed
    assert report.latest_innovation.value == pytest.approx(abs(report.standardized[-1]))
    assert report.ess.status == "undefined"
    few = innovation_diagnostics(causal_kalman([0.5, 0.6], [0.1, 0.1], prior_mean=0.0, prior_var=1.0))
    assert few.one_sided.status == "undefined" and "fewer than" in few.one_sided.reason
    assert innovation_diagnostics(None).latest_innovation.status == "undefined"


def test_nis_calibration_fails_when_the_standard_errors_are_wrong_and_is_nominal_when_right() -> None:
    rng = np.random.default_rng(22)
    true_se = 0.05
    n = 200
    level = 0.01
    flagged = {"right": 0, "understated": 0, "overstated": 0}
    for _ in range(n):
        y = 0.4 + rng.normal(0, true_se, T)  # a static effect observed with noise of sd true_se
        for name, stated in (("right", true_se), ("understated", true_se / 2), ("overstated", true_se * 2)):
            res = causal_kalman(y, np.full(T, stated), process_var=0.0, prior_mean=0.4, prior_var=stated**2)
            report = innovation_diagnostics(res, alpha=level)
            flagged[name] += report.nis.failed
    assert flagged["right"] / n <= 0.04  # nominal 1%: a chi-square(T) test on exact innovations
    assert flagged["understated"] / n >= 0.99  # NIS about 4x its expectation
    assert flagged["overstated"] / n >= 0.99  # NIS about 1/4 of its expectation (two-sided test)
    exact = causal_kalman(
        np.full(T, 0.4), np.full(T, true_se), process_var=0.0, prior_mean=0.4, prior_var=1.0
    )
    assert innovation_diagnostics(exact).nis.value == pytest.approx(0.0, abs=1e-12)  # z = 0: far too small
