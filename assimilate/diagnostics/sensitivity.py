"""Sensitivity to an unmeasured confounder: robustness values, benchmark bounds and the E-value.

Omitted-variable bias in partial-R² terms (Cinelli & Hazlett 2020, "Making sense of sensitivity",
JRSS-B 82(1)): for the regression ``Y ~ D + X`` and an omitted ``Z``,

    |bias| = se(τ̂) · √dof · √(R²_{Y~Z|D,X} · R²_{D~Z|X} / (1 − R²_{D~Z|X})),

an identity in the sample. The robustness value RV_q is the strength (the same partial R² with
the treatment and with the outcome) a confounder needs to move the estimate by ``q`` of itself;
RV_{q,α} to make the ``1 − α`` interval reach that point. Benchmarks bound a confounder ``k``
times as strong as an observed covariate (their §6.2). For risk ratios, the E-value (VanderWeele &
Ding 2017, Ann. Intern. Med. 167(4)): the risk-ratio association with both treatment and outcome
that an unmeasured confounder needs to explain the association away.

Example
-------
>>> round(robustness_value(4.18445, 783), 4)  # Cinelli & Hazlett's Darfur estimate: 13.9%
0.1388
>>> round(e_value(3.9), 2)  # VanderWeele & Ding's breastfeeding example
7.26
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from assimilate._validation import check_alpha
from assimilate.estimators import passes


def partial_r2(t_statistic: float, dof: int) -> float:
    """Partial R² of the treatment with the outcome given the covariates: t² / (t² + dof)."""
    return t_statistic**2 / (t_statistic**2 + dof)


def robustness_value(t_statistic: float, dof: int, *, q: float = 1.0, alpha: float | None = None) -> float:
    """Robustness value RV_q (``alpha=None``) or RV_{q,α} of a regression coefficient.

    Parameters
    ----------
    t_statistic : float
        The coefficient's t-statistic in ``Y ~ D + X``.
    dof : int
        Residual degrees of freedom of that regression.
    q : float
        Share of the estimate the confounder must remove (1: bring it to zero).
    alpha : float, optional
        With ``alpha``, the strength needed so that the ``1 - alpha`` interval reaches the point.

    Returns
    -------
    float
        The partial R² (with treatment and with outcome alike) a confounder needs, in [0, 1].
    """
    if q <= 0:
        raise ValueError(f"q must be > 0, got {q!r}")
    if dof < 2:
        raise ValueError(f"dof must be >= 2, got {dof!r}")
    f_q = q * abs(t_statistic) / math.sqrt(dof)
    if alpha is None:
        return 0.5 * (math.sqrt(f_q**4 + 4 * f_q**2) - f_q**2)
    check_alpha(alpha)
    f_crit = abs(float(stats.t.ppf(alpha / 2, dof - 1))) / math.sqrt(dof - 1)
    f_qa = f_q - f_crit
    if f_qa <= 0:
        return 0.0
    if f_q > 1 / f_crit:  # the constraint R² <= 1 binds on the outcome side (their appendix)
        return (f_q**2 - f_crit**2) / (1 + f_q**2)
    return 0.5 * (math.sqrt(f_qa**4 + 4 * f_qa**2) - f_qa**2)


def bias_bound(standard_error: float, dof: int, r2_dz_x: float, r2_yz_dx: float) -> float:
    """Largest |bias| a confounder with these partial R²s can cause (Cinelli & Hazlett eq. 11)."""
    if not (0 <= r2_dz_x < 1 and 0 <= r2_yz_dx <= 1):
        raise ValueError(
            f"partial R² must be in [0, 1) (treatment) and [0, 1] (outcome), got {r2_dz_x}, {r2_yz_dx}"
        )
    return standard_error * math.sqrt(dof) * math.sqrt(r2_yz_dx * r2_dz_x / (1 - r2_dz_x))


@dataclass(frozen=True)
class Benchmark:
    """A confounder ``k_treatment`` / ``k_outcome`` times as strong as an observed covariate."""

    covariate: str
    k_treatment: float
    k_outcome: float
    r2_dz_x: float
    r2_yz_dx: float
    adjusted_estimate: float
    adjusted_lower: float
    adjusted_upper: float

    @property
    def explains_away(self) -> bool:
        """Whether such a confounder would move the interval to include zero."""
        return self.adjusted_lower <= 0 <= self.adjusted_upper or self.adjusted_estimate == 0


@dataclass(frozen=True)
class SensitivityReport:
    """Sensitivity of a regression-adjusted effect to an unmeasured confounder.

    Attributes
    ----------
    estimate, standard_error : float
        The coefficient of the treatment in ``Y ~ D + X`` and its classical SE.
    dof : int
        Residual degrees of freedom.
    partial_r2 : float
        R²_{Y~D|X}: a confounder explaining all residual outcome variance needs at least this much
        of the treatment's residual variance to explain the effect away.
    robustness_value, robustness_value_alpha : float
        RV_q and RV_{q,α}.
    q, alpha : float
        As given.
    benchmarks : tuple of Benchmark
        Bounds from the observed covariates.
    """

    estimate: float
    standard_error: float
    dof: int
    partial_r2: float
    robustness_value: float
    robustness_value_alpha: float
    q: float
    alpha: float
    benchmarks: tuple[Benchmark, ...]

    def sentence(self) -> str:
        """One sentence for a memo: how strong a confounder would have to be."""
        text = (
            f"An unmeasured confounder would have to explain {self.robustness_value:.1%} of the residual "
            f"variance of both the treatment and the outcome to bring the estimate to zero, and "
            f"{self.robustness_value_alpha:.1%} to bring its {1 - self.alpha:.0%} interval to zero."
        )
        strongest = [b for b in self.benchmarks if b.k_treatment == b.k_outcome == 1]
        for bench in strongest:
            verdict = "would" if bench.explains_away else "would not"
            text += f" A confounder as strong as {bench.covariate} {verdict} explain it away."
        return text


class _CrossProducts:
    """Residual sums of squares of any column on any others, from the columns' Gram matrix.

    The Gram matrix is scaled to unit diagonal (columns of unit norm), so the small solves stay
    well conditioned; each benchmark then costs a k x k solve, not a refit on n rows.
    """

    def __init__(self, gram: NDArray[np.float64]) -> None:
        norms = np.sqrt(np.diag(gram))
        self.scale = np.where(norms > 0, norms, 1.0)
        self.gram = gram / np.outer(self.scale, self.scale)

    def residual_ss(self, target: int, predictors: list[int]) -> float:
        gram = self.gram
        coef, *_ = np.linalg.lstsq(gram[np.ix_(predictors, predictors)], gram[predictors, target], rcond=None)
        explained = float(gram[target, predictors] @ coef)
        return max(float(gram[target, target]) - explained, 0.0) * float(self.scale[target]) ** 2

    def partial_r2(self, target: int, predictors: list[int], group: list[int]) -> float:
        """Partial R² of ``group`` (among ``predictors``): the share of the residual SS it removes."""
        restricted = self.residual_ss(target, [j for j in predictors if j not in group])
        full = self.residual_ss(target, predictors)
        return (restricted - full) / restricted if restricted > 0 else 0.0


def sensitivity_analysis(
    data: pd.DataFrame,
    *,
    treatment: str,
    outcome: str,
    covariates: Sequence[str],
    benchmark_covariates: Sequence[str] | None = None,
    multiples: Sequence[float] = (1.0, 2.0, 3.0),
    categories: Mapping[str, Sequence[str]] | None = None,
    q: float = 1.0,
    alpha: float = 0.05,
) -> SensitivityReport:
    """Robustness values and benchmark bounds of the treatment coefficient in ``Y ~ D + X``.

    Parameters
    ----------
    data : DataFrame
        One row per unit.
    treatment, outcome : str
        Column names (treatment 0/1 or numeric).
    covariates : sequence of str
        The adjustment set (categorical columns are one-hot encoded; a benchmark on such a column
        uses the partial R² of all its levels together).
    benchmark_covariates : sequence of str, optional
        Covariates to benchmark against (default: every covariate).
    multiples : sequence of float
        Multiples k of each benchmark's strength (same k with the treatment and the outcome).
    categories : mapping, optional
        Levels of categorical covariates, as for the estimators.
    q, alpha : float
        See :func:`robustness_value`.

    Returns
    -------
    SensitivityReport
    """
    from assimilate.estimators.design_matrix import (
        encode_covariates,
    )  # lazy: the estimators import diagnostics

    check_alpha(alpha)
    encoded = encode_covariates(data, covariates, categories=categories)
    d = data[treatment].to_numpy(dtype=float)
    y = data[outcome].to_numpy(dtype=float)
    columns = np.column_stack([d, encoded.values, y])  # one pass over them gives every cross-product
    design = columns[:, :-1]
    n, k = design.shape
    dof = n - k
    if dof < 3:
        raise ValueError(f"too few units for a sensitivity analysis: {n} rows for {k} coefficients")
    gram = passes.gram(columns)
    gram_inv = np.linalg.pinv(gram[:k, :k])
    coef = gram_inv @ gram[:k, k]
    resid = y - passes.times(design, coef)
    coef += gram_inv @ passes.transpose_times(design, resid)  # one refinement step: least squares' accuracy
    resid = y - passes.times(design, coef)
    se = math.sqrt(float(resid @ resid) / dof * gram_inv[0, 0])
    estimate = float(coef[0])
    t_stat = estimate / se
    t_crit = float(stats.t.ppf(1 - alpha / 2, dof - 1))
    benchmarks = []
    products = _CrossProducts(gram)  # columns: d, covariates..., y
    covariate_columns = list(range(1, k))
    for name in covariates if benchmark_covariates is None else benchmark_covariates:
        group = [
            1 + j
            for j, column in enumerate(encoded.columns)
            if column == name or column.startswith(f"{name}[")
        ]
        if not group:
            raise ValueError(f"benchmark covariate {name!r} is not among the covariates {list(covariates)}")
        r2_dxj = products.partial_r2(0, covariate_columns, group)  # the treatment on the covariates
        r2_yxj = products.partial_r2(k, [0, *covariate_columns], group)  # the outcome on all of them
        for k_mult in multiples:
            r2_dz = k_mult * r2_dxj / (1 - r2_dxj)
            if r2_dz >= 1:
                continue  # a confounder that strong cannot exist given this covariate
            r2_zxj = k_mult * r2_dxj**2 / ((1 - k_mult * r2_dxj) * (1 - r2_dxj))
            if r2_zxj >= 1:
                continue
            r2_yz = min(
                1.0,
                ((math.sqrt(k_mult) + math.sqrt(r2_zxj)) / math.sqrt(1 - r2_zxj)) ** 2
                * r2_yxj
                / (1 - r2_yxj),
            )
            bias = bias_bound(se, dof, r2_dz, r2_yz)
            # The bias pulls toward zero and past it when larger than the estimate (sensemakr's bound).
            adjusted = (1.0 if estimate >= 0 else -1.0) * (abs(estimate) - bias)
            adjusted_se = se * math.sqrt((1 - r2_yz) / (1 - r2_dz)) * math.sqrt(dof / (dof - 1))
            benchmarks.append(
                Benchmark(
                    name,
                    k_mult,
                    k_mult,
                    r2_dz,
                    r2_yz,
                    adjusted,
                    adjusted - t_crit * adjusted_se,
                    adjusted + t_crit * adjusted_se,
                )
            )
    return SensitivityReport(
        estimate=estimate,
        standard_error=se,
        dof=dof,
        partial_r2=partial_r2(t_stat, dof),
        robustness_value=robustness_value(t_stat, dof, q=q),
        robustness_value_alpha=robustness_value(t_stat, dof, q=q, alpha=alpha),
        q=q,
        alpha=alpha,
        benchmarks=tuple(benchmarks),
    )


def e_value(risk_ratio: float) -> float:
    """E-value of a risk ratio (VanderWeele & Ding 2017): RR + √(RR (RR − 1)), with RR ≥ 1 by symmetry.

    Of an interval, pass the limit closest to 1 (an interval covering 1 has E-value 1).
    """
    if not (risk_ratio > 0 and math.isfinite(risk_ratio)):
        raise ValueError(f"risk_ratio must be finite and > 0, got {risk_ratio!r}")
    rr = risk_ratio if risk_ratio >= 1 else 1 / risk_ratio
    return rr + math.sqrt(rr * (rr - 1))


def risk_ratio_from_difference(baseline_risk: float, risk_difference: float) -> float:
    """The risk ratio (p0 + RD) / p0 of a binary outcome's risk difference, given the control risk p0."""
    if not 0 < baseline_risk < 1:
        raise ValueError(f"baseline_risk must be in (0, 1), got {baseline_risk!r}")
    treated = baseline_risk + risk_difference
    if not 0 < treated < 1:
        raise ValueError(f"baseline_risk + risk_difference must be in (0, 1), got {treated!r}")
    return treated / baseline_risk


__all__ = [
    "Benchmark",
    "SensitivityReport",
    "bias_bound",
    "e_value",
    "partial_r2",
    "risk_ratio_from_difference",
    "robustness_value",
    "sensitivity_analysis",
]
