"""The calibration audit at the pipeline's shortest history: ``calibration_audit.min_batches`` (6) batches.

The study's ``calibration_audit`` is judged from its ``min_batches``-th admitted batch on
(assimilate/diagnostics/plan_audit.py), so its false-alarm rate and power there are the ones a
study meets first. Same histories as :mod:`simulations.calibration_audit` (``x ~ N(0, 1)``,
``y = d + x + N(0, 1)``, ``d ~ Bernoulli(0.5)``, 400 units a batch, 20 placebos), with 6 batches:

* ``randomized RA``: regression adjustment with its HC2 standard error (valid): false-alarm rate,
  promised <= ``audit_alpha`` = 0.01;
* ``SE x 0.5``, ``SE x 0.7``, ``SE x 0.85``: the difference in means with its standard error halved,
  or 30% or 15% too small (95% intervals covering about 67%, 83%, 90%): power.

Run ``python -m simulations.calibration_audit_short`` for the full table (300 histories a row;
about 15 minutes on one busy core); ``--fast`` for 20.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd

from assimilate.diagnostics.calibration_audit import calibration_audit
from assimilate.estimators import EffectEstimate, estimate_effect
from simulations.calibration_audit import AUDIT_ALPHA, _history
from simulations.table import binomial_mc_error, frame, row

STUDY = "calibration_audit_short"
BATCHES, PLACEBOS = 6, 20
SCENARIOS = (("randomized RA", None), ("SE x 0.5", 0.5), ("SE x 0.7", 0.7), ("SE x 0.85", 0.85))


def _shrunk(factor: float) -> Callable[[pd.DataFrame, str], EffectEstimate]:
    def difference_with_small_se(data: pd.DataFrame, treatment: str) -> EffectEstimate:
        fit = estimate_effect(data, method="difference_in_means", treatment=treatment, outcome="y")
        return replace(fit, std_error=fit.std_error * factor)

    return difference_with_small_se


def _flag_rate(factor: float | None, streams: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    flagged, coverage = 0, []
    for _ in range(streams):
        history = _history(rng, batches=BATCHES, observational=False)
        options = {"treatment": "d", "outcome": "y", "rng": rng, "n_placebos": PLACEBOS}
        audit = (
            calibration_audit(history, method="regression_adjustment", covariates=["x"], **options)  # type: ignore[arg-type]
            if factor is None
            else calibration_audit(history, estimate=_shrunk(factor), **options)  # type: ignore[arg-type]
        )
        flagged += audit.verdict.status == "fail"
        coverage.append(audit.coverage)
    return flagged / streams, float(np.mean(coverage))


def run(*, fast: bool = True, seed: int = 20261206) -> pd.DataFrame:
    """False-alarm rate and power of the audit over 6 batches."""
    streams = 20 if fast else 300
    rows = []
    for index, (scenario, factor) in enumerate(SCENARIOS):
        rate, coverage = _flag_rate(factor, streams, seed + index)
        mc = binomial_mc_error(rate, streams)
        if factor is None:
            # Fast: 20 histories cannot resolve 1%; it still fails when the audit flags valid intervals often.
            bound = 0.10 if fast else AUDIT_ALPHA + 2 * binomial_mc_error(AUDIT_ALPHA, streams)
            rows.append(
                row(STUDY, scenario, "false-alarm rate", rate, target=f"<= {bound:.3g}", mc_error=mc,
                    passed=rate <= bound)
            )  # fmt: skip
        else:
            bound = {0.5: 0.9, 0.7: 0.5 if fast else 0.8, 0.85: None}[factor]
            target = "" if bound is None else f">= {bound:g}"
            passed = None if bound is None else rate >= bound
            rows.append(row(STUDY, scenario, "power", rate, target=target, mc_error=mc, passed=passed))
        rows.append(row(STUDY, scenario, "mean placebo coverage", coverage))
    return frame(rows)


if __name__ == "__main__":
    print(run(fast="--fast" in sys.argv).to_string(index=False))
