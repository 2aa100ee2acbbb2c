"""Compiled loops for one chunk of a pass: the logistic score and information, and Gram matrices.

Each kernel works through the rows ``start:stop`` of a design ``TILE`` rows at a time: it copies
the tile transposed (one variable per row, a few kilobytes that stay in the core's L1 cache),
computes on it, and adds each of the ``p (p + 1) / 2`` products of two variables over the tile's
rows as one dot product of two contiguous runs, which the compiler vectorizes. A call releases
the GIL for its whole chunk: threads that run the chunks of a pass (:mod:`~assimilate.estimators.passes`)
share no lock while they work, where numpy's calls on blocks took the GIL back after each one.

The order in which a chunk's sums are formed depends on the chunk's rows alone, so a pass that
adds the chunks' results in chunk order gives the same bits on any number of threads.
Sums may be reassociated (the dot products are vectorized), never computed with approximate
reciprocals or with the assumption that no value is infinite or NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from assimilate._jit import REORDER, jit

FloatArray = NDArray[np.float64]
TILE = 256  # rows per tile: a tile of 9 to 16 variables (18 to 32 KiB) stays in L1


@jit(fastmath=REORDER, nogil=True)
def _add_products(tile: FloatArray, m: int, upper: FloatArray) -> None:  # pragma: no cover - compiled
    """``upper += tile[:, :m] tile[:, :m]'`` on the upper triangle."""
    q = tile.shape[0]
    for j in range(q):
        for k in range(j, q):
            total = 0.0
            for i in range(m):
                total += tile[j, i] * tile[k, i]
            upper[j, k] += total


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
    upper = np.zeros((p, p))
    tile = np.empty((p, TILE))
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
    return score, upper


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
    upper = np.zeros((n_groups, q, q))
    tiles = np.empty((n_groups, q, TILE))
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
    return upper
