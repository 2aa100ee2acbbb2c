"""Process variance under the robust (Student-t) likelihood: the grid filter and the MLE built on it."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from assimilate import causal_kalman, fit_process_variance, particle_filter
from assimilate.filters import grid_filter, profile_log_likelihood

EXACT_LOG_LIKELIHOOD = 1e-9
BAND = 1e-5  # about 0.2% of the posterior SD at the end of the stream
FILTERS = Path(__file__).resolve().parents[2] / "assimilate" / "filters"


def _drifting_stream(seed: int, t: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.03, 0.08, t)
    y = 0.2 + np.cumsum(rng.normal(0, 0.02, t)) + rng.normal(0, se)
    y[5] = np.nan
    return y, se


def _outlier_stream(seed: int, *, outlier: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    se = np.full(24, 0.05)
    y = 0.2 + rng.normal(0, 0.05, 24)
    if outlier:
        y[11] += 20 * 0.05
    return y, se


@pytest.mark.parametrize("process_var", [0.0, 1e-6, 1e-4, 1e-2, 1.0])
@pytest.mark.parametrize("prior", [{"prior_mean": 0.1, "prior_var": 0.5}, {"diffuse": True}])
def test_grid_filter_equals_the_kalman_filter_for_a_gaussian_observation(
    process_var: float, prior: dict[str, float]
) -> None:
    y, se = _drifting_stream(1)
    exact = causal_kalman(y, se, process_var=process_var, **prior)  # type: ignore[arg-type]
    grid = grid_filter(y, se, process_var=process_var, observation="gaussian", **prior)  # type: ignore[arg-type]
    assert grid.log_likelihood == pytest.approx(exact.log_likelihood, abs=EXACT_LOG_LIKELIHOOD)
    start = 1 if "diffuse" in prior else 0  # the diffuse start has no belief before batch 1
    np.testing.assert_allclose(grid.posterior_mean[start:], exact.posterior_mean[start:], atol=1e-10)
    np.testing.assert_allclose(grid.posterior_var[start:], exact.posterior_var[start:], rtol=1e-8)
    np.testing.assert_allclose(grid.forecast_var[1:], exact.forecast_var[1:], rtol=1e-8)
    np.testing.assert_allclose(grid.posterior_lower[start:], exact.posterior_lower[start:], atol=BAND)
    np.testing.assert_allclose(grid.posterior_upper[start:], exact.posterior_upper[start:], atol=BAND)


def test_grid_student_t_likelihood_of_one_batch_equals_quadrature() -> None:
    df, m0, v0, q = 4.0, 0.2, 0.5, 0.01
    y, se = 0.4, 0.1

    # the prior is for the effect before batch 1: batch 1 sees it one random-walk step later
    def integrand(theta: float) -> float:
        prior = stats.norm.pdf(theta, m0, math.sqrt(v0 + q))
        return float(prior * stats.t.pdf((y - theta) / se, df) / se)

    exact, _ = integrate.quad(integrand, -8, 8, points=[y], limit=500, epsabs=1e-15)
    grid = grid_filter([y], [se], process_var=q, df=df, prior_mean=m0, prior_var=v0)
    assert grid.log_likelihood == pytest.approx(math.log(exact), abs=EXACT_LOG_LIKELIHOOD)


def test_grid_student_t_likelihood_of_two_batches_equals_a_brute_force_integral() -> None:
    df, m0, v0, q = 4.0, 0.2, 0.5, 0.01
    y, se = np.array([0.4, 1.1]), np.array([0.1, 0.2])
    h = 0.001
    theta = np.arange(-6.0, 8.0, h)
    first = stats.norm.pdf(theta, m0, math.sqrt(v0 + q)) * stats.t.pdf((y[0] - theta) / se[0], df) / se[0]
    step = stats.norm.pdf(np.arange(-1.0, 1.0 + h / 2, h), 0, math.sqrt(q)) * h
    second = np.convolve(stats.t.pdf((y[1] - theta) / se[1], df) / se[1], step, mode="same")
    exact = math.log(float(np.sum(first * second)) * h)
    grid = grid_filter(y, se, process_var=q, df=df, prior_mean=m0, prior_var=v0)
    assert grid.log_likelihood == pytest.approx(exact, abs=1e-7)  # the brute force's own accuracy


def test_grid_student_t_tends_to_the_gaussian_answer_as_df_grows() -> None:
    y, se = _drifting_stream(2)
    exact = causal_kalman(y, se, process_var=4e-4, diffuse=True)
    grid = grid_filter(y, se, process_var=4e-4, df=1e7, diffuse=True)
    assert grid.log_likelihood == pytest.approx(exact.log_likelihood, abs=1e-4)
    np.testing.assert_allclose(grid.posterior_mean[1:], exact.posterior_mean[1:], atol=1e-6)


def test_particle_log_likelihood_agrees_with_the_grid_within_monte_carlo_error() -> None:
    rng = np.random.default_rng(3)
    se = np.full(30, 0.1)
    y = 0.3 + np.cumsum(rng.normal(0, 0.03, 30)) + 0.1 * rng.standard_t(4, 30)
    y[7] += 1.5
    options = {"process_var": 0.001, "prior_mean": 0.0, "prior_var": 0.25}
    exact = grid_filter(y, se, df=4.0, **options)
    runs = [
        particle_filter(
            y,
            se,
            observation="student_t",
            df=4.0,
            rng=np.random.default_rng(s),
            n_particles=20_000,
            **options,
        )
        for s in range(8)
    ]
    log_likelihoods = np.array([r.log_likelihood for r in runs])
    monte_carlo_se = log_likelihoods.std(ddof=1) / math.sqrt(len(runs))
    assert abs(log_likelihoods.mean() - exact.log_likelihood) < 4 * monte_carlo_se + 0.005
    means = np.mean([r.posterior_mean for r in runs], axis=0)
    assert np.abs(means - exact.posterior_mean).max() < 0.005  # posterior SD is about 0.03


def test_student_t_mle_tends_to_the_gaussian_mle_as_df_grows() -> None:
    rng = np.random.default_rng(4)
    y = 0.5 + np.cumsum(rng.normal(0, 0.03, 80)) + rng.normal(0, 0.05, 80)
    se = np.full(80, 0.05)
    gaussian = fit_process_variance(y, se)
    robust = fit_process_variance(y, se, likelihood="student_t", df=1e7)
    assert gaussian.process_var > 0
    assert robust.process_var == pytest.approx(gaussian.process_var, rel=1e-3)
    assert robust.log_likelihood == pytest.approx(gaussian.log_likelihood, abs=1e-3)
    assert robust.p_value_static == pytest.approx(gaussian.p_value_static, rel=0.01, abs=1e-12)
    assert robust.std_error == pytest.approx(gaussian.std_error, rel=0.01)
    assert (robust.likelihood, robust.df, gaussian.likelihood) == ("student_t", 1e7, "gaussian")
    assert "Student-t" in robust.summary()


def test_student_t_profile_is_deterministic_and_matches_the_grid_filter() -> None:
    y, se = _outlier_stream(5, outlier=True)
    values = profile_log_likelihood(y, se, [0.0, 1e-4, 1e-2], likelihood="student_t", df=5.0)
    again = profile_log_likelihood(y, se, [0.0, 1e-4, 1e-2], likelihood="student_t", df=5.0)
    np.testing.assert_array_equal(values, again)
    direct = [
        grid_filter(y, se, process_var=q, df=5.0, diffuse=True).log_likelihood for q in (0.0, 1e-4, 1e-2)
    ]
    np.testing.assert_allclose(values, direct, atol=EXACT_LOG_LIKELIHOOD)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_outlier_no_longer_widens_the_robust_interval(seed: int) -> None:
    # Issue 13: one 20-SE batch among 24 static ones. Under the Gaussian likelihood the MLE reads it
    # as drift (q > 0) and the Student-t filter's interval widens several times; fitted under the
    # filter's own Student-t likelihood, q stays near 0 and the interval within 1.5x the clean one.
    widths, gaussian_widths = [], []
    for outlier in (False, True):
        y, se = _outlier_stream(seed, outlier=outlier)
        options = {"observation": "student_t", "df": 5.0, "prior_mean": 0.0, "prior_var": 1.0}
        robust = particle_filter(y, se, process_var="mle", rng=np.random.default_rng(0), **options)
        fit = robust.details["process_var_fit"]
        assert fit.likelihood == "student_t" and robust.process_var == fit.process_var
        low, high = robust.final_ci
        widths.append(high - low)
        q_gaussian = fit_process_variance(y, se, prior_mean=0.0, prior_var=1.0).process_var
        naive = particle_filter(y, se, process_var=q_gaussian, rng=np.random.default_rng(0), **options)
        low, high = naive.final_ci
        gaussian_widths.append(high - low)
    assert widths[1] / widths[0] <= 1.5
    assert gaussian_widths[1] / gaussian_widths[0] > 2.5  # the defect this fixes


def test_student_t_mle_recovers_a_known_process_variance_with_heavy_tailed_noise() -> None:
    rng = np.random.default_rng(6)
    q_true, t, se = 0.0004, 60, 0.05
    robust, gaussian = [], []
    for _ in range(6):
        y = 0.3 + np.cumsum(rng.normal(0, math.sqrt(q_true), t)) + se * rng.standard_t(3, t)
        robust.append(fit_process_variance(y, np.full(t, se), likelihood="student_t", df=3.0).process_var)
        gaussian.append(fit_process_variance(y, np.full(t, se)).process_var)
    # t(3) noise has variance 3 se^2: the Gaussian fit reads the excess as drift, the robust one does not
    assert np.mean(robust) == pytest.approx(q_true, rel=0.5)
    assert np.mean(gaussian) > 2 * np.mean(robust)


def test_particle_filter_mle_uses_the_gaussian_fit_for_a_gaussian_observation() -> None:
    y, se = _drifting_stream(7)
    res = particle_filter(
        y, se, process_var="mle", prior_mean=0.0, prior_var=1.0, rng=np.random.default_rng(1), n_particles=500
    )
    fit = res.details["process_var_fit"]
    reference = fit_process_variance(y, se, prior_mean=0.0, prior_var=1.0)
    assert fit.likelihood == "gaussian"
    assert res.process_var == fit.process_var == reference.process_var


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"likelihood": "cauchy"}, "likelihood"),
        ({"likelihood": "student_t"}, "df is required"),
        ({"likelihood": "gaussian", "df": 5.0}, "df applies only"),
    ],
)
def test_fit_process_variance_rejects_bad_likelihood_options(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_process_variance([0.1, 0.2, 0.3, 0.2], [0.1] * 4, **kwargs)  # type: ignore[arg-type]


def test_particle_filter_rejects_an_unknown_process_variance_word() -> None:
    with pytest.raises(ValueError, match="process_var"):
        particle_filter([0.1], [0.1], process_var="reml", rng=np.random.default_rng(0))  # type: ignore[arg-type]


def test_grid_filter_rejects_df_for_a_gaussian_observation() -> None:
    with pytest.raises(ValueError, match="df applies only"):
        grid_filter([0.1, 0.2], [0.1, 0.1], process_var=0.0, observation="gaussian", df=5.0)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("assimilate.filters."):
            names.add(node.module.rsplit(".", 1)[1])
    return names


def test_the_filter_modules_import_each_other_without_a_cycle() -> None:
    graph = {path.stem: _imports(path) for path in FILTERS.glob("*.py") if path.stem != "__init__"}
    assert "kalman" not in graph["mle"]  # issue 12: kalman <-> mle

    def visit(node: str, trail: tuple[str, ...]) -> None:
        assert node not in trail, f"import cycle: {' -> '.join((*trail, node))}"
        for child in graph.get(node, set()):
            visit(child, (*trail, node))

    for module in graph:
        visit(module, ())
