"""Property-based tests: extreme but valid inputs give finite answers or a clear error, never a NaN.

Numerical RuntimeWarnings (invalid value, divide by zero, overflow) are errors in this suite, so a
silent NaN or inf produced on the way fails these tests too.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assimilate import (
    EffectEstimate,
    aipw,
    causal_kalman,
    difference_in_means,
    ipw,
    particle_filter,
    regression_adjustment,
)
from assimilate.filters import KalmanState, initial_state, step

standard_errors = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False)
estimates = st.one_of(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.just(math.nan))
streams = st.lists(st.tuples(estimates, standard_errors), min_size=1, max_size=40)
PROFILE = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ESTIMATORS = (difference_in_means, regression_adjustment, ipw, aipw)
ESTIMATOR_PROFILE = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _estimate(estimator: object, frame: pd.DataFrame, outcome: str = "y") -> EffectEstimate:
    kwargs = {} if estimator is difference_in_means else {"covariates": ["x"]}
    return estimator(frame, treatment="d", outcome=outcome, **kwargs)  # type: ignore[operator, no-any-return]


def _batch(seed: int, n: int) -> pd.DataFrame:
    """A confounded batch: x raises both the chance of treatment and the outcome."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    d = (rng.random(n) < 1.0 / (1.0 + np.exp(-0.8 * x))).astype(np.int64)
    d[:3], d[3:6] = 1, 0
    return pd.DataFrame({"d": d, "x": x, "y": 0.4 * d + 0.7 * x + rng.standard_normal(n)})


@PROFILE
@given(
    stream=streams,
    prior_var=st.floats(min_value=1e-8, max_value=1e8),
    process_var=st.floats(min_value=0.0, max_value=1e4),
    prior_mean=st.floats(min_value=-1e6, max_value=1e6),
)
def test_kalman_posterior_stays_finite_and_positive(
    stream: list[tuple[float, float]], prior_var: float, process_var: float, prior_mean: float
) -> None:
    y = [s[0] for s in stream]
    se = [s[1] for s in stream]
    res = causal_kalman(y, se, prior_mean=prior_mean, prior_var=prior_var, process_var=process_var)
    assert np.isfinite(res.posterior_mean).all()
    assert (res.posterior_var > 0).all() and np.isfinite(res.posterior_var).all()
    assert (res.posterior_var <= res.forecast_var * (1 + 1e-12)).all()  # data never add uncertainty
    assert math.isfinite(res.log_likelihood)
    assert res.smoothed_var is not None and (res.smoothed_var > 0).all()


@PROFILE
@given(stream=streams, process_var=st.floats(min_value=0.0, max_value=1e4))
def test_diffuse_start_and_state_round_trip_never_give_nan(
    stream: list[tuple[float, float]], process_var: float
) -> None:
    state = initial_state(prior_mean=0.0, prior_var=math.inf)
    for estimate, std_error in stream:
        state, record = step(
            state, None if math.isnan(estimate) else estimate, std_error, process_var=process_var
        )
        assert not math.isnan(record.posterior_mean) and record.posterior_var > 0
        assert KalmanState.from_dict(state.to_dict()) == state


@settings(max_examples=40, deadline=None)
@given(
    df=st.floats(min_value=0.3, max_value=30.0),
    outlier=st.floats(min_value=-1e6, max_value=1e6),
    se=st.floats(min_value=1e-6, max_value=1e3),
)
def test_student_t_particle_filter_stays_finite_with_small_df(df: float, outlier: float, se: float) -> None:
    y = np.array([0.1, 0.2, outlier, 0.15, math.nan, 0.12])
    res = particle_filter(
        y,
        np.full(6, se),
        process_var=1e-3,
        prior_mean=0.0,
        prior_var=1.0,
        observation="student_t",
        df=df,
        n_particles=300,
        rng=np.random.default_rng(0),
    )
    assert np.isfinite(res.posterior_mean).all() and (res.posterior_var >= 0).all()
    assert np.isfinite(res.posterior_lower).all() and np.isfinite(res.posterior_upper).all()
    assert res.ess is not None and (res.ess >= 1).all()


@settings(max_examples=40, deadline=None)
@given(
    scale=st.floats(min_value=1e-6, max_value=1e6),
    shift=st.floats(min_value=-1e6, max_value=1e6),
    n=st.integers(min_value=6, max_value=300),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_estimators_give_a_finite_answer_or_a_clear_error(
    scale: float, shift: float, n: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    d = rng.binomial(1, 0.5, n)
    d[:2], d[2:4] = 1, 0
    x = rng.standard_normal(n) * scale + shift
    frame = pd.DataFrame(
        {"d": d, "x": x, "y": 0.3 * d + x / max(scale, 1.0) + rng.standard_normal(n) * scale}
    )
    for estimator in ESTIMATORS:
        try:
            est = _estimate(estimator, frame)
        except ValueError as error:
            assert str(error)  # noqa: PT017 - a clear message, never a crash of another kind
            continue
        assert math.isfinite(est.estimate) and math.isfinite(est.std_error) and est.std_error >= 0


@ESTIMATOR_PROFILE
@given(
    shift=st.floats(min_value=-1e3, max_value=1e3),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    n=st.integers(min_value=40, max_value=400),
)
def test_shifting_the_outcome_leaves_every_estimate_and_se_unchanged(shift: float, seed: int, n: int) -> None:
    frame = _batch(seed, n)
    shifted = frame.assign(y=frame["y"] + shift)
    tolerance = 1e-9 * (1.0 + abs(shift))  # the rounding of y + shift itself
    for estimator in ESTIMATORS:
        base, moved = _estimate(estimator, frame), _estimate(estimator, shifted)
        name = estimator.__name__
        assert moved.estimate == pytest.approx(base.estimate, rel=1e-9, abs=tolerance), name
        assert moved.std_error == pytest.approx(base.std_error, rel=1e-7, abs=tolerance), name


@ESTIMATOR_PROFILE
@given(
    scale=st.floats(min_value=1e-3, max_value=1e3),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    n=st.integers(min_value=40, max_value=400),
)
def test_scaling_the_outcome_scales_every_estimate_and_se(scale: float, seed: int, n: int) -> None:
    frame = _batch(seed, n)
    scaled = frame.assign(y=frame["y"] * scale)
    for estimator in ESTIMATORS:
        base, moved = _estimate(estimator, frame), _estimate(estimator, scaled)
        name = estimator.__name__
        assert moved.estimate == pytest.approx(base.estimate * scale, rel=1e-9, abs=1e-12 * scale), name
        assert moved.std_error == pytest.approx(base.std_error * scale, rel=1e-9), name


@PROFILE
@given(
    prior_mean=st.floats(min_value=-1e6, max_value=1e6),
    prior_var=st.floats(min_value=1e-8, max_value=1e8),
    observation=st.floats(min_value=-1e6, max_value=1e6),
    se=standard_errors,
)
def test_one_kalman_update_without_drift_lands_between_prior_and_observation(
    prior_mean: float, prior_var: float, observation: float, se: float
) -> None:
    res = causal_kalman([observation], [se], prior_mean=prior_mean, prior_var=prior_var, process_var=0.0)
    low, high = sorted((prior_mean, observation))
    slack = 1e-12 * max(abs(low), abs(high), 1.0)
    assert low - slack <= res.final_mean <= high + slack
    assert 0 < res.posterior_var[0] <= min(prior_var, se**2) * (1 + 1e-12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ses=st.lists(standard_errors, min_size=1, max_size=6),
    estimates=st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=6, max_size=6),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_particle_filter_over_extreme_standard_errors(
    ses: list[float], estimates: list[float], seed: int
) -> None:
    y = np.array(estimates[: len(ses)])
    try:
        res = particle_filter(
            y,
            np.array(ses),
            process_var=1e-2,
            prior_mean=0.0,
            prior_var=1.0,
            n_particles=200,
            rng=np.random.default_rng(seed),
        )
    except ValueError as error:
        assert str(error)  # noqa: PT017 - a clear message, never a crash of another kind
        return
    assert np.isfinite(res.posterior_mean).all()
    assert np.isfinite(res.posterior_var).all() and (res.posterior_var > 0).all()
    assert np.isfinite(res.posterior_lower).all() and np.isfinite(res.posterior_upper).all()
    # Where it is not near the exact (Kalman) answer, the filter said so: its ESS collapsed at that
    # step or an earlier one (a collapsed cloud carries its error forward).
    exact = causal_kalman(y, np.array(ses), process_var=1e-2, prior_mean=0.0, prior_var=1.0, smooth=False)
    error = np.abs(res.posterior_mean - exact.posterior_mean)
    spread = 6 * (np.sqrt(res.posterior_var) + np.sqrt(exact.posterior_var)) + 1e-9
    assert res.ess is not None
    assert ((error <= spread) | (np.minimum.accumulate(res.ess) < 10)).all(), (error, spread, res.ess)


@pytest.mark.slow
def test_a_million_step_stream_stays_finite() -> None:
    rng = np.random.default_rng(60)
    n = 1_000_000
    y = 0.5 + rng.normal(0, 0.1, n)
    y[rng.random(n) < 0.01] = np.nan
    res = causal_kalman(y, np.full(n, 0.1), prior_mean=0.0, prior_var=1.0, process_var=1e-10, smooth=False)
    assert np.isfinite(res.posterior_mean).all() and (res.posterior_var > 0).all()
    assert res.final_mean == pytest.approx(0.5, abs=0.01)
