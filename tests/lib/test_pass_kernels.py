"""The compiled chunk kernels of the passes against the full-matrix arithmetic they replace.

Sizes straddle the kernels' tile of 256 rows (a partial last tile, a chunk shorter than a tile,
no rows at all); weights, both arms and extreme linear predictors are covered. Thread counts and
chunking are tested in test_parallel_passes.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import special

from assimilate.estimators import passes
from assimilate.estimators._pass_kernels import TILE, gram_chunk, logistic_chunk

FloatArray = NDArray[np.float64]
CLOSE = 1e-12  # relative to the largest entry: reassociated sums of a few thousand rows
SIZES = (0, 1, TILE - 1, TILE, 3 * TILE + 17)


def design(n: int, p: int, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    return np.column_stack([np.ones(n), rng.standard_normal((n, p - 1))])


def assert_close(got: FloatArray, want: FloatArray) -> None:
    np.testing.assert_allclose(
        got, want, rtol=CLOSE, atol=CLOSE * max(1.0, float(np.abs(want).max(initial=0.0)))
    )


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("weighted", [False, True])
def test_the_logistic_pass_is_the_weighted_score_and_information(n: int, weighted: bool) -> None:
    rng = np.random.default_rng(n)
    X = design(n, 7, n)
    y = rng.binomial(1, 0.3, n).astype(np.float64)
    beta = 0.4 * rng.standard_normal(7)
    w = rng.random(n) * 3 if weighted else np.ones(n)
    probabilities = np.full(n, np.nan)
    score, information = passes.logistic_pass(X, y, beta, probabilities, w if weighted else None)
    mu = special.expit(X @ beta)
    np.testing.assert_allclose(probabilities, mu, rtol=1e-15)
    assert_close(score, X.T @ (w * (y - mu)))
    assert_close(information, X.T @ ((w * mu * (1 - mu))[:, None] * X))
    only = passes.logistic_score(X, y, beta, np.empty(n), w if weighted else None)
    np.testing.assert_array_equal(only, score)


def test_extreme_linear_predictors_give_the_probabilities_of_scipys_expit() -> None:
    eta = np.array([-800.0, -745.5, -720.0, -40.0, -1e-300, 0.0, 1e-300, 36.0, 37.5, 40.0, 800.0])
    X = eta[:, None]
    probabilities = np.empty(len(eta))
    _, information = passes.logistic_pass(X, np.zeros(len(eta)), np.ones(1), probabilities)
    want = special.expit(eta)
    np.testing.assert_allclose(probabilities, want, rtol=1e-15, atol=0.0)
    np.testing.assert_array_equal(probabilities == 0.0, want == 0.0)  # "broke" means exactly 0 or 1
    np.testing.assert_array_equal(probabilities == 1.0, want == 1.0)
    assert np.isfinite(information).all()


def test_a_missing_value_is_not_optimised_away() -> None:
    X = design(600, 4, 3)
    X[450, 2] = np.nan
    probabilities = np.empty(600)
    score, information = passes.logistic_pass(X, np.ones(600), np.full(4, 0.1), probabilities)
    assert np.isnan(score).any() and np.isnan(information).any() and np.isnan(probabilities[450])
    assert np.isnan(passes.gram(X)).any()


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("weighted", [False, True])
def test_gram_of_the_rows_with_and_without_weights(n: int, weighted: bool) -> None:
    X = design(n, 9, n + 1)
    w = np.random.default_rng(n).random(n) if weighted else np.ones(n)
    assert_close(passes.gram(X, w if weighted else None), X.T @ (w[:, None] * X))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("share", [0.0, 0.2, 0.7, 1.0])
def test_each_row_goes_to_the_gram_of_its_own_arm(n: int, share: float) -> None:
    rng = np.random.default_rng(n)
    X = design(n, 6, n + 2)
    y, w = rng.standard_normal(n), rng.random(n)
    arm = rng.random(n) < share
    control, treated = passes.armwise_gram(X, y, arm, w)
    Z = np.column_stack([X, y]) * np.sqrt(w)[:, None]
    assert_close(control, Z[~arm].T @ Z[~arm])
    assert_close(treated, Z[arm].T @ Z[arm])
    if not arm.any():
        np.testing.assert_array_equal(treated, 0.0)


def test_a_chunk_kernel_reads_only_its_own_rows() -> None:
    X = design(1000, 5, 4)
    X[:300] = np.nan
    X[700:] = np.nan
    y = np.ones(1000)
    upper = gram_chunk(X, y[:, None], np.empty(0, dtype=np.bool_), False, np.empty(0), 300, 700)[0]
    assert_close(
        passes.symmetric(upper), np.column_stack([X, y])[300:700].T @ np.column_stack([X, y])[300:700]
    )
    probabilities = np.full(1000, -1.0)
    score, _ = logistic_chunk(X, y, np.zeros(5), np.empty(0), 300, 700, probabilities, True)
    assert np.isfinite(score).all()
    assert (probabilities[:300] == -1.0).all() and (probabilities[700:] == -1.0).all()
    assert (probabilities[300:700] == 0.5).all()


@pytest.mark.parametrize("q", [1, 3, 9, 13])
@pytest.mark.parametrize("m", [1, TILE - 1, 3 * TILE + 5])
def test_a_block_written_into_part_of_a_buffer_adds_its_products(q: int, m: int) -> None:
    buffer = np.random.default_rng(q * m).standard_normal((q, 4 * TILE))
    block = buffer[:, :m]  # rows 4 * TILE apart, as gram_of_blocks and the HC3 meat hand them over
    accumulator = passes.new_gram(q)
    accumulator[:] = 1.0
    passes.rank_update(accumulator, block)
    passes.rank_update(accumulator, block)
    assert_close(np.triu(accumulator), np.triu(1.0 + 2.0 * block @ block.T))


def at_offset(array: NDArray[Any], offset: int) -> NDArray[Any]:
    """A copy of ``array`` starting ``offset`` elements into a fresh buffer (its alignment moves)."""
    buffer = np.empty(array.size + 8, dtype=array.dtype)
    copy = buffer[offset : offset + array.size].reshape(array.shape)
    copy[...] = array
    return copy


def test_the_bits_do_not_depend_on_where_the_arrays_lie_in_memory() -> None:
    # A compiled loop that is vectorized or not after a run-time check of its arrays' addresses
    # would sum in a different order for another allocation of the same values.
    rng = np.random.default_rng(5)
    n = 3 * TILE + 17
    X, y, w = design(n, 7, 5), rng.binomial(1, 0.4, n).astype(np.float64), rng.random(n)
    beta, arm = 0.3 * rng.standard_normal(7), rng.random(n) < 0.4
    answers = set()
    for offset in range(8):
        Xo, yo, wo, armo = (at_offset(a, (offset + k) % 8) for k, a in enumerate((X, y, w, arm)))
        probabilities = at_offset(np.zeros(n), (offset + 5) % 8)
        score, information = passes.logistic_pass(Xo, yo, beta, probabilities, wo)
        parts = [
            score,
            information,
            probabilities,
            passes.gram(Xo, wo),
            *passes.armwise_gram(Xo, yo, armo, wo),
        ]
        block = at_offset(np.ascontiguousarray(X[:300].T), offset)
        accumulator = passes.new_gram(7)
        passes.rank_update(accumulator, block)
        answers.add(b"".join(part.tobytes() for part in [*parts, accumulator]))
    assert len(answers) == 1
