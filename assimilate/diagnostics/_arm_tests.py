"""The randomized-design arm test of the post-treatment screen: one column's distribution in both arms.

Kept apart from :mod:`assimilate.diagnostics.post_treatment_screen` (which explains when it runs):
a row-level test (Kolmogorov-Smirnov for a numeric column, Fisher's exact test for a binary one or a
categorical level) and, for clusters randomized whole, the Kolmogorov-Smirnov test on cluster means.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import special, stats

from assimilate._jit import jit

Array = NDArray[np.float64]


def arm_test(
    values: Array, d: Array, numeric: bool, clusters: NDArray[np.int64] | None = None
) -> tuple[str, float, float]:
    """Two-sided test of one distribution in both arms: (name, statistic, p-value).

    With ``clusters`` (codes 0..G-1 of clusters randomized whole), one value per cluster: its mean.
    """
    if clusters is not None:
        size = np.bincount(clusters)
        means = np.bincount(clusters, weights=values) / size
        arm = np.bincount(clusters, weights=d) / size
        result = stats.ks_2samp(means[arm == 1], means[arm == 0])
        return "Kolmogorov-Smirnov D of cluster means", float(result.statistic), float(result.pvalue)
    treated, control = values[d == 1], values[d == 0]
    if numeric:
        return ("Kolmogorov-Smirnov D", *ks_two_sample(treated, control))
    top = values.max()
    a, b = int((treated == top).sum()), int((control == top).sum())  # the 2x2 table [[a, n1-a], [b, n0-b]]
    n1, n0 = len(treated), len(control)
    low = max(0, a + b - n0)
    support = np.arange(low, min(n1, a + b) + 1, dtype=np.float64)
    log_pmf = log_choose(n1, support) + log_choose(n0, a + b - support) - log_choose(n1 + n0, a + b)
    pmf = np.exp(log_pmf)  # hypergeometric: treated units among the a + b at the top value
    observed = pmf[a - low]
    p_value = min(1.0, float(pmf[pmf <= observed * (1 + 1e-7)].sum()))  # two-sided, as scipy's fisher_exact
    odds = (a * (n0 - b)) / ((n1 - a) * b) if (n1 - a) * b > 0 else math.inf
    return "Fisher exact odds ratio", float(odds), p_value


# scipy's ks_2samp is exact up to this many values in the larger sample, asymptotic above.
KS_EXACT_N = 10_000


def ks_two_sample(treated: Array, control: Array) -> tuple[float, float]:
    """``scipy.stats.ks_2samp(treated, control)``'s two-sided statistic and p-value, bit for bit.

    Above ``KS_EXACT_N`` values scipy evaluates both empirical distribution functions at every
    pooled value by binary search (two searches of n values); the same differences come from one
    walk through the two sorted samples, almost four times faster at 1e6 rows, and the p-value from
    the same asymptotic distribution (``kstwo``). Smaller samples, and any NaN, go to scipy itself.
    """
    n1, n0 = len(treated), len(control)
    if max(n1, n0) <= KS_EXACT_N or min(n1, n0) == 0 or np.isnan(treated).any() or np.isnan(control).any():
        result = stats.ks_2samp(treated, control)
        return float(result.statistic), float(result.pvalue)
    highest, lowest = _ecdf_difference_extremes(np.sort(treated), np.sort(control))
    below = min(max(-lowest, 0.0), 1.0)  # scipy's clip of the largest negative difference
    statistic = below if below > highest else highest
    m, n = max(float(n1), float(n0)), min(float(n1), float(n0))
    p_value = stats.kstwo.sf(statistic, np.round(m * n / (m + n)))
    return float(statistic), float(np.clip(p_value, 0, 1))


@jit()
def _ecdf_difference_extremes(a: Array, b: Array) -> tuple[float, float]:
    """The largest and smallest ``F_a(x) - F_b(x)`` over the pooled values of sorted ``a`` and ``b``.

    At each distinct pooled value ``x``, the counts of ``a`` and of ``b`` at or below ``x``
    divided by their sizes: the differences scipy forms with ``searchsorted(side="right")``.
    """
    n1, n2 = a.shape[0], b.shape[0]
    i, j = 0, 0
    highest, lowest = -np.inf, np.inf
    while i < n1 or j < n2:
        x = a[i] if j >= n2 or (i < n1 and a[i] <= b[j]) else b[j]
        while i < n1 and a[i] <= x:
            i += 1
        while j < n2 and b[j] <= x:
            j += 1
        difference = i / n1 - j / n2
        highest = max(highest, difference)
        lowest = min(lowest, difference)
    return highest, lowest


def log_choose(n: float, k: Array | float) -> Array:
    """``log C(n, k)`` through the log-gamma function (exact to ~1e-12 relative at 100,000 units)."""
    return np.asarray(
        special.gammaln(n + 1) - special.gammaln(np.asarray(k) + 1) - special.gammaln(n - np.asarray(k) + 1)
    )


def randomized_clusters(data: pd.DataFrame, cluster: str | None, d: Array) -> NDArray[np.int64] | None:
    """Cluster codes when whole clusters share one arm (clusters randomized whole), else None."""
    if cluster is None:
        return None
    codes = pd.factorize(data[cluster])[0].astype(np.int64)
    treated = np.bincount(codes, weights=d)
    whole = np.all((treated == 0) | (treated == np.bincount(codes)))
    return codes if whole and len(treated) < len(d) else None
