"""Particle filter: agreement with the exact Kalman answer, long static streams, heavy tails."""

from __future__ import annotations

import math
import warnings

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


# --- options: the prior sampler, systematic resampling, the resampling threshold, the ESS warning ---


def test_a_point_mass_prior_sampler_gives_the_closed_form_posterior() -> None:
    c, q, y, se = 0.7, 0.04, 0.2, 0.1
    calls: list[tuple[np.random.Generator, int]] = []

    def point_mass(rng: np.random.Generator, n: int) -> np.ndarray:
        calls.append((rng, n))
        return np.full(n, c)

    rng = np.random.default_rng(20)
    # the Gaussian prior arguments lose to the sampler
    res = particle_filter(
        [y],
        [se],
        process_var=q,
        prior_mean=-3.0,
        prior_var=0.01,
        prior_sampler=point_mass,
        proposal="optimal",
        n_particles=1000,
        rng=rng,
    )
    assert len(calls) == 1 and calls[0][0] is rng and calls[0][1] == 1000
    # theta_0 = c exactly, so theta_1 | y ~ N(c + q / (q + r) (y - c), q r / (q + r)) and
    # y ~ N(c, q + r); the optimal proposal draws from that posterior and averages its exact means.
    r = se * se
    assert res.posterior_mean[0] == pytest.approx(c + q / (q + r) * (y - c), abs=1e-12)
    assert res.posterior_var[0] == pytest.approx(q * r / (q + r), rel=1e-12)
    log_density = -0.5 * (math.log(2 * math.pi * (q + r)) + (y - c) ** 2 / (q + r))
    assert res.log_likelihood == pytest.approx(log_density, abs=1e-12)
    # a static effect never leaves the point, whatever the estimates say
    static = particle_filter(
        [0.2, 0.9, np.nan, 0.4],
        [se] * 4,
        process_var=0.0,
        prior_mean=-3.0,
        prior_var=0.01,
        prior_sampler=point_mass,
        n_particles=500,
        rng=np.random.default_rng(21),
    )
    for row in (static.posterior_mean, static.posterior_lower, static.posterior_upper):
        np.testing.assert_array_equal(row, np.full(4, c))


def test_a_bimodal_prior_sampler_gives_the_exact_mixture_posterior() -> None:
    from scipy import optimize, special, stats

    # Prior 0.3 N(-1, 0.2^2) + 0.7 N(1, 0.2^2): the posterior is the mixture of the two components'
    # Kalman posteriors, reweighted by each component's likelihood of the estimates so far.
    shares, centres, sd0, q = np.array([0.3, 0.7]), np.array([-1.0, 1.0]), 0.2, 0.01
    y = np.array([0.2, -0.1, np.nan, 0.3, 0.0, 0.25])
    se = np.full(len(y), 0.5)

    def bimodal(rng: np.random.Generator, n: int) -> np.ndarray:
        first = rng.random(n) < shares[0]
        return np.where(first, centres[0], centres[1]) + sd0 * rng.standard_normal(n)

    parts = [causal_kalman(y, se, prior_mean=m, prior_var=sd0**2, process_var=q) for m in centres]
    # log p(y_1..t | component) from each component's filter run on the first t batches
    log_share = np.log(shares)[:, None] + np.array(
        [
            [
                causal_kalman(
                    y[: t + 1], se[: t + 1], prior_mean=m, prior_var=sd0**2, process_var=q
                ).log_likelihood
                for t in range(len(y))
            ]
            for m in centres
        ]
    )
    share = np.exp(log_share - special.logsumexp(log_share, axis=0))
    means = np.array([p.posterior_mean for p in parts])
    variances = np.array([p.posterior_var for p in parts])
    mean = np.sum(share * means, axis=0)
    sd = np.sqrt(np.sum(share * (variances + means**2), axis=0) - mean**2)

    def quantile(p: float, t: int) -> float:
        def below(x: float) -> float:
            return float(np.sum(share[:, t] * stats.norm.cdf(x, means[:, t], np.sqrt(variances[:, t])))) - p

        return float(optimize.brentq(below, -5.0, 5.0, xtol=1e-12))

    n = 40_000
    res = particle_filter(
        y,
        se,
        process_var=q,
        prior_mean=float(np.sum(shares * centres)),  # a Gaussian prior with the mixture's mean is ignored
        prior_sampler=bimodal,
        n_particles=n,
        rejuvenate=False,  # Liu-West shrinks toward the overall mean: it would blur the two modes
        rng=np.random.default_rng(22),
    )
    assert res.ess is not None
    # first batch, before any resampling: a weighted mean with Monte Carlo SD about sd / sqrt(ESS)
    assert abs(res.posterior_mean[0] - mean[0]) < 4 * sd[0] / math.sqrt(res.ess[0])
    # all batches (max errors over 40 seeds: 0.032 sd, 2.8% of sd, 0.04 on the bands, 0.044 in
    # log L; the moment-matched Gaussian prior misses the mean by 0.8 sd at the first batch)
    np.testing.assert_array_less(np.abs(res.posterior_mean - mean), 0.08 * sd)
    np.testing.assert_allclose(res.posterior_sd, sd, rtol=0.07)
    bands = np.array([[quantile(p, t) for p in (0.025, 0.975)] for t in range(len(y))])
    np.testing.assert_allclose(res.posterior_lower, bands[:, 0], atol=0.08)
    np.testing.assert_allclose(res.posterior_upper, bands[:, 1], atol=0.08)
    assert res.log_likelihood == pytest.approx(float(special.logsumexp(log_share[:, -1])), abs=0.15)


@pytest.mark.parametrize(
    "sampler",
    [lambda rng, n: np.zeros(n - 1), lambda rng, n: np.full(n, np.nan), lambda rng, n: np.zeros((n, 1))],
    ids=["too few", "nan", "2-d"],
)
def test_a_prior_sampler_must_return_n_finite_draws(sampler) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="prior_sampler must return 50 finite draws"):
        particle_filter(
            [0.1],
            [0.1],
            process_var=0.01,
            prior_sampler=sampler,
            n_particles=50,
            rng=np.random.default_rng(0),
        )


def test_systematic_resampling_gives_each_particle_the_floor_or_ceiling_of_n_w_copies() -> None:
    from assimilate.filters._particle_loop import systematic_resample

    rng = np.random.default_rng(23)
    for _ in range(300):
        n = int(rng.integers(2, 3000))
        w = rng.exponential(size=n) ** 3  # skewed: some particles are worth many copies
        w[rng.random(n) < 0.2] = 0.0  # weights that underflowed: no copies
        w[n // 2] = 1.0
        out = np.empty(n)
        systematic_resample(np.arange(n, dtype=np.float64), w, float(w.sum()), rng.random(), out)
        copies = np.bincount(out.astype(np.int64), minlength=n)
        expected = n * w / w.sum()
        assert copies.sum() == n
        assert np.all(copies >= np.floor(expected)) and np.all(copies <= np.ceil(expected))
        assert np.all(np.diff(out) >= 0)  # copies of a parent side by side (the antithetic pairs need it)
    # Unbiased: over the uniform offset u the mean count is exactly N w_i (here over a grid of u).
    n = 50
    w = rng.exponential(size=n) ** 3
    grid = (np.arange(2000) + 0.5) / 2000
    total_copies = np.zeros(n)
    out = np.empty(n)
    for u in grid:
        systematic_resample(np.arange(n, dtype=np.float64), w, float(w.sum()), float(u), out)
        total_copies += np.bincount(out.astype(np.int64), minlength=n)
    np.testing.assert_allclose(total_copies / len(grid), n * w / w.sum(), rtol=0, atol=2 / len(grid))


FIXED_CLOUD = np.linspace(-2.0, 2.0, 1000)


def _fixed_cloud(rng: np.random.Generator, n: int) -> np.ndarray:
    return FIXED_CLOUD.copy()


def _importance_sampling(y: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ESS and weighted mean per batch of the fixed cloud weighted by the likelihood so far."""
    log_w = np.zeros(len(FIXED_CLOUD))
    ess, mean = [], []
    for value, scale in zip(y, se, strict=True):
        if not np.isnan(value):
            log_w += -0.5 * ((value - FIXED_CLOUD) / scale) ** 2
        w = np.exp(log_w - log_w.max())
        ess.append(w.sum() ** 2 / np.sum(w * w))
        mean.append(np.sum(w * FIXED_CLOUD) / w.sum())
    return np.array(ess), np.array(mean)


def _static_stream(t: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.random.default_rng(24).normal(0.3, 0.5, t)
    y[2] = np.nan
    return y, np.full(t, 0.5)


def test_below_a_threshold_of_one_particle_the_filter_is_importance_sampling_and_never_resamples() -> None:
    # Static effect and no rejuvenation: particles never move, and the only random draw left is the
    # uniform of a systematic resampling. ESS >= 1 always, so ess_threshold * N < 1 never resamples:
    # ESS and mean are those of the fixed cloud weighted by the whole likelihood, with no draw made.
    y, se = _static_stream(12)
    rng = np.random.default_rng(25)
    before = rng.bit_generator.state
    res = particle_filter(
        y,
        se,
        process_var=0.0,
        prior_sampler=_fixed_cloud,
        n_particles=1000,
        ess_threshold=0.5 / 1000,
        rejuvenate=False,
        rng=rng,
    )
    ess, mean = _importance_sampling(y, se)
    assert res.ess is not None and res.ess.shape == (12,)  # one entry per batch, the missing one too
    np.testing.assert_allclose(res.ess, ess, rtol=1e-12)
    np.testing.assert_allclose(res.posterior_mean, mean, rtol=0, atol=1e-12)
    assert res.ess[2] == res.ess[1]
    assert res.ess[-1] < 0.2 * 1000  # the weights did degenerate: a threshold above this would resample
    assert rng.bit_generator.state == before


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.9, 1.0])
def test_resampling_happens_exactly_at_the_batches_whose_ess_falls_below_the_threshold(
    threshold: float,
) -> None:
    # As above, each resampling draws one uniform and nothing else draws: counting the draws counts
    # the resamplings, which must be the batches with ESS < threshold * N (ESS before resampling).
    y, se = _static_stream(40)
    rng = np.random.default_rng(26)
    res = particle_filter(
        y,
        se,
        process_var=0.0,
        prior_sampler=_fixed_cloud,
        n_particles=1000,
        ess_threshold=threshold,
        rejuvenate=False,
        rng=rng,
    )
    assert res.ess is not None
    resampled = int(np.sum(res.ess < threshold * 1000))
    replay = np.random.default_rng(26)
    replay.random(resampled)
    assert rng.bit_generator.state == replay.bit_generator.state
    assert resampled >= 2  # the scenario does resample (twice at 0.3, 39 times at 1.0)
    if threshold == 1.0:  # unequal weights after every used batch: it resamples at every one
        assert resampled == int(np.sum(~np.isnan(y)))
        assert res.ess[2] == 1000.0  # the missing batch follows a resampling: equal weights


def test_low_ess_warning_fires_after_ten_batches_below_a_fifth_and_not_after_nine() -> None:
    y, se = _static_stream(40)
    ess, _ = _importance_sampling(y, se)
    first_low = int(np.argmax(ess < 0.2 * 1000))
    assert first_low > 0 and np.all(ess[first_low:] < 0.2 * 1000)  # stays low once it is
    options = {
        "process_var": 0.0,
        "prior_sampler": _fixed_cloud,
        "n_particles": 1000,
        "ess_threshold": 0.5 / 1000,  # never resample: the ESS follows the exact sequence above
        "rejuvenate": False,
    }
    stop = first_low + 9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        particle_filter(y[:stop], se[:stop], rng=np.random.default_rng(27), **options)  # type: ignore[arg-type]
    with pytest.warns(RuntimeWarning, match="ESS stayed below 20% of 1000 particles for 10 batches"):
        particle_filter(y[: stop + 1], se[: stop + 1], rng=np.random.default_rng(27), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "warns"),
    [
        ("HHHLLLLLLLLLL", True),
        ("LLLLLLLLLLHHH", True),
        ("HLLLLLLLLLLLLLLLLLLLH", True),
        ("LLLLLLLLL", False),
        ("LLLLLLLLLHLLLLLLLLL", False),
        ("LLLLLLLLLALLLLLLLLL", False),
        ("AAAAAAAAAAAAAAAAAAAA", False),
        ("HHHHHHHHHHHH", False),
    ],
)
def test_low_ess_warning_needs_ten_batches_in_a_row_strictly_below_a_fifth(pattern: str, warns: bool) -> None:
    from assimilate.filters.particle import LOW_ESS_FRACTION, _warn_on_low_ess

    n = 500
    level = {"L": 0.1 * n, "A": LOW_ESS_FRACTION * n, "H": 0.9 * n}  # A: exactly at the fraction
    ess = np.array([level[c] for c in pattern])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_on_low_ess(ess, n)
    assert [issubclass(w.category, RuntimeWarning) for w in caught] == ([True] if warns else [])


@pytest.mark.parametrize(
    ("weights", "u", "counts"),
    [
        ([0.0, 1.0, 1.0, 0.0], 0.0, [0, 2, 2, 0]),  # a position on a boundary skips the zero weight
        ([1.0, 1.0, 0.0], 1.0 - 2.0**-53, [1, 2, 0]),  # rounding at the end never lands on a zero weight
    ],
)
def test_systematic_resampling_never_copies_a_zero_weight_at_the_edges(
    weights: list[float], u: float, counts: list[int]
) -> None:
    from assimilate.filters._particle_loop import systematic_resample

    w = np.array(weights)
    out = np.empty(len(w))
    systematic_resample(np.arange(len(w), dtype=np.float64), w, float(w.sum()), u, out)
    assert np.bincount(out.astype(int), minlength=len(w)).tolist() == counts
