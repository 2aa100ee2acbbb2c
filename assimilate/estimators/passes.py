"""Single passes over the rows of a design matrix, a block of rows at a time.

A pass reads ``X`` once; every temporary is one block of rows (a few hundred kilobytes that stay
in cache), never an ``n x p`` copy, so an estimator's working memory stays near a few vectors of
length ``n``. Gram matrices ``sum_i z_i z_i'`` use the BLAS symmetric rank-k update on blocks held
transposed (``(p, m)``, one variable per row), its fastest layout. ``logistic_pass`` gives the
logistic score ``X'(y - mu)`` and information ``X' diag(mu (1 - mu)) X`` at ``beta`` in one pass.
BLAS runs on one thread during a pass (see ``_threads``): block-sized calls gain nothing from
threads and lose much when the cores are busy.

Example
-------
>>> import numpy as np
>>> X = np.random.default_rng(0).standard_normal((1000, 3))
>>> w = np.linspace(0.0, 1.0, 1000)
>>> bool(np.allclose(gram(X, w), X.T @ (w[:, None] * X)))
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import NDArray
from scipy import special
from scipy.linalg.blas import dsyrk

from assimilate.estimators._threads import one_blas_thread

FloatArray = NDArray[np.float64]
# Writes the rows ``rows`` of a design, transposed, into ``out`` of shape (p, len(rows)).
BlockWriter = Callable[[slice, FloatArray], object]
BLOCK_BYTES = 1 << 18  # a 256 KiB block and its transposed copy stay in a core's L2 cache
MAX_BLOCK_ROWS = 4096  # OpenBLAS runs calls this small on one thread: no thread start-up per block


def block_size(n_columns: int) -> int:
    """Rows per block: about ``BLOCK_BYTES`` of float64 in ``n_columns`` columns."""
    return int(min(MAX_BLOCK_ROWS, max(64, BLOCK_BYTES // (8 * max(n_columns, 1)))))


def row_blocks(n_rows: int, n_columns: int) -> Iterator[slice]:
    """Consecutive row slices covering ``range(n_rows)``, each of :func:`block_size` rows at most."""
    step = block_size(n_columns)
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def new_gram(n_columns: int) -> FloatArray:
    """A zero accumulator for :func:`rank_update` (Fortran order, so BLAS updates it in place)."""
    return np.zeros((n_columns, n_columns), order="F")


def rank_update(accumulator: FloatArray, columns: FloatArray) -> None:
    """``accumulator += columns columns'`` (upper triangle) for a C-ordered block ``(p, m)``.

    ``columns`` holds ``m`` units as columns; its transpose is a Fortran-ordered ``(m, p)``
    matrix, which BLAS ``dsyrk`` reads without a copy, each variable a contiguous run.
    """
    dsyrk(1.0, columns.T, beta=1.0, c=accumulator, trans=1, lower=0, overwrite_c=1)


def symmetric(upper: FloatArray) -> FloatArray:
    """The full symmetric matrix from an accumulator whose upper triangle holds the values."""
    full = np.triu(upper)
    return np.asarray(full + np.triu(full, 1).T, dtype=np.float64)


def transposed_writer(X: FloatArray) -> BlockWriter:
    """A :data:`BlockWriter` copying the rows of ``X``."""
    return lambda rows, out: np.copyto(out, X[rows].T)


@one_blas_thread
def times(X: FloatArray, b: FloatArray) -> FloatArray:
    """``X b`` for a vector or a narrow matrix ``b``, block by block."""
    out = np.empty((X.shape[0], *b.shape[1:]))
    for rows in row_blocks(X.shape[0], X.shape[1]):
        np.matmul(X[rows], b, out=out[rows])
    return out


@one_blas_thread
def transpose_times(X: FloatArray, v: FloatArray) -> FloatArray:
    """``X' v`` for a vector ``v``, block by block."""
    total = np.zeros(X.shape[1])
    for rows in row_blocks(X.shape[0], X.shape[1]):
        total += X[rows].T @ v[rows]
    return total


def gram(X: FloatArray, weights: FloatArray | None = None) -> FloatArray:
    """``X' diag(w) X`` (``X'X`` without weights) for non-negative weights, in one pass.

    Parameters
    ----------
    X : ndarray, shape (n, p)
        Rows to accumulate.
    weights : ndarray, shape (n,), optional
        Non-negative row weights.

    Returns
    -------
    ndarray, shape (p, p)
    """
    return gram_of_blocks(transposed_writer(X), X.shape[0], X.shape[1], weights)


@one_blas_thread
def gram_of_blocks(
    write: BlockWriter, n_rows: int, n_columns: int, weights: FloatArray | None = None
) -> FloatArray:
    """:func:`gram` of a design given block by block through ``write``."""
    accumulator = new_gram(n_columns)
    buffer = np.empty((n_columns, block_size(n_columns)))
    for rows in row_blocks(n_rows, n_columns):
        block = buffer[:, : rows.stop - rows.start]
        write(rows, block)
        if weights is not None:
            block *= np.sqrt(weights[rows])
        rank_update(accumulator, block)
    return symmetric(accumulator)


@one_blas_thread
def armwise_gram(X: FloatArray, y: FloatArray, arm: NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
    """Gram matrices of ``[X, y]`` over the rows with ``arm`` False and with ``arm`` True, in one pass.

    Returns
    -------
    (ndarray, ndarray)
        Each ``(p + 1, p + 1)``: ``[[X'X, X'y], [y'X, y'y]]`` of one arm (control first).

    Notes
    -----
    Accumulates the Gram of all rows and of the smaller arm (the block times its 0/1 indicator);
    the larger arm's is their difference, which loses at most a factor two in relative precision
    because the smaller arm holds at most half of the total.
    """
    n, p = X.shape
    small_is_treated = 2 * int(np.count_nonzero(arm)) <= n
    total, small = new_gram(p + 1), new_gram(p + 1)
    buffer = np.empty((p + 1, block_size(p + 1)))
    for rows in row_blocks(n, p + 1):
        block = buffer[:, : rows.stop - rows.start]
        np.copyto(block[:p], X[rows].T)
        block[p] = y[rows]
        rank_update(total, block)
        block *= arm[rows] if small_is_treated else ~arm[rows]
        rank_update(small, block)
    larger = symmetric(total) - symmetric(small)
    return (symmetric(small), larger) if not small_is_treated else (larger, symmetric(small))


@one_blas_thread
def logistic_pass(
    X: FloatArray, y: FloatArray, beta: FloatArray, probabilities: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Score and information of the logistic model at ``beta``, in one pass.

    Parameters
    ----------
    X : ndarray, shape (n, p)
        Design.
    y : ndarray, shape (n,)
        0/1 response.
    beta : ndarray, shape (p,)
        Coefficients at which to evaluate.
    probabilities : ndarray, shape (n,)
        Filled with ``expit(X beta)``.

    Returns
    -------
    (ndarray, ndarray)
        The score ``X'(y - mu)`` and the information ``X' diag(mu (1 - mu)) X``.
    """
    information = new_gram(X.shape[1])
    score = _logistic_blocks(X, y, beta, probabilities, information)
    return score, symmetric(information)


@one_blas_thread
def logistic_score(X: FloatArray, y: FloatArray, beta: FloatArray, probabilities: FloatArray) -> FloatArray:
    """The score ``X'(y - mu)`` of :func:`logistic_pass` alone (about half the work)."""
    return _logistic_blocks(X, y, beta, probabilities, None)


def _logistic_blocks(
    X: FloatArray, y: FloatArray, beta: FloatArray, probabilities: FloatArray, information: FloatArray | None
) -> FloatArray:
    n, p = X.shape
    score = np.zeros(p)
    scaled = np.empty((p, block_size(p)))
    for rows in row_blocks(n, p):
        block = X[rows]
        work = block @ beta
        mu = probabilities[rows]
        special.expit(work, out=mu)
        np.subtract(y[rows], mu, out=work)
        score += block.T @ work
        if information is not None:
            np.subtract(1.0, mu, out=work)
            work *= mu
            np.sqrt(work, out=work)
            rank_update(information, np.multiply(block.T, work, out=scaled[:, : len(work)]))
    return score
