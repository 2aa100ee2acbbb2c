"""The screen's two-sample Kolmogorov-Smirnov test equals scipy's ks_2samp bit for bit.

``assimilate.diagnostics._arm_tests.ks_two_sample`` walks the two sorted samples once where scipy
searches the pooled values twice; the statistic and the p-value must be scipy's exactly, with ties,
signed zeros, infinities, unequal arms, and on both sides of scipy's exact/asymptotic switch.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from assimilate.diagnostics._arm_tests import KS_EXACT_N, _ecdf_difference_extremes, ks_two_sample


def scipy_answer(treated: np.ndarray, control: np.ndarray) -> tuple[float, float]:
    result = stats.ks_2samp(treated, control)
    return float(result.statistic), float(result.pvalue)


def samples(kind: str, n1: int, n0: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "continuous":
        return rng.standard_normal(n1), rng.standard_normal(n0) + 0.01
    if kind == "shifted":
        return rng.standard_normal(n1) + 0.2, rng.standard_normal(n0)
    if kind == "ties":  # a count: every value repeated thousands of times
        return rng.poisson(3.0, n1).astype(float), rng.poisson(3.1, n0).astype(float)
    if kind == "signed_zeros_and_infinities":
        pool = np.array([-np.inf, -1.0, -0.0, 0.0, 2.5, np.inf])
        return rng.choice(pool, n1), rng.choice(pool, n0, p=[0.1, 0.2, 0.2, 0.2, 0.2, 0.1])
    if kind == "disjoint":  # every treated value above every control value: D = 1
        return rng.random(n1) + 2.0, rng.random(n0)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["continuous", "shifted", "ties", "signed_zeros_and_infinities", "disjoint"])
@pytest.mark.parametrize(("n1", "n0"), [(20_000, 20_000), (10_001, 30_000), (60_000, 15_000), (9_000, 9_500)])
def test_statistic_and_p_value_are_scipys_bit_for_bit(kind: str, n1: int, n0: int) -> None:
    rng = np.random.default_rng(n1 + n0)
    treated, control = samples(kind, n1, n0, rng)
    assert ks_two_sample(treated, control) == scipy_answer(treated, control)
    assert ks_two_sample(control, treated) == scipy_answer(control, treated)


def test_the_walk_runs_above_the_exact_size_and_gives_both_extremes() -> None:
    a = np.array([0.0, 1.0, 1.0, 3.0])
    b = np.array([1.0, 2.0, 2.0, 2.0, 4.0])
    # Pooled values 0, 1, 2, 3, 4: F_a = 1/4, 3/4, 3/4, 1, 1 and F_b = 0, 1/5, 4/5, 4/5, 1.
    highest, lowest = _ecdf_difference_extremes(a, b)
    assert highest == 3 / 4 - 1 / 5
    assert lowest == 3 / 4 - 4 / 5
    assert KS_EXACT_N == 10_000  # scipy's MAX_AUTO_N: above it, the walk answers


def test_nan_and_small_samples_are_scipys_own() -> None:
    rng = np.random.default_rng(3)
    treated, control = rng.standard_normal(20_000), rng.standard_normal(20_000)
    treated[5] = np.nan
    got, expected = ks_two_sample(treated, control), scipy_answer(treated, control)
    np.testing.assert_equal(got, expected)  # NaN propagates, as scipy's default nan_policy does
    small = rng.standard_normal(50), rng.standard_normal(70)
    assert ks_two_sample(*small) == scipy_answer(*small)
