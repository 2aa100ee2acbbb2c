"""The block-wise estimation core against full-matrix numpy and statsmodels.

Each pass is checked against the product it replaces, at sizes around the block boundaries; the
warm-started Newton against plain Newton from zero; and the estimators at a size where the warm
start is used (n >= 2 * WARM_START_ROWS) against statsmodels and the stacked M-estimation sandwich.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm
from numpy.typing import NDArray
from scipy import special

from assimilate.estimators import (
    DesignMatrix,
    aipw_from_arrays,
    encode_covariates,
    ipw_from_arrays,
    regression_adjustment_from_arrays,
)
from assimilate.estimators._threads import one_blas_thread
from assimilate.estimators.models import WARM_START_ROWS, fit_logistic
from assimilate.estimators.passes import (
    armwise_gram,
    block_size,
    gram,
    logistic_pass,
    logistic_score,
    times,
    transpose_times,
)
from assimilate.simulate import OUTREACH_COVARIATES, simulate_outreach_batch

REFERENCE = 1e-8  # estimates (absolute) and standard errors (relative) against the references
PASS = 1e-12  # a pass against the full-matrix product it replaces (relative)
N_WARM = 2 * WARM_START_ROWS + 10_000  # uses the warm start, with a stride of 2

FloatArray = NDArray[np.float64]


class Outreach:
    def __init__(self, n: int, seed: int) -> None:
        batch = simulate_outreach_batch(n, rng=np.random.default_rng(seed))
        self.design = encode_covariates(batch, OUTREACH_COVARIATES)
        self.X = self.design.values
        self.d = batch["outreach"].to_numpy(np.int64)
        self.y = batch["churn"].to_numpy(np.float64) + batch["health_score"].to_numpy() / 100
        self.churn = batch["churn"].to_numpy(np.float64)


@pytest.fixture(scope="module")
def large() -> Outreach:
    return Outreach(N_WARM, seed=61)


@pytest.fixture(scope="module")
def glm_scores(large: Outreach) -> FloatArray:
    fit = sm.GLM(large.d.astype(float), large.X, family=sm.families.Binomial()).fit(tol=1e-12)
    return np.asarray(fit.fittedvalues)


def plain_newton(X: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, int]:
    """Newton from zero with full-matrix products (the straightforward implementation)."""
    beta = np.zeros(X.shape[1])
    for iteration in range(1, 51):  # noqa: B007 - the count is returned
        mu = special.expit(X @ beta)
        delta = np.linalg.solve(X.T @ ((mu * (1 - mu))[:, None] * X), X.T @ (y - mu))
        beta = beta + delta
        if np.max(np.abs(delta)) < 1e-10 * (1 + np.max(np.abs(beta))):
            break
    mu = special.expit(X @ beta)
    return beta, mu, X.T @ ((mu * (1 - mu))[:, None] * X), iteration


def sandwich_ipw(
    X: FloatArray, d: FloatArray, y: FloatArray, raw: FloatArray, bounds: tuple[float, float], trim: bool
) -> tuple[float, float]:
    """Hajek IPW and the stacked M-estimation sandwich over (beta, mu1, mu0), full matrices."""
    n, p = X.shape
    keep = ((raw >= bounds[0]) & (raw <= bounds[1])) if trim else np.ones(n, dtype=bool)
    e = np.where(keep, raw if trim else np.clip(raw, *bounds), 0.5)
    w1, w0 = keep * d / e, keep * (1 - d) / (1 - e)
    mu1, mu0 = w1 @ y / w1.sum(), w0 @ y / w0.sum()
    slope = np.where((e == raw) & keep, raw * (1 - raw), 0.0)
    psi = np.column_stack([X * (d - raw)[:, None], w1 * (y - mu1), w0 * (y - mu0)])
    bread = np.zeros((p + 2, p + 2))
    bread[:p, :p] = X.T @ (X * (raw * (1 - raw))[:, None]) / n
    bread[p, :p] = X.T @ (w1 * (y - mu1) * slope / e) / n
    bread[p, p] = w1.sum() / n
    bread[p + 1, :p] = -X.T @ (w0 * (y - mu0) * slope / (1 - e)) / n
    bread[p + 1, p + 1] = w0.sum() / n
    inverse = np.linalg.inv(bread)
    cov = inverse @ (psi.T @ psi / n) @ inverse.T / n
    return mu1 - mu0, float(np.sqrt(cov[p, p] + cov[p + 1, p + 1] - 2 * cov[p, p + 1]))


def assert_agrees(ours: Any, estimate: float, std_error: float) -> None:
    assert abs(ours.estimate - estimate) <= REFERENCE
    assert ours.std_error == pytest.approx(std_error, rel=REFERENCE)


# ---------------------------------------------------------------- passes


@pytest.mark.parametrize("n", [1, 7, block_size(5), 2 * block_size(5) + 3])
def test_each_pass_equals_the_full_matrix_product(n: int) -> None:
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 5))
    w, v = rng.random(n), rng.standard_normal(n)
    y = rng.binomial(1, 0.4, n).astype(float)
    beta, B = rng.standard_normal(5) * 0.3, rng.standard_normal((5, 2))
    np.testing.assert_allclose(gram(X), X.T @ X, rtol=PASS, atol=PASS)
    np.testing.assert_allclose(gram(X, w), X.T @ (w[:, None] * X), rtol=PASS, atol=PASS)
    np.testing.assert_allclose(times(X, beta), X @ beta, rtol=PASS, atol=PASS)
    np.testing.assert_allclose(times(X, B), X @ B, rtol=PASS, atol=PASS)
    np.testing.assert_allclose(transpose_times(X, v), X.T @ v, rtol=PASS, atol=PASS)
    mu = special.expit(X @ beta)
    probabilities = np.empty(n)
    score, information = logistic_pass(X, y, beta, probabilities)
    np.testing.assert_allclose(probabilities, mu, rtol=PASS)
    np.testing.assert_allclose(score, X.T @ (y - mu), rtol=PASS, atol=PASS)
    np.testing.assert_allclose(information, X.T @ ((mu * (1 - mu))[:, None] * X), rtol=PASS, atol=PASS)
    np.testing.assert_array_equal(logistic_score(X, y, beta, np.empty(n)), score)


@pytest.mark.parametrize("share", [0.3, 0.7])
def test_armwise_gram_is_each_arms_gram_whichever_arm_is_smaller(share: float) -> None:
    rng = np.random.default_rng(7)
    n = 3 * block_size(6) + 11
    X, y = rng.standard_normal((n, 5)), rng.standard_normal(n)
    arm = rng.random(n) < share
    control, treated = armwise_gram(X, y, arm)
    Z = np.column_stack([X, y])
    np.testing.assert_allclose(control, Z[~arm].T @ Z[~arm], rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(treated, Z[arm].T @ Z[arm], rtol=1e-11, atol=1e-9)


# ---------------------------------------------------------------- warm-started Newton


def test_warm_started_newton_reaches_the_plain_newton_answer_in_fewer_passes(large: Outreach) -> None:
    d = large.d.astype(float)
    fit = fit_logistic(large.X, d)
    beta, mu, hessian, iterations = plain_newton(large.X, d)
    np.testing.assert_allclose(fit.coefficients, beta, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(fit.probabilities, mu, rtol=1e-10)
    np.testing.assert_allclose(fit.hessian, hessian, rtol=1e-9)
    assert fit.converged
    assert fit.n_iter < iterations  # the warm start was used


def test_a_separated_subsample_falls_back_to_newton_from_zero() -> None:
    rng = np.random.default_rng(62)
    x = rng.standard_normal(N_WARM)
    d = rng.binomial(1, special.expit(2 * x)).astype(float)
    d[::2] = x[::2] > 0  # the strided subsample (every other row) is perfectly separated
    X = np.column_stack([np.ones(N_WARM), x])
    fit = fit_logistic(X, d, names=("intercept", "x"))
    beta, mu, _, iterations = plain_newton(X, d)
    np.testing.assert_allclose(fit.coefficients, beta, rtol=1e-9)
    np.testing.assert_allclose(fit.probabilities, mu, rtol=1e-10)
    assert fit.converged and fit.n_iter == iterations


def test_separation_and_singular_designs_are_still_clear_errors_at_scale() -> None:
    x = np.linspace(-3, 3, N_WARM)
    X = np.column_stack([np.ones(N_WARM), x])
    with pytest.raises(ValueError, match="separation"):
        fit_logistic(X, (x > 0).astype(float), names=("intercept", "x"))
    d = np.random.default_rng(63).binomial(1, 0.4, N_WARM).astype(float)
    with pytest.raises(ValueError, match="singular"):
        fit_logistic(np.column_stack([X, 2 * x]), d)


# ---------------------------------------------------------------- estimators at scale


def test_aipw_matches_statsmodels_at_a_warm_start_size(large: Outreach, glm_scores: FloatArray) -> None:
    X, d, y = large.X, large.d.astype(float), large.y
    e = np.clip(glm_scores, 0.01, 0.99)
    treated = d == 1
    mu0 = X @ sm.OLS(y[~treated], X[~treated]).fit().params
    mu1 = X @ sm.OLS(y[treated], X[treated]).fit().params
    phi = mu1 - mu0 + d * (y - mu1) / e - (1 - d) * (y - mu0) / (1 - e)
    ours = aipw_from_arrays(large.design, large.d, y, outcome_kind="linear")
    assert_agrees(ours, phi.mean(), phi.std() / np.sqrt(len(y)))


def test_aipw_with_a_logistic_outcome_matches_statsmodels(large: Outreach, glm_scores: FloatArray) -> None:
    X, d, y = large.X, large.d.astype(float), large.churn
    e = np.clip(glm_scores, 0.01, 0.99)
    treated = d == 1
    binomial = sm.families.Binomial()
    mu0 = special.expit(X @ sm.GLM(y[~treated], X[~treated], family=binomial).fit(tol=1e-12).params)
    mu1 = special.expit(X @ sm.GLM(y[treated], X[treated], family=binomial).fit(tol=1e-12).params)
    phi = mu1 - mu0 + d * (y - mu1) / e - (1 - d) * (y - mu0) / (1 - e)
    ours = aipw_from_arrays(large.design, large.d, y)
    assert ours.diagnostics["outcome_model"] == "auto"
    assert_agrees(ours, phi.mean(), phi.std() / np.sqrt(len(y)))


@pytest.mark.parametrize(("policy", "bounds"), [("clip", (0.05, 0.95)), ("trim", (0.05, 0.95))])
def test_ipw_matches_the_stacked_sandwich(
    large: Outreach, glm_scores: FloatArray, policy: str, bounds: tuple[float, float]
) -> None:
    ours = ipw_from_arrays(large.design, large.d, large.y, policy=policy, bounds=bounds)  # type: ignore[arg-type]
    estimate, std_error = sandwich_ipw(
        large.X, large.d.astype(float), large.y, glm_scores, bounds, trim=policy == "trim"
    )
    assert_agrees(ours, estimate, std_error)
    outside = int(((glm_scores < bounds[0]) | (glm_scores > bounds[1])).sum())
    assert ours.diagnostics["n_trimmed" if policy == "trim" else "n_clipped"] == outside > 0


def test_trimmed_aipw_averages_the_kept_units_only(large: Outreach, glm_scores: FloatArray) -> None:
    X, d, y = large.X, large.d.astype(float), large.y
    keep = (glm_scores >= 0.05) & (glm_scores <= 0.95)
    treated = d == 1
    mu0 = X @ sm.OLS(y[~treated], X[~treated]).fit().params
    mu1 = X @ sm.OLS(y[treated], X[treated]).fit().params
    e = glm_scores
    phi = (mu1 - mu0 + d * (y - mu1) / e - (1 - d) * (y - mu0) / (1 - e))[keep]
    ours = aipw_from_arrays(
        large.design, large.d, y, outcome_kind="linear", policy="trim", bounds=(0.05, 0.95)
    )
    assert_agrees(ours, phi.mean(), phi.std() / np.sqrt(keep.sum()))
    assert ours.n_treated + ours.n_control == keep.sum()


@pytest.mark.parametrize("interacted", [False, True])
def test_regression_adjustment_matches_statsmodels_hc3_at_scale(large: Outreach, interacted: bool) -> None:
    d, x = large.d.astype(float), large.design.without_intercept()
    blocks = [np.ones_like(d), d]
    if interacted:
        centred = x - x.mean(axis=0)
        blocks += [*centred.T, *(d[:, None] * centred).T]
    else:
        blocks += list(x.T)
    reference = sm.OLS(large.y, np.column_stack(blocks)).fit(cov_type="HC3")
    ours = regression_adjustment_from_arrays(large.design, large.d, large.y, interacted=interacted)
    assert_agrees(ours, reference.params[1], reference.bse[1])


def test_a_unit_with_leverage_one_is_still_an_error() -> None:
    frame = np.zeros((40, 2))
    frame[:, 0] = 1.0
    frame[0, 1] = 1.0  # only unit 0 has x = 1: it alone determines that coefficient
    design = DesignMatrix(frame, ("intercept", "x"))
    d = np.tile([0, 1], 20)
    y = np.random.default_rng(64).standard_normal(40)
    with pytest.raises(ValueError, match="leverage 1"):
        regression_adjustment_from_arrays(design, d, y)


# ---------------------------------------------------------------- memory, determinism, threads


@pytest.mark.parametrize(
    "estimator",
    [
        lambda data: aipw_from_arrays(data.design, data.d, data.y, outcome_kind="linear"),
        lambda data: ipw_from_arrays(data.design, data.d, data.y),
        lambda data: regression_adjustment_from_arrays(data.design, data.d, data.y),
    ],
    ids=["aipw", "ipw", "regression_adjustment"],
)
def test_working_memory_stays_below_twice_the_design(
    large: Outreach, estimator: Callable[[Outreach], Any]
) -> None:
    tracemalloc.start()
    try:
        estimator(large)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 2 * large.X.nbytes


def test_estimates_are_bitwise_reproducible(large: Outreach) -> None:
    first = aipw_from_arrays(large.design, large.d, large.y, outcome_kind="linear")
    again = aipw_from_arrays(large.design, large.d, large.y, outcome_kind="linear")
    assert (first.estimate, first.std_error) == (again.estimate, again.std_error)


def test_blas_runs_on_one_thread_inside_a_pass_and_is_restored_after() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}

    @one_blas_thread
    def inner() -> set[int]:
        return blas_threads()

    @one_blas_thread
    def outer() -> tuple[set[int], set[int]]:
        return inner(), blas_threads()

    @one_blas_thread
    def failing() -> None:
        raise ValueError("boom")

    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        assert outer() == ({1}, {1})
        with pytest.raises(ValueError, match="boom"):
            failing()
        assert blas_threads() == before == {2}
