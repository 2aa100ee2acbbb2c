"""The state-space model of a drifting treatment effect, shared by the Kalman and particle filters.

State: a random walk, ``theta_t = theta_{t-1} + w_t`` with ``w_t ~ N(0, process_var)``.
Observation: batch t's estimate, ``y_t = theta_t + se_t * e_t`` with ``e_t ~ N(0, 1)`` (Gaussian) or
``e_t ~ Student-t(df)`` (heavy tails). The prior ``theta_0 ~ N(prior_mean, prior_var)`` is the
belief before batch 1; every batch is a predict step then an update step.

Example
-------
>>> model = RandomWalkEffectModel(process_var=0.01)
>>> model.observation
'gaussian'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import special

from assimilate._validation import check_choice, check_non_negative, check_positive

Observation = Literal["gaussian", "student_t"]
OBSERVATIONS: tuple[Observation, ...] = ("gaussian", "student_t")
LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class RandomWalkEffectModel:
    """Random-walk effect observed through batch estimates with known standard errors.

    Parameters
    ----------
    process_var : float
        Variance of the random-walk step (0 means a static effect).
    observation : {"gaussian", "student_t"}
        Distribution of the estimate around the effect, scaled by the batch's standard error.
    df : float, optional
        Degrees of freedom of the Student-t observation (required for it, > 0).
    """

    process_var: float
    observation: Observation = "gaussian"
    df: float | None = None

    def __post_init__(self) -> None:
        check_non_negative("process_var", self.process_var)
        check_choice("observation", self.observation, OBSERVATIONS)
        if self.observation == "student_t":
            if self.df is None:
                raise ValueError("df is required for a Student-t observation (e.g. df=5)")
            check_positive("df", self.df)
        elif self.df is not None:
            raise ValueError("df applies only to observation='student_t'")

    def observation_log_density(
        self, estimate: float, effects: NDArray[np.float64], std_error: float
    ) -> NDArray[np.float64]:
        """``log p(estimate | effect)`` for every effect in ``effects``."""
        z = (estimate - effects) / std_error
        constant = self.observation_log_constant() - math.log(std_error)
        if self.observation == "gaussian":
            return np.asarray(constant - 0.5 * z * z, dtype=np.float64)
        df = float(self.df)  # type: ignore[arg-type]
        return np.asarray(constant - (df + 1) / 2 * np.log1p(z * z / df), dtype=np.float64)

    def observation_log_constant(self) -> float:
        """Log normalizer of the standardized observation density (``-log(se)`` is added per batch)."""
        if self.observation == "gaussian":
            return -0.5 * LOG_2PI
        df = float(self.df)  # type: ignore[arg-type]
        return float(special.gammaln((df + 1) / 2) - special.gammaln(df / 2) - 0.5 * math.log(df * math.pi))

    def observation_variance_factor(self) -> float:
        """Variance of the standardized observation noise: 1, or df/(df-2) (inf when df <= 2)."""
        if self.observation == "gaussian":
            return 1.0
        df = float(self.df)  # type: ignore[arg-type]
        return df / (df - 2.0) if df > 2.0 else math.inf
