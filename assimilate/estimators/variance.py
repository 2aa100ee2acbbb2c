"""Standard-error choices for a batch estimate: HC0-HC3 and cluster-robust CR1 and CR2.

Every estimator is asymptotically linear, ``tau_hat - tau ~ (1/n) sum_i psi_i``. With clusters
``g = 1..G`` whose units may be correlated, the variance sums the influence within a cluster first:
``V_CR1 = c G / (G - 1) sum_g (sum_{i in g} psi_i)^2 / n^2`` (``c = (n - 1) / (n - k)`` for an OLS
coefficient, 1 otherwise), and the interval uses ``t_{G-1}``.

Defaults: unclustered, each estimator keeps the SE it always reported: Welch for the difference in
means, which *is* HC2 of ``y ~ 1 + d`` (the choice of Lin 2013 and Imbens & Kolesar 2016), and HC3
for regression adjustment (MacKinnon & White 1985; Long & Ervin 2000 advise it below n = 250: it is
the more conservative, and HC2 and HC3 differ by ``O(k/n)``); clustered, CR1 (statsmodels' and
Stata's convention), with CR2 on request for few clusters.

Example
-------
>>> import numpy as np, pandas as pd
>>> from assimilate.estimators import difference_in_means
>>> rng = np.random.default_rng(0)
>>> school = np.repeat(np.arange(40), 10)
>>> frame = pd.DataFrame({"school": school, "d": np.repeat(np.arange(40) % 2, 10)})
>>> frame["y"] = frame["d"] + rng.normal(0, 0.6, 40)[school] + rng.normal(0, 1, 400)
>>> unit = difference_in_means(frame, treatment="d", outcome="y")
>>> clustered = with_standard_error(unit, frame, treatment="d", outcome="y", cluster="school")
>>> clustered.estimate == unit.estimate, clustered.se_method, clustered.diagnostics["standard_error"]["df"]
(True, 'cr1', 39)
>>> bool(clustered.std_error > 1.5 * unit.std_error)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import linalg

from assimilate._validation import check_choice
from assimilate.estimators._inputs import batch_arrays, sampling_weights
from assimilate.estimators.influence import INFLUENCE_METHODS, InfluenceContributions, influence_contributions
from assimilate.estimators.result import EffectEstimate

FloatArray = NDArray[np.float64]
SEType = Literal["HC0", "HC1", "HC2", "HC3", "CR1", "CR2"]
SE_TYPES: tuple[SEType, ...] = ("HC0", "HC1", "HC2", "HC3", "CR1", "CR2")
CLUSTER_TYPES: tuple[SEType, ...] = ("CR1", "CR2")
OLS_METHODS = ("difference_in_means", "regression_adjustment", "lin_interacted")
"""Estimators whose estimate is the treatment coefficient of an OLS fit with the plain OLS SE, so
every ``SEType`` applies: all three for the ATE; for the ATT and ATC the difference in means and
plain regression adjustment (one number for every estimand), not Lin's interacted regression,
whose ATT/ATC SE carries the estimated covariate means of an arm (CR1 only, from its influence);
with sampling weights its ATE likewise carries the weighted means of all rows."""
DEFAULT_SE: Mapping[str, SEType] = {
    "difference_in_means": "HC2",  # Welch's variance is HC2 of y ~ 1 + d, exactly
    "regression_adjustment": "HC3",
    "lin_interacted": "HC3",
}
"""The SE each estimator reports on its own (what ``se_type=None`` keeps when not clustered)."""
POINT_TOLERANCE = 1e-8


@dataclass(frozen=True)
class SandwichResult:
    """One OLS coefficient with its standard error of a chosen type.

    Parameters
    ----------
    coefficient, std_error : float
        The coefficient and its standard error.
    se_type : {"HC0", "HC1", "HC2", "HC3", "CR1", "CR2"}
        The variance estimator.
    n_clusters : int or None
        ``G`` for ``CR1``/``CR2``, None for the ``HC`` types.
    """

    coefficient: float
    std_error: float
    se_type: SEType
    n_clusters: int | None = None

    @property
    def df(self) -> int | None:
        """Degrees of freedom of the interval: ``G - 1`` when clustered, None (normal) otherwise."""
        return None if self.n_clusters is None else self.n_clusters - 1


def cluster_codes(labels: ArrayLike, *, n: int, name: str = "cluster") -> NDArray[np.int64]:
    """Cluster labels (any hashable values, one per row) as codes ``0 .. G-1``; missing ones refused."""
    array = np.asarray(labels, dtype=object) if not isinstance(labels, pd.Series) else labels.to_numpy()
    if array.ndim != 1 or len(array) != n:
        raise ValueError(f"{name}: needs one label per row ({n}), got shape {np.shape(array)}")
    codes, uniques = pd.factorize(array, use_na_sentinel=True)
    if (codes < 0).any():
        raise ValueError(f"{name}: {int((codes < 0).sum())} missing cluster label(s)")
    if len(uniques) < 2:
        raise ValueError(f"{name}: a cluster-robust SE needs at least 2 clusters, got {len(uniques)}")
    return np.asarray(codes, dtype=np.int64)


def cluster_robust_standard_error(
    values: ArrayLike, clusters: ArrayLike, *, correction: float = 1.0
) -> float:
    """CR1 standard error from per-unit influence values: ``sqrt(c G/(G-1) sum_g (sum_g psi)^2) / n``.

    Parameters
    ----------
    values : array_like
        ``psi_i``, one per row, with ``sum psi^2 / n^2`` the unclustered variance (as
        :class:`~assimilate.estimators.InfluenceContributions` gives them).
    clusters : array_like
        One cluster label per row.
    correction : float
        Extra finite-sample factor ``c`` (``(n-1)/(n-k)`` for an OLS coefficient, Stata's and
        statsmodels' convention); 1 for the M-estimators (IPW, AIPW).

    Returns
    -------
    float
    """
    psi = np.asarray(values, dtype=np.float64)
    codes = cluster_codes(clusters, n=len(psi))
    groups = int(codes.max()) + 1
    totals = np.bincount(codes, weights=psi, minlength=groups)
    return math.sqrt(correction * groups / (groups - 1) * float(totals @ totals)) / len(psi)


def ols_standard_error(
    X: FloatArray,
    y: FloatArray,
    *,
    column: int,
    se_type: SEType,
    clusters: ArrayLike | None = None,
    weights: FloatArray | None = None,
) -> SandwichResult:
    """Coefficient ``column`` of the OLS fit of ``y`` on ``X`` with an HC or CR standard error.

    Parameters
    ----------
    X : ndarray, shape (n, k)
        Full-rank design (with its intercept column).
    y : ndarray, shape (n,)
        Outcome.
    column : int
        Which coefficient.
    se_type : {"HC0", "HC1", "HC2", "HC3", "CR1", "CR2"}
        Variance estimator; ``CR1``/``CR2`` need ``clusters``, the ``HC`` types refuse them.
    clusters : array_like, optional
        One cluster label per row.
    weights : ndarray, optional
        Sampling weights (positive): weighted least squares, as OLS of ``sqrt(w) y`` on
        ``sqrt(w) X`` with every type computed on the whitened fit (statsmodels' WLS convention).

    Returns
    -------
    SandwichResult

    Notes
    -----
    With ``a_i = [(X'X)^-1 x_i]_j``, residuals ``e_i`` and leverages ``h_ii``: HC0 ``sum a^2 e^2``,
    HC1 ``n/(n-k)`` HC0, HC2 ``sum a^2 e^2 / (1-h)``, HC3 ``sum a^2 e^2 / (1-h)^2`` (MacKinnon &
    White 1985); CR1 ``G/(G-1) (n-1)/(n-k) sum_g (a_g'e_g)^2`` (Liang & Zeger 1986, statsmodels'
    ``cov_type="cluster"``); CR2 ``sum_g (a_g' A_g e_g)^2`` with ``A_g = (I - H_gg)^{-1/2}``
    (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018), which reduces to HC2 with one unit per
    cluster. CR2 never forms an ``n_g x n_g`` matrix: ``H_gg = Q_g B_g Q_g'`` through the thin QR
    of ``X_g``, so it costs ``O(n k^2 + G k^3)`` time, as cheap as CR1 up to a factor ``k``.
    """
    check_choice("se_type", se_type, SE_TYPES)
    if weights is not None:
        root = np.sqrt(np.asarray(weights, dtype=np.float64))
        X, y = X * root[:, None], y * root
    n, k = X.shape
    clustered = se_type in CLUSTER_TYPES
    if clustered and clusters is None:
        raise ValueError(f"se_type={se_type!r} needs cluster labels (cluster=...)")
    if not clustered and clusters is not None:
        raise ValueError(f"se_type={se_type!r} is not cluster-robust: use 'CR1' or 'CR2' with clusters")
    try:
        factor = linalg.cho_factor(X.T @ X)
    except linalg.LinAlgError as error:
        raise ValueError("the regression design is singular (collinear or constant columns)") from error
    beta = linalg.cho_solve(factor, X.T @ y)
    bread = linalg.cho_solve(factor, np.eye(k))
    residuals = y - X @ beta
    weights = X @ bread[:, column]  # a_i
    score = weights * residuals
    if clusters is not None:
        codes = cluster_codes(clusters, n=n)
        groups = int(codes.max()) + 1
        if se_type == "CR1":
            totals = np.bincount(codes, weights=score, minlength=groups)
            variance = groups / (groups - 1) * (n - 1) / (n - k) * float(totals @ totals)
        else:
            variance = _cr2_variance(X, bread, weights, residuals, codes, groups)
        return SandwichResult(float(beta[column]), math.sqrt(variance), se_type, groups)
    squares = score * score
    if se_type in ("HC2", "HC3"):
        leverage = np.einsum("ij,ij->i", X @ bread, X)
        if np.any(leverage >= 1.0 - 1e-12):
            raise ValueError(
                f"a unit has leverage 1 (it alone determines a coefficient): {se_type} is undefined"
            )
        squares /= (1.0 - leverage) if se_type == "HC2" else (1.0 - leverage) ** 2
    variance = float(squares.sum()) * (n / (n - k) if se_type == "HC1" else 1.0)
    return SandwichResult(float(beta[column]), math.sqrt(variance), se_type)


def _cr2_variance(
    X: FloatArray,
    bread: FloatArray,
    weights: FloatArray,
    residuals: FloatArray,
    codes: NDArray[np.int64],
    groups: int,
) -> float:
    """``sum_g (a_g' (I - H_gg)^{-1/2} e_g)^2`` by the thin QR of each cluster's rows."""
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=groups))])
    total = 0.0
    for g in range(groups):
        rows = order[bounds[g] : bounds[g + 1]]
        q, r = np.linalg.qr(X[rows])  # H_gg = Q (R M R') Q'
        eigen, vectors = np.linalg.eigh(r @ bread @ r.T)
        if np.any(eigen >= 1.0 - 1e-10):
            raise ValueError(
                f"cluster {g}: I - H_gg is singular (the cluster alone determines a coefficient, e.g. "
                "all treated units in one cluster): CR2 is undefined; use CR1"
            )
        basis = q @ vectors  # orthonormal columns spanning H_gg's range
        a, e = weights[rows], residuals[rows]
        scale = 1.0 / np.sqrt(1.0 - eigen) - 1.0  # (I - H)^{-1/2} = I + U diag(scale) U'
        value = float(a @ e) + float((basis.T @ a) @ (scale * (basis.T @ e)))
        total += value * value
    return total


def ols_design(
    design_values: FloatArray | None,
    treatment: NDArray[np.int64],
    *,
    method: str,
    weights: FloatArray | None = None,
) -> FloatArray:
    """The regression an OLS estimator fits, treatment second (coefficient 1 is the ATE).

    ``difference_in_means``: ``[1, d]``; ``regression_adjustment``: ``[1, d, x]``;
    ``lin_interacted``: ``[1, d, x - xbar, d (x - xbar)]`` (Lin 2013), as
    :mod:`assimilate.estimators.regression` builds them (``xbar`` weighted with ``weights``).
    """
    check_choice("method", method, OLS_METHODS)
    d = treatment.astype(np.float64)[:, None]
    columns = [np.ones_like(d), d]
    if method != "difference_in_means" and design_values is not None and design_values.shape[1]:
        x = design_values
        if method == "lin_interacted":
            x = x - (x.mean(axis=0) if weights is None else weights @ x / weights.sum())
            columns += [x, d * x]
        else:
            columns.append(x)
    return np.hstack(columns)


def with_standard_error(
    estimate: EffectEstimate,
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: Sequence[str] = (),
    cluster: str | ArrayLike | None = None,
    se_type: SEType | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    influence: InfluenceContributions | None = None,
    weights: ArrayLike | None = None,
    **options: Any,
) -> EffectEstimate:
    """``estimate`` with its standard error recomputed as ``se_type``: the point never moves.

    Parameters
    ----------
    estimate : EffectEstimate
        A built-in estimator's result on ``data`` (its ``method`` and ``estimand`` are read).
    data : DataFrame
        The batch the estimate came from.
    treatment, outcome : str
        Column names.
    covariates : sequence of str
        The estimator's covariates (ignored by the difference in means).
    cluster : str or array_like, optional
        A column of ``data`` holding cluster labels, or one label per row (e.g. from
        :func:`assimilate.estimators.duplicates.duplicate_unit_clusters`).
    se_type : {"HC0", "HC1", "HC2", "HC3", "CR1", "CR2"}, optional
        Default: ``"CR1"`` with ``cluster``, else the estimator's own SE (``DEFAULT_SE``: HC2,
        i.e. Welch, for the difference in means; HC3 for regression adjustment; the influence
        function's for IPW and AIPW). The HC types and CR2 need a hat matrix: they apply to the
        OLS estimators (``OLS_METHODS``); IPW, AIPW and Lin's ATT/ATC offer CR1, summed from
        their influence values.
    categories : mapping, optional
        Allowed levels of categorical covariates.
    influence : InfluenceContributions, optional
        The influence values of the fit that gave ``estimate`` (its ``estimate`` field is
        ``estimate``'s point): a CR1 SE summed from influence values uses them instead of running
        the estimator again, so no nuisance model is refitted. The OLS types do not need them.
    weights : array_like, optional
        The sampling weights ``estimate`` was computed with (one per row): the OLS types are those
        of the weighted least-squares fit, the influence values those of the weighted estimator.
    **options
        The estimator's options (``policy``, ``bounds``, ``n_folds``, ``rng``, ...): the same as for
        ``estimate``, so that the influence values are those of the same fit (without ``influence``).

    Returns
    -------
    EffectEstimate
        ``dataclasses.replace(estimate, std_error=..., se_method=se_type.lower(), diagnostics=...)``
        with ``diagnostics["standard_error"] = {"se_type", "cluster", "n_clusters", "df",
        "replaced_se_method"}``; ``df = G - 1`` when clustered (the interval of
        :func:`t_conf_int`), None for the normal interval.

    Raises
    ------
    ValueError
        A type the estimator does not offer, ``CR`` without clusters, ``HC`` with clusters, or
        influence values whose point differs from ``estimate`` (other data or options).
    """
    if se_type is not None:
        check_choice("se_type", se_type, SE_TYPES)
    method = check_choice("method", estimate.method, INFLUENCE_METHODS)
    if isinstance(cluster, str) and cluster not in data.columns:
        raise ValueError(f"cluster column {cluster!r} not in the data (columns: {list(data.columns)})")
    labels = data[cluster] if isinstance(cluster, str) else cluster
    ols = estimate.method in OLS_METHODS and (estimate.estimand == "ATE" or method != "lin_interacted")
    ols = ols and estimate.se_method != "hc3_with_covariate_means"  # a weighted Lin ATE, as its ATT
    chosen = se_type or ("CR1" if labels is not None else DEFAULT_SE[method] if ols else None)
    if chosen is None:  # influence-function SE, unclustered: the estimator's own stands
        return _replaced(estimate, estimate.std_error, estimate.se_method, None, cluster)
    if not ols and chosen != "CR1":
        raise ValueError(
            f"se_type={chosen!r} needs the hat matrix of an OLS fit: {estimate.method} "
            f"({estimate.estimand}) offers its own influence-function SE (se_type=None) and 'CR1'"
        )
    if ols:
        if options:
            raise TypeError(f"{estimate.method} takes no options, got {sorted(options)}")
        arrays = batch_arrays(
            data,
            treatment=treatment,
            outcome=outcome,
            covariates=() if estimate.method == "difference_in_means" else covariates,
            categories=categories,
        )
        w = sampling_weights(weights, len(arrays.outcome))
        X = ols_design(arrays.design.without_intercept(), arrays.treatment, method=estimate.method, weights=w)
        fit = ols_standard_error(X, arrays.outcome, column=1, se_type=chosen, clusters=labels, weights=w)
        _check_point(estimate, fit.coefficient)
        return _replaced(estimate, fit.std_error, chosen, fit.n_clusters, cluster)
    if labels is None:
        raise ValueError("se_type='CR1' needs cluster labels (cluster=...)")
    if influence is None:
        if estimate.estimand != "ATE":
            options = {"estimand": estimate.estimand, **options}
        influence = influence_contributions(
            data,
            method=method,
            treatment=treatment,
            outcome=outcome,
            covariates=covariates,
            categories=categories,
            weights=weights,
            **options,
        )
    elif options:
        raise TypeError(f"options {sorted(options)} would refit the estimator: influence= is that fit's")
    _check_point(estimate, influence.estimate.estimate)
    codes = cluster_codes(labels, n=influence.n)
    se = cluster_robust_standard_error(influence.values, codes)
    return _replaced(estimate, se, "CR1", int(codes.max()) + 1, cluster)


def t_conf_int(estimate: EffectEstimate, *, alpha: float = 0.05) -> tuple[float, float]:
    """The interval ``estimate ± t_{df, 1-alpha/2} SE`` with the df a clustered SE carries.

    ``df = G - 1`` after :func:`with_standard_error` with clusters; without a ``df`` the normal
    interval. The same as :meth:`EffectEstimate.conf_int`, which reads the df itself.
    """
    return estimate.conf_int(alpha)


def _check_point(estimate: EffectEstimate, recomputed: float) -> None:
    if abs(recomputed - estimate.estimate) > POINT_TOLERANCE * max(1.0, abs(estimate.estimate)):
        raise ValueError(
            f"the {estimate.method} estimate {estimate.estimate!r} is not the one these data and options "
            f"give ({recomputed!r}): pass the batch, covariates and options the estimate was computed with"
        )


def _replaced(
    estimate: EffectEstimate,
    std_error: float,
    se_type: str,
    n_clusters: int | None,
    cluster: str | ArrayLike | None,
) -> EffectEstimate:
    entry = {
        "se_type": se_type,
        "cluster": cluster if isinstance(cluster, str) else ("labels" if cluster is not None else None),
        "n_clusters": n_clusters,
        "df": None if n_clusters is None else n_clusters - 1,
        "replaced_se_method": estimate.se_method,
    }
    return replace(
        estimate,
        std_error=float(std_error),
        se_method=se_type.lower(),
        diagnostics={**estimate.diagnostics, "standard_error": entry},
    )
