"""Compiled loops for one chunk of a pass: the logistic score and information, and Gram matrices.

Each kernel works through the rows ``start:stop`` of a design ``TILE`` rows at a time: it copies
the tile transposed (one variable per row, a few kilobytes that stay in the core's L1 cache),
computes on it, and adds the products of every two variables over the tile's rows as dot
products of contiguous runs, four by four variables, which the compiler vectorizes. A call releases
the GIL for its whole chunk: threads that run the chunks of a pass (:mod:`~assimilate.estimators.passes`)
share no lock while they work, where numpy's calls on blocks took the GIL back after each one.

The order in which a chunk's sums are formed depends on the chunk's rows alone, so a pass that
adds the chunks' results in chunk order gives the same bits on any number of threads. Nor does it
depend on where the arrays lie: every sum runs over a tile the kernel allocated or in a loop that
only reads (a loop that also stores is vectorized or not after a run-time check of its arrays'
addresses, and the order of its sums would follow).
Sums may be reassociated (the dot products are vectorized), never computed with approximate
reciprocals or with the assumption that no value is infinite or NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from assimilate._jit import REORDER, jit

FloatArray = NDArray[np.float64]
TILE = 256  # rows per tile: a tile of 9 to 16 variables (18 to 32 KiB) stays in L1
NO_COLUMNS = np.empty((0, 0))  # gram_chunk: no column to append
NO_GROUPS = np.empty(0, dtype=np.bool_)  # gram_chunk: one group (the array is not read)
_NO_WEIGHTS = np.empty(0)


def kernel_weights(weights: ArrayLike | None) -> FloatArray:
    """Row weights as the kernels take them: float64, or an empty array for "every weight is one"."""
    return _NO_WEIGHTS if weights is None else np.asarray(weights, dtype=np.float64)


@jit(fastmath=REORDER, nogil=True)
def _padded(q: int) -> int:  # pragma: no cover - compiled
    """``q`` rounded up to a multiple of 4: the rows of a tile and the side of an accumulator."""
    return (q + 3) // 4 * 4


@jit(fastmath=REORDER, nogil=True)
def _add_products(tile: FloatArray, m: int, upper: FloatArray) -> None:  # pragma: no cover - compiled
    """``upper += tile[:, :m] tile[:, :m]'`` on the upper triangle (entries below it: partial sums).

    ``tile`` has a multiple of 4 rows (rows past the variables are zero). The products are formed
    4 x 4 at a time: eight runs of ``m`` values feed sixteen sums, so each value loaded serves
    four products (two products a load for one pair at a time, which leaves wide designs slower
    than BLAS ``dsyrk``).
    """
    q = tile.shape[0]
    for j in range(0, q, 4):
        for k in range(j, q, 4):
            s00 = s01 = s02 = s03 = 0.0
            s10 = s11 = s12 = s13 = 0.0
            s20 = s21 = s22 = s23 = 0.0
            s30 = s31 = s32 = s33 = 0.0
            for i in range(m):
                a0, a1, a2, a3 = tile[j, i], tile[j + 1, i], tile[j + 2, i], tile[j + 3, i]
                b0, b1, b2, b3 = tile[k, i], tile[k + 1, i], tile[k + 2, i], tile[k + 3, i]
                s00 += a0 * b0
                s01 += a0 * b1
                s02 += a0 * b2
                s03 += a0 * b3
                s10 += a1 * b0
                s11 += a1 * b1
                s12 += a1 * b2
                s13 += a1 * b3
                s20 += a2 * b0
                s21 += a2 * b1
                s22 += a2 * b2
                s23 += a2 * b3
                s30 += a3 * b0
                s31 += a3 * b1
                s32 += a3 * b2
                s33 += a3 * b3
            upper[j, k] += s00
            upper[j, k + 1] += s01
            upper[j, k + 2] += s02
            upper[j, k + 3] += s03
            upper[j + 1, k] += s10
            upper[j + 1, k + 1] += s11
            upper[j + 1, k + 2] += s12
            upper[j + 1, k + 3] += s13
            upper[j + 2, k] += s20
            upper[j + 2, k + 1] += s21
            upper[j + 2, k + 2] += s22
            upper[j + 2, k + 3] += s23
            upper[j + 3, k] += s30
            upper[j + 3, k + 1] += s31
            upper[j + 3, k + 2] += s32
            upper[j + 3, k + 3] += s33


@jit(fastmath=REORDER, nogil=True)
def _expit(eta: float) -> float:  # pragma: no cover - compiled
    """``1 / (1 + exp(-eta))`` as scipy's ``expit`` computes it: exactly 0 below about -709."""
    return 1.0 / (1.0 + math.exp(-eta))


@jit(fastmath=REORDER, nogil=True)
def logistic_chunk(
    X: FloatArray,
    y: FloatArray,
    beta: FloatArray,
    weights: FloatArray,
    start: int,
    stop: int,
    probabilities: FloatArray,
    information: bool,
) -> tuple[FloatArray, FloatArray]:  # pragma: no cover - compiled
    """Score ``X'W(y - mu)`` and (with ``information``) the upper triangle of ``X' diag(w mu (1 - mu)) X``.

    Over the rows ``start:stop``; writes ``mu = expit(X beta)`` into ``probabilities`` there.
    ``weights`` of length zero means every weight is one.
    """
    p = X.shape[1]
    score = np.zeros(p)
    upper = np.zeros((_padded(p), _padded(p)))
    tile = np.zeros((_padded(p), TILE))
    work = np.empty(TILE)
    weighted = weights.shape[0] > 0
    for first in range(start, stop, TILE):
        m = min(TILE, stop - first)
        for i in range(m):
            for j in range(p):
                tile[j, i] = X[first + i, j]
        for i in range(m):
            work[i] = 0.0
        for j in range(p):
            coefficient = beta[j]
            for i in range(m):
                work[i] += coefficient * tile[j, i]
        for i in range(m):
            mu = _expit(work[i])
            probabilities[first + i] = mu
            weight = weights[first + i] if weighted else 1.0
            work[i] = weight * (y[first + i] - mu)
        for j in range(p):
            total = 0.0
            for i in range(m):
                total += tile[j, i] * work[i]
            score[j] += total
        if information:
            for i in range(m):
                mu = probabilities[first + i]
                weight = weights[first + i] if weighted else 1.0
                work[i] = math.sqrt(weight * (mu * (1.0 - mu)))
            for j in range(p):
                for i in range(m):
                    tile[j, i] *= work[i]
            _add_products(tile, m, upper)
    return score, upper[:p, :p].copy()


@jit(fastmath=REORDER, nogil=True)
def gram_chunk(
    X: FloatArray,
    extra: FloatArray,
    groups: NDArray[np.bool_],
    grouped: bool,
    weights: FloatArray,
    start: int,
    stop: int,
) -> FloatArray:  # pragma: no cover - compiled
    """Upper triangles of ``Z' diag(w) Z`` over the rows ``start:stop`` of each group, ``Z = [X, extra]``.

    ``extra`` has shape ``(n, k)`` (``k`` columns to append, possibly none); with ``grouped`` row ``i`` is in group
    ``int(groups[i])``, else every row is in group 0 (``groups`` unread); ``weights`` of length
    zero means every weight is one. Returns shape ``(2, q, q)`` with groups, ``(1, q, q)`` without (``q`` columns of ``Z``).
    """
    p = X.shape[1]
    k = extra.shape[1]
    weighted = weights.shape[0] > 0
    q = p + k
    n_groups = 2 if grouped else 1
    upper = np.zeros((n_groups, _padded(q), _padded(q)))
    tiles = np.zeros((n_groups, _padded(q), TILE))
    filled = np.zeros(n_groups, dtype=np.int64)
    for i in range(start, stop):
        group = 1 if grouped and groups[i] else 0
        column = filled[group]
        root = math.sqrt(weights[i]) if weighted else 1.0
        for j in range(p):
            tiles[group, j, column] = X[i, j] * root
        for j in range(k):
            tiles[group, p + j, column] = extra[i, j] * root
        filled[group] = column + 1
        if column + 1 == TILE:
            _add_products(tiles[group], TILE, upper[group])
            filled[group] = 0
    for group in range(n_groups):
        if filled[group] > 0:
            _add_products(tiles[group], filled[group], upper[group])
    return upper[:, :q, :q].copy()


@jit(fastmath=REORDER, nogil=True)
def add_block_products(block: FloatArray, upper: FloatArray) -> None:  # pragma: no cover - compiled
    """``upper += block block'`` on the upper triangle, for a block ``(q, m)`` of ``m`` units as columns.

    The block is copied a tile at a time, so its products are formed in L1 as in the other kernels.
    """
    q, m = block.shape
    tile = np.zeros((_padded(q), TILE))
    products = np.zeros((_padded(q), _padded(q)))
    for first in range(0, m, TILE):
        width = min(TILE, m - first)
        for j in range(q):
            for i in range(width):
                tile[j, i] = block[j, first + i]
        _add_products(tile, width, products)
    for j in range(q):
        for k in range(j, q):
            upper[j, k] += products[j, k]
