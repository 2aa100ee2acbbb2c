"""GLS of batch estimates around a random walk, in O(T) through banded matrices.

``y = X b + u + e`` with ``u`` a random walk (a Brownian motion observed at the batch indices,
step variance ``q`` per batch) and ``e ~ N(0, diag(se^2))``: ``Sigma = R + q C``. ``C^-1`` is
tridiagonal, so ``Sigma^-1 = R^-1 - R^-1 B^-1 R^-1`` with ``B = C^-1 / q + R^-1`` tridiagonal
(Woodbury). The first point's own variance is a common shift of every ``u_t``; it lies in the
span of the intercept, so the GLS slope and its variance do not depend on it.

Example
-------
>>> import numpy as np
>>> y, se, times = np.array([1.0, 2.0, 3.0]), np.ones(3), np.arange(3.0)
>>> x = np.column_stack([np.ones(3), times - 1.0])
>>> round(float(gls(y, se, times, x, 0.0).coef[1]), 6)
1.0
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import linalg

FloatArray = NDArray[np.float64]


class GLSFit(NamedTuple):
    """GLS coefficients and their covariance."""

    coef: FloatArray
    cov: FloatArray


def _gaps(times: FloatArray) -> FloatArray:
    """Brownian-motion increments between the observed times (the first from ``times[0] - 1``)."""
    return np.diff(np.concatenate([[times[0] - 1.0], times]))


def _banded(diagonal: FloatArray, below: FloatArray) -> FloatArray:
    """Lower banded storage of a symmetric tridiagonal matrix for scipy's banded solvers."""
    ab = np.zeros((2, len(diagonal)))
    ab[0] = diagonal
    ab[1, :-1] = below
    return ab


def gls(y: FloatArray, se: FloatArray, times: FloatArray, x: FloatArray, process_var: float) -> GLSFit:
    """GLS of ``y`` on ``x`` with ``Sigma = diag(se^2) + q C`` (times strictly increasing)."""
    p = x.shape[1]
    r_inv = 1.0 / se**2
    stacked = np.column_stack([x, y])
    weighted = stacked * r_inv[:, None]
    if process_var > 0.0:
        gaps = _gaps(times)
        c_inv_diag = 1.0 / gaps
        c_inv_diag[:-1] += 1.0 / gaps[1:]
        factor = linalg.cholesky_banded(
            _banded(c_inv_diag / process_var + r_inv, -1.0 / gaps[1:] / process_var), lower=True
        )
        weighted = weighted - r_inv[:, None] * linalg.cho_solve_banded((factor, True), weighted)
    cross = x.T @ weighted  # X' Sigma^-1 [X y]
    chol = linalg.cho_factor(cross[:, :p])
    coef = linalg.cho_solve(chol, cross[:, p])
    cov = linalg.cho_solve(chol, np.eye(p))
    return GLSFit(np.asarray(coef, dtype=np.float64), np.asarray(cov, dtype=np.float64))


def window_average(
    y: FloatArray, se: FloatArray, times: FloatArray, process_var: float
) -> tuple[float, float]:
    """Posterior mean and variance of the average effect over the given batches.

    The effect is a random walk with a flat prior on its level (so nothing before the window
    pulls on it): posterior precision ``P = D' D / q + R^-1`` (tridiagonal), mean
    ``P^-1 R^-1 y``; the average ``a' theta`` with ``a = 1 / T`` has variance ``a' P^-1 a``. With
    ``q = 0`` the effect is constant: the precision-weighted mean and ``1 / sum(se^-2)``.
    """
    r_inv = 1.0 / se**2
    if process_var <= 0.0 or len(y) == 1:
        return float(np.sum(r_inv * y) / np.sum(r_inv)), float(1.0 / np.sum(r_inv))
    gaps = np.diff(times)
    d_inv = 1.0 / (gaps * process_var)
    diagonal = r_inv.copy()
    diagonal[1:] += d_inv
    diagonal[:-1] += d_inv
    factor = linalg.cholesky_banded(_banded(diagonal, -d_inv), lower=True)
    average = np.full(len(y), 1.0 / len(y))
    solved = linalg.cho_solve_banded((factor, True), np.column_stack([r_inv * y, average]))
    return float(average @ solved[:, 0]), float(average @ solved[:, 1])
