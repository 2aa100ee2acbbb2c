"""The always-valid confidence sequence: closed form, planning of rho, coverage at every look."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import optimize

from assimilate.sequential import (
    asymptotic_confidence_sequence,
    confidence_sequence,
    normal_mixture_boundary,
    optimal_rho,
)

ALPHA = 0.05


def _ever_misses(lower: np.ndarray, upper: np.ndarray, target: np.ndarray | float) -> float:
    return float(np.mean(np.any((lower > target) | (upper < target), axis=-1)))


@pytest.mark.parametrize(("information", "rho"), [(0.0, 1.0), (100.0, 10.0), (400.0, 48.7), (1e6, 3.0)])
def test_boundary_is_where_the_normal_mixture_martingale_reaches_one_over_alpha(
    information: float, rho: float
) -> None:
    u = float(normal_mixture_boundary(information, rho=rho, alpha=ALPHA))
    # M = sqrt(rho / (V + rho)) exp(S^2 / (2 (V + rho))), the N(0, 1/rho) mixture of exp(l S - l^2 V / 2).
    log_m = 0.5 * math.log(rho / (information + rho)) + u * u / (2 * (information + rho))
    assert log_m == pytest.approx(math.log(1 / ALPHA), rel=1e-12)


def test_boundary_values_by_hand() -> None:
    assert float(normal_mixture_boundary(0.0, rho=1.0, alpha=0.05)) == pytest.approx(
        math.sqrt(2 * math.log(20)), rel=1e-12
    )
    # V = 100, rho = 10: sqrt(110 log(110 / (10 * 0.0025))) = sqrt(110 log 4400)
    assert float(normal_mixture_boundary(100.0, rho=10.0, alpha=0.05)) == pytest.approx(30.378110, rel=1e-6)


def test_boundary_grows_and_the_half_width_shrinks_with_information() -> None:
    v = np.geomspace(1e-3, 1e7, 400)
    u = normal_mixture_boundary(v, rho=5.0)
    assert np.all(np.diff(u) > 0)
    assert np.all(np.diff(u / v) < 0)
    # The law-of-the-iterated-logarithm-type rate: u(V) / sqrt(V log V) stays bounded.
    assert float(u[-1] / math.sqrt(v[-1] * math.log(v[-1]))) < 1.5


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_optimal_rho_minimises_the_width_at_the_planned_information(alpha: float) -> None:
    m = 1234.0

    def bound(log_rho: float) -> float:
        return float(normal_mixture_boundary(m, rho=math.exp(log_rho), alpha=alpha))

    found = optimize.minimize_scalar(bound, bounds=(-10, 15), method="bounded", options={"xatol": 1e-10})
    assert optimal_rho(m, alpha=alpha) == pytest.approx(math.exp(found.x), rel=1e-4)
    # At alpha = 0.05 the tuned interval is about 3.04 standard errors wide each side.
    if alpha == 0.05:
        assert bound(math.log(optimal_rho(m))) / math.sqrt(m) == pytest.approx(3.0351, abs=1e-4)


def test_one_look_reduces_to_the_closed_form_interval() -> None:
    se = 0.2
    cs = confidence_sequence([0.7], [se], rho=1 / se**2)  # rho equal to the batch's precision
    # half-width = se * sqrt(2 log(2 / alpha^2)) when rho = V
    half = se * math.sqrt(2 * math.log(2 / ALPHA**2))
    assert cs.conf_int() == pytest.approx((0.7 - half, 0.7 + half), rel=1e-12)
    planned = confidence_sequence([0.7], [se], planned_looks=1)
    assert planned.rho == pytest.approx(optimal_rho(1 / se**2))
    assert planned.half_width[0] == pytest.approx(3.0351 * se, abs=1e-4)


def test_running_estimate_is_the_precision_weighted_mean_and_wider_than_the_fixed_interval() -> None:
    y, se = np.array([0.3, 0.1, 0.5, 0.2]), np.array([0.1, 0.2, 0.15, 0.05])
    cs = confidence_sequence(y, se, planned_looks=4)
    w = 1 / se**2
    assert cs.estimate == pytest.approx(np.cumsum(w * y) / np.cumsum(w), rel=1e-12)
    assert cs.information == pytest.approx(np.cumsum(w), rel=1e-12)
    assert np.all(cs.half_width > 1.96 / np.sqrt(np.cumsum(w)))


def test_excluded_and_missing_batches_are_skipped_and_the_interval_carried_over() -> None:
    y = np.array([0.3, 9.0, np.nan, 0.2, 0.25])
    se = np.array([0.1, 0.1, np.nan, 0.1, 0.1])
    cs = confidence_sequence(y, se, excluded=[False, True, False, False, False], planned_looks=5)
    kept = confidence_sequence(y[[0, 3, 4]], se[[0, 3, 4]], planned_looks=5)
    assert cs.used.tolist() == [True, False, False, True, True]
    assert cs.lower[[0, 3, 4]] == pytest.approx(kept.lower, rel=1e-12)
    assert cs.upper[[0, 3, 4]] == pytest.approx(kept.upper, rel=1e-12)
    assert cs.lower[1] == cs.lower[2] == cs.lower[0]  # nothing new: the interval does not move
    empty = confidence_sequence([0.1, 0.2], [0.1, 0.1], excluded=[True, True])
    assert np.all(np.isneginf(empty.lower)) and np.all(np.isposinf(empty.upper))
    assert np.all(np.isnan(empty.estimate)) and math.isnan(empty.rho)


def test_a_prefix_gives_the_same_intervals_as_the_full_stream() -> None:
    rng = np.random.default_rng(3)
    se = rng.uniform(0.04, 0.06, 30)
    y = rng.normal(0.0, se)
    full = confidence_sequence(y, se, planned_looks=30)
    prefix = confidence_sequence(y[:11], se[:11], planned_looks=30)
    assert prefix.lower == pytest.approx(full.lower[:11], rel=1e-12)
    assert prefix.rho == full.rho


def _streams(rng: np.random.Generator, n_streams: int, n_looks: int, mean: np.ndarray | float = 0.0):
    se = 0.05 * np.exp(rng.normal(0.0, 0.25, (n_streams, n_looks)))
    return mean + se * rng.standard_normal((n_streams, n_looks)), se


def test_coverage_at_every_look_under_a_constant_effect() -> None:
    rng = np.random.default_rng(11)
    y, se = _streams(rng, 2000, 60, mean=0.1)
    lower, upper = np.empty_like(y), np.empty_like(y)
    for i in range(len(y)):
        cs = confidence_sequence(y[i], se[i], planned_information=60 / 0.05**2)
        lower[i], upper[i] = cs.lower, cs.upper
    assert _ever_misses(lower, upper, 0.1) <= ALPHA
    # The same streams read with a fixed 95% interval at every look miss far more often.
    w = 1 / se**2
    mean = np.cumsum(w * y, axis=1) / np.cumsum(w, axis=1)
    half = 1.96 / np.sqrt(np.cumsum(w, axis=1))
    assert _ever_misses(mean - half, mean + half, 0.1) > 0.2


def test_a_drifting_effect_is_covered_as_its_running_precision_weighted_average() -> None:
    rng = np.random.default_rng(5)
    effect = np.linspace(0.3, -0.1, 40)
    y, se = _streams(rng, 1500, 40, mean=effect)
    w = 1 / se**2
    target = np.cumsum(w * effect, axis=1) / np.cumsum(w, axis=1)
    misses = 0
    for i in range(len(y)):
        cs = confidence_sequence(y[i], se[i], planned_looks=40)
        misses += bool(np.any((cs.lower > target[i]) | (cs.upper < target[i])))
    assert misses / len(y) <= ALPHA


def _equicorrelated(n: int, se: float, correlation: float) -> np.ndarray:
    return se**2 * (correlation * np.ones((n, n)) + (1 - correlation) * np.eye(n))


def test_covariance_input_gives_the_gls_running_estimate() -> None:
    rng = np.random.default_rng(8)
    n = 9
    a = rng.normal(size=(n, n))
    cov = 0.01 * (a @ a.T / n + np.eye(n))
    y = rng.multivariate_normal(np.full(n, 0.2), cov)
    cs = confidence_sequence(y, covariance=cov, excluded=[False] * 4 + [True] + [False] * 4)
    keep = np.array([i != 4 for i in range(n)])
    fit = sm.GLS(y[keep], np.ones((keep.sum(), 1)), sigma=cov[np.ix_(keep, keep)]).fit()
    assert cs.final_estimate == pytest.approx(float(fit.params[0]), rel=1e-10)
    assert cs.information[-1] == pytest.approx(1 / float(fit.normalized_cov_params[0, 0]), rel=1e-10)
    fit3 = sm.GLS(y[:3], np.ones((3, 1)), sigma=cov[:3, :3]).fit()
    assert cs.estimate[2] == pytest.approx(float(fit3.params[0]), rel=1e-10)
    assert cs.correlated and "GLS-weighted" in cs.promise
    se = np.sqrt(np.diag(cov))
    diagonal = confidence_sequence(y, se, covariance=np.diag(se**2), planned_looks=9)
    independent = confidence_sequence(y, se, planned_looks=9)
    assert diagonal.lower == pytest.approx(independent.lower, rel=1e-12)


def test_correlated_batches_keep_coverage_only_with_their_covariance() -> None:
    rng = np.random.default_rng(21)
    n_looks, n_streams = 24, 1500
    cov = _equicorrelated(n_looks, 0.05, 0.5)
    y = rng.multivariate_normal(np.zeros(n_looks), cov, size=n_streams)
    se = np.full(n_looks, 0.05)
    with_cov, ignoring = 0, 0
    for row in y:
        with_cov += bool(confidence_sequence(row, covariance=cov, planned_looks=n_looks).excludes(0.0).any())
        ignoring += bool(confidence_sequence(row, se, planned_looks=n_looks).excludes(0.0).any())
    assert with_cov / n_streams <= ALPHA
    assert ignoring / n_streams > 2 * ALPHA  # treating returning units as independent breaks the promise


def test_the_asymptotic_sequence_matches_the_published_formula_and_covers() -> None:
    rng = np.random.default_rng(2)
    phi = rng.exponential(1.0, 5000) + 0.5
    ends = np.arange(250, 5001, 250)
    cs = asymptotic_confidence_sequence(phi, look_ends=ends, planned_n=5000)
    r2 = 1 / cs.rho  # rho in the paper's parametrisation, squared
    n = ends[-1]
    sd = float(np.std(phi, ddof=1))
    half = sd * math.sqrt(2 * (n * r2 + 1) / (n * n * r2) * math.log(math.sqrt(n * r2 + 1) / ALPHA))
    assert cs.conf_int() == pytest.approx((phi.mean() - half, phi.mean() + half), rel=1e-9)
    misses = 0
    for _ in range(400):
        draw = rng.exponential(1.0, 5000) + 0.5
        misses += bool(
            asymptotic_confidence_sequence(draw, look_ends=ends, planned_n=5000).excludes(1.5).any()
        )
    assert misses / 400 <= ALPHA + 0.02  # asymptotic: allow Monte Carlo error on 400 streams


def test_the_result_is_frozen_and_says_what_it_promises() -> None:
    cs = confidence_sequence([0.2, 0.3], [0.1, 0.1])
    assert "at least 95%" in cs.promise and "every look" in cs.promise
    with pytest.raises(dataclasses.FrozenInstanceError):
        cs.alpha = 0.1  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        cs.lower[0] = 0.0
    assert list(cs.to_frame().columns) == ["batch", "used", "information", "estimate", "cs_lower", "cs_upper"]
    assert "Always-valid 95% confidence sequence" in cs.summary()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"standard_errors": None}, "standard_errors or covariance"),
        ({"rho": 1.0, "planned_information": 10.0}, "not both"),
        ({"planned_looks": 0}, "positive integer"),
        ({"standard_errors": None, "covariance": [[1.0, 2.0], [2.0, 1.0]]}, "positive definite"),
        ({"covariance": [[1.0, 0.0], [0.0, 1.0]]}, "disagree"),
        ({"standard_errors": [0.1, -0.1]}, "positive, finite"),
        ({"alpha": 1.5}, "alpha"),
    ],
)
def test_bad_inputs_are_refused(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"standard_errors": [0.1, 0.1]} | kwargs
    with pytest.raises(ValueError, match=message):
        confidence_sequence([0.1, 0.2], **arguments)  # type: ignore[arg-type]
