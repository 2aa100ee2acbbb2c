"""The post-treatment screen's least squares: residuals on several subsets from shared passes."""

import numpy as np
import pytest

from assimilate.diagnostics.post_treatment_screen import _Design


@pytest.mark.parametrize("n", [60, 5_000])
def test_residuals_on_each_subset_equal_least_squares_on_that_subset_alone(n: int) -> None:
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((n, 2)), rng.standard_normal((n, 3))
    collinear = np.column_stack([a[:, 0] + b[:, 1], rng.standard_normal(n)])  # rank 1 beside a and b
    design = _Design({"a": a, "b": b, "c": collinear})
    c = b @ [1.0, -2.0, 0.5] + 0.1 * rng.standard_normal(n)
    c -= c.mean()
    subsets = [[], ["a"], ["b"], ["a", "b"], ["a", "b", "c"], ["c"]]
    for names, (residual, rank) in zip(subsets, design.residuals(subsets, c), strict=True):
        columns = np.column_stack(
            [design.matrix[:, design.index[name]] for name in names] or [np.zeros((n, 0))]
        )
        fitted = columns @ np.linalg.lstsq(columns, c, rcond=None)[0] if names else 0.0
        np.testing.assert_allclose(residual, c - fitted, atol=1e-10)
        assert rank == (np.linalg.matrix_rank(columns) if names else 0)
