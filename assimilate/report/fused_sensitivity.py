r"""The fused posterior's sensitivity to an unmeasured confounder: robustness value and E-value.

The memo's sensitivity section (:mod:`assimilate.report.confounding`) bounds the latest admitted
batch's regression; this module does the same for the posterior fused over every admitted batch
(issue 16: "per batch and for the fused posterior"), as :class:`FusedSensitivity` states. References:
Cinelli & Hazlett (2020), "Making sense of sensitivity", JRSS-B 82(1); VanderWeele & Ding (2017),
Ann. Intern. Med. 167(4).

Example
-------
>>> from assimilate.diagnostics.sensitivity import SensitivityReport
>>> batch = SensitivityReport(estimate=0.5, standard_error=0.1, dof=400, partial_r2=0.06,
...     robustness_value=0.22, robustness_value_alpha=0.13, q=1.0, alpha=0.05, benchmarks=())
>>> fused = fused_sensitivity(0.5, 0.05, (0.402, 0.598), batch=batch)
>>> fused.dof, round(fused.robustness_value, 4)
(1600.0, 0.2207)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from assimilate._validation import check_alpha
from assimilate.diagnostics.sensitivity import (
    SensitivityReport,
    e_value,
    risk_ratio_from_difference,
    robustness_value,
)
from assimilate.report.units import EffectScale

if TYPE_CHECKING:
    from assimilate.report.memo_inputs import MemoInputs


@dataclass(frozen=True, kw_only=True)
class FusedSensitivity:
    r"""The fused posterior's robustness to an unmeasured confounder present alike in every batch.

    The posterior is no single regression, so its robustness value takes the fused t-statistic
    ``t = m / s`` (posterior mean over posterior SD) and the pooled residual degrees of freedom

        dof = dof_b · (se_b / s)²,

    the latest admitted batch's OLS residual dof scaled by the information the posterior holds
    relative to that batch (``se_b``: that batch's OLS standard error of τ̂). For batches alike in
    size and noise and a constant effect (process variance zero) this is Σ dof_b over the admitted
    batches. Then ``se·√dof`` is the same for the batch and the fusion, so a confounder with partial
    R²s (R²_{D~Z|X}, R²_{Y~Z|D,X}) in every batch shifts the fused mean by Cinelli & Hazlett's
    (2020) bound of one batch, and RV_q = ½(√(f⁴ + 4f²) − f²), ``f = q|t|/√dof``, is the strength
    that brings the posterior mean to zero (:func:`~assimilate.diagnostics.sensitivity.robustness_value`);
    RV_{q,α} the strength that brings its ``1 − α`` interval to zero. A binary outcome adds the
    E-values (VanderWeele & Ding 2017) of the posterior mean and of the interval's bound nearest no
    effect, on the risk-ratio scale from the latest batch's control risk.

    Attributes
    ----------
    mean, sd : float
        The posterior mean and SD after the last batch.
    lower, upper : float
        The posterior interval at ``1 - alpha``.
    dof : float
        The pooled residual degrees of freedom above.
    robustness_value, robustness_value_alpha : float
        RV_1 and RV_{1,α} of the fused posterior.
    e_value, e_value_interval : float, optional
        A binary outcome's E-values of the mean and of the interval's bound nearest no effect (1:
        the interval includes no effect).
    """

    mean: float
    sd: float
    lower: float
    upper: float
    alpha: float
    dof: float
    robustness_value: float
    robustness_value_alpha: float
    e_value: float | None = None
    e_value_interval: float | None = None


def fused_sensitivity(
    mean: float,
    sd: float,
    interval: tuple[float, float],
    *,
    batch: SensitivityReport,
    alpha: float = 0.05,
    control_risk: float | None = None,
) -> FusedSensitivity:
    """Robustness value (and a binary outcome's E-values) of the fused posterior (:class:`FusedSensitivity`).

    Parameters
    ----------
    mean, sd : float
        The posterior mean and SD after the last batch.
    interval : tuple of float
        The posterior interval ``(lower, upper)`` at ``1 - alpha``.
    batch : SensitivityReport
        The latest admitted batch's analysis: its OLS standard error and residual dof scale the pool.
    alpha : float
        One minus the interval's level.
    control_risk : float, optional
        A binary outcome's control risk (the risk ratio's denominator); None: no E-values.

    Returns
    -------
    FusedSensitivity
    """
    check_alpha(alpha)
    if not (math.isfinite(mean) and math.isfinite(sd) and sd > 0):
        raise ValueError(f"the posterior needs a finite mean and a positive SD, got {mean!r}, {sd!r}")
    dof = batch.dof * (batch.standard_error / sd) ** 2
    t = mean / sd
    lower, upper = interval
    point = limit = None
    if control_risk is not None and 0 < control_risk < 1:
        nearest = 0.0 if lower <= 0 <= upper else (lower if mean > 0 else upper)
        try:
            point = e_value(risk_ratio_from_difference(control_risk, mean))
            limit = e_value(risk_ratio_from_difference(control_risk, nearest)) if nearest else 1.0
        except ValueError:  # a risk difference that leaves (0, 1): no risk ratio to speak of
            point = limit = None
    return FusedSensitivity(
        mean=mean,
        sd=sd,
        lower=lower,
        upper=upper,
        alpha=alpha,
        dof=dof,
        robustness_value=robustness_value(t, dof),  # type: ignore[arg-type]
        robustness_value_alpha=robustness_value(t, dof, alpha=alpha),  # type: ignore[arg-type]
        e_value=point,
        e_value_interval=limit,
    )


def fused_sensitivity_of(inputs: MemoInputs) -> FusedSensitivity | None:
    """The memo's fused posterior sensitivity (None without the latest batch's analysis or a posterior)."""
    found, result = inputs.sensitivity, inputs.result
    if found is None or found.analysis is None or bool(np.all(result.excluded)):
        return None
    try:
        return fused_sensitivity(
            result.final_mean,
            result.final_sd,
            result.final_ci,
            batch=found.analysis,
            alpha=result.alpha,
            control_risk=found.control_risk if inputs.outcome_type == "binary" else None,
        )
    except ValueError:
        return None


def fused_sentence(fused: FusedSensitivity, scale: EffectScale, batches: int) -> str:
    """The memo's sentence on the fused posterior (``batches``: how many were admitted)."""
    level = f"{1 - fused.alpha:.0%}"
    reach = (
        f"its {level} interval already includes zero"
        if fused.robustness_value_alpha == 0
        else f"{fused.robustness_value_alpha:.1%} to make its {level} interval include zero"
    )
    text = (
        f"Fused over the {batches} admitted batches, the posterior ({scale.effect(fused.mean)}, {level} "
        f"interval {scale.interval(fused.lower, fused.upper)}) would need a confounder explaining "
        f"{fused.robustness_value:.1%} of the residual variance of both treatment and outcome in every batch "
        f"to bring it to zero ({reach}; from the fused t-statistic over about {fused.dof:,.0f} pooled residual "
        "degrees of freedom, Cinelli & Hazlett 2020)."
    )
    if fused.e_value is not None and fused.e_value_interval is not None:
        bound = (
            "its interval already includes no effect"
            if fused.e_value_interval == 1
            else f"{fused.e_value_interval:.2f} for its interval's bound nearest no effect"
        )
        text += (
            f" On the risk-ratio scale its E-value is {fused.e_value:.2f} ({bound}; VanderWeele & Ding 2017)."
        )
    return text


__all__ = ["FusedSensitivity", "fused_sensitivity", "fused_sensitivity_of", "fused_sentence"]
