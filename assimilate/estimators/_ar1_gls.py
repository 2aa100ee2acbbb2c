"""Regression with stationary AR(1) errors observed at irregular times, and Kenward-Roger inference.

Model: ``y = X beta + u``, ``Cov(u_i, u_j) = sigma^2 rho^|t_i - t_j|`` (an AR(1) process, or its
continuous-time Ornstein-Uhlenbeck form when times are not whole numbers, sampled at the observed
times). ``rho`` is estimated by restricted (REML) or full maximum likelihood on the exact
likelihood, ``beta`` by generalized least squares given ``rho``.

The likelihood is evaluated in O(n) by the innovations (whitening) transform of a Markov chain:
``z_1 = u_1`` and ``z_i = (u_i - rho^g_i u_{i-1}) / sqrt(1 - rho^(2 g_i))`` with ``g_i = t_i - t_{i-1}``
are independent ``N(0, sigma^2)``, and ``log det R = sum log(1 - rho^(2 g_i))``.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> t = np.arange(60.0)
>>> X = np.column_stack([np.ones(60), (t // 7) % 2])
>>> y = X @ [1.0, 0.5] + rng.normal(0, 1, 60)
>>> fit = fit_ar1_regression(y, X, t, method="reml")
>>> bool(abs(fit.coefficients[1] - 0.5) < 1)
True

Notes
-----
Kenward & Roger (1997), "Small sample inference for fixed effects from restricted maximum
likelihood", Biometrics 53(3): 983-997: the covariance of ``beta`` is inflated for the
uncertainty of the estimated ``(sigma^2, rho)`` and a contrast is referred to a t distribution
with Satterthwaite-type degrees of freedom.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, stats

from assimilate._validation import check_choice

FloatArray = NDArray[np.float64]
Likelihood = Literal["reml", "ml"]
RHO_LIMIT = 0.99
GRID_POINTS = 100


class AR1Fit(NamedTuple):
    """GLS coefficients under the fitted AR(1) error model."""

    coefficients: FloatArray
    covariance: FloatArray  # sigma^2 (X' R^-1 X)^-1 at the estimated rho
    rho: float
    sigma2: float  # marginal (stationary) variance of the errors
    log_likelihood: float
    method: Likelihood


class KenwardRoger(NamedTuple):
    """Kenward-Roger inference for one coefficient."""

    std_error: float  # sqrt of the adjusted variance
    df: float  # denominator degrees of freedom
    scale: float  # lambda: (estimate / std_error)^2 * scale ~ F(1, df)
    df_method: Literal["kenward_roger", "satterthwaite"]

    def half_width(self, alpha: float) -> float:
        """Half-width of the two-sided ``1 - alpha`` interval."""
        return float(stats.t.ppf(1.0 - alpha / 2.0, self.df)) * self.std_error / math.sqrt(self.scale)


def rho_bounds(times: FloatArray) -> tuple[float, float]:
    """``(-0.99, 0.99)`` for whole-number gaps; ``(0, 0.99)`` otherwise (``rho^g`` needs ``rho >= 0``)."""
    gaps = np.diff(times)
    whole = bool(np.all(gaps == np.round(gaps)))
    return (-RHO_LIMIT if whole else 0.0, RHO_LIMIT)


def _powers(rho: float | FloatArray, gaps: FloatArray) -> FloatArray:
    """``rho ** gaps`` (broadcast), with ``0 ** 0 = 1``."""
    return np.asarray(np.power(rho, gaps), dtype=np.float64)


def _profile(
    y: FloatArray, X: FloatArray, gaps: FloatArray, rho: float, method: Likelihood
) -> tuple[float, ...]:
    """Profile log-likelihood at ``rho`` with ``beta`` and ``sigma^2`` at their optimum."""
    r = _powers(rho, gaps)
    scale = np.sqrt(1.0 - r * r)
    yw = np.concatenate([y[:1], (y[1:] - r * y[:-1]) / scale])
    Xw = np.vstack([X[:1], (X[1:] - r[:, None] * X[:-1]) / scale[:, None]])
    q, upper = np.linalg.qr(Xw)
    beta = np.linalg.solve(upper, q.T @ yw)
    residual = yw - Xw @ beta
    rss = float(residual @ residual)
    n, p = X.shape
    log_det_r = float(2.0 * np.sum(np.log(scale)))
    if method == "ml":
        value = -0.5 * n * (math.log(2.0 * math.pi * rss / n) + 1.0) - 0.5 * log_det_r
    else:
        m = n - p
        log_det_x = float(2.0 * np.sum(np.log(np.abs(np.diag(upper)))))
        value = -0.5 * m * (math.log(2.0 * math.pi * rss / m) + 1.0) - 0.5 * log_det_r - 0.5 * log_det_x
    return (value, rss, *beta)


def _grid_profile(
    y: FloatArray, X: FloatArray, gaps: FloatArray, grid: FloatArray, method: Likelihood
) -> FloatArray:
    """The profile log-likelihood on a grid of ``rho`` values at once (normal equations)."""
    r = _powers(grid[:, None], gaps[None, :])
    scale = np.sqrt(1.0 - r * r)
    yw = np.concatenate([np.broadcast_to(y[:1], (len(grid), 1)), (y[1:] - r * y[:-1]) / scale], axis=1)
    head = np.broadcast_to(X[:1], (len(grid), 1, X.shape[1]))
    Xw = np.concatenate([head, (X[None, 1:] - r[..., None] * X[None, :-1]) / scale[..., None]], axis=1)
    gram = np.einsum("gni,gnj->gij", Xw, Xw)
    cross = np.einsum("gni,gn->gi", Xw, yw)
    beta = np.linalg.solve(gram, cross[..., None])[..., 0]
    rss = np.maximum(np.einsum("gn,gn->g", yw, yw) - np.einsum("gi,gi->g", cross, beta), 1e-300)
    n, p = X.shape
    log_det_r = 2.0 * np.sum(np.log(scale), axis=1)
    if method == "ml":
        return np.asarray(-0.5 * n * np.log(rss / n) - 0.5 * log_det_r, dtype=np.float64)
    m = n - p
    log_det_x = np.linalg.slogdet(gram)[1]
    return np.asarray(-0.5 * m * np.log(rss / m) - 0.5 * log_det_r - 0.5 * log_det_x, dtype=np.float64)


def fit_ar1_regression(
    y: FloatArray, X: FloatArray, times: FloatArray, *, method: Likelihood = "reml"
) -> AR1Fit:
    """Maximize the (restricted) likelihood over ``rho`` in :func:`rho_bounds`; GLS for ``beta``.

    A grid of 100 values locates the maximum, a bounded scalar search refines it (to 1e-10).
    """
    check_choice("method", method, ("reml", "ml"))
    gaps = np.diff(times)
    low, high = rho_bounds(times)
    grid = np.linspace(low, high, GRID_POINTS)
    best = int(np.argmax(_grid_profile(y, X, gaps, grid, method)))
    left, right = grid[max(best - 1, 0)], grid[min(best + 1, GRID_POINTS - 1)]
    search = optimize.minimize_scalar(
        lambda rho: -_profile(y, X, gaps, float(rho), method)[0],
        bounds=(left, right),
        method="bounded",
        options={"xatol": 1e-10},
    )
    rho = float(search.x)
    value, rss, *beta = _profile(y, X, gaps, rho, method)
    n, p = X.shape
    sigma2 = rss / (n - p if method == "reml" else n)
    r_inverse = _correlation_inverse(times, rho)
    covariance = sigma2 * np.linalg.inv(X.T @ r_inverse @ X)
    return AR1Fit(np.asarray(beta, dtype=np.float64), covariance, rho, sigma2, value, method)


def _correlation_inverse(times: FloatArray, rho: float) -> FloatArray:
    """``R^-1 = B' B`` with ``B`` the whitening transform (tridiagonal, built densely)."""
    n = len(times)
    r = _powers(rho, np.diff(times))
    scale = np.sqrt(1.0 - r * r)
    whitening = np.eye(n)
    rows = np.arange(1, n)
    whitening[rows, rows] = 1.0 / scale
    whitening[rows, rows - 1] = -r / scale
    return np.asarray(whitening.T @ whitening, dtype=np.float64)


def kenward_roger(fit: AR1Fit, X: FloatArray, times: FloatArray, *, coefficient: int) -> KenwardRoger:
    """Kenward-Roger adjusted standard error and degrees of freedom for one coefficient.

    The covariance parameters are ``theta = (sigma^2, rho)`` with ``Sigma = sigma^2 R(rho)``; the
    expected REML information, the first and second derivatives of ``Sigma`` enter as in
    Kenward & Roger (1997), equations (2)-(5) and their Section 4 for a single contrast.
    """
    sigma2, rho = fit.sigma2, fit.rho
    lag = np.abs(times[:, None] - times[None, :])
    correlation = _powers(rho, lag)
    d_rho = lag * _powers(rho, np.maximum(lag - 1.0, 0.0))
    d2_rho = lag * (lag - 1.0) * _powers(rho, np.maximum(lag - 2.0, 0.0))
    first = (correlation, sigma2 * d_rho)
    second = ((np.zeros_like(lag), d_rho), (d_rho, sigma2 * d2_rho))
    sigma_inverse = _correlation_inverse(times, rho) / sigma2
    phi = np.linalg.inv(X.T @ sigma_inverse @ X)
    sx = sigma_inverse @ X
    projection = sigma_inverse - sx @ phi @ sx.T
    pd_ = [projection @ d for d in first]
    information = np.array([[0.5 * np.sum(pd_[i] * pd_[j].T) for j in range(2)] for i in range(2)])
    w = np.linalg.inv(information)
    p_terms = [-(sx.T @ d @ sx) for d in first]
    d_sx = [d @ sx for d in first]
    inner = np.zeros_like(phi)
    for i in range(2):
        for j in range(2):
            q_ij = d_sx[i].T @ sigma_inverse @ d_sx[j]
            r_ij = sx.T @ second[i][j] @ sx
            inner += w[i, j] * (q_ij - p_terms[i] @ phi @ p_terms[j] - 0.25 * r_ij)
    phi_adjusted = phi + 2.0 * phi @ inner @ phi
    variance = float(phi_adjusted[coefficient, coefficient])
    theta = np.zeros_like(phi)
    theta[coefficient, coefficient] = 1.0 / variance
    m_terms = [theta @ phi @ p @ phi for p in p_terms]
    a1 = sum(w[i, j] * np.trace(m_terms[i]) * np.trace(m_terms[j]) for i in range(2) for j in range(2))
    a2 = sum(w[i, j] * np.trace(m_terms[i] @ m_terms[j]) for i in range(2) for j in range(2))
    try:
        return KenwardRoger(math.sqrt(variance), *_df_and_scale(float(a1), float(a2)), "kenward_roger")
    except ValueError:
        # Too few days for the moment match: Satterthwaite's df for the model variance (delta
        # method with the same W), on the adjusted standard error; never fewer than 1.
        gradient = np.array([-(phi @ p @ phi)[coefficient, coefficient] for p in p_terms])
        spread = float(gradient @ w @ gradient)
        model = float(phi[coefficient, coefficient])
        df = max(2.0 * model * model / spread, 1.0) if spread > 0 else math.inf
        return KenwardRoger(math.sqrt(variance), df, 1.0, "satterthwaite")


def _df_and_scale(a1: float, a2: float, rows: int = 1) -> tuple[float, float]:
    """Kenward & Roger's (1997) Section 4 moment matching for a contrast of ``rows`` rows.

    Raises ``ValueError`` when the approximate F statistic has no finite mean or variance (a
    handful of observations per covariance parameter): :func:`kenward_roger` then falls back to
    Satterthwaite's degrees of freedom.
    """
    ell = float(rows)
    b = (a1 + 6.0 * a2) / (2.0 * ell)
    g = ((ell + 1.0) * a1 - (ell + 4.0) * a2) / ((ell + 2.0) * a2) if a2 > 0 else 0.0
    denominator = 3.0 * ell + 2.0 * (1.0 - g)
    c1, c2, c3 = g / denominator, (ell - g) / denominator, (ell + 2.0 - g) / denominator
    variance_factor = (1.0 - c2 * b) ** 2 * (1.0 - c3 * b)
    if a2 >= ell or variance_factor <= 0.0:
        raise ValueError(
            "too few observations for Kenward-Roger inference: the covariance parameters are barely "
            "identified (use more days per batch)"
        )
    expectation = 1.0 / (1.0 - a2 / ell)
    variance = (2.0 / ell) * (1.0 + c1 * b) / variance_factor
    ratio = variance / (2.0 * expectation**2)
    if ell * ratio <= 1.0:  # the adjustment is negligible: the limit df -> infinity
        return math.inf, 1.0 / expectation
    df = 4.0 + (ell + 2.0) / (ell * ratio - 1.0)
    return df, df / (expectation * (df - 2.0))
