"""Assimilation filters: the exact Kalman filter and a particle filter (compiled loops) over one model."""

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
from assimilate.filters.smoother import rts_smooth

__all__ = [
    "KalmanState",
    "KalmanStep",
    "ProcessVarianceFit",
    "RandomWalkEffectModel",
    "causal_kalman",
    "fit_process_variance",
    "initial_state",
    "particle_filter",
    "predict",
    "profile_log_likelihood",
    "rts_smooth",
    "step",
    "update",
]
