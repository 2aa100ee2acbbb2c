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


# --- the compiled engine: its pieces against their definitions, the filter against exact answers ---


def _cloud(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_t(4, n) * 0.3 + 0.5
    w = np.exp(-0.5 * ((x - 0.6) / 0.2) ** 2) * rng.uniform(0.5, 1.5, n)
    w[rng.random(n) < 0.05] = 0.0  # particles whose weight underflowed
    return x, w


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("guess_shift", "width"),
    [(0.0, 0.01), (0.5, 0.001), (-3.0, 0.2), (0.0, 0.0), (0.0, np.inf), (0.0, 1e-9)],
    ids=["good", "off", "far", "zero-width", "infinite", "tiny"],
)
def test_windowed_quantiles_equal_the_sorting_definition(seed: int, guess_shift: float, width: float) -> None:
    from assimilate.filters._weighted_quantiles import weighted_quantile_pair, weighted_quantiles

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    x, w = _cloud(rng, n)
    w[0] = 1.0  # at least one positive weight
    probabilities = np.array([0.025, 0.975])
    expected = weighted_quantiles(x, w, probabilities)
    guesses = expected + guess_shift
    out = np.empty(2)
    weighted_quantile_pair(
        x, w, float(w.sum()), probabilities, guesses, np.full(2, width), np.empty((4, n)), out
    )
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_windowed_quantiles_with_ties_and_extreme_levels() -> None:
    from assimilate.filters._weighted_quantiles import weighted_quantile_pair, weighted_quantiles

    rng = np.random.default_rng(7)
    x = np.repeat(rng.normal(size=40), 25)  # resampled copies without jitter
    w = np.ones_like(x)
    for probabilities in ([0.025, 0.975], [1e-6, 1 - 1e-6], [0.5, 0.5]):
        p = np.array(probabilities)
        out = np.empty(2)
        weighted_quantile_pair(
            x, w, float(w.sum()), p, np.zeros(2), np.full(2, 0.1), np.empty((4, len(x))), out
        )
        np.testing.assert_allclose(out, weighted_quantiles(x, w, p), rtol=0, atol=1e-12)


def test_fast_exponential_matches_numpy_and_underflows_to_zero() -> None:
    from assimilate.filters._particle_loop import exp_shifted

    u = np.concatenate([-np.geomspace(1e-300, 707.99, 5000), [0.0, -708.5, -1e4, -np.inf]])
    expected = np.exp(u - 0.0)
    out, bits = np.empty_like(u), np.empty(len(u), dtype=np.int64)
    exp_shifted(u.copy(), 0.0, out, bits)
    kept = u > -708
    np.testing.assert_allclose(out[kept], expected[kept], rtol=2e-15, atol=0)
    assert (out[~kept] == 0.0).all()
    shifted = u[:10] + 3.0
    exp_shifted(shifted, 3.0, out[:10], bits[:10])
    np.testing.assert_allclose(out[:10], np.exp(u[:10]), rtol=2e-15)


def _grid_filter(
    y: np.ndarray, se: np.ndarray, *, q: float, m0: float, v0: float, df: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact filter by brute force on a fine grid: mean, SD and 2.5%/97.5% quantiles per batch."""
    from scipy import stats

    grid = np.linspace(m0 - 8 * np.sqrt(v0 + q * len(y)), m0 + 8 * np.sqrt(v0 + q * len(y)), 4001)
    step = grid[1] - grid[0]
    density = stats.norm.pdf(grid, m0, np.sqrt(v0))
    kernel = stats.norm.pdf(np.arange(-400, 401) * step, 0, np.sqrt(q)) * step
    means, sds, bands = [], [], []
    for value, scale in zip(y, se, strict=True):
        density = np.convolve(density, kernel, mode="same")
        if not np.isnan(value):
            density = density * stats.t.pdf((value - grid) / scale, df)
        density /= density.sum() * step
        mean = float(np.sum(grid * density) * step)
        means.append(mean)
        sds.append(float(np.sqrt(np.sum((grid - mean) ** 2 * density) * step)))
        cdf = np.cumsum(density) * step
        bands.append(np.interp([0.025, 0.975], cdf, grid))
    return np.array(means), np.array(sds), np.array(bands)


def test_student_t_particle_filter_matches_a_brute_force_grid_filter() -> None:
    rng = np.random.default_rng(30)
    t, q, df = 25, 0.004, 3.0
    theta = 0.3 + np.cumsum(rng.normal(0, np.sqrt(q), t))
    se = rng.uniform(0.05, 0.15, t)
    y = theta + se * rng.standard_t(df, t)
    y[[6, 15]] = [theta[6] + 1.5, np.nan]  # an outlier and a missing batch
    means, sds, bands = _grid_filter(y, se, q=q, m0=0.3, v0=0.04, df=df)
    res = particle_filter(
        y,
        se,
        process_var=q,
        prior_mean=0.3,
        prior_var=0.04,
        observation="student_t",
        df=df,
        n_particles=40_000,
        rng=np.random.default_rng(31),
    )
    # Monte Carlo tolerances: 4 standard errors of a weighted mean with ESS >= 40% of N
    mc = 4 * sds / np.sqrt(0.4 * 40_000)
    assert np.all(np.abs(res.posterior_mean - means) < mc + 1e-3 * sds)
    np.testing.assert_allclose(res.posterior_sd, sds, rtol=0.04)
    np.testing.assert_allclose(res.posterior_lower, bands[:, 0], atol=0.1 * float(sds.min()))
    np.testing.assert_allclose(res.posterior_upper, bands[:, 1], atol=0.1 * float(sds.min()))


def _gaussian_stream(seed: int, t: int, q: float, se: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    theta = 0.5 + np.cumsum(rng.normal(0, np.sqrt(q), t))
    return theta + rng.normal(0, se, t), np.full(t, se)


def test_optimal_proposal_matches_kalman_and_stays_healthy_when_batches_are_informative() -> None:
    # The effect drifts far more per batch than a batch's SE: a bootstrap cloud lands mostly
    # where the estimate says the effect is not, the locally optimal proposal does not.
    y, se = _gaussian_stream(40, 60, q=0.04, se=0.01)
    exact = causal_kalman(y, se, prior_mean=0.5, prior_var=0.04, process_var=0.04)
    kwargs = {"process_var": 0.04, "prior_mean": 0.5, "prior_var": 0.04, "n_particles": 2000}
    optimal = particle_filter(y, se, proposal="optimal", rng=np.random.default_rng(41), **kwargs)
    with pytest.warns(RuntimeWarning, match="ESS stayed below"):
        bootstrap = particle_filter(y, se, rng=np.random.default_rng(41), rejuvenate=False, **kwargs)
    assert optimal.ess is not None and bootstrap.ess is not None
    assert optimal.ess.min() > 0.5 * 2000 > 5 * np.median(bootstrap.ess)
    error = np.abs(optimal.posterior_mean - exact.posterior_mean) / exact.posterior_sd
    assert error.max() < 0.15
    np.testing.assert_allclose(optimal.posterior_sd, exact.posterior_sd, rtol=0.05)
    assert optimal.log_likelihood == pytest.approx(exact.log_likelihood, abs=0.05)


@pytest.mark.parametrize("proposal", ["bootstrap", "optimal"])
def test_both_proposals_estimate_the_kalman_path_and_likelihood(proposal: str) -> None:
    y, se = _gaussian_stream(42, 400, q=1e-4, se=0.1)
    y[[50, 51, 300]] = np.nan
    exact = causal_kalman(y, se, prior_mean=0.0, prior_var=1.0, process_var=1e-4)
    res = particle_filter(
        y,
        se,
        process_var=1e-4,
        prior_mean=0.0,
        prior_var=1.0,
        n_particles=3000,
        proposal=proposal,  # type: ignore[arg-type]
        rng=np.random.default_rng(43),
    )
    error = np.abs(res.posterior_mean - exact.posterior_mean) / exact.posterior_sd
    assert error.mean() < 0.05 and error.max() < 0.35
    np.testing.assert_allclose(res.forecast_var[1:], res.posterior_var[:-1] + 1e-4, rtol=1e-12)
    assert res.log_likelihood == pytest.approx(exact.log_likelihood, abs=1.0)
    np.testing.assert_allclose(res.innovations, exact.innovations, atol=0.02, equal_nan=True)


def test_excluded_batches_are_predict_only_in_the_particle_filter() -> None:
    y = np.array([0.5, 0.55, 0.52, 0.9, 0.51])
    res = particle_filter(
        y,
        np.full(5, 0.05),
        process_var=0.001,
        prior_mean=0.0,
        prior_var=1.0,
        excluded=[False, False, False, True, False],
        rng=np.random.default_rng(8),
        n_particles=1000,
    )
    assert res.posterior_mean[3] == res.posterior_mean[2]
    assert res.posterior_var[3] == pytest.approx(res.posterior_var[2] + 0.001, rel=1e-12)
    assert res.ess is not None and res.ess[3] in (res.ess[2], 1000.0)
    assert math.isnan(res.innovations[3])


def test_the_generator_is_the_only_source_of_randomness() -> None:
    args = ([0.5, 0.6, np.nan, 0.4] * 10, [0.1] * 40)
    shared = np.random.default_rng(12)
    first = particle_filter(*args, process_var=0.01, rng=shared, n_particles=300)
    second = particle_filter(*args, process_var=0.01, rng=shared, n_particles=300)
    assert not np.array_equal(first.posterior_mean, second.posterior_mean)  # the generator advanced
    replay = np.random.default_rng(12)
    again = particle_filter(*args, process_var=0.01, rng=replay, n_particles=300)
    np.testing.assert_array_equal(again.posterior_mean, first.posterior_mean)
    np.testing.assert_array_equal(again.posterior_upper, first.posterior_upper)


def test_optimal_proposal_is_only_for_gaussian_observations() -> None:
    with pytest.raises(ValueError, match="Gaussian observation"):
        particle_filter(
            [0.1],
            [0.1],
            process_var=0.01,
            observation="student_t",
            df=4,
            proposal="optimal",
            rng=np.random.default_rng(0),
        )
    with pytest.raises(ValueError, match="proposal must be one of"):
        particle_filter([0.1], [0.1], process_var=0.01, proposal="auxiliary", rng=np.random.default_rng(0))  # type: ignore[arg-type]
