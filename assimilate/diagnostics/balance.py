"""Covariate balance: standardized mean differences and variance ratios, before and after weighting.

``SMD_j = (mean_1j - mean_0j) / s_j`` with ``s_j`` the SD named by ``denominator``, computed on the
UNWEIGHTED sample (pooled: ``sqrt((s_1^2 + s_0^2) / 2)``, Austin 2009) so that before and after
weighting are on the same scale. Variance ratio: treated over control (weighted when weighted).

Example
-------
>>> import numpy as np
>>> report = balance_table(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1], names=["x"])
>>> round(report.max_abs_smd, 3)
2.828
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from assimilate._validation import check_choice, check_positive
from assimilate.diagnostics.verdict import Verdict

Denominator = Literal["pooled", "treated", "control"]
FloatArray = NDArray[np.float64]


def _binary(name: str, values: ArrayLike) -> NDArray[np.bool_]:
    array = np.asarray(values, dtype=np.float64)
    if not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(f"{name} must be 0 or 1 (binary)")
    return np.asarray(array == 1.0, dtype=np.bool_)


def covariate_matrix(
    covariates: pd.DataFrame | ArrayLike, names: Sequence[str] | None
) -> tuple[FloatArray, list[str]]:
    """Numeric matrix of the covariates; categorical columns become one 0/1 column per level."""
    if isinstance(covariates, pd.DataFrame):
        blocks, labels = [], []
        for column in covariates.columns:
            series = covariates[column]
            if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
                blocks.append(series.to_numpy(dtype=np.float64)[:, None])
                labels.append(str(column))
            else:
                text = series.astype(str)
                for level in sorted(text.unique()):
                    blocks.append((text == level).to_numpy(dtype=np.float64)[:, None])
                    labels.append(f"{column}[{level}]")
        matrix = np.hstack(blocks) if blocks else np.empty((len(covariates), 0))
        return matrix, labels
    matrix = np.asarray(covariates, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    labels = list(names) if names is not None else [f"x{j}" for j in range(matrix.shape[1])]
    if len(labels) != matrix.shape[1]:
        raise ValueError(f"names has {len(labels)} entries for {matrix.shape[1]} covariates")
    return matrix, labels


@dataclass(frozen=True)
class BalanceReport:
    """Per-covariate balance with the worst |SMD| and its verdict."""

    table: pd.DataFrame
    denominator: Denominator
    weighted: bool
    threshold: float
    verdict: Verdict

    @property
    def max_abs_smd(self) -> float:
        """Largest |SMD| over the covariates (NaN when undefined)."""
        values = self.table["smd"].abs()
        return float(values.max()) if values.notna().any() else float("nan")

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: covariate, mean_treated, mean_control, smd, variance_ratio."""
        return self.table.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (NaN as None)."""
        rows = [
            {
                key: (None if isinstance(value, float) and not np.isfinite(value) else value)
                for key, value in row.items()
            }
            for row in self.table.to_dict(orient="records")
        ]
        return {
            "denominator": self.denominator,
            "weighted": self.weighted,
            "threshold": self.threshold,
            "rows": rows,
            "verdict": self.verdict.to_dict(),
        }


def _weighted_moments(x: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray]:
    total = w.sum()
    mean = (w @ x) / total
    var = (w @ (x - mean) ** 2) / total
    return mean, var


def balance_table(
    covariates: pd.DataFrame | ArrayLike,
    treatment: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    threshold: float = 0.1,
    denominator: Denominator = "pooled",
    names: Sequence[str] | None = None,
) -> BalanceReport:
    """Standardized mean differences and variance ratios of the covariates.

    Parameters
    ----------
    covariates : DataFrame or array_like
        Covariates (categoricals: one row per level).
    treatment : array_like
        0/1 treatment.
    weights : array_like, optional
        Unit weights (e.g. inverse propensity); unweighted when None.
    threshold : float
        The verdict fails when max |SMD| exceeds it.
    denominator : {"pooled", "treated", "control"}
        Which unweighted SD standardizes the difference.
    names : sequence of str, optional
        Covariate names for array input.

    Returns
    -------
    BalanceReport
    """
    check_choice("denominator", denominator, ("pooled", "treated", "control"))
    check_positive("threshold", threshold)
    x, labels = covariate_matrix(covariates, names)
    d = _binary("treatment", treatment)
    if len(d) != x.shape[0]:
        raise ValueError(f"treatment has {len(d)} entries for {x.shape[0]} rows of covariates")
    w = np.ones(len(d)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != d.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() == 0:
        raise ValueError("weights must be finite, non-negative, not all zero, one per unit")
    rule = f"max |SMD| <= {threshold}"
    name = "balance"
    if min(int(d.sum()), int((~d).sum())) < 2 or w[d].sum() == 0 or w[~d].sum() == 0:
        table = pd.DataFrame(
            {
                "covariate": labels,
                "mean_treated": np.nan,
                "mean_control": np.nan,
                "smd": np.nan,
                "variance_ratio": np.nan,
            }
        )
        verdict = Verdict.undefined(
            name, threshold=threshold, rule=rule, reason="needs at least 2 units in each arm"
        )
        return BalanceReport(table, denominator, weights is not None, threshold, verdict)
    var1_raw = np.var(x[d], axis=0, ddof=1)
    var0_raw = np.var(x[~d], axis=0, ddof=1)
    scale = {
        "pooled": np.sqrt((var1_raw + var0_raw) / 2),
        "treated": np.sqrt(var1_raw),
        "control": np.sqrt(var0_raw),
    }[denominator]
    mean1, var1 = _weighted_moments(x[d], w[d])
    mean0, var0 = _weighted_moments(x[~d], w[~d])
    difference = mean1 - mean0
    constant = scale == 0
    smd = np.where(
        constant, np.where(np.abs(difference) > 0, np.inf, 0.0), difference / np.where(constant, 1, scale)
    )
    ratio = np.where(var0 > 0, var1 / np.where(var0 > 0, var0, 1), np.nan)
    table = pd.DataFrame(
        {
            "covariate": labels,
            "mean_treated": mean1,
            "mean_control": mean0,
            "smd": smd,
            "variance_ratio": ratio,
        }
    )
    worst = float(np.max(np.abs(smd))) if len(smd) else 0.0
    worst_name = labels[int(np.argmax(np.abs(smd)))] if len(smd) else "none"
    verdict = Verdict.evaluate(
        name,
        value=worst,
        threshold=threshold,
        rule=rule,
        passed=worst <= threshold,
        reason=f"largest |SMD| {worst:.3f} on {worst_name} (SD denominator: {denominator}, unweighted)",
    )
    return BalanceReport(table, denominator, weights is not None, threshold, verdict)


@dataclass(frozen=True)
class BalanceComparison:
    """Balance before and after inverse-propensity weighting; the verdict is the one after."""

    before: BalanceReport
    after: BalanceReport

    @property
    def verdict(self) -> Verdict:
        """Verdict on max |SMD| after weighting."""
        return self.after.verdict

    def to_frame(self) -> pd.DataFrame:
        """covariate, smd_before, smd_after, variance_ratio_before, variance_ratio_after (love plot)."""
        before, after = self.before.table, self.after.table
        return pd.DataFrame(
            {
                "covariate": before["covariate"],
                "smd_before": before["smd"],
                "smd_after": after["smd"],
                "variance_ratio_before": before["variance_ratio"],
                "variance_ratio_after": after["variance_ratio"],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {"before": self.before.to_dict(), "after": self.after.to_dict()}


def weighted_balance(
    covariates: pd.DataFrame | ArrayLike,
    treatment: ArrayLike,
    *,
    propensity: ArrayLike,
    estimand: Literal["ATE", "ATT"] = "ATE",
    threshold: float = 0.1,
    names: Sequence[str] | None = None,
) -> BalanceComparison:
    """Balance before and after weighting by the inverse propensity (ATE) or the odds (ATT)."""
    check_choice("estimand", estimand, ("ATE", "ATT"))
    e = np.asarray(propensity, dtype=np.float64)
    if not (np.isfinite(e).all() and ((e > 0) & (e < 1)).all()):
        raise ValueError("propensity must lie strictly between 0 and 1 and have no NaN")
    d = _binary("treatment", treatment)
    weights = np.where(d, 1 / e, 1 / (1 - e)) if estimand == "ATE" else np.where(d, 1.0, e / (1 - e))
    before = balance_table(covariates, d, threshold=threshold, names=names)
    after = balance_table(covariates, d, weights=weights, threshold=threshold, names=names)
    return BalanceComparison(before, after)
