"""Propensity overlap (positivity): how much propensity mass sits near 0 or 1.

Reports the range and quantiles of the scores per arm, the share of units outside
``[eps, 1 - eps]``, the trimmed count, and the Kish effective sample size
``(sum w)^2 / sum w^2`` of the ATE weights ``d / e + (1 - d) / (1 - e)``.

Judged for the estimand: the ATE needs ``eps <= e(x) <= 1 - eps`` everywhere; the ATT only where
the treated are, ``e(x) <= 1 - eps`` (a treated unit with no comparable controls), so its share is
that of the treated above ``1 - eps`` and controls with a tiny score are harmless; the ATC the
mirror image, the share of the controls below ``eps`` (Crump et al. 2009; Imbens & Rubin 2015,
ch. 14). The ATT's and ATC's effective sample sizes are those of their odds weights.

``rule="fixed"`` fails when the share outside exceeds ``max_share_outside``: a design whose true
share sits at the bound fails half its batches at any size, one at 8% fails 40% of 200-unit
batches. ``rule="calibrated"`` fails only when the share is above the bound beyond sampling noise,
at a stated false-alarm rate ``alpha`` per batch for any design whose population share outside is
at most the bound. For known propensities the count outside is binomial, and the batch fails when
it exceeds the binomial ``1 - alpha`` quantile. For scores from a logistic fit (pass its
``design``) the fit's own error dominates: all units move together with the coefficients. The
share is corrected for the fit's first-order bias (the Cox and Snell 1968 bias of the logistic MLE,
the one Firth 1993 removes, and the convexity of the count in noisy scores), and its standard
error adds the delta-method term ``g' I^-1 g`` to ``m (1 - m)``, with ``g`` the derivative of the
share in the coefficients (a normal kernel as wide as each score's own standard error) and ``I``
the Fisher information; the batch fails when the corrected share exceeds
``m + z_(1 - alpha) SE``.

Example
-------
>>> report = overlap_report([0.2, 0.5, 0.6, 0.99], [0, 1, 0, 1], eps=0.05, max_share_outside=0.3)
>>> report.share_outside, report.verdict.status
(0.25, 'pass')
>>> calibrated = overlap_report([0.2, 0.5, 0.6, 0.99], [0, 1, 0, 1], max_share_outside=0.1,
...                             rule="calibrated")
>>> calibrated.verdict.status, calibrated.verdict.threshold  # 4 units: up to 2 outside is noise
('pass', 0.5)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from assimilate._validation import check_alpha, check_choice
from assimilate.diagnostics.calibration import GateRule, check_rule, stating_rate
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators import passes

FloatArray = NDArray[np.float64]
OverlapEstimand = Literal["ATE", "ATT", "ATC"]

QUANTILES = (0.0, 0.01, 0.05, 0.5, 0.95, 0.99, 1.0)


def kish_ess(weights: ArrayLike) -> float:
    """Kish effective sample size ``(sum w)^2 / sum w^2``."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0 or not np.isfinite(w).all() or (w < 0).any() or w.sum() == 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return float(w.sum() ** 2 / (w @ w))


@dataclass(frozen=True)
class OverlapReport:
    """Overlap numbers with a verdict on the share of units outside ``[eps, 1 - eps]``.

    Calibrated rule only: ``alpha`` (stated false-alarm rate per batch), ``expected_excess`` (share
    outside that fitting the propensity adds on its own), ``share_std_error`` (of the share under
    the bound) and ``p_value`` (of the share exceeding the bound).

    ``estimand`` says what "outside" means: ATE both tails over all units; ATT ``e > 1 - eps``,
    ``share_outside`` over the treated; ATC ``e < eps``, over the controls. The per-arm shares use
    the same tail(s); ``ess`` is of the estimand's weights.
    """

    eps: float
    share_outside: float
    share_outside_treated: float
    share_outside_control: float
    quantiles: pd.DataFrame
    ess: float
    ess_treated: float
    ess_control: float
    n: int
    trimmed: int
    verdict: Verdict
    rule: GateRule = "fixed"
    alpha: float | None = None
    expected_excess: float = 0.0
    share_std_error: float | None = None
    p_value: float | None = None
    estimand: OverlapEstimand = "ATE"

    @property
    def ess_fraction(self) -> float:
        """ESS / n of the estimand's weights."""
        return self.ess / self.n

    def to_frame(self) -> pd.DataFrame:
        """Quantiles of the propensity per arm (rows: arm; columns: q0 .. q100)."""
        return self.quantiles.copy()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "eps": self.eps,
            "share_outside": self.share_outside,
            "share_outside_treated": self.share_outside_treated,
            "share_outside_control": self.share_outside_control,
            "ess": self.ess,
            "ess_treated": self.ess_treated,
            "ess_control": self.ess_control,
            "n": self.n,
            "trimmed": self.trimmed,
            "rule": self.rule,
            "alpha": self.alpha,
            "expected_excess": self.expected_excess,
            "share_std_error": self.share_std_error,
            "p_value": self.p_value,
            "estimand": self.estimand,
            "quantiles": self.quantiles.reset_index().to_dict(orient="records"),
            "verdict": self.verdict.to_dict(),
        }


def overlap_report(
    propensity: ArrayLike,
    treatment: ArrayLike,
    *,
    eps: float = 0.05,
    max_share_outside: float = 0.1,
    trimmed: int = 0,
    rule: GateRule = "fixed",
    alpha: float = 0.01,
    design: ArrayLike | None = None,
    estimand: OverlapEstimand = "ATE",
) -> OverlapReport:
    """Overlap of the propensity distributions of the two arms, judged for the estimand.

    Parameters
    ----------
    propensity : array_like
        Estimated P(d = 1 | x) per unit, strictly inside (0, 1) (unclipped scores).
    treatment : array_like
        0/1 treatment.
    eps : float
        Scores outside ``[eps, 1 - eps]`` count as lacking overlap; ``0 < eps < 0.5``.
    max_share_outside : float
        Tolerated share outside. The fixed rule fails when the share exceeds it.
    trimmed : int
        Units the propensity fit trimmed (reported).
    rule : {"fixed", "calibrated"}
        ``"calibrated"``: fail only when the share exceeds the tolerated one beyond sampling noise
        (module docstring), a false-alarm rate of at most ``alpha`` per batch.
    alpha : float
        Stated false-alarm rate per batch of the calibrated rule.
    design : array_like, optional
        Calibrated rule: the design matrix (n, p) of the logistic model whose unpenalized
        maximum-likelihood fit gave ``propensity`` (checked: its score must vanish). The
        corrections are first order and assume the fitted linear predictor has a smooth
        distribution (some continuous covariate). None: the scores are known propensities.
    estimand : {"ATE", "ATT", "ATC"}
        ``"ATE"``: the share of all units outside ``[eps, 1 - eps]``. ``"ATT"``: the share of the
        treated above ``1 - eps``. ``"ATC"``: the share of the controls below ``eps``.

    Returns
    -------
    OverlapReport
        Under the calibrated rule the verdict's threshold is the largest share that passes at this
        batch size, and its ``false_alarm_rate`` is ``alpha``.
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must lie strictly between 0 and 0.5, got {eps}")
    if not 0.0 <= max_share_outside <= 1.0:
        raise ValueError(f"max_share_outside must lie in [0, 1], got {max_share_outside}")
    check_rule(rule)
    check_alpha(alpha)
    check_choice("estimand", estimand, ("ATE", "ATT", "ATC"))
    e = np.asarray(propensity, dtype=np.float64)
    d = np.asarray(treatment, dtype=np.float64)
    if e.shape != d.shape:
        raise ValueError(f"propensity and treatment differ in length ({e.size} vs {d.size})")
    if not np.isfinite(e).all() or ((e <= 0) | (e >= 1)).any():
        raise ValueError("propensity must lie strictly between 0 and 1 and have no NaN")
    if not np.isin(d, (0.0, 1.0)).all():
        raise ValueError("treatment must be 0 or 1 (binary)")
    x = None if design is None or rule == "fixed" else _checked_design(design, e, d)
    treated = d == 1
    if estimand == "ATE":
        outside = (e < eps) | (e > 1 - eps)
        weights = np.where(treated, 1 / e, 1 / (1 - e))
        judged = np.ones(e.size, dtype=bool)
    elif estimand == "ATT":
        outside = e > 1 - eps
        weights = np.where(treated, 1.0, e / (1 - e))
        judged = treated
    else:
        outside = e < eps
        weights = np.where(treated, (1 - e) / e, 1.0)
        judged = ~treated
    quantiles = pd.DataFrame(
        {
            f"q{round(100 * q)}": [
                float(np.quantile(e[arm], q)) if arm.any() else np.nan for arm in (treated, ~treated)
            ]
            for q in QUANTILES
        },
        index=pd.Index(["treated", "control"], name="arm"),
    )

    def share(mask: np.ndarray) -> float:
        return float(outside[mask].mean()) if mask.any() else float("nan")

    value = float(outside.mean()) if estimand == "ATE" else share(judged)
    calibration = _Calibration(value, 0.0, None, None, max_share_outside)
    if rule == "calibrated" and estimand == "ATE":
        calibration = _calibrate(value, e, x, eps=eps, bound=max_share_outside, alpha=alpha)
    elif rule == "calibrated" and judged.any():
        calibration = _calibrate(
            value, e, x, eps=eps, bound=max_share_outside, alpha=alpha, judged=judged, upper=estimand == "ATT"
        )
    region, units = {
        "ATE": (f"outside [{eps}, {1 - eps}]", "units outside"),
        "ATT": (f"above {1 - eps} among the treated", f"treated units above {1 - eps}"),
        "ATC": (f"below {eps} among the controls", f"controls below {eps}"),
    }[estimand]
    if rule == "fixed":
        text = f"share of units with propensity {region} <= {max_share_outside}"
    else:
        source = "logistic fit" if x is not None else "known propensities"
        text = (
            f"share {region} <= {max_share_outside} + sampling noise ({source}): "
            f"false-alarm rate <= {alpha} per batch"
        )
    if not treated.any() or treated.all():
        verdict = Verdict.undefined(
            "overlap", threshold=max_share_outside, rule=text, reason="one arm only: overlap is undefined"
        )
    else:
        detail = (
            ""
            if rule == "fixed"
            else f"; largest share within noise {calibration.threshold:.4f} (excess expected from the "
            f"fit {calibration.excess:.4f}, p = {calibration.p_value:.3g})"
        )
        verdict = Verdict.evaluate(
            "overlap",
            value=value,
            threshold=calibration.threshold,
            rule=text,
            passed=value <= calibration.threshold,
            reason=f"{int(outside[judged].sum())} of {int(judged.sum())} {units}; {trimmed} trimmed{detail}",
        )
    return OverlapReport(
        eps=eps,
        share_outside=value,
        share_outside_treated=share(treated),
        share_outside_control=share(~treated),
        quantiles=quantiles,
        ess=kish_ess(weights),
        ess_treated=kish_ess(weights[treated]) if treated.any() else 0.0,
        ess_control=kish_ess(weights[~treated]) if (~treated).any() else 0.0,
        n=len(e),
        trimmed=trimmed,
        verdict=verdict if rule == "fixed" else stating_rate(verdict, alpha),
        rule=rule,
        alpha=None if rule == "fixed" else alpha,
        expected_excess=calibration.excess,
        share_std_error=calibration.std_error,
        p_value=calibration.p_value,
        estimand=estimand,
    )


@dataclass(frozen=True)
class _Calibration:
    share: float
    excess: float
    std_error: float | None
    p_value: float | None
    threshold: float


def _checked_design(design: ArrayLike, e: FloatArray, d: FloatArray) -> FloatArray:
    x = np.ascontiguousarray(design, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != e.size:
        raise ValueError(f"design must be a finite (n, p) matrix with n = {e.size} rows")
    largest = max(float(x.max()), -float(x.min()))  # NaN if any is: no (n, p) temporary
    if not np.isfinite(largest):
        raise ValueError(f"design must be a finite (n, p) matrix with n = {e.size} rows")
    score = np.abs(x.T @ (d - e)).max() if x.shape[1] else 0.0
    if score > 1e-6 * e.size * max(1.0, largest):
        raise ValueError(
            "propensity is not the maximum-likelihood logistic fit on design (its score X'(d - e) is "
            f"{score:.3g}, not 0): pass the unclipped fitted scores, or no design for known propensities"
        )
    return x


def _calibrate(
    share: float,
    e: FloatArray,
    x: FloatArray | None,
    *,
    eps: float,
    bound: float,
    alpha: float,
    judged: NDArray[np.bool_] | None = None,
    upper: bool = True,
) -> _Calibration:
    """Excess share from the fit, standard error under the bound, p-value and the passing threshold.

    ``judged`` None: the ATE's share of all units in both tails; else the share of the ``judged``
    units (one arm) in the upper (ATT) or lower (ATC) tail.
    """
    n = e.size if judged is None else int(judged.sum())
    if x is None:  # known propensities: the count outside is Binomial(n, bound) at worst
        count = round(share * n)
        largest = float(stats.binom.isf(alpha, n, bound))
        p_value = float(stats.binom.sf(count - 1, n, bound))
        std_error = float(np.sqrt(bound * (1 - bound) / n))
        return _Calibration(share, 0.0, std_error, p_value, largest / n)
    if judged is None:
        corrected, added = _fitted_share(e, x, eps)
    else:
        corrected, added = _fitted_tail_share(e, x, judged, eps=eps, bound=bound, upper=upper)
    std_error = float(np.sqrt(max(bound * (1 - bound) + added, 0.0) / n))
    excess = share - corrected
    excess_over_bound = corrected - bound
    if std_error > 0:
        p_value = float(stats.norm.sf(excess_over_bound / std_error))
    else:
        p_value = 0.0 if excess_over_bound > 0 else 1.0
    threshold = bound + excess + float(stats.norm.isf(alpha)) * std_error
    return _Calibration(share, excess, std_error, p_value, threshold)


def _fit_noise(e: FloatArray, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Weights ``e (1 - e)``, ``I^-1``, each fitted linear predictor's variance, and the bias-corrected one."""
    w = e * (1 - e)
    try:
        inverse = np.linalg.inv(passes.gram(x, w))  # one pass, no weighted copy of x
    except np.linalg.LinAlgError as error:
        raise ValueError(f"design is singular at these scores: {error}") from error
    variance = np.einsum("ij,jk,ik->i", x, inverse, x)  # var of each fitted linear predictor
    cox_snell = inverse @ (x.T @ (w * variance * (e - 0.5)))  # first-order bias of the MLE
    eta = np.asarray(special.logit(e) - x @ cox_snell, dtype=np.float64)
    return w, np.asarray(inverse, dtype=np.float64), np.asarray(variance, dtype=np.float64), eta


def _fitted_share(e: FloatArray, x: FloatArray, eps: float) -> tuple[float, float]:
    """Share outside corrected for the fit's bias, and the variance (times n) the fit adds."""
    n, p = x.shape
    _, inverse, variance, eta = _fit_noise(e, x)
    limit = float(special.logit(1 - eps))

    def sums(rows: slice) -> FloatArray:
        """Over the rows: units outside, units expected outside under the fit's noise, the gradient."""
        part, sd = eta[rows], np.sqrt(variance[rows])
        upper, lower = (part - limit) / sd, (-limit - part) / sd
        slope = (stats.norm.pdf(upper) - stats.norm.pdf(lower)) / sd
        outside = np.count_nonzero(np.abs(part) > limit)
        noisy = np.sum(stats.norm.cdf(upper) + stats.norm.cdf(lower))
        return np.concatenate([[outside, noisy], slope @ x[rows]])

    total = _row_sums(sums, n, p)
    plain, noisy, gradient = float(total[0]) / n, float(total[1]) / n, total[2:] / n
    # Noise in the scores moves more units out than in where the density falls: remove that too.
    corrected = min(max(2 * plain - noisy, 0.0), 1.0)  # first order: a smooth density of scores
    return corrected, float(n * gradient @ inverse @ gradient)


def _fitted_tail_share(
    e: FloatArray, x: FloatArray, judged: NDArray[np.bool_], *, eps: float, bound: float, upper: bool
) -> tuple[float, float]:
    """One arm's share in one tail corrected for the fit's bias, and the variance (times m) the fit adds.

    As :func:`_fitted_share`, with one more term: which units are in the arm is the same treatment
    the propensity is fitted on, so the arm's share and the coefficients covary,
    ``Cov = ± g' I^-1 sum_i x_i e_i (1 - e_i) (a_i - bound) / m`` (``a_i``: unit i in the tail).
    """
    (n, p), m = x.shape, int(judged.sum())
    w, inverse, variance, eta = _fit_noise(e, x)
    sign = 1.0 if upper else -1.0
    limit = float(special.logit(1 - eps))

    def sums(rows: slice) -> FloatArray:
        """Over the rows: the arm's units in the tail, expected there, the gradient, the covariance."""
        distance, arm = sign * eta[rows] - limit, judged[rows]
        z = distance[arm] / np.sqrt(variance[rows][arm])
        density = np.zeros(len(distance))  # zero outside the arm
        density[arm] = stats.norm.pdf(z) / np.sqrt(variance[rows][arm])
        tail = (distance > 0).astype(np.float64)
        moments = [np.count_nonzero(distance[arm] > 0), np.sum(stats.norm.cdf(z))]
        return np.concatenate([moments, density @ x[rows], x[rows].T @ (w[rows] * (tail - bound))])

    total = _row_sums(sums, n, p)
    plain, noisy = float(total[0]) / m, float(total[1]) / m
    gradient = sign * total[2 : 2 + p] / m
    covariance = sign * total[2 + p :]  # + for the treated (ATT), - for the controls
    corrected = min(max(2 * plain - noisy, 0.0), 1.0)
    fit_part = float(m * gradient @ inverse @ gradient)
    return corrected, fit_part + 2.0 * float(gradient @ inverse @ covariance)


def _row_sums(sums: Callable[[slice], FloatArray], n: int, p: int) -> FloatArray:
    """``sums`` over all rows, a chunk at a time, added in chunk order (the same on any thread count).

    Each temporary is a chunk's: whole-batch ones are 80 MB each at 1e7 rows.
    """
    return passes.sum_in_order(passes.in_chunks(sums, n, p))
