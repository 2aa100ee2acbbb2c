"""Covariate balance: standardized mean differences and variance ratios, before and after weighting.

``SMD_j = (mean_1j - mean_0j) / s_j`` with ``s_j`` the SD named by ``denominator``, computed on the
UNWEIGHTED sample (pooled: ``sqrt((s_1^2 + s_0^2) / 2)``, Austin 2009) so that before and after
weighting are on the same scale. Variance ratio: treated over control (weighted when weighted).
:func:`weighted_balance` judges the weighting of the estimand: ATE weights ``1/e`` and ``1/(1-e)``,
pooled SD; ATT the treated (weight 1) against the odds-weighted controls ``e/(1-e)``, standardized
by the treated SD, the population the ATT averages over (Stuart 2010; Austin & Stuart 2015); ATC
the controls against the treated weighted ``(1-e)/e``, by the control SD.

Two rules judge the table. ``rule="fixed"`` fails when some ``|SMD_j| > threshold``: at 550 units a
batch, sampling noise alone crosses 0.1 in most batches. ``rule="calibrated"`` fails only when an
imbalance is both practically large and distinguishable from sampling noise,
``|SMD_j| > max(threshold, z SE(SMD_j))`` with ``z`` the two-sided normal critical value at
``alpha / k`` over the ``k`` covariates (Bonferroni), so a correct design fails with probability at
most ``alpha`` per batch at every batch size. ``SE`` is the sandwich standard error of the weighted
(Hajek) mean difference with the weights held fixed, ``SE^2 = sum_a n_a / (n_a - 1) sum_{i in a}
w_i^2 (x_i - m_a)^2 / (sum_{i in a} w_i)^2``: Welch's standard error without weights, right for known
propensities, and conservative for a propensity fitted by maximum likelihood, which balances
better than the true one (Hirano, Imbens and Ridder 2003; Lunceford and Davidian 2004).

Example
-------
>>> import numpy as np
>>> report = balance_table(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1], names=["x"])
>>> round(report.max_abs_smd, 3)
2.828
>>> calibrated = balance_table(np.array([[0.0], [2.0], [1.0], [3.0]]), [0, 0, 1, 1], names=["x"],
...                            rule="calibrated")
>>> calibrated.verdict.status, round(calibrated.verdict.threshold, 2)  # 4 units: noise is large
('pass', 2.58)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from assimilate._validation import check_alpha, check_choice, check_positive
from assimilate.diagnostics.calibration import GateRule, bonferroni_critical, check_rule, stating_rate
from assimilate.diagnostics.verdict import Verdict

Denominator = Literal["pooled", "treated", "control"]
_DENOMINATOR_OF: dict[str, Denominator] = {"ATE": "pooled", "ATT": "treated", "ATC": "control"}
FloatArray = NDArray[np.float64]


def _binary(name: str, values: ArrayLike) -> NDArray[np.bool_]:
    array = np.asarray(values, dtype=np.float64)
    if not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(f"{name} must be 0 or 1 (binary)")
    return np.asarray(array == 1.0, dtype=np.bool_)


@dataclass(frozen=True)
class CovariateColumns:
    """Covariates split into columns once (:func:`covariate_columns`), for several balance tables."""

    columns: list[NDArray[Any]]
    labels: list[str]
    n_rows: int


def covariate_columns(
    covariates: pd.DataFrame | ArrayLike | CovariateColumns, names: Sequence[str] | None
) -> CovariateColumns:
    """The covariates column by column, their labels and the number of rows.

    A numeric column is the frame's own array (float64: not copied); a categorical column becomes
    one 0/1 column per level (booleans, a byte a row). No matrix is built: at 1e7 rows one is 0.7 GB,
    and each column is read arm by arm (:func:`_arm_moments`).
    """
    if isinstance(covariates, CovariateColumns):
        return covariates
    if isinstance(covariates, pd.DataFrame):
        columns: list[NDArray[Any]] = []
        labels: list[str] = []
        for column in covariates.columns:
            series = covariates[column]
            if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
                columns.append(series.to_numpy(dtype=np.float64))
                labels.append(str(column))
            else:
                # Text as it is, with a hash table sized for a few levels (at 1e7 rows its copy as str
                # and a table sized for every row added 0.24 GB); other values by their text, as
                # hashing would take 1 and True, or None and NaN, for one level.
                codes, distinct = pd.factorize(series.to_numpy(), use_na_sentinel=False, size_hint=64)
                levels = list(distinct)
                if not all(isinstance(level, str) for level in levels):
                    codes, by_text = pd.factorize(series.astype(str))
                    levels = list(by_text)
                order = sorted(range(len(levels)), key=lambda code: str(levels[code]))
                columns += [codes == code for code in order]
                labels += [f"{column}[{levels[code]}]" for code in order]
        return CovariateColumns(columns, labels, len(covariates))
    matrix = np.asarray(covariates, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    labels = list(names) if names is not None else [f"x{j}" for j in range(matrix.shape[1])]
    if len(labels) != matrix.shape[1]:
        raise ValueError(f"names has {len(labels)} entries for {matrix.shape[1]} covariates")
    return CovariateColumns([matrix[:, j] for j in range(matrix.shape[1])], labels, matrix.shape[0])


@dataclass(frozen=True)
class BalanceReport:
    """Per-covariate balance with the worst |SMD| and its verdict.

    ``table`` also holds ``smd_std_error`` (standard error of the SMD from sampling noise) and
    ``p_value`` (of the weighted mean difference) per covariate; ``alpha`` is the stated
    false-alarm rate per batch of the calibrated rule (None under the fixed rule).
    """

    table: pd.DataFrame
    denominator: Denominator
    weighted: bool
    threshold: float
    verdict: Verdict
    rule: GateRule = "fixed"
    alpha: float | None = None

    @property
    def max_abs_smd(self) -> float:
        """Largest |SMD| over the covariates (NaN when undefined)."""
        values = self.table["smd"].abs()
        return float(values.max()) if values.notna().any() else float("nan")

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: covariate, mean_treated, mean_control, smd, variance_ratio, smd_std_error, p_value."""
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
            "rule": self.rule,
            "alpha": self.alpha,
            "rows": rows,
            "verdict": self.verdict.to_dict(),
        }


def _weighted_moments(
    x: FloatArray, w: FloatArray, w_squared: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Weighted mean, weighted variance and the sandwich variance of the weighted (Hajek) mean.

    ``w_squared`` is ``w**2``, made once per arm.
    """
    total = w.sum()
    mean = (w @ x) / total
    squares = x - mean
    np.square(squares, out=squares)  # one temporary of the arm's length, not two
    var = (w @ squares) / total
    n = len(w)
    mean_var = (w_squared @ squares) / total**2 * (n / (n - 1))
    return mean, var, mean_var


def _arm_moments(columns: list[NDArray[Any]], d: NDArray[np.bool_], w: FloatArray) -> FloatArray:
    """Each covariate's arm variances (unweighted), then the treated's and the controls' weighted moments.

    A column of the (8, p) result per covariate, in the order of :func:`_weighted_moments`. Arm by
    arm and column by column, so only one arm's copy of one covariate is held at a time (a 1e7-row
    batch's estimation peaked here with both arms' copies and their temporaries).
    """
    moments = np.empty((8, len(columns)), dtype=np.float64)
    for arm, (variance_row, first_row) in ((d, (0, 2)), (~d, (1, 5))):
        w_arm = w[arm]
        w_squared = w_arm**2
        for index, column in enumerate(columns):
            x = np.asarray(column)[arm].astype(np.float64, copy=False)  # an indicator: the arm's rows only
            moments[variance_row, index] = np.var(x, ddof=1)
            moments[first_row : first_row + 3, index] = _weighted_moments(x, w_arm, w_squared)
            del x
    return moments


def balance_table(
    covariates: pd.DataFrame | ArrayLike | CovariateColumns,
    treatment: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    threshold: float = 0.1,
    denominator: Denominator = "pooled",
    names: Sequence[str] | None = None,
    rule: GateRule = "fixed",
    alpha: float = 0.01,
) -> BalanceReport:
    """Standardized mean differences and variance ratios of the covariates.

    Parameters
    ----------
    covariates : DataFrame, array_like or CovariateColumns
        Covariates (categoricals: one row per level).
    treatment : array_like
        0/1 treatment.
    weights : array_like, optional
        Unit weights (e.g. inverse propensity); unweighted when None.
    threshold : float
        Practical bound on |SMD|: under the fixed rule the verdict fails when max |SMD| exceeds it.
    denominator : {"pooled", "treated", "control"}
        Which unweighted SD standardizes the difference.
    names : sequence of str, optional
        Covariate names for array input.
    rule : {"fixed", "calibrated"}
        ``"fixed"``: fail when some |SMD| > ``threshold`` (whatever the batch size).
        ``"calibrated"``: fail when some |SMD| > ``max(threshold, z SE(SMD))``, a false-alarm
        rate of at most ``alpha`` per batch under a correct design (module docstring).
    alpha : float
        Stated false-alarm rate per batch of the calibrated rule, over all covariates.

    Returns
    -------
    BalanceReport
        Under the calibrated rule the verdict's value is the |SMD| of the covariate closest to its
        bound and its threshold that bound; its ``false_alarm_rate`` is ``alpha``.
    """
    check_choice("denominator", denominator, ("pooled", "treated", "control"))
    check_positive("threshold", threshold)
    check_rule(rule)
    check_alpha(alpha)
    split = covariate_columns(covariates, names)
    columns, labels, n_rows = split.columns, split.labels, split.n_rows
    d = _binary("treatment", treatment)
    if len(d) != n_rows:
        raise ValueError(f"treatment has {len(d)} entries for {n_rows} rows of covariates")
    w = np.ones(len(d)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != d.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() == 0:
        raise ValueError("weights must be finite, non-negative, not all zero, one per unit")
    critical = bonferroni_critical(alpha, tests=max(len(labels), 1))
    text = (
        f"max |SMD| <= {threshold}"
        if rule == "fixed"
        else f"every |SMD| <= max({threshold}, {critical:.3f} SE(SMD)): false-alarm rate <= {alpha} "
        f"per batch over {len(labels)} covariate(s)"
    )
    weighted = weights is not None
    stated = None if rule == "fixed" else alpha
    if min(int(d.sum()), int((~d).sum())) < 2 or w[d].sum() == 0 or w[~d].sum() == 0:
        table = pd.DataFrame({"covariate": labels} | dict.fromkeys(_NUMBER_COLUMNS, np.nan))
        verdict = Verdict.undefined(
            "balance", threshold=threshold, rule=text, reason="needs at least 2 units in each arm"
        )
        verdict = verdict if stated is None else stating_rate(verdict, stated)
        return BalanceReport(table, denominator, weighted, threshold, verdict, rule, stated)
    table = _smd_table(columns, d, w, labels, denominator)
    smd = table["smd"].to_numpy()
    if rule == "fixed":
        worst = float(np.max(np.abs(smd))) if len(smd) else 0.0
        worst_name = labels[int(np.argmax(np.abs(smd)))] if len(smd) else "none"
        verdict = Verdict.evaluate(
            "balance",
            value=worst,
            threshold=threshold,
            rule=text,
            passed=worst <= threshold,
            reason=f"largest |SMD| {worst:.3f} on {worst_name} (SD denominator: {denominator}, unweighted)",
        )
        return BalanceReport(table, denominator, weighted, threshold, verdict, rule, stated)
    verdict = _calibrated_verdict(table, threshold, critical, text)
    return BalanceReport(table, denominator, weighted, threshold, stating_rate(verdict, alpha), rule, stated)


_NUMBER_COLUMNS = ("mean_treated", "mean_control", "smd", "variance_ratio", "smd_std_error", "p_value")


def _smd_table(
    columns: list[NDArray[Any]],
    d: NDArray[np.bool_],
    w: FloatArray,
    labels: list[str],
    denominator: Denominator,
) -> pd.DataFrame:
    var1_raw, var0_raw, mean1, var1, mean_var1, mean0, var0, mean_var0 = _arm_moments(columns, d, w)
    scale = {
        "pooled": np.sqrt((var1_raw + var0_raw) / 2),
        "treated": np.sqrt(var1_raw),
        "control": np.sqrt(var0_raw),
    }[denominator]
    difference = mean1 - mean0
    std_error = np.sqrt(mean_var1 + mean_var0)
    constant = scale == 0
    smd = np.where(
        constant, np.where(np.abs(difference) > 0, np.inf, 0.0), difference / np.where(constant, 1, scale)
    )
    # A covariate constant in the sample has no sampling noise: its SMD is 0 or infinite.
    smd_se = np.where(constant, 0.0, std_error / np.where(constant, 1, scale))
    noiseless = std_error == 0
    z = np.abs(difference) / np.where(noiseless, 1, std_error)
    p_value = np.where(noiseless, np.where(difference == 0, 1.0, 0.0), 2 * stats.norm.sf(z))
    ratio = np.where(var0 > 0, var1 / np.where(var0 > 0, var0, 1), np.nan)
    return pd.DataFrame(
        {
            "covariate": labels,
            "mean_treated": mean1,
            "mean_control": mean0,
            "smd": smd,
            "variance_ratio": ratio,
            "smd_std_error": smd_se,
            "p_value": p_value,
        }
    )


def _calibrated_verdict(table: pd.DataFrame, threshold: float, critical: float, rule: str) -> Verdict:
    """The covariate closest to its bound ``max(threshold, critical * SE(SMD))`` decides."""
    if table.empty:
        return Verdict.evaluate(
            "balance", value=0.0, threshold=threshold, rule=rule, passed=True, reason="no covariates"
        )
    size = table["smd"].abs().to_numpy()
    noise = critical * table["smd_std_error"].to_numpy()
    bound = np.maximum(threshold, noise)
    j = int(np.argmax(size / bound))
    name, value = str(table["covariate"].iloc[j]), float(size[j])
    limit = float(bound[j])
    passed = value <= limit
    why = (
        "practically large and beyond sampling noise"
        if not passed
        else ("within sampling noise" if value > threshold else "within the practical bound")
    )
    return Verdict.evaluate(
        "balance",
        value=value,
        threshold=limit,
        rule=rule,
        passed=passed,
        reason=f"closest to its bound: {name}, |SMD| {value:.3f} vs {limit:.3f} (practical {threshold}, "
        f"sampling noise {float(noise[j]):.3f}; p = {float(table['p_value'].iloc[j]):.3g}): {why}",
    )


@dataclass(frozen=True)
class BalanceComparison:
    """Balance before and after weighting for ``estimand``; the verdict is the one after."""

    before: BalanceReport
    after: BalanceReport
    estimand: Literal["ATE", "ATT", "ATC"] = "ATE"

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
        return {"estimand": self.estimand, "before": self.before.to_dict(), "after": self.after.to_dict()}


def weighted_balance(
    covariates: pd.DataFrame | ArrayLike,
    treatment: ArrayLike,
    *,
    propensity: ArrayLike,
    estimand: Literal["ATE", "ATT", "ATC"] = "ATE",
    threshold: float = 0.1,
    names: Sequence[str] | None = None,
    rule: GateRule = "fixed",
    alpha: float = 0.01,
    denominator: Denominator | None = None,
    sample_weights: ArrayLike | None = None,
) -> BalanceComparison:
    """Balance before and after weighting by the inverse propensity (ATE) or the odds (ATT, ATC).

    ``threshold``, ``rule`` and ``alpha`` are those of :func:`balance_table`, for both tables.

    Parameters
    ----------
    covariates : DataFrame or array_like
        Covariates.
    treatment : array_like
        0/1 treatment.
    propensity : array_like
        Propensity scores strictly inside (0, 1).
    estimand : {"ATE", "ATT", "ATC"}
        ``"ATE"``: weights ``1/e`` (treated) and ``1/(1-e)`` (controls). ``"ATT"``: treated 1,
        controls ``e/(1-e)``, so the controls are reweighted to the treated's covariates.
        ``"ATC"``: controls 1, treated ``(1-e)/e``.
    denominator : {"pooled", "treated", "control"}, optional
        The SD that standardizes the differences; by default the pooled SD for the ATE, the
        treated SD for the ATT and the control SD for the ATC (the population averaged over).
    sample_weights : array_like, optional
        Sampling (survey) weights, positive: balance is judged in the population the sample stands
        for, "before" weighted by them alone and "after" by them times the propensity weights (the
        estimators' final weights); the SD denominators stay unweighted, as without them.
    """
    check_choice("estimand", estimand, ("ATE", "ATT", "ATC"))
    e = np.asarray(propensity, dtype=np.float64)
    if not (np.isfinite(e).all() and ((e > 0) & (e < 1)).all()):
        raise ValueError("propensity must lie strictly between 0 and 1 and have no NaN")
    d = _binary("treatment", treatment)
    if estimand == "ATE":
        weights = np.where(d, 1 / e, 1 / (1 - e))
    elif estimand == "ATT":
        weights = np.where(d, 1.0, e / (1 - e))
    else:
        weights = np.where(d, (1 - e) / e, 1.0)
    if sample_weights is not None:
        survey = np.asarray(sample_weights, dtype=np.float64)
        if survey.shape != weights.shape or not np.isfinite(survey).all() or (survey <= 0).any():
            raise ValueError("sample_weights must be finite and positive, one per unit")
        weights = weights * survey
    if denominator is None:
        denominator = _DENOMINATOR_OF[estimand]
    split = covariate_columns(covariates, names)  # once for both tables
    options: dict[str, Any] = {
        "threshold": threshold,
        "rule": rule,
        "alpha": alpha,
        "denominator": denominator,
    }
    before = balance_table(split, d, weights=sample_weights, **options)
    after = balance_table(split, d, weights=weights, **options)
    return BalanceComparison(before, after, estimand)
