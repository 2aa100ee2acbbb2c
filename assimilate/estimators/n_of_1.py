"""N-of-1 trials: one subject's treatment effect from an autocorrelated daily series.

A single person alternates treatment (``d = 1``) and control (``d = 0``) in randomized blocks
(e.g. a week each, the order within each pair of blocks drawn at random) and records an outcome
every day. After a switch the previous treatment lingers (carry-over), so the first ``washout``
days of every block are dropped, and the effect is the coefficient of ``d`` in

``y_t = mu + tau d_t [+ beta t] [+ x_t' gamma] + u_t``,  ``Cov(u_s, u_t) = sigma^2 rho^|s - t|``,

fitted by generalized least squares with the AR(1) parameter estimated by REML, and a
Kenward-Roger interval (default ``se_method="ar1_kenward_roger"``). Day-to-day outcomes of one
person are autocorrelated: the ordinary (iid) standard error then undercovers badly (about 71%
at rho = 0.7 with weekly blocks, against 94-95% for this one; see ``simulations/n_of_1.py``).

Example
-------
>>> import numpy as np
>>> from assimilate.simulate import simulate_n_of_1_stream
>>> stream = simulate_n_of_1_stream(rng=np.random.default_rng(0), n_batches=1, rho=0.5)
>>> est = n_of_1(stream.batches[0], treatment="treatment", outcome="outcome", time="date", washout=2)
>>> est.method, est.se_method, est.n, est.diagnostics["n_switches"]
('n_of_1', 'ar1_kenward_roger', 42, 6)

Notes
-----
``std_error`` is the half-width of the Kenward-Roger t interval at level ``1 - alpha`` divided by
``z_{1-alpha/2}``: the normal interval every consumer draws (``EffectEstimate.conf_int(alpha)``,
the fan chart, the Kalman fusion) is then the small-sample interval (Kenward & Roger, 1997,
Biometrics 53: 983-997; REML with Kenward-Roger for single-case series as recommended by Ferron,
Bell, Hess, Rendina-Gobioff & Hibbard, 2009, Behavior Research Methods 41: 372-384). The model
standard error, the adjusted one, the degrees of freedom and ``rho`` are in ``diagnostics``.

Fusing batches: a filter weights each batch by its estimated precision as if it were known. With
a few weeks of strongly autocorrelated days the standard error is itself uncertain (the
Kenward-Roger df is in ``diagnostics``) and the fused interval undercovers: at rho = 0.7, 0.94
with 16-week batches, 0.92 with 8-week and 0.85 with 4-week batches (``simulations/n_of_1.py``).
``fusion_correction=True`` carries the Kenward-Roger df into the fusion: the standard error is
multiplied by ``sqrt(1 + 4 / df)``, the many-batch form of Meier's (1953, "Variance of a weighted
mean", Biometrics 9: 59-73) factor ``1 + 4 sum_b w_b (1 - w_b) / df_b`` for a mean weighted by
estimated precisions. Fused over a year of monthly batches (weekly blocks, 2-day washout) the
interval then covers 0.945-0.966 up to rho = 0.7 (0.86-0.93 without); one batch alone is
conservative (about 0.98). The Kenward-Roger standard error stays in ``diagnostics``.

``se_method="hac"`` is OLS with the Newey-West (1987) Bartlett-kernel standard error over the kept
days in order, with ``floor(4 (n / 100)^(2/9))`` lags (the Newey & West, 1994, rule);
``se_method="iid"`` is the ordinary OLS standard error. Both are for comparison: neither keeps
its coverage at rho = 0.7 in batches of a few weeks.

Washout rule: a block starts at its first observed day; a day is dropped when it lies less than
``washout`` days after its block's start. With ``washout_at_start=True`` (default) the batch's
first block is treated the same way, because the treatment before the batch is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from assimilate._validation import check_alpha, check_choice, check_non_negative
from assimilate.estimators._ar1_gls import fit_ar1_regression, kenward_roger
from assimilate.estimators._inputs import check_arms
from assimilate.estimators.design_matrix import encode_covariates
from assimilate.estimators.models import as_binary
from assimilate.estimators.result import EffectEstimate

FloatArray = NDArray[np.float64]
SEMethod = Literal["ar1_kenward_roger", "hac", "iid"]
SE_METHODS: tuple[SEMethod, ...] = ("ar1_kenward_roger", "hac", "iid")
EFFECT = 1  # column of d in the design
MIN_RESIDUAL_DF = 3


def newey_west_lags(n: int) -> int:
    """``floor(4 (n / 100)^(2/9))``: the Newey & West (1994) rule for the Bartlett kernel."""
    return int(4.0 * (n / 100.0) ** (2.0 / 9.0))  # floor: the value is positive


def days_since_start(values: ArrayLike, *, name: str = "time") -> FloatArray:
    """Times as days: dates (or date strings) as days since the earliest, numbers as they are."""
    series = pd.Series(np.asarray(values))
    if pd.api.types.is_datetime64_any_dtype(series) or series.dtype == object:
        try:
            dates = pd.to_datetime(series)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must hold dates or numbers of days: {error}") from error
        if dates.isna().any():
            raise ValueError(f"{name}: {int(dates.isna().sum())} missing date(s)")
        return np.asarray((dates - dates.min()) / pd.Timedelta(days=1), dtype=np.float64)
    days = series.to_numpy(dtype=np.float64)
    if not np.isfinite(days).all():
        raise ValueError(f"{name}: {int((~np.isfinite(days)).sum())} missing or non-finite time(s)")
    return days


def washout_mask(
    treatment: ArrayLike, time: ArrayLike, *, washout: float, washout_at_start: bool = True
) -> NDArray[np.bool_]:
    """Which days to keep: those at least ``washout`` days after their block's first day.

    Parameters
    ----------
    treatment : array_like
        0/1 treatment per day, in time order.
    time : array_like
        Days (increasing).
    washout : float
        Days of carry-over to drop after every switch (0 keeps every day).
    washout_at_start : bool
        Also drop the first ``washout`` days of the first block (the treatment before is unknown).

    Returns
    -------
    ndarray of bool
        True for the days that enter the estimate.
    """
    d = np.asarray(treatment)
    t = np.asarray(time, dtype=np.float64)
    check_non_negative("washout", washout)
    block = np.concatenate([[0], np.cumsum(d[1:] != d[:-1])])
    starts = t[np.concatenate([[0], np.flatnonzero(d[1:] != d[:-1]) + 1])]
    keep = t - starts[block] >= washout
    if not washout_at_start:
        keep |= block == 0
    return np.asarray(keep, dtype=np.bool_)


def n_of_1(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    time: str,
    washout: float = 0.0,
    covariates: Sequence[str] = (),
    trend: bool = False,
    se_method: SEMethod = "ar1_kenward_roger",
    alpha: float = 0.05,
    washout_at_start: bool = True,
    fusion_correction: bool = False,
) -> EffectEstimate:
    """The treatment effect in one subject's N-of-1 trial (one batch of days).

    Parameters
    ----------
    data : DataFrame
        One row per day of one subject (days without a measurement are simply absent).
    treatment : str
        0/1 treatment column (alternating blocks).
    outcome : str
        Outcome column (numeric, finite).
    time : str
        Day of each row: dates, date strings or numbers of days (need not be sorted or contiguous).
    washout : float
        Carry-over in days: the first ``washout`` days of every block are dropped.
    covariates : sequence of str
        Extra day-level regressors (e.g. a weekday), one-hot encoded when categorical.
    trend : bool
        Add a linear time trend (a slow drift of the subject's baseline).
    se_method : {"ar1_kenward_roger", "hac", "iid"}
        AR(1) errors by REML with a Kenward-Roger interval (default), OLS with Newey-West, or
        ordinary OLS (see the module notes).
    alpha : float
        The level ``1 - alpha`` at which the normal interval of the result equals the
        Kenward-Roger interval.
    washout_at_start : bool
        Drop the first ``washout`` days of the batch too (the treatment before it is unknown).
    fusion_correction : bool
        Widen the standard error by ``sqrt(1 + 4 / df)`` for fusing many batches (module notes);
        only with ``se_method="ar1_kenward_roger"``.

    Returns
    -------
    EffectEstimate
        ``method="n_of_1"``; ``n_treated``/``n_control`` count kept days; ``diagnostics`` hold
        ``rho``, ``sigma``, the degrees of freedom, the days dropped and the number of switches.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    for role, column in (("treatment", treatment), ("outcome", outcome), ("time", time)):
        if column not in data.columns:
            raise ValueError(f"{role} column {column!r} not in the data (columns: {list(data.columns)})")
    if data.empty:
        raise ValueError("data is empty: the batch has no days")
    design = encode_covariates(data, list(covariates), intercept=False) if covariates else None
    try:
        y = data[outcome].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"outcome column {outcome!r} must be numeric: {error}") from error
    return n_of_1_from_arrays(
        y,
        as_binary(f"treatment column {treatment!r}", data[treatment].to_numpy()),
        days_since_start(data[time].to_numpy(), name=f"time column {time!r}"),
        covariates=None if design is None else design.values,
        covariate_names=() if design is None else design.columns,
        washout=washout,
        trend=trend,
        se_method=se_method,
        alpha=alpha,
        washout_at_start=washout_at_start,
        outcome_name=outcome,
        fusion_correction=fusion_correction,
    )


def n_of_1_from_arrays(
    outcome: ArrayLike,
    treatment: ArrayLike,
    time: ArrayLike,
    *,
    covariates: ArrayLike | None = None,
    covariate_names: Sequence[str] = (),
    washout: float = 0.0,
    trend: bool = False,
    se_method: SEMethod = "ar1_kenward_roger",
    alpha: float = 0.05,
    washout_at_start: bool = True,
    outcome_name: str = "outcome",
    fusion_correction: bool = False,
) -> EffectEstimate:
    """:func:`n_of_1` on arrays: outcome, 0/1 treatment and days (any order), optional covariates."""
    check_choice("se_method", se_method, SE_METHODS)
    check_alpha(alpha)
    check_non_negative("washout", washout)
    if fusion_correction and se_method != "ar1_kenward_roger":
        raise ValueError("fusion_correction needs se_method='ar1_kenward_roger' (its degrees of freedom)")
    y = np.asarray(outcome, dtype=np.float64)
    d = as_binary("treatment", treatment)
    t = np.asarray(time, dtype=np.float64)
    extra = np.empty((len(y), 0)) if covariates is None else np.asarray(covariates, dtype=np.float64)
    extra = extra.reshape(len(y), -1)
    if not (len(d) == len(t) == len(y)):
        raise ValueError(
            f"outcome, treatment and time must have one entry per day, got {len(y)}, {len(d)}, {len(t)}"
        )
    if not np.isfinite(y).all():
        raise ValueError(
            f"outcome column {outcome_name!r}: {int((~np.isfinite(y)).sum())} missing or non-finite value(s); "
            "drop days without a measurement (gaps in time are handled)"
        )
    order = np.argsort(t, kind="stable")
    y, d, t, extra = y[order], d[order], t[order], extra[order]
    if np.any(np.diff(t) == 0):
        raise ValueError("time: two rows share a day; an N-of-1 batch has one measurement per day")
    keep = washout_mask(d, t, washout=washout, washout_at_start=washout_at_start)
    n_treated, n_control = check_arms(d[keep], column="treatment (days kept after the washout)")
    columns = [np.ones(int(keep.sum())), d[keep].astype(np.float64)]
    names = ["intercept", "treatment"]
    if trend:
        days = t[keep]
        columns.append((days - days.mean()) / max(float(np.std(days)), 1.0))
        names.append("trend")
    X = np.column_stack([*columns, extra[keep]])
    names += [str(n) for n in covariate_names] or [f"x{i}" for i in range(extra.shape[1])]
    _check_design(X, names)
    yk, tk = y[keep], t[keep]
    diagnostics: dict[str, Any] = {
        "n_days": len(y),
        "n_washout_dropped": int((~keep).sum()),
        "n_switches": int(np.sum(d[1:] != d[:-1])),
        "washout_days": float(washout),
        "trend": bool(trend),
    }
    if se_method == "ar1_kenward_roger":
        estimate, std_error, details = _ar1_kenward_roger(yk, X, tk, alpha)
        if fusion_correction:
            # A precision estimated on df degrees of freedom: without this a fused mean over-weights
            # the batches whose error is understated (module notes).
            details["fusion_variance_factor"] = 1.0 + 4.0 / details["kenward_roger_df"]
            details["kenward_roger_std_error"] = std_error
            std_error *= math.sqrt(details["fusion_variance_factor"])
    else:
        estimate, std_error, details = _ols(yk, X, se_method)
    if trend:
        details["trend_per_day"] = details.pop("trend_coefficient") / max(float(np.std(tk)), 1.0)
    else:
        details.pop("trend_coefficient", None)
    return EffectEstimate(
        estimate=estimate,
        std_error=std_error,
        n_treated=n_treated,
        n_control=n_control,
        method="n_of_1",
        se_method=se_method,
        diagnostics=diagnostics | details,
    )


def _check_design(X: FloatArray, names: list[str]) -> None:
    n, p = X.shape
    if n - p < MIN_RESIDUAL_DF:
        raise ValueError(
            f"{n} days kept after the washout for {p} coefficients ({', '.join(names)}): at least "
            f"{p + MIN_RESIDUAL_DF} are needed"
        )
    if np.linalg.matrix_rank(X) < p:
        raise ValueError(
            f"the regressors ({', '.join(names)}) are collinear on the days kept: drop a covariate or the trend"
        )


def _ar1_kenward_roger(
    y: FloatArray, X: FloatArray, t: FloatArray, alpha: float
) -> tuple[float, float, dict[str, Any]]:
    fit = fit_ar1_regression(y, X, t, method="reml")
    kr = kenward_roger(fit, X, t, coefficient=EFFECT)
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    details = {
        "rho": fit.rho,
        "sigma": math.sqrt(fit.sigma2),
        "model_std_error": math.sqrt(float(fit.covariance[EFFECT, EFFECT])),
        "adjusted_std_error": kr.std_error,
        "kenward_roger_df": kr.df,
        "kenward_roger_scale": kr.scale,
        "df_method": kr.df_method,
        "interval_alpha": alpha,
        "trend_coefficient": float(fit.coefficients[2]) if X.shape[1] > 2 else math.nan,
    }
    return float(fit.coefficients[EFFECT]), kr.half_width(alpha) / z, details


def _ols(y: FloatArray, X: FloatArray, se_method: SEMethod) -> tuple[float, float, dict[str, Any]]:
    n, p = X.shape
    q, upper = np.linalg.qr(X)
    beta = np.linalg.solve(upper, q.T @ y)
    residual = y - X @ beta
    bread = np.linalg.inv(X.T @ X)
    details: dict[str, Any] = {"trend_coefficient": float(beta[2]) if p > 2 else math.nan}
    if se_method == "iid":
        variance = float(residual @ residual) / (n - p) * bread[EFFECT, EFFECT]
    else:
        lags = newey_west_lags(n)
        scores = X * residual[:, None]
        meat = scores.T @ scores
        for lag in range(1, lags + 1):
            gamma = scores[lag:].T @ scores[:-lag]
            meat += (1.0 - lag / (lags + 1.0)) * (gamma + gamma.T)
        variance = float((bread @ meat @ bread)[EFFECT, EFFECT])
        details["hac_lags"] = lags
    return float(beta[EFFECT]), math.sqrt(variance), details
