"""Particle filter: agreement with the exact Kalman answer, long static streams, heavy tails."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assimilate import causal_kalman, particle_filter


def test_particle_filter_matches_kalman_on_the_gaussian_model() -> None:
    rng = np.random.default_rng(10)
    theta = 0.5 + np.cumsum(rng.normal(0, 0.03, 30))
    y = theta + rng.normal(0, 0.1, 30)
    y[[7, 20]] = np.nan
    se = np.full(30, 0.1)
    exact = causal_kalman(y, se, prior_mean=0.4, prior_var=0.25, process_var=0.0009)
    approx = particle_filter(
        y,
        se,
        prior_mean=0.4,
        prior_var=0.25,
        process_var=0.0009,
        n_particles=20_000,
        rng=np.random.default_rng(11),
    )
    monte_carlo_sd = np.sqrt(exact.posterior_var / 20_000 * 10)  # generous: resampling inflates MC variance
    assert np.all(np.abs(approx.posterior_mean - exact.posterior_mean) < 4 * monte_carlo_sd)
    np.testing.assert_allclose(approx.posterior_sd, exact.posterior_sd, rtol=0.05)
    np.testing.assert_allclose(approx.innovations, exact.innovations, atol=0.01, equal_nan=True)
    assert approx.log_likelihood == pytest.approx(exact.log_likelihood, abs=0.3)
    assert approx.excluded.tolist() == exact.excluded.tolist()
    assert approx.ess is not None and approx.ess.min() > 1000


def test_same_seed_gives_the_same_result() -> None:
    args = ([0.5, 0.6, 0.4], [0.1, 0.1, 0.1])
    first = particle_filter(*args, process_var=0.01, rng=np.random.default_rng(3), n_particles=500)
    second = particle_filter(*args, process_var=0.01, rng=np.random.default_rng(3), n_particles=500)
    np.testing.assert_array_equal(first.posterior_mean, second.posterior_mean)
    np.testing.assert_array_equal(first.posterior_lower, second.posterior_lower)


@pytest.mark.slow
def test_static_effect_over_1000_batches_keeps_nominal_coverage() -> None:
    rng = np.random.default_rng(12)
    n_streams, n_batches, se = 100, 1000, 0.5
    covered, min_unique = 0, []
    for _ in range(n_streams):
        truth = rng.normal(0.0, 1.0)
        y = truth + rng.normal(0, se, n_batches)
        res = particle_filter(
            y,
            np.full(n_batches, se),
            process_var=0.0,
            prior_mean=0.0,
            prior_var=1.0,
            n_particles=500,
            rng=rng,
        )
        lower, upper = res.final_ci
        covered += lower <= truth <= upper
        min_unique.append(res.final_sd)
    coverage = covered / n_streams
    assert 0.88 <= coverage <= 0.99
    # the exact posterior SD after 1000 batches is about se / sqrt(1000) = 0.0158: not collapsed
    assert np.median(min_unique) == pytest.approx(se / math.sqrt(n_batches), rel=0.2)


def test_student_t_observations_resist_an_outlying_batch() -> None:
    y = np.array([0.5, 0.52, 0.48, 0.51, 3.0, 0.49])
    se = np.full(6, 0.05)
    gaussian = causal_kalman(y, se, prior_mean=0.0, prior_var=1.0, process_var=1e-4)
    robust = particle_filter(
        y,
        se,
        prior_mean=0.0,
        prior_var=1.0,
        process_var=1e-4,
        observation="student_t",
        df=3,
        n_particles=5000,
        rng=np.random.default_rng(4),
    )
    shift_gaussian = gaussian.posterior_mean[4] - gaussian.posterior_mean[3]
    shift_robust = robust.posterior_mean[4] - robust.posterior_mean[3]
    assert shift_gaussian > 0.3
    assert abs(shift_robust) < 0.1 * shift_gaussian


def test_low_effective_sample_size_warns() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(0, 1e-3, 40)
    with pytest.warns(RuntimeWarning, match="ESS stayed below"):
        particle_filter(
            y,
            np.full(40, 1e-3),
            process_var=1.0,
            prior_mean=0.0,
            prior_var=1.0,
            n_particles=200,
            rng=rng,
            rejuvenate=False,
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"observation": "student_t"}, "df is required"),
        ({"observation": "student_t", "df": 0.0}, "df must be positive"),
        ({"observation": "cauchy"}, "observation must be one of"),
        ({"n_particles": 1}, "n_particles"),
        ({"ess_threshold": 0.0}, "ess_threshold"),
        ({"process_var": -0.1}, "process_var"),
    ],
)
def test_invalid_options_give_clear_errors(kwargs: dict, message: str) -> None:
    options = {"process_var": 0.01, **kwargs}
    with pytest.raises(ValueError, match=message):
        particle_filter([0.1, 0.2], [0.1, 0.1], rng=np.random.default_rng(0), **options)
