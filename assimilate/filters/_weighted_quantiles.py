"""Quantiles of a weighted particle cloud: the definition (numpy) and an exact O(N) compiled version.

Definition: sort the values (ties in index order), put each at the midpoint of its weight on the
cumulative axis (``c_k = sum_{j<k} w_j + w_k / 2``, weights normalized) and interpolate linearly
in ``p``; below the first midpoint the minimum, above the last the maximum.

A full sort costs ``O(N log N)`` per batch, more than the rest of a filter step. Only the two
values whose midpoints straddle ``p`` matter, so the compiled version moves a window around a guess
with cheap vectorized counting passes until the cumulative weight ``p`` falls inside it, gathers
and sorts only the window, and takes the straddling neighbour from just outside the window when
the crossing sits at its edge. Same answer; a full sort remains the last resort.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from assimilate._jit import REORDER, jit

FloatArray = NDArray[np.float64]
MAX_MOVES = 12
# Ranking a window is quadratic in its size: a larger one is sorted instead.
MAX_RANKED = 96


def weighted_quantiles(values: FloatArray, weights: FloatArray, probabilities: FloatArray) -> FloatArray:
    """Quantiles of a weighted sample by the midpoint rule above (the reference definition)."""
    order = np.argsort(values, kind="stable")
    sorted_values, sorted_weights = values[order], weights[order] / np.sum(weights)
    cdf = np.cumsum(sorted_weights) - 0.5 * sorted_weights
    return np.asarray(np.interp(probabilities, cdf, sorted_values), dtype=np.float64)


@jit(fastmath=REORDER)
def _outside(x: FloatArray, w: FloatArray, low: float, high: float) -> tuple[float, float, int, int]:
    """Weight and count of the particles below ``low`` and above ``high`` (one vectorized pass)."""
    below, above, n_below, n_above = 0.0, 0.0, 0, 0
    for i in range(x.shape[0]):
        xi = x[i]
        below += w[i] if xi < low else 0.0
        above += w[i] if xi > high else 0.0
        n_below += 1 if xi < low else 0
        n_above += 1 if xi > high else 0
    return below, above, n_below, n_above


@jit()
def _place(
    x: FloatArray, w: FloatArray, total: float, target: float, guess: float, width: float
) -> tuple[bool, float, float, float, float, int, int]:
    """Move and resize a window by counting passes until cumulative weight ``target`` is inside.

    Returns whether it succeeded, the window, and the weight and count below and above it.
    """
    n = x.shape[0]
    for _ in range(MAX_MOVES):
        low, high = guess - width, guess + width
        below, above, n_below, n_above = _outside(x, w, low, high)
        if n_below + n_above == n:
            width *= 2.0
        elif n_below > 0 and below >= target:
            guess, width = guess - width, width * 1.5
        elif n_above > 0 and total - above <= target:
            guess, width = guess + width, width * 1.5
        else:
            return True, low, high, below, above, n_below, n_above
    return False, 0.0, 0.0, 0.0, 0.0, 0, 0


@jit()
def _gather_two(
    x: FloatArray, w: FloatArray, bounds: FloatArray, first: FloatArray, second: FloatArray
) -> tuple[int, int]:
    """Copy the particles of two windows into ``first``/``second`` (rows: values, weights), one scan.

    Branch-free: every particle is written and only the ones inside advance the count, because a
    branch taken for a few percent of particles at random costs more than the writes.
    """
    low0, high0, low1, high1 = bounds[0], bounds[1], bounds[2], bounds[3]
    m0, m1 = 0, 0
    for i in range(x.shape[0]):
        xi, wi = x[i], w[i]
        first[0, m0] = xi
        first[1, m0] = wi
        m0 += (low0 <= xi) & (xi <= high0)
        second[0, m1] = xi
        second[1, m1] = wi
        m1 += (low1 <= xi) & (xi <= high1)
    return m0, m1


@jit(fastmath=REORDER)
def _weight_before(values: FloatArray, weights: FloatArray, m: int, j: int) -> float:
    """Weight of the window's values that sort before value ``j`` (ties in index order)."""
    vj, total = values[j], 0.0
    for k in range(m):
        vk = values[k]
        total += weights[k] if (vk < vj) | ((vk == vj) & (k < j)) else 0.0
    return total


@jit()
def _nearest_outside(x: FloatArray, w: FloatArray, edge: float, below: bool) -> tuple[float, float]:
    """The particle just below (above) ``edge`` and its weight; among ties the last (first) by index."""
    best, weight = (-np.inf if below else np.inf), 0.0
    for i in range(x.shape[0]):
        xi = x[i]
        nearer = (xi < edge and xi >= best) if below else (xi > edge and xi < best)
        if nearer:
            best, weight = xi, w[i]
    return best, weight


@jit()
def _in_window(
    x: FloatArray,
    w: FloatArray,
    window: FloatArray,
    m: int,
    low: float,
    high: float,
    below: float,
    above: float,
    n_below: int,
    n_above: int,
    total: float,
    target: float,
) -> float:
    """The quantile from a gathered window whose bounds satisfy ``below < target < total - above``.

    Each value's midpoint comes from the weight that sorts before it (m^2 branch-free work on a
    window of a few dozen, cheaper than sorting it); the straddling pair are the nearest midpoints
    on either side of ``target``, one of them possibly just outside the window.
    """
    if m > MAX_RANKED:
        order = np.argsort(window[0, :m], kind="mergesort")
        window[0, :m] = window[0, :m][order]
        window[1, :m] = window[1, :m][order]
    values, weights = window[0], window[1]
    c_low, v_low, c_high, v_high = -np.inf, 0.0, np.inf, 0.0
    run = below
    for j in range(m):
        if m > MAX_RANKED:
            c = run + 0.5 * weights[j]
            run += weights[j]
        else:
            c = below + _weight_before(values, weights, m, j) + 0.5 * weights[j]
        if c <= target and c >= c_low:
            c_low, v_low = c, values[j]
        if c > target and c < c_high:
            c_high, v_high = c, values[j]
    if c_low == -np.inf:
        if n_below == 0:
            return float(v_high)  # below the first midpoint of the whole cloud
        v, wv = _nearest_outside(x, w, low, True)
        c_low, v_low = below - 0.5 * wv, v
    if c_high == np.inf:
        if n_above == 0:
            return float(v_low)  # above the last midpoint of the whole cloud
        v, wv = _nearest_outside(x, w, high, False)
        c_high, v_high = total - above + 0.5 * wv, v
    return v_low + (target - c_low) / (c_high - c_low) * (v_high - v_low)


@jit()
def _full_sort_quantile(x: FloatArray, w: FloatArray, total: float, target: float) -> float:
    window = np.empty((2, x.shape[0]))
    window[0], window[1] = x, w
    return _in_window(x, w, window, x.shape[0], -np.inf, np.inf, 0.0, 0.0, 0, 0, total, target)


@jit()
def weighted_quantile_pair(
    x: FloatArray,
    w: FloatArray,
    total: float,
    probabilities: FloatArray,
    guesses: FloatArray,
    widths: FloatArray,
    scratch: FloatArray,
    out: FloatArray,
) -> tuple[int, int]:
    """Two quantiles of ``x`` weighted by ``w`` (sum ``total``) into ``out``, searched near guesses.

    ``scratch`` is a 4 x N work array. Returns how many particles each window held (0 when the
    search failed and everything was sorted), so the caller can size the next windows.
    """
    bounds, placed = np.empty(4), np.empty((2, 4))
    found = np.zeros(2, dtype=np.bool_)
    for k in range(2):
        ok, low, high, below, above, n_below, n_above = _place(
            x, w, total, probabilities[k] * total, guesses[k], widths[k]
        )
        found[k] = ok
        bounds[2 * k], bounds[2 * k + 1] = (low, high) if ok else (np.inf, -np.inf)
        placed[k, 0], placed[k, 1], placed[k, 2], placed[k, 3] = below, above, n_below, n_above
    first, second = scratch[0:2], scratch[2:4]
    sizes = _gather_two(x, w, bounds, first, second)
    for k in range(2):
        target = probabilities[k] * total
        if found[k]:
            window = first if k == 0 else second
            below, above, n_below, n_above = placed[k, 0], placed[k, 1], int(placed[k, 2]), int(placed[k, 3])
            out[k] = _in_window(
                x,
                w,
                window,
                sizes[k],
                bounds[2 * k],
                bounds[2 * k + 1],
                below,
                above,
                n_below,
                n_above,
                total,
                target,
            )
        else:
            out[k] = _full_sort_quantile(x, w, total, target)
    return sizes
