"""assimilate: assimilative causal inference.

Per-batch treatment-effect estimates with honest standard errors and assumption diagnostics,
fused over time by a Kalman filter (or a particle filter) into a posterior of a drifting effect.
"""

from assimilate.assimilative import assimilative_causal
from assimilate.diagnostics import (
    GateVerdict,
    Verdict,
    balance_table,
    innovation_diagnostics,
    overlap_report,
    per_look_alpha,
    sample_ratio_mismatch,
    trend_test,
    weighted_balance,
)
from assimilate.estimators import (
    EffectEstimate,
    aipw,
    difference_in_means,
    estimate_all,
    estimate_effect,
    influence_contributions,
    ipw,
    n_of_1,
    regression_adjustment,
)
from assimilate.filters import (
    KalmanState,
    causal_kalman,
    correlated_kalman,
    fit_process_variance,
    particle_filter,
    shared_unit_covariance,
)
from assimilate.result import AssimilationResult
from assimilate.sequential import (
    ConfidenceSequence,
    asymptotic_confidence_sequence,
    confidence_sequence,
)

__version__ = "0.1.0"

__all__ = [
    "AssimilationResult",
    "ConfidenceSequence",
    "EffectEstimate",
    "GateVerdict",
    "KalmanState",
    "Verdict",
    "aipw",
    "assimilative_causal",
    "asymptotic_confidence_sequence",
    "balance_table",
    "causal_kalman",
    "confidence_sequence",
    "correlated_kalman",
    "difference_in_means",
    "estimate_all",
    "estimate_effect",
    "fit_process_variance",
    "influence_contributions",
    "innovation_diagnostics",
    "ipw",
    "n_of_1",
    "overlap_report",
    "particle_filter",
    "per_look_alpha",
    "regression_adjustment",
    "sample_ratio_mismatch",
    "shared_unit_covariance",
    "trend_test",
    "weighted_balance",
]
