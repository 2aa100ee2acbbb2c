"""The post-treatment screen's least squares, over a design that is never held whole.

The screen regresses each model column (each level of a categorical one) on several subsets of
the batch's standardized columns: the outcome basis, the treatment, their product and the other
model columns. At 1e7 rows that design is gigabytes, and so are the residuals of every response
on every subset. Neither is kept: a column of the design is a function of the batch's own arrays
(:data:`Column`), written a block of rows at a time, and the statistics need only sums over the
rows of the residuals' squares and their products (:class:`ResidualSums`). Three passes over the
blocks serve every response at once: the Gram matrix of the design and the centered responses;
the refinement of the coefficients (``X'(c - X b)``, one step of iterative refinement); and the
sums of the residuals ``c - X b``. Each pass adds its chunks' sums in chunk order, so the result
does not depend on the thread count (:mod:`~assimilate.estimators.passes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from assimilate.estimators import passes

Array = NDArray[np.float64]
# The values of one column of the design on the rows ``rows``, computed from the batch's arrays.
Column = Callable[[slice], Array]
N_KNOTS = 8
MASS_SHARE = 0.01  # a value of the outcome held by >= 1% of the units (and >= 10) is a point mass
MAX_MASSES = 10


def plain(values: NDArray[Any], rows: slice) -> Array:
    """The column ``values`` itself."""
    return np.asarray(values[rows], dtype=np.float64)


def hinge(values: Array, knot: float, rows: slice) -> Array:
    """``(values - knot)_+``."""
    return np.maximum(values[rows] - knot, 0.0)


def equals(values: NDArray[Any], value: float, rows: slice) -> Array:
    """The indicator ``values == value`` (a point mass of the outcome, a level's code)."""
    indicator: Array = (values[rows] == value).astype(np.float64)
    return indicator


def product(left: Array, right: Array, rows: slice) -> Array:
    """``left * right``."""
    return left[rows] * right[rows]


@dataclass(frozen=True)
class Centered:
    """A column written as ``(column - center) / scale``."""

    column: Column
    center: float
    scale: float = 1.0


def standardized(column: Column, n: int) -> Centered | None:
    """``column`` centered and scaled to unit SD; None when it is constant.

    The mean and SD are numpy's over the whole column, so each written value equals that of the
    column standardized whole, bit for bit.
    """
    values = column(slice(0, n))
    mean, sd = float(values.mean()), float(values.std())
    if sd <= 1e-12 * (1.0 + abs(mean)):
        return None
    return Centered(column, mean, sd)


def outcome_basis(y: Array) -> list[Column]:
    """``[y, hinges at quantile knots, point-mass indicators]``."""
    values, counts = np.unique(y, return_counts=True)
    columns: list[Column] = [partial(plain, y)]
    if len(values) > 2:
        knots = np.unique(np.quantile(y, np.arange(1, N_KNOTS + 1) / (N_KNOTS + 1)))
        columns += [partial(hinge, y, float(k)) for k in knots if values[0] < k < values[-1]]
        floor = max(10.0, MASS_SHARE * len(y))
        heavy = np.argsort(-counts, kind="stable")[:MAX_MASSES]
        columns += [partial(equals, y, float(values[i])) for i in heavy if counts[i] >= floor]
    return columns


@dataclass(frozen=True)
class ResidualSums:
    """Sums over the rows of one response's residuals ``e_j`` on each of its subsets ``j``.

    ``squares[j]`` is ``sum e_j²``; ``products[i, j]`` is ``sum e_i² e_j²`` (its diagonal:
    ``sum e_j⁴``); ``ranks[j]`` is the rank of subset ``j`` (its eigenvalues below ``1e-10`` of the
    largest dropped).
    """

    n: int
    ranks: tuple[int, ...]
    squares: Array
    products: Array


class BlockDesign:
    """The standardized columns of a batch, named in blocks: least squares of responses on any subsets.

    Parameters
    ----------
    blocks : mapping of str to list of Column
        The design's columns by block name; a constant column is dropped.
    n : int
        Rows.
    responses : sequence of Column
        The columns regressed on the design (centered, not scaled); a constant one is kept.
    """

    def __init__(self, blocks: Mapping[str, Sequence[Column]], n: int, responses: Sequence[Column]) -> None:
        self.n = n
        self.index: dict[str, NDArray[np.intp]] = {}
        self.columns: list[Centered] = []
        for name, columns in blocks.items():
            kept = [c for c in (standardized(column, n) for column in columns) if c]
            self.index[name] = np.arange(len(self.columns), len(self.columns) + len(kept))
            self.columns += kept
        self.p = len(self.columns)
        self.columns += [Centered(column, float(column(slice(0, n)).mean())) for column in responses]
        self.gram = passes.gram_of_blocks(self._write, n, len(self.columns))

    def _write(self, rows: slice, out: Array) -> None:
        for target, column in zip(out, self.columns, strict=True):
            np.divide(column.column(rows) - column.center, column.scale, out=target)

    def residual_sums(self, jobs: Sequence[tuple[int, Sequence[Sequence[str]]]]) -> list[ResidualSums]:
        """For each ``(response, subsets)``: the sums of the residuals of that response on each subset.

        Every job has the same number of subsets; a subset is a list of block names (empty: the
        centered response itself).
        """
        if not jobs:
            return []
        width, count = len(self.columns), len(jobs[0][1])
        inverses = [[self._inverse(self._subset(names)) for names in subsets] for _, subsets in jobs]
        # Residuals are [X, C] @ weights: the response's own column, minus X times coefficients.
        weights = np.zeros((width, len(jobs) * count))
        for k, (response, _) in enumerate(jobs):
            weights[self.p + response, k * count : (k + 1) * count] = 1.0
        cross = self.gram[: self.p, self.p :]
        coefficients = self._solve(jobs, inverses, lambda k, j: cross[:, jobs[k][0]])
        weights[: self.p] = -coefficients
        refined = passes.sum_in_order(passes.in_chunks(partial(self._refine, weights), self.n, width))
        coefficients += self._solve(jobs, inverses, lambda k, j: refined[:, k * count + j])
        weights[: self.p] = -coefficients
        parts = passes.in_chunks(partial(self._sums, weights, len(jobs)), self.n, width)
        squares = passes.sum_in_order([part[0] for part in parts])
        products = passes.sum_in_order([part[1] for part in parts])
        return [
            ResidualSums(self.n, tuple(rank for _, _, rank in inverses[k]), squares[k], products[k])
            for k in range(len(jobs))
        ]

    def _subset(self, names: Sequence[str]) -> NDArray[np.intp]:
        return np.concatenate([self.index[name] for name in names] or [np.zeros(0, np.intp)])

    def _inverse(self, subset: NDArray[np.intp]) -> tuple[NDArray[np.intp], Array, int]:
        """The subset, its Gram matrix's pseudo-inverse (eigenvalues below 1e-10 of the top dropped), the rank."""
        if len(subset) == 0:
            return subset, np.zeros((0, 0)), 0
        values, vectors = np.linalg.eigh(self.gram[np.ix_(subset, subset)])
        keep = values > 1e-10 * max(values.max(), 1e-300)
        return subset, (vectors[:, keep] / values[keep]) @ vectors[:, keep].T, int(keep.sum())

    def _solve(
        self,
        jobs: Sequence[tuple[int, Sequence[Sequence[str]]]],
        inverses: list[list[tuple[NDArray[np.intp], Array, int]]],
        right: Callable[[int, int], Array],
    ) -> Array:
        """Coefficients zero off each subset: the subset's inverse times ``right(job, subset)`` on it."""
        count = len(jobs[0][1])
        coefficients = np.zeros((self.p, len(jobs) * count))
        for k, subsets in enumerate(inverses):
            for j, (subset, inverse, _) in enumerate(subsets):
                coefficients[subset, k * count + j] = inverse @ right(k, j)[subset]
        return coefficients

    def _blocks(self, chunk: slice) -> Iterator[Array]:
        """The chunk's blocks of ``[X, C]``, rows by columns (a view of one buffer, rewritten each time)."""
        buffer = np.empty((len(self.columns), passes.block_size(len(self.columns))))
        for rows in passes.blocks_of(chunk, len(self.columns)):
            block = buffer[:, : rows.stop - rows.start]
            self._write(rows, block)
            yield block.T

    def _refine(self, weights: Array, chunk: slice) -> Array:
        """``X' e`` over the chunk, for the residuals ``e = [X, C] @ weights``."""
        total = np.zeros((self.p, weights.shape[1]))
        for block in self._blocks(chunk):
            total += block[:, : self.p].T @ (block @ weights)
        return total

    def _sums(self, weights: Array, jobs: int, chunk: slice) -> tuple[Array, Array]:
        """``sum e²`` (jobs, subsets) and ``sum e_i² e_j²`` (jobs, subsets, subsets) over the chunk."""
        count = weights.shape[1] // jobs
        squares, products = np.zeros((jobs, count)), np.zeros((jobs, count, count))
        for block in self._blocks(chunk):
            squared = np.square(block @ weights).reshape(-1, jobs, count).transpose(1, 0, 2)
            squares += squared.sum(axis=1)
            products += squared.transpose(0, 2, 1) @ squared
        return squares, products
