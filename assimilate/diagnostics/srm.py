"""Sample-ratio mismatch: whether the observed treated share matches the designed split.

Chi-square goodness of fit with one degree of freedom:
``chi2 = (n_1 - n p)^2 / (n p) + (n_0 - n (1 - p))^2 / (n (1 - p))``. A tiny p-value means the
assignment or the logging is broken, so the batch's comparison cannot be trusted.

Example
-------
>>> sample_ratio_mismatch(5000, 5400).verdict.status
'fail'
>>> sample_ratio_mismatch(5000, 5050).verdict.status
'pass'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scipy import stats

from assimilate._validation import check_alpha
from assimilate.diagnostics.verdict import Verdict


@dataclass(frozen=True)
class SRMReport:
    """Observed vs expected split, the chi-square statistic, its p-value and the verdict."""

    n_treated: int
    n_control: int
    expected_treated_share: float
    chi2: float | None
    p_value: float | None
    alpha: float
    verdict: Verdict

    @property
    def observed_treated_share(self) -> float | None:
        """Treated share of the units (None without units)."""
        total = self.n_treated + self.n_control
        return self.n_treated / total if total else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "n_treated": self.n_treated,
            "n_control": self.n_control,
            "observed_treated_share": self.observed_treated_share,
            "expected_treated_share": self.expected_treated_share,
            "chi2": self.chi2,
            "p_value": self.p_value,
            "alpha": self.alpha,
            "verdict": self.verdict.to_dict(),
        }


def sample_ratio_mismatch(
    n_treated: int,
    n_control: int,
    *,
    expected_treated_share: float = 0.5,
    alpha: float = 0.001,
    min_units: int = 100,
) -> SRMReport:
    """Chi-square test of the treated/control counts against the designed split.

    Parameters
    ----------
    n_treated, n_control : int
        Units observed in each arm.
    expected_treated_share : float
        Designed probability of treatment, strictly inside (0, 1).
    alpha : float
        The verdict fails when the p-value is below ``alpha``.
    min_units : int
        Below this many units the test is undefined (the chi-square approximation is poor).

    Returns
    -------
    SRMReport
    """
    check_alpha(alpha)
    if not 0.0 < expected_treated_share < 1.0:
        raise ValueError(
            f"expected_treated_share must lie strictly between 0 and 1, got {expected_treated_share}"
        )
    if n_treated < 0 or n_control < 0:
        raise ValueError(f"counts must be non-negative, got {n_treated} treated and {n_control} control")
    total = n_treated + n_control
    rule = f"p-value >= {alpha}"
    if total < min_units:
        verdict = Verdict.undefined(
            "sample_ratio_mismatch",
            threshold=alpha,
            rule=rule,
            reason=f"{total} units, fewer than the {min_units} the test needs",
        )
        return SRMReport(n_treated, n_control, expected_treated_share, None, None, alpha, verdict)
    expected1 = total * expected_treated_share
    expected0 = total - expected1
    chi2 = (n_treated - expected1) ** 2 / expected1 + (n_control - expected0) ** 2 / expected0
    p_value = float(stats.chi2.sf(chi2, 1))
    verdict = Verdict.evaluate(
        "sample_ratio_mismatch",
        value=p_value,
        threshold=alpha,
        rule=rule,
        passed=p_value >= alpha,
        reason=f"observed treated share {n_treated / total:.4f} vs designed {expected_treated_share}",
    )
    return SRMReport(n_treated, n_control, expected_treated_share, float(chi2), p_value, alpha, verdict)
