"""assimilate: assimilative causal inference.

Per-batch treatment-effect estimates with honest standard errors and assumption diagnostics,
fused over time by a Kalman filter (or a particle filter) into a posterior of a drifting effect.
"""

__version__ = "0.1.0"
