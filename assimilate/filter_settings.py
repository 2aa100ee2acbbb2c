"""What determines a filtered path besides the observations: backend, process variance, prior, seed.

The model the settings configure, per batch t: ``theta_t = theta_{t-1} + w_t, w_t ~ N(0, q)`` and
``y_t = theta_t + e_t`` with ``e_t ~ N(0, se_t^2)`` (or a scaled Student-t for a robust particle
filter). :meth:`FilterSettings.from_plan` reads them from a study's analysis plan, so the pipeline,
a notebook and a benchmark filter a study the same way.

Example
-------
>>> from assimilate.design.plan import AnalysisPlan
>>> plan = AnalysisPlan(
...     unit_id="visitor", treatment="treated", outcome="order_value", outcome_type="continuous",
...     design={"kind": "randomized"}, primary_estimator="difference_in_means", process_var="mle",
...     prior={"mean": 0.0, "variance": 1.0}, backend={"kind": "particle", "n_particles": 500},
... )
>>> settings = FilterSettings.from_plan(plan)
>>> settings.backend, settings.process_var, settings.prior_var, settings.n_particles
('particle', 'mle', 1.0, 500)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan

DEFAULT_PARTICLES = 2000


@dataclass(frozen=True)
class FilterSettings:
    """Everything besides the observations that determines the filtered path.

    ``prior_mean``/``prior_var`` of None with ``diffuse=False`` fall back to an exact diffuse start:
    a default prior scaled on the data would change with every batch and defeat resuming.
    """

    backend: Literal["kalman", "particle"] = "kalman"
    process_var: float | Literal["mle"] = 0.0
    prior_mean: float | None = None
    prior_var: float | None = None
    diffuse: bool = False
    alpha: float = 0.05
    n_particles: int | None = None
    observation: Literal["gaussian", "student_t"] = "gaussian"
    df: float | None = None
    seed: int = 0

    @classmethod
    def from_plan(cls, plan: AnalysisPlan) -> FilterSettings:
        """The filter a study's analysis plan asks for (intervals at the default 95%).

        Parameters
        ----------
        plan : AnalysisPlan
            The study's plan: its ``backend``, ``process_var``, ``prior`` (absent or
            ``diffuse: true``: an exact diffuse start) and ``seed``.

        Returns
        -------
        FilterSettings
        """
        prior, backend = plan.prior, plan.backend
        informative = prior is not None and not prior.diffuse
        particle = backend if backend.kind == "particle" else None
        return cls(
            backend=backend.kind,
            process_var=plan.process_var,
            prior_mean=prior.mean if prior is not None and informative else None,
            prior_var=prior.variance if prior is not None and informative else None,
            diffuse=bool(prior is not None and prior.diffuse),
            n_particles=None if particle is None else particle.n_particles,
            observation="gaussian" if particle is None else particle.observation,
            df=None if particle is None else particle.df,
            seed=plan.seed,
        )

    @property
    def uses_diffuse_start(self) -> bool:
        """True when the filter starts diffuse (asked for, or no prior given)."""
        return self.diffuse or self.prior_mean is None or self.prior_var is None

    def prior_kwargs(self) -> dict[str, Any]:
        """The Kalman filter's prior keywords: an exact diffuse start, or the prior given."""
        if self.uses_diffuse_start:
            return {"diffuse": True}
        return {"prior_mean": self.prior_mean, "prior_var": self.prior_var}

    def particle_prior(self, observed: pd.DataFrame) -> tuple[float, float]:
        """The particle filter's Gaussian prior: as given, else mean 0 and ``(10 x the data's scale)^2``.

        A particle cloud needs a proper prior; the data's scale is the largest absolute estimate
        or standard error of ``observed`` (at least 1).
        """
        mean = 0.0 if self.prior_mean is None else float(self.prior_mean)
        if self.prior_var is not None:
            return mean, float(self.prior_var)
        values = np.abs(observed["estimate"].to_numpy(dtype=float))
        ses = observed["std_error"].to_numpy(dtype=float)
        scale = float(np.nanmax(np.concatenate([values, ses, [1.0]])))
        return mean, (10.0 * scale) ** 2

    def fingerprint(self, resolved_process_var: float) -> str:
        """Hash of the settings with the process variance actually used."""
        payload = asdict(self) | {"process_var": repr(float(resolved_process_var))}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
