"""The exact filter of the hierarchical segment model, run for a grid of between-segment variances at once.

State ``x_t = (mu_t, delta_1t .. delta_St)``; segment effect ``theta_st = mu_t + delta_st``;
``x_t = x_{t-1} + w_t``, ``w_t ~ N(0, diag(q_common, q_segment, ..))``; ``delta_s0 ~ N(0, tau2)``;
``y_st = theta_st + e_st``, ``e_st ~ N(0, se_st^2)``. The common mean ``mu_0 = beta`` is a
coefficient with prior ``N(prior_mean, prior_var)`` (``prior_var = inf``: flat) handled by the
augmented Kalman filter (de Jong 1991, "The diffuse Kalman filter", Ann. Statist. 19, 1073-1083):
the filter runs on the data with ``beta = 0`` and on the regressor column ``A`` (the effect of
``beta`` on the state), and ``beta``'s GLS posterior is accumulated from both innovations. The
gains do not depend on the data, so extra data columns are free: column ``1 + s`` carries the
indicator of segment ``s``'s observations, whose filtered value is the weight of segment ``s``'s
own estimates in its posterior mean.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from assimilate.filters.model import LOG_2PI

FloatArray = NDArray[np.float64]


class SegmentPass(NamedTuple):
    mean: FloatArray  # (G, T, S) filtered segment effects
    cov: FloatArray  # (G, T, S, S)
    common_mean: FloatArray  # (G, T)
    common_var: FloatArray  # (G, T)
    own_weight: FloatArray  # (G, T, S)
    log_likelihood: FloatArray  # (G, T): of the estimates up to t (restricted when prior_var is inf)


def segment_pass(
    y: FloatArray,
    se: FloatArray,
    tau2: FloatArray,
    *,
    common_process_var: float,
    segment_process_var: float,
    prior_mean: float,
    prior_var: float,
) -> SegmentPass:
    n_steps, n_seg = y.shape
    grid = len(tau2)
    dim, columns = n_seg + 1, n_seg + 1
    diffuse = math.isinf(prior_var)
    prior_precision = 0.0 if diffuse else 1.0 / prior_var
    a = np.zeros((grid, dim, columns))  # state means of the data columns, given beta = 0
    A = np.zeros((grid, dim))  # the regressor column: d state / d beta
    A[:, 0] = 1.0
    P = np.zeros((grid, dim, dim))
    P[:, np.arange(1, dim), np.arange(1, dim)] = tau2[:, None]
    q = np.array([common_process_var, *([segment_process_var] * n_seg)])
    su_A = np.zeros(grid)  # sum U' F^-1 U
    su_a = np.zeros((grid, columns))  # sum U' F^-1 u, per data column
    quad = np.zeros(grid)
    log_det = np.zeros(grid)
    n_used = 0
    loading = np.hstack([np.ones((n_seg, 1)), np.eye(n_seg)])  # theta = loading @ x
    out = SegmentPass(
        np.empty((grid, n_steps, n_seg)),
        np.empty((grid, n_steps, n_seg, n_seg)),
        np.empty((grid, n_steps)),
        np.empty((grid, n_steps)),
        np.empty((grid, n_steps, n_seg)),
        np.zeros((grid, n_steps)),
    )
    for t in range(n_steps):
        P[:, np.arange(dim), np.arange(dim)] += q
        observed = np.flatnonzero(np.isfinite(y[t]))
        k = len(observed)
        if k:
            rows = 1 + observed
            ZP = P[:, [0], :] + P[:, rows, :]  # (G, k, dim)
            F = ZP[:, :, [0]] + ZP[:, :, rows]
            F[:, np.arange(k), np.arange(k)] += se[t, observed] ** 2
            data = np.zeros((k, columns))
            data[:, 0] = y[t, observed]
            data[np.arange(k), rows] = 1.0
            u = data[None] - (a[:, [0], :] + a[:, rows, :])  # (G, k, C)
            U = A[:, [0]] + A[:, rows]  # (G, k)
            solved = np.linalg.solve(F, np.concatenate([ZP, u, U[:, :, None]], axis=2))
            gain_t = solved[:, :, :dim]  # F^-1 Z P: the gain's transpose
            Fu, FU = solved[:, :, dim : dim + columns], solved[:, :, -1]
            a = a + np.einsum("gki,gkc->gic", gain_t, u)
            A = A - np.einsum("gki,gk->gi", gain_t, U)
            P = P - np.einsum("gki,gkj->gij", ZP, gain_t)
            P = 0.5 * (P + np.swapaxes(P, 1, 2))
            su_A += np.einsum("gk,gk->g", U, FU)
            su_a += np.einsum("gk,gkc->gc", U, Fu)
            quad += np.einsum("gk,gk->g", u[:, :, 0], Fu[:, :, 0])
            log_det += np.linalg.slogdet(F)[1]
            n_used += k
        precision = prior_precision + su_A
        known = precision > 0
        safe = np.where(known, precision, 1.0)
        b = su_a / safe[:, None]
        b[:, 0] += prior_precision * prior_mean / safe
        b[~known, 0] = prior_mean
        x = a + A[:, :, None] * b[:, None, :]  # (G, dim, C)
        theta = np.einsum("si,gic->gsc", loading, x)
        out.mean[:, t] = theta[:, :, 0]
        out.own_weight[:, t] = np.diagonal(theta[:, :, 1:], axis1=1, axis2=2)
        out.common_mean[:, t] = x[:, 0, 0]
        cov = P + np.einsum("gi,gj->gij", A, A) / safe[:, None, None]
        out.cov[:, t] = np.einsum("si,gij,rj->gsr", loading, cov, loading)
        out.cov[~known, t] = math.inf  # a flat common mean and no estimate yet: nothing is known
        out.common_var[:, t] = np.where(known, cov[:, 0, 0], math.inf)
        if n_used and np.all(known):
            if diffuse:
                restricted = quad - su_a[:, 0] ** 2 / su_A + np.log(su_A)
                out.log_likelihood[:, t] = -0.5 * ((n_used - 1) * LOG_2PI + log_det + restricted)
            else:
                shifted = su_a[:, 0] + prior_precision * prior_mean
                marginal = (
                    quad
                    + prior_precision * prior_mean**2
                    - shifted**2 / precision
                    + np.log(precision * prior_var)
                )
                out.log_likelihood[:, t] = -0.5 * (n_used * LOG_2PI + log_det + marginal)
    return out
