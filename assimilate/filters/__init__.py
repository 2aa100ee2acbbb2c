"""Assimilation filters: the exact Kalman filter and a particle filter (compiled loops) over one model."""

from assimilate.filters.correlated import correlated_kalman
from assimilate.filters.grid import GridFilterResult, grid_filter
from assimilate.filters.kalman import (
    KalmanState,
    KalmanStep,
    causal_kalman,
    initial_state,
    predict,
    step,
    update,
)
from assimilate.filters.mle import ProcessVarianceFit, fit_process_variance, profile_log_likelihood
from assimilate.filters.model import RandomWalkEffectModel
from assimilate.filters.particle import particle_filter
from assimilate.filters.shared_units import SharedUnits, psd_correlation, shared_unit_covariance
from assimilate.filters.smoother import rts_smooth

__all__ = [
    "GridFilterResult",
    "KalmanState",
    "KalmanStep",
    "ProcessVarianceFit",
    "RandomWalkEffectModel",
    "SharedUnits",
    "causal_kalman",
    "correlated_kalman",
    "fit_process_variance",
    "grid_filter",
    "initial_state",
    "particle_filter",
    "predict",
    "profile_log_likelihood",
    "psd_correlation",
    "rts_smooth",
    "shared_unit_covariance",
    "step",
    "update",
]

# Effects by segment fused over time with partial pooling (issue 16).
from assimilate.filters.segments import SegmentPosterior, segment_filter

__all__ += ["SegmentPosterior", "segment_filter"]
