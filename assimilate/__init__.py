"""assimilate: assimilative causal inference.

Per-batch treatment-effect estimates with honest standard errors and assumption diagnostics,
fused over time by a Kalman filter (or a particle filter) into a posterior of a drifting effect.
"""

from assimilate.assimilative import assimilative_causal
from assimilate.diagnostics import (
    Verdict,
    balance_table,
    innovation_diagnostics,
    overlap_report,
    sample_ratio_mismatch,
    weighted_balance,
)
from assimilate.estimators import (
    EffectEstimate,
    aipw,
    difference_in_means,
    estimate_all,
    estimate_effect,
    ipw,
    regression_adjustment,
)
from assimilate.filters import (
    KalmanState,
    causal_kalman,
    fit_process_variance,
    particle_filter,
)
from assimilate.result import AssimilationResult

__version__ = "0.1.0"

__all__ = [
    "AssimilationResult",
    "EffectEstimate",
    "KalmanState",
    "Verdict",
    "aipw",
    "assimilative_causal",
    "balance_table",
    "causal_kalman",
    "difference_in_means",
    "estimate_all",
    "estimate_effect",
    "fit_process_variance",
    "innovation_diagnostics",
    "ipw",
    "overlap_report",
    "particle_filter",
    "regression_adjustment",
    "sample_ratio_mismatch",
    "weighted_balance",
]
