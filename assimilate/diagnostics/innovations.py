"""Innovation diagnostics of a filtered stream: whether the model of the drifting effect is adequate.

Under a well-specified model the standardized innovations ``z_t = (y_t - forecast_t) / sd_t`` are
independent N(0, 1). Three tests: the latest |z| against a threshold (a surprising batch); a test of
persistently one-sided innovations (the mean ``sum z / sqrt(n) ~ N(0, 1)`` and the Wald-Wolfowitz
runs test of the signs, Bonferroni-combined): the filter lags a drift its process variance is too
small for; and NIS calibration, ``sum z^2 ~ chi-square(n)``.

Example
-------
>>> from assimilate import causal_kalman
>>> res = causal_kalman([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [0.05] * 8, process_var=0.0)
>>> innovation_diagnostics(res).one_sided.status
'fail'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from assimilate._validation import check_alpha, check_positive
from assimilate.diagnostics.verdict import Verdict
from assimilate.result import AssimilationResult

MIN_INNOVATIONS = 5


def runs_test_p_value(signs: NDArray[np.bool_]) -> float:
    """Two-sided p-value of the Wald-Wolfowitz runs test (normal approximation)."""
    n1 = int(signs.sum())
    n0 = len(signs) - n1
    if n1 == 0 or n0 == 0:
        return 0.0 if len(signs) >= MIN_INNOVATIONS else 1.0
    runs = 1 + int(np.sum(signs[1:] != signs[:-1]))
    n = n1 + n0
    mean = 2.0 * n1 * n0 / n + 1.0
    variance = 2.0 * n1 * n0 * (2.0 * n1 * n0 - n) / (n * n * (n - 1.0))
    if variance <= 0:
        return 1.0
    return float(2.0 * stats.norm.sf(abs(runs - mean) / math.sqrt(variance)))


@dataclass(frozen=True)
class InnovationReport:
    """Standardized innovations and the verdicts built on them."""

    standardized: NDArray[np.float64]
    latest_innovation: Verdict
    one_sided: Verdict
    nis: Verdict
    ess: Verdict
    mean_z: float
    lag1_autocorrelation: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "n_innovations": int(self.standardized.size),
            "mean_z": self.mean_z,
            "lag1_autocorrelation": self.lag1_autocorrelation,
            "latest_innovation": self.latest_innovation.to_dict(),
            "one_sided": self.one_sided.to_dict(),
            "nis": self.nis.to_dict(),
            "ess": self.ess.to_dict(),
        }


def innovation_diagnostics(
    result: AssimilationResult | None,
    *,
    z_threshold: float = 3.0,
    alpha: float = 0.01,
    min_ess_fraction: float = 0.2,
) -> InnovationReport:
    """Test the standardized innovations (and the particle ESS) of a filtered stream.

    Parameters
    ----------
    result : AssimilationResult or None
        The filtered stream (None: nothing filtered yet, every verdict undefined).
    z_threshold : float
        The latest |z| above it fails.
    alpha : float
        Level of the one-sided and NIS tests.
    min_ess_fraction : float
        The particle filter's last ESS / N below it fails (undefined for the Kalman backend).

    Returns
    -------
    InnovationReport
    """
    check_positive("z_threshold", z_threshold)
    check_alpha(alpha)
    latest_rule = f"|latest standardized innovation| <= {z_threshold}"
    one_sided_rule = f"p-value of persistently one-sided innovations >= {alpha}"
    nis_rule = f"p-value of NIS calibration (chi-square) >= {alpha}"
    ess_rule = f"final ESS / N >= {min_ess_fraction}"
    if result is None:
        z = np.empty(0)
    else:
        raw = result.standardized_innovations if result.n_batches else np.empty(0)
        z = raw[np.isfinite(raw)]
    n = int(z.size)
    if n == 0:
        latest = Verdict.undefined(
            "innovation", threshold=z_threshold, rule=latest_rule, reason="no innovation yet"
        )
    else:
        value = abs(float(z[-1]))
        latest = Verdict.evaluate(
            "innovation",
            value=value,
            threshold=z_threshold,
            rule=latest_rule,
            passed=value <= z_threshold,
            reason=f"latest z = {float(z[-1]):+.3f}",
        )
    mean_z = float(z.mean()) if n else float("nan")
    lag1 = (
        float(np.corrcoef(z[:-1], z[1:])[0, 1])
        if n > 2 and z[:-1].std() > 0 and z[1:].std() > 0
        else float("nan")
    )
    if n < MIN_INNOVATIONS:
        reason = f"{n} innovations, fewer than {MIN_INNOVATIONS}"
        one_sided = Verdict.undefined(
            "one_sided_innovations", threshold=alpha, rule=one_sided_rule, reason=reason
        )
        nis = Verdict.undefined("nis_calibration", threshold=alpha, rule=nis_rule, reason=reason)
    else:
        p_mean = float(2 * stats.norm.sf(abs(z.sum()) / math.sqrt(n)))
        p_runs = runs_test_p_value(z > 0)
        p_value = min(1.0, 2 * min(p_mean, p_runs))
        one_sided = Verdict.evaluate(
            "one_sided_innovations",
            value=p_value,
            threshold=alpha,
            rule=one_sided_rule,
            passed=p_value >= alpha,
            reason=f"mean z {mean_z:+.3f} (p {p_mean:.3g}), runs test p {p_runs:.3g}, lag-1 autocorrelation {lag1:.3f}",
        )
        nis_stat = float(z @ z)
        p_nis = float(2 * min(stats.chi2.sf(nis_stat, n), stats.chi2.cdf(nis_stat, n)))
        nis = Verdict.evaluate(
            "nis_calibration",
            value=p_nis,
            threshold=alpha,
            rule=nis_rule,
            passed=p_nis >= alpha,
            reason=f"mean NIS {nis_stat / n:.3f} (expected 1)",
        )
    if result is None or result.ess is None or not result.n_batches:
        ess = Verdict.undefined(
            "particle_ess",
            threshold=min_ess_fraction,
            rule=ess_rule,
            reason="Kalman backend: exact, no particles",
        )
    else:
        n_particles = float(result.details.get("n_particles", 1))
        fraction = float(result.ess[-1]) / n_particles
        ess = Verdict.evaluate(
            "particle_ess",
            value=fraction,
            threshold=min_ess_fraction,
            rule=ess_rule,
            passed=fraction >= min_ess_fraction,
        )
    return InnovationReport(z, latest, one_sided, nis, ess, mean_z, lag1)
