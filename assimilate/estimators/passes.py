"""Single passes over the rows of a design matrix, a block of rows at a time, on all cores.

A pass reads ``X`` once; every temporary is one block of rows (about a megabyte, which stays in
cache), never an ``n x p`` copy, so an estimator's working memory stays near a few vectors of
length ``n``. ``logistic_pass`` gives the logistic score ``X'(y - mu)`` and information
``X' diag(mu (1 - mu)) X`` at ``beta`` in one pass; it, :func:`gram` and :func:`armwise_gram` run
a compiled kernel per chunk (:mod:`~assimilate.estimators._pass_kernels`) that holds no lock while
it works. A design given block by block (:func:`gram_of_blocks`) is written a block at a time,
transposed (``(p, m)``, one variable per row), and its products are added by a compiled kernel.

The rows are cut into chunks of whole blocks (about ``CHUNK_BYTES`` of the design each, boundaries
set by ``(n, p)`` alone) that threads take in turn (:mod:`~assimilate.estimators._threads`); a
sum is ``S = sum_c S_c`` with each chunk's ``S_c`` accumulated as in a serial pass and the ``S_c``
added in chunk order, so a pass gives the same bits on any number of threads. A design of one
chunk (about 4 MiB) is one serial pass. BLAS runs on one thread during a pass (see ``_threads``).

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
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from assimilate.estimators._pass_kernels import (
    NO_COLUMNS,
    NO_GROUPS,
    add_block_products,
    gram_chunk,
    kernel_weights,
    logistic_chunk,
)
from assimilate.estimators._threads import map_chunks, one_blas_thread

FloatArray = NDArray[np.float64]
T = TypeVar("T")
# Writes the rows ``rows`` of a design, transposed, into ``out`` of shape (p, len(rows)).
BlockWriter = Callable[[slice, FloatArray], object]
# A 1 MiB block and its transposed copy stay in a core's L2 cache. Blocks this large also keep the
# passes parallel: each numpy or BLAS call on a block releases the GIL while it runs, and every
# call ends in taking it back. With 256 KiB blocks, two threads spent more time handing the GIL
# over than they saved (a pass on two threads was slower than on one; benchmarks/estimators.py).
BLOCK_BYTES = 1 << 20
MAX_BLOCK_ROWS = 1 << 15  # a vector of a block's rows (probabilities, residuals) stays at 256 KiB
CHUNK_BYTES = 1 << 22  # a thread's unit of work: about 4 MiB of the design, a whole number of blocks
ROWWISE_ROWS = 1 << 14  # elementwise work (rowwise): a few vectors of 16k rows stay in a core's L2


def block_size(n_columns: int) -> int:
    """Rows per block: about ``BLOCK_BYTES`` of float64 in ``n_columns`` columns."""
    return int(min(MAX_BLOCK_ROWS, max(64, BLOCK_BYTES // (8 * max(n_columns, 1)))))


def chunk_size(n_columns: int) -> int:
    """Rows per chunk: a whole number of blocks, about ``CHUNK_BYTES`` of float64 (one block at least)."""
    rows = block_size(n_columns)
    return rows * max(1, CHUNK_BYTES // (8 * max(n_columns, 1) * rows))


def row_blocks(n_rows: int, n_columns: int) -> Iterator[slice]:
    """Consecutive row slices covering ``range(n_rows)``, each of :func:`block_size` rows at most."""
    return blocks_of(slice(0, n_rows), n_columns)


def blocks_of(rows: slice, n_columns: int) -> Iterator[slice]:
    """The blocks of :func:`row_blocks` that make up the chunk ``rows`` (from :func:`row_chunks`)."""
    step = block_size(n_columns)
    for start in range(rows.start, rows.stop, step):
        yield slice(start, min(start + step, rows.stop))


def row_chunks(n_rows: int, n_columns: int) -> list[slice]:
    """Consecutive chunks of :func:`chunk_size` rows covering ``range(n_rows)`` (one at least)."""
    step = chunk_size(n_columns)
    return [slice(start, min(start + step, n_rows)) for start in range(0, max(n_rows, 1), step)]


def in_chunks(work: Callable[[slice], T], n_rows: int, n_columns: int) -> list[T]:
    """``work(chunk)`` for every chunk of :func:`row_chunks`, on the pass threads, in chunk order."""
    return map_chunks(work, row_chunks(n_rows, n_columns))


def rowwise(function: Callable[..., FloatArray], *columns: NDArray[Any]) -> FloatArray:
    """``function(*columns)`` for an elementwise ``function``, ``ROWWISE_ROWS`` rows at a time, threaded.

    For arithmetic (``+ - * /``, ``abs``, comparisons, ``where``) each row's value is that of the
    whole-array call, bit for bit, whatever the thread count; a chunk's temporaries stay in cache,
    so a chain of numpy operations costs a fraction of its whole-array memory traffic.
    """
    n = len(columns[0])
    out = np.empty(n)

    def work(rows: slice) -> None:
        out[rows] = function(*(column[rows] for column in columns))

    map_chunks(work, [slice(start, min(start + ROWWISE_ROWS, n)) for start in range(0, n, ROWWISE_ROWS)])
    return out


def sum_in_order(parts: list[FloatArray]) -> FloatArray:
    """``parts[0] + parts[1] + ...`` added left to right (the first part itself when alone)."""
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def new_gram(n_columns: int) -> FloatArray:
    """A zero accumulator for :func:`rank_update`."""
    return np.zeros((n_columns, n_columns))


def rank_update(accumulator: FloatArray, columns: FloatArray) -> None:
    """``accumulator += columns columns'`` (upper triangle) for a block ``(p, m)`` of ``m`` units as columns.

    A compiled loop (:func:`~assimilate.estimators._pass_kernels.add_block_products`) that holds
    no lock while it works; its sums depend on the block alone.
    """
    add_block_products(columns, accumulator)


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

    def work(chunk: slice) -> None:
        for rows in blocks_of(chunk, X.shape[1]):
            np.matmul(X[rows], b, out=out[rows])

    in_chunks(work, X.shape[0], X.shape[1])
    return out


@one_blas_thread
def transpose_times(X: FloatArray, v: FloatArray) -> FloatArray:
    """``X' v`` for a vector or a narrow matrix ``v``, block by block."""

    def work(chunk: slice) -> FloatArray:
        total = np.zeros((X.shape[1], *v.shape[1:]))
        for rows in blocks_of(chunk, X.shape[1]):
            total += X[rows].T @ v[rows]
        return total

    return sum_in_order(in_chunks(work, X.shape[0], X.shape[1]))


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
    n, p = X.shape
    weights = kernel_weights(weights)

    def work(chunk: slice) -> FloatArray:
        return gram_chunk(X, NO_COLUMNS, NO_GROUPS, False, weights, chunk.start, chunk.stop)

    return symmetric(sum_in_order(in_chunks(work, n, p))[0])


@one_blas_thread
def gram_of_blocks(
    write: BlockWriter, n_rows: int, n_columns: int, weights: FloatArray | None = None
) -> FloatArray:
    """:func:`gram` of a design given block by block through ``write`` (called from the pass threads)."""

    def work(chunk: slice) -> FloatArray:
        accumulator = new_gram(n_columns)
        buffer = np.empty((n_columns, block_size(n_columns)))
        for rows in blocks_of(chunk, n_columns):
            block = buffer[:, : rows.stop - rows.start]
            write(rows, block)
            if weights is not None:
                block *= np.sqrt(weights[rows])
            rank_update(accumulator, block)
        return accumulator

    return symmetric(sum_in_order(in_chunks(work, n_rows, n_columns)))


def armwise_gram(
    X: FloatArray, y: FloatArray, arm: NDArray[np.bool_], weights: FloatArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """Gram matrices of ``[X, y]`` over the rows with ``arm`` False and with ``arm`` True, in one pass.

    With ``weights`` (non-negative, one per row) each is ``[X, y]' diag(w) [X, y]`` of its arm.

    Returns
    -------
    (ndarray, ndarray)
        Each ``(p + 1, p + 1)``: ``[[X'X, X'y], [y'X, y'y]]`` of one arm (control first).

    Notes
    -----
    Each row's products are added to its own arm's sums only: no arm's Gram matrix is the
    difference of two sums.
    """
    n, p = X.shape
    y = np.asarray(y, dtype=np.float64)
    arm = np.asarray(arm, dtype=np.bool_)
    weights = kernel_weights(weights)

    def work(chunk: slice) -> FloatArray:
        return gram_chunk(X, y[:, None], arm, True, weights, chunk.start, chunk.stop)

    both = sum_in_order(in_chunks(work, n, p + 1))
    return symmetric(both[0]), symmetric(both[1])


def logistic_pass(
    X: FloatArray,
    y: FloatArray,
    beta: FloatArray,
    probabilities: FloatArray,
    weights: FloatArray | None = None,
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
    weights : ndarray, shape (n,), optional
        Non-negative row weights (sampling weights): the weighted likelihood's score and information.

    Returns
    -------
    (ndarray, ndarray)
        The score ``X'W(y - mu)`` and the information ``X' diag(w mu (1 - mu)) X`` (``W = I`` without
        weights).
    """
    score, information = _logistic_chunks(X, y, beta, probabilities, weights, information=True)
    assert information is not None
    return score, symmetric(information)


def logistic_score(
    X: FloatArray,
    y: FloatArray,
    beta: FloatArray,
    probabilities: FloatArray,
    weights: FloatArray | None = None,
) -> FloatArray:
    """The score ``X'W(y - mu)`` of :func:`logistic_pass` alone (about half the work)."""
    return _logistic_chunks(X, y, beta, probabilities, weights, information=False)[0]


def _logistic_chunks(
    X: FloatArray,
    y: FloatArray,
    beta: FloatArray,
    probabilities: FloatArray,
    weights: FloatArray | None,
    *,
    information: bool,
) -> tuple[FloatArray, FloatArray | None]:
    n, p = X.shape
    y = np.asarray(y, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    weights = kernel_weights(weights)

    def work(chunk: slice) -> tuple[FloatArray, FloatArray]:
        return logistic_chunk(X, y, beta, weights, chunk.start, chunk.stop, probabilities, information)

    parts = in_chunks(work, n, p)
    score = sum_in_order([part[0] for part in parts])
    if not information:
        return score, None
    return score, sum_in_order([part[1] for part in parts])
