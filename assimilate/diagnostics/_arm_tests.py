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
        result = stats.ks_2samp(treated, control)
        return "Kolmogorov-Smirnov D", float(result.statistic), float(result.pvalue)
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
