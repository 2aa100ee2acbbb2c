"""Correlation of batch estimates that share units, from each unit's influence-function values.

Model: ``tau_hat_t - tau_t = sum_i c_it`` to first order, with ``c_it = psi_it / n_t`` the
contribution of unit i to batch t (:mod:`assimilate.estimators.influence`). Units are independent
of one another; one unit's contributions to different batches may be correlated in any way (a
persistent unit effect, a standing treatment arm, serially correlated shocks, a unit that changes
arm). Then ``Cov(tau_s, tau_t) = sum_{i in s and t} E[c_is c_it]``, estimated by
``sum_{i in both} c_is c_it``: the cluster-robust sandwich with the unit as the cluster across
batches (Liang & Zeger 1986; Cameron, Gelbach & Miller 2011, for clustering across dimensions).
Rows of one batch with the same unit id are summed first (the unit is the cluster within a
batch too); a batch without influence values shares nothing.

Example
-------
>>> import numpy as np
>>> psi = np.array([1.0, -1.0, 2.0, -2.0])
>>> shared = shared_unit_covariance([(["a", "b", "c", "d"], psi), (["c", "d", "e", "f"], psi)])
>>> shared.returning_share.tolist(), round(float(shared.correlation[0, 1]), 3)
([0.0, 0.5], 0.4)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

from assimilate._frozen import ReadOnlyArrays
from assimilate._validation import as_float_vector, check_positive
from assimilate.filters.stream import default_labels

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
EIGENVALUE_FLOOR = 1e-8
DENSE_CELLS = 4_000_000  # batches x distinct units up to which the products are dense
Batch = tuple[ArrayLike, ArrayLike] | None


def _read_only(array: NDArray[Any]) -> NDArray[Any]:
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class SharedUnits(ReadOnlyArrays):
    """Which units the batches share, and the covariance and correlation of their estimates.

    Parameters
    ----------
    labels : tuple of str
        Batch labels in time order.
    covariance : ndarray
        ``T x T``: ``sum_{i in both} c_is c_it``; the diagonal is ``sum_i c_it^2``, each batch's
        influence-function variance (its reported ``std_error^2`` up to rounding).
    correlation : ndarray
        ``T x T`` correlation of the estimates, positive definite (see :func:`psd_correlation`);
        exactly the identity when no batch shares a unit with another.
    n_units, n_returning : ndarray of int
        Distinct units per batch, and those of them seen in an earlier batch.
    n_shared : ndarray of int
        ``T x T`` number of units two batches share (the diagonal is ``n_units``).
    min_eigenvalue : float
        Smallest eigenvalue of the correlation before any repair.
    psd_adjusted : bool
        Whether eigenvalues were raised to the floor.
    """

    labels: tuple[str, ...]
    covariance: FloatArray
    correlation: FloatArray
    n_units: IntArray
    n_returning: IntArray
    n_shared: IntArray
    min_eigenvalue: float
    psd_adjusted: bool

    @property
    def n_batches(self) -> int:
        """Number of batches."""
        return len(self.labels)

    @property
    def is_disjoint(self) -> bool:
        """True when no unit appears in two batches (the estimates are independent)."""
        return not bool(np.any(self.n_returning))

    @property
    def returning_share(self) -> FloatArray:
        """Share of each batch's units that appeared in an earlier batch (0 for an empty batch)."""
        return np.divide(self.n_returning, self.n_units, out=np.zeros(self.n_batches), where=self.n_units > 0)

    @property
    def correlation_with_previous(self) -> FloatArray:
        """Correlation of each batch's estimate with the batch before (NaN for the first)."""
        out = np.full(self.n_batches, math.nan)
        out[1:] = np.diagonal(self.correlation, offset=-1)
        return out

    @property
    def max_correlation_with_earlier(self) -> FloatArray:
        """Largest correlation of each batch's estimate with any earlier batch (NaN for the first)."""
        lower = np.where(np.tri(self.n_batches, k=-1, dtype=bool), self.correlation, -np.inf)
        out = np.asarray(lower.max(axis=1), dtype=np.float64)
        out[0] = math.nan
        return out

    def summary(self) -> pd.DataFrame:
        """One row per batch: units, returning units and share, correlations with earlier batches."""
        return pd.DataFrame(
            {
                "batch": list(self.labels),
                "n_units": self.n_units,
                "n_returning": self.n_returning,
                "returning_share": self.returning_share,
                "correlation_with_previous": self.correlation_with_previous,
                "max_correlation_with_earlier": self.max_correlation_with_earlier,
            }
        )


def psd_correlation(
    matrix: ArrayLike, *, eigenvalue_floor: float = EIGENVALUE_FLOOR
) -> tuple[FloatArray, float, bool]:
    """A positive-definite correlation matrix close to ``matrix``, by the eigenvalue-clipping rule.

    Parameters
    ----------
    matrix : array_like
        Symmetric matrix with unit diagonal.
    eigenvalue_floor : float
        Smallest eigenvalue kept.

    Returns
    -------
    (ndarray, float, bool)
        The matrix (``matrix`` itself, unchanged, when its smallest eigenvalue is at least the
        floor), that smallest eigenvalue, and whether it was repaired.

    Notes
    -----
    Rule: eigenvalues below the floor are raised to it, ``C' = V max(L, floor) V'``, and ``C'`` is
    rescaled to a unit diagonal (one step of Higham's 2002 alternating projections). The result
    is positive definite; a Gram-built correlation only needs it for rounding or for two batches
    whose estimates are perfectly correlated.
    """
    floor = check_positive("eigenvalue_floor", eigenvalue_floor)
    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"a correlation matrix must be square, got shape {values.shape}")
    if values.size == 0:
        return values, math.inf, False
    eigenvalues, vectors = np.linalg.eigh(values)
    smallest = float(eigenvalues[0])
    if smallest >= floor:
        return values, smallest, False
    fixed = (vectors * np.maximum(eigenvalues, floor)) @ vectors.T
    scale = np.sqrt(np.diagonal(fixed))
    fixed = fixed / np.outer(scale, scale)
    fixed = 0.5 * (fixed + fixed.T)
    np.fill_diagonal(fixed, 1.0)
    return fixed, smallest, True


def shared_unit_covariance(
    batches: Sequence[Batch],
    *,
    labels: Sequence[str] | None = None,
    eigenvalue_floor: float = EIGENVALUE_FLOOR,
) -> SharedUnits:
    """Covariance and correlation of batch estimates from the units they share.

    Parameters
    ----------
    batches : sequence of (unit_ids, values) or None
        Per batch in time order: the unit id of every row and its influence-function value
        ``psi`` (``InfluenceContributions.values``, with ``n_t = len(values)``); None for a batch
        without values (it shares nothing).
    labels : sequence of str, optional
        Batch labels (default ``batch_1`` ...).
    eigenvalue_floor : float
        Floor of the correlation's eigenvalues (see :func:`psd_correlation`).

    Returns
    -------
    SharedUnits
    """
    n_batches = len(batches)
    if n_batches == 0:
        raise ValueError("batches is empty: at least one batch is needed")
    names = default_labels(n_batches) if labels is None else tuple(str(x) for x in labels)
    if len(names) != n_batches:
        raise ValueError(f"labels must have one entry per batch ({n_batches}), got {len(names)}")
    ids: list[NDArray[Any]] = []
    contributions: list[FloatArray] = []
    for label, batch in zip(names, batches, strict=True):
        if batch is None:
            continue
        unit_ids, values = batch
        psi = as_float_vector(f"batch {label}: values", values)
        units = np.asarray(unit_ids)
        if units.shape != psi.shape:
            raise ValueError(f"batch {label}: {units.shape[0]} unit ids for {len(psi)} values")
        if not np.all(np.isfinite(psi)):
            raise ValueError(f"batch {label}: influence values must be finite")
        ids.append(units.astype(object) if units.dtype.kind not in "iu" else units)
        contributions.append(psi / max(len(psi), 1))
    lengths = np.array([0 if b is None else len(np.asarray(b[0])) for b in batches], dtype=np.int64)
    codes, uniques = pd.factorize(np.concatenate(ids)) if ids else (np.empty(0, np.int64), np.empty(0))
    if np.any(codes < 0):
        raise ValueError("unit ids must not be missing (None or NaN)")
    rows = np.repeat(np.arange(n_batches), lengths)
    values = np.concatenate(contributions) if contributions else np.empty(0)
    covariance, n_shared, cells = _products(rows, codes, values, (n_batches, len(uniques)))
    # Batches come in time order, so a unit's first row is in its first batch.
    # pandas numbers units in order of first appearance: a code is new where the running max grows.
    running = np.maximum.accumulate(codes) if len(codes) else codes
    first_batch = rows[np.concatenate([[True], running[1:] > running[:-1]])] if len(codes) else rows
    cell_rows, cell_units = np.divmod(cells, max(len(uniques), 1))
    returning = first_batch[cell_units] < cell_rows
    n_returning = np.bincount(cell_rows[returning], minlength=n_batches).astype(np.int64)
    raw = _correlation(covariance)
    correlation, smallest, adjusted = psd_correlation(raw, eigenvalue_floor=eigenvalue_floor)
    return SharedUnits(
        labels=names,
        covariance=_read_only(covariance),
        correlation=_read_only(np.array(correlation, dtype=np.float64)),
        n_units=_read_only(np.diagonal(n_shared).copy()),
        n_returning=_read_only(n_returning),
        n_shared=_read_only(n_shared),
        min_eigenvalue=smallest,
        psd_adjusted=adjusted,
    )


def _products(
    rows: IntArray, codes: IntArray, values: FloatArray, shape: tuple[int, int]
) -> tuple[FloatArray, IntArray, IntArray]:
    """``V V'`` and ``P P'``, and the distinct (batch, unit) cells ``t * n_units + i``, sorted.

    ``V[t, i]`` is the summed contribution of unit i to batch t and ``P`` its 0/1 presence: dense
    ``T x U`` matrices when they are small (BLAS), sparse ones otherwise.
    """
    n_batches, n_units = shape
    flat = rows * n_units + codes
    if n_batches * n_units <= DENSE_CELLS:
        dense_w = np.bincount(flat, weights=values, minlength=n_batches * n_units).reshape(shape)
        counts = np.bincount(flat, minlength=n_batches * n_units)
        dense_p = (counts > 0).astype(np.float64).reshape(shape)
        covariance = np.asarray(dense_w @ dense_w.T, dtype=np.float64)
        shared = np.rint(dense_p @ dense_p.T).astype(np.int64)
        return covariance, shared, np.flatnonzero(counts).astype(np.int64)
    cells, position = np.unique(flat, return_inverse=True)
    summed = np.bincount(position, weights=values, minlength=len(cells))
    cell_rows, cell_units = np.divmod(cells, n_units)
    sparse_w = sparse.csr_matrix((summed, (cell_rows, cell_units)), shape=shape)
    sparse_p = sparse.csr_matrix((np.ones(len(cells)), (cell_rows, cell_units)), shape=shape)
    products: tuple[Any, Any] = (sparse_w @ sparse_w.T, sparse_p @ sparse_p.T)
    covariance = np.asarray(products[0].toarray(), dtype=np.float64)
    return covariance, np.rint(products[1].toarray()).astype(np.int64), cells.astype(np.int64)


def _correlation(covariance: FloatArray) -> FloatArray:
    """Unit-diagonal correlation; rows of batches without variance are 0 off the diagonal."""
    sd = np.sqrt(np.maximum(np.diagonal(covariance), 0.0))
    positive = sd > 0
    scale = np.where(positive, sd, 1.0)
    correlation = covariance / np.outer(scale, scale)
    correlation[~positive, :] = 0.0
    correlation[:, ~positive] = 0.0
    np.clip(correlation, -1.0, 1.0, out=correlation)
    np.fill_diagonal(correlation, 1.0)
    return np.asarray(correlation, dtype=np.float64)
