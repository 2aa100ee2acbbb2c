"""CUPED: the difference in means of the outcome adjusted by its pre-period value (Deng et al. 2013).

``y_adj_i = y_i - theta (x_i - mean(x))`` with ``theta = cov(y, x) / var(x)`` pooled over the arms
(the within-arm covariance and variance, summed over both arms), and ``tau_hat = mean(y_adj | d=1) -
mean(y_adj | d=0)`` with the Welch standard error of ``y_adj``. The adjustment removes the share of
the outcome's variance the pre-period value explains (``1 - rho^2``) and, the arms sharing one
``theta``, moves no expectation under randomization.

Pooling within the arms makes ``theta`` the slope of ``x`` in the OLS fit ``y ~ 1 + d + (x -
mean(x))``, so ``tau_hat`` is exactly that fit's coefficient of ``d``. Deng et al. estimate
``theta`` on the pooled sample ignoring the arms; the two differ by ``O(tau (mean(x|1) - mean(x|0)))``,
far below the standard error. The SE treats ``theta`` as known (as CUPED does): it is the
OLS HC2 SE up to ``O(1/n)`` (within 1% at 500 units per arm, 2% at 100;
tests/lib/test_custom_estimator.py).

Reference: Deng, Xu, Kohavi & Walker (2013), "Improving the sensitivity of online controlled
experiments by utilizing pre-experiment data", WSDM, section 3.

The study's first covariate is the pre-period outcome. The function keeps the contract of
``assimilate.estimators.custom``: it returns :class:`~assimilate.estimators.InfluenceContributions`,
so the pipeline can cluster its SE and fuse batches that share units.

Example
-------
>>> import numpy as np, pandas as pd
>>> frame = pd.DataFrame({"d": [0, 0, 0, 1, 1, 1], "x": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
...                       "y": [1.0, 2.5, 3.0, 2.0, 3.5, 4.0]})
>>> fit = estimate(frame, treatment="d", outcome="y", covariates=("x",), estimand="ATE",
...                rng=np.random.default_rng(0))
>>> round(fit.estimate.estimate, 6), round(fit.estimate.diagnostics["theta"], 6)
(1.0, 1.0)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from assimilate.estimators import EffectEstimate, InfluenceContributions


def estimate(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: tuple[str, ...],
    estimand: str,
    rng: np.random.Generator,
) -> InfluenceContributions:
    """The CUPED estimate of one batch, with each row's influence value.

    Parameters
    ----------
    data : DataFrame
        The batch's rows.
    treatment, outcome : str
        The 0/1 treatment column and the outcome column.
    covariates : tuple of str
        The study's covariates; the first is the pre-period outcome.
    estimand : str
        The study's estimand; under randomization the ATE, ATT and ATC are the same average.
    rng : numpy.random.Generator
        Unused (CUPED draws nothing).

    Returns
    -------
    InfluenceContributions
        ``psi_i = n r_i / sqrt(n_a (n_a - 1))`` (negative in the control arm), ``r_i`` the row's
        adjusted outcome minus its arm's mean, so ``sum psi^2 / n^2`` is the Welch variance.

    Raises
    ------
    ValueError
        No covariate, fewer than two units in an arm, or a constant pre-period value.
    """
    if not covariates:
        raise ValueError("CUPED needs the pre-period outcome as the study's first covariate")
    d = data[treatment].to_numpy(dtype=np.int64)
    y = data[outcome].to_numpy(dtype=float)
    x = data[covariates[0]].to_numpy(dtype=float)
    arms = [d == 0, d == 1]
    n0, n1 = (int(arm.sum()) for arm in arms)
    if min(n0, n1) < 2:
        raise ValueError(f"CUPED needs two units in each arm, got {n1} treated and {n0} control")
    x_within = np.where(arms[1], x - x[arms[1]].mean(), x - x[arms[0]].mean())
    y_within = np.where(arms[1], y - y[arms[1]].mean(), y - y[arms[0]].mean())
    sxx = float(x_within @ x_within)
    if sxx == 0.0:
        raise ValueError(f"CUPED needs a pre-period column {covariates[0]!r} that varies within the arms")
    theta = float(x_within @ y_within) / sxx
    adjusted = y - theta * (x - x.mean())
    means = [adjusted[arm].mean() for arm in arms]
    residual = adjusted - np.where(arms[1], means[1], means[0])
    n = len(y)
    scale = np.where(arms[1], n / math.sqrt(n1 * (n1 - 1)), -n / math.sqrt(n0 * (n0 - 1)))
    psi = scale * residual
    std_error = math.sqrt(float(psi @ psi)) / n
    variance_kept = float(residual @ residual) / float(y_within @ y_within) if y_within.any() else 1.0
    result = EffectEstimate(
        estimate=float(means[1] - means[0]),
        std_error=std_error,
        n_treated=n1,
        n_control=n0,
        method="cuped",
        se_method="welch_theta_known",
        estimand=estimand,  # type: ignore[arg-type]  # the plan's: ATE, ATT or ATC
        diagnostics={"theta": theta, "pre_period": covariates[0], "variance_reduction": 1.0 - variance_kept},
    )
    return InfluenceContributions(estimate=result, values=psi)
