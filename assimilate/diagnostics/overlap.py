"""Propensity overlap (positivity): how much propensity mass sits near 0 or 1.

Reports the range and quantiles of the scores per arm, the share of units outside
``[eps, 1 - eps]``, the trimmed count, and the Kish effective sample size
``(sum w)^2 / sum w^2`` of the ATE weights ``d / e + (1 - d) / (1 - e)``.

Example
-------
>>> report = overlap_report([0.2, 0.5, 0.6, 0.99], [0, 1, 0, 1], eps=0.05, max_share_outside=0.3)
>>> report.share_outside, report.verdict.status
(0.25, 'pass')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from assimilate.diagnostics.verdict import Verdict

QUANTILES = (0.0, 0.01, 0.05, 0.5, 0.95, 0.99, 1.0)


def kish_ess(weights: ArrayLike) -> float:
    """Kish effective sample size ``(sum w)^2 / sum w^2``."""
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0 or not np.isfinite(w).all() or (w < 0).any() or w.sum() == 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return float(w.sum() ** 2 / (w @ w))


@dataclass(frozen=True)
class OverlapReport:
    """Overlap numbers with a verdict on the share of units outside ``[eps, 1 - eps]``."""

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

    @property
    def ess_fraction(self) -> float:
        """ESS / n of the ATE weights."""
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
) -> OverlapReport:
    """Overlap of the propensity distributions of the two arms.

    Parameters
    ----------
    propensity : array_like
        Estimated P(d = 1 | x) per unit, strictly inside (0, 1) (unclipped scores).
    treatment : array_like
        0/1 treatment.
    eps : float
        Scores outside ``[eps, 1 - eps]`` count as lacking overlap; ``0 < eps < 0.5``.
    max_share_outside : float
        The verdict fails when the share outside exceeds it.
    trimmed : int
        Units the propensity fit trimmed (reported).

    Returns
    -------
    OverlapReport
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must lie strictly between 0 and 0.5, got {eps}")
    if not 0.0 <= max_share_outside <= 1.0:
        raise ValueError(f"max_share_outside must lie in [0, 1], got {max_share_outside}")
    e = np.asarray(propensity, dtype=np.float64)
    d = np.asarray(treatment, dtype=np.float64)
    if e.shape != d.shape:
        raise ValueError(f"propensity and treatment differ in length ({e.size} vs {d.size})")
    if not np.isfinite(e).all() or ((e <= 0) | (e >= 1)).any():
        raise ValueError("propensity must lie strictly between 0 and 1 and have no NaN")
    if not np.isin(d, (0.0, 1.0)).all():
        raise ValueError("treatment must be 0 or 1 (binary)")
    treated = d == 1
    outside = (e < eps) | (e > 1 - eps)
    rule = f"share of units with propensity outside [{eps}, {1 - eps}] <= {max_share_outside}"
    weights = np.where(treated, 1 / e, 1 / (1 - e))
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

    if not treated.any() or treated.all():
        verdict = Verdict.undefined(
            "overlap", threshold=max_share_outside, rule=rule, reason="one arm only: overlap is undefined"
        )
    else:
        value = float(outside.mean())
        verdict = Verdict.evaluate(
            "overlap",
            value=value,
            threshold=max_share_outside,
            rule=rule,
            passed=value <= max_share_outside,
            reason=f"{int(outside.sum())} of {len(e)} units outside; {trimmed} trimmed",
        )
    return OverlapReport(
        eps=eps,
        share_outside=float(outside.mean()),
        share_outside_treated=share(treated),
        share_outside_control=share(~treated),
        quantiles=quantiles,
        ess=kish_ess(weights),
        ess_treated=kish_ess(weights[treated]) if treated.any() else 0.0,
        ess_control=kish_ess(weights[~treated]) if (~treated).any() else 0.0,
        n=len(e),
        trimmed=trimmed,
        verdict=verdict,
    )
