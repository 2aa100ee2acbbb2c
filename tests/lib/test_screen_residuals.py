"""The post-treatment screen's least squares: sums of residuals on several subsets from shared passes."""

from functools import partial

import numpy as np
import pytest

from assimilate.diagnostics._screen_design import BlockDesign, equals, hinge, plain, product
from assimilate.estimators._threads import parallel_passes


def _standardized(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


@pytest.mark.parametrize("n", [60, 5_000, 70_000])
def test_residual_sums_on_each_subset_equal_least_squares_on_that_subset_alone(n: int) -> None:
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((n, 2)), rng.standard_normal((n, 3))
    noise = rng.standard_normal(n)
    collinear = a[:, 0] + b[:, 1]  # rank 1 beside a and b
    codes = rng.integers(0, 3, n)
    blocks = {
        "a": [partial(plain, a[:, 0]), partial(hinge, a[:, 1], 0.3)],
        "b": [partial(plain, b[:, k]) for k in range(3)],
        "c": [partial(plain, collinear), partial(product, noise, a[:, 0]), partial(plain, np.ones(n))],
        "level": [partial(equals, codes, 1), partial(equals, codes, 2)],
    }
    response = b @ [1.0, -2.0, 0.5] + 0.1 * rng.standard_normal(n)
    responses = [partial(plain, response), partial(equals, codes, 0)]
    subsets = [[], ["a"], ["b"], ["a", "b"], ["a", "b", "c"], ["c"], ["level", "a"]]
    design = BlockDesign(blocks, n, responses)
    found = design.residual_sums([(0, subsets), (1, subsets)])

    columns = {
        name: np.column_stack(
            [_standardized(column(slice(0, n))) for column in block if column(slice(0, n)).std() > 0]
        )
        for name, block in blocks.items()
    }
    assert [len(design.index[name]) for name in blocks] == [2, 3, 2, 2]  # the constant column dropped
    for values, sums in zip([r(slice(0, n)) for r in responses], found, strict=True):
        c = values - values.mean()
        residuals, ranks = [], []
        for names in subsets:
            x = np.column_stack([columns[name] for name in names]) if names else np.zeros((n, 0))
            fitted = x @ np.linalg.lstsq(x, c, rcond=None)[0] if names else 0.0
            residuals.append(c - fitted)
            ranks.append(np.linalg.matrix_rank(x) if names else 0)
        squared = np.column_stack(residuals) ** 2
        assert sums.n == n and list(sums.ranks) == ranks
        # a residual that is zero (the level fixed by the others) is zero to rounding of the total
        np.testing.assert_allclose(sums.squares, squared.sum(axis=0), rtol=1e-9, atol=1e-12 * (c @ c))
        np.testing.assert_allclose(sums.products, squared.T @ squared, rtol=1e-9, atol=1e-12 * (c**4).sum())


def test_residual_sums_do_not_depend_on_the_thread_count() -> None:
    rng = np.random.default_rng(5)
    n = 300_000  # several chunks
    x, y = rng.standard_normal((2, n))
    blocks = {"x": [partial(plain, x), partial(hinge, x, 0.5)], "y": [partial(plain, y)]}
    responses = [partial(product, x, y)]
    sums = []
    for threads in (1, 2, 3):
        with parallel_passes(threads):
            design = BlockDesign(blocks, n, responses)
            sums.append(design.residual_sums([(0, [["x"], ["x", "y"], []])])[0])
    for other in sums[1:]:
        np.testing.assert_array_equal(other.squares, sums[0].squares)
        np.testing.assert_array_equal(other.products, sums[0].products)
