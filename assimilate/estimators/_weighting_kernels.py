"""Compiled loops for one chunk of the Hajek IPW estimate and its influence function.

:func:`~assimilate.estimators.weighting.ipw_influence` makes three passes over the rows, each a
kernel per chunk that releases the GIL (as in :mod:`~assimilate.estimators._pass_kernels`): the
weights and the arms' weighted sums; each unit's score and the derivative ``X' g``; the correction
for the estimated propensity. About thirty whole-vector numpy operations become three loops that
read each row once. A chunk's sums depend on its rows alone, so the answer does not depend on the
thread count.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from assimilate._jit import REORDER, jit

FloatArray = NDArray[np.float64]


@jit(fastmath=REORDER, nogil=True)
def hajek_sums(
    d: NDArray[np.int64],
    y: FloatArray,
    used: FloatArray,
    keep: NDArray[np.bool_],
    sampling: FloatArray,
    start: int,
    stop: int,
    inverse: FloatArray,
    weight: FloatArray,
) -> FloatArray:  # pragma: no cover - compiled
    """Fill ``inverse`` (``1/e``, ``1/(1-e)``, 0 when trimmed) and ``weight`` (times the sampling weight).

    Over the rows ``start:stop``; ``sampling`` of length zero means every sampling weight is one.
    Returns ``[sum of weights of the treated, of the controls, sum of weight * y of the treated,
    of the controls]``.
    """
    weighted = sampling.shape[0] > 0
    for i in range(start, stop):
        treated = float(d[i])
        share = used[i] * treated + (1.0 - used[i]) * (1.0 - treated)  # e, or 1 - e for a control
        value = 1.0 / share if keep[i] else 0.0
        inverse[i] = value
        weight[i] = value * sampling[i] if weighted else value
    # The sums in a loop of their own that only reads: a loop that also stores is vectorized or
    # not after a run-time check of where its arrays lie, and the order of a sum would follow.
    weights1 = weights0 = outcomes1 = outcomes0 = 0.0
    for i in range(start, stop):
        treated = float(d[i])
        weights1 += weight[i] * treated
        weights0 += weight[i] * (1.0 - treated)
        outcomes1 += weight[i] * y[i] * treated
        outcomes0 += weight[i] * y[i] * (1.0 - treated)
    return np.array([weights1, weights0, outcomes1, outcomes0])


@jit(fastmath=REORDER, nogil=True)
def hajek_scores(
    X: FloatArray,
    d: NDArray[np.int64],
    y: FloatArray,
    raw: FloatArray,
    used: FloatArray,
    keep: NDArray[np.bool_],
    sampling: FloatArray,
    inverse: FloatArray,
    weight: FloatArray,
    means: FloatArray,
    start: int,
    stop: int,
    influence: FloatArray,
    score: FloatArray,
) -> FloatArray:  # pragma: no cover - compiled
    """Each unit's influence before the propensity correction, its propensity score equation, and ``X' g``.

    ``means`` is ``[mu_1, mu_0, 1 / A_11, 1 / A_00]``. For unit ``i`` in arm ``a``: ``psi = w (y - mu_a)``,
    ``influence = psi / A_aa`` (negated for controls), ``score = s (d - e_raw)``, and
    ``g = e_raw (1 - e_raw) psi inverse / A_aa``, zero for a clipped or trimmed score (it does not
    move with ``beta``). Returns ``X' g`` over the rows ``start:stop``.
    """
    p = X.shape[1]
    weighted = sampling.shape[0] > 0
    derivative = np.zeros(p)
    for i in range(start, stop):
        treated = float(d[i])
        scale = means[2] * treated + means[3] * (1.0 - treated)  # 1 / A_aa
        psi = weight[i] * (y[i] - means[0] * treated - means[1] * (1.0 - treated))
        influence[i] = psi * scale * (2.0 * treated - 1.0)
        equation = treated - raw[i]
        score[i] = equation * sampling[i] if weighted else equation
        moves = keep[i] and used[i] == raw[i]
        g = raw[i] * (1.0 - raw[i]) * psi * inverse[i] * scale if moves else 0.0
        for j in range(p):
            derivative[j] += X[i, j] * g
    return derivative


@jit(fastmath=REORDER, nogil=True)
def subtract_correction(
    X: FloatArray, direction: FloatArray, score: FloatArray, start: int, stop: int, influence: FloatArray
) -> None:  # pragma: no cover - compiled
    """``influence -= score * (X direction)`` over the rows ``start:stop``."""
    p = X.shape[1]
    for i in range(start, stop):
        fitted = 0.0
        for j in range(p):
            fitted += X[i, j] * direction[j]
        influence[i] -= score[i] * fitted
