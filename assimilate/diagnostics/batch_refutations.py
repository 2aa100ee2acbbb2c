"""The refuters a study's plan configures, run on one batch's primary estimate.

Each configured refuter (:mod:`assimilate.diagnostics.refuters`, :mod:`~assimilate.diagnostics.robustness`)
re-runs the plan's primary estimator ``θ̂ = method(y ~ d + X; estimand)`` on a version of the
batch whose answer is known, with the plan's covariates, categorical levels, estimand, propensity
policy and bounds and cross-fitting folds; the observational placebo permutes within strata of
the batch's fitted propensity scores, the negative control reuses IPW's fitted propensity, and the
random common cause and data subsets start from the batch's estimate. Each refuter draws from its
own child of ``rng`` (``rng.spawn``), so configuring another refuter changes no other's numbers.

Example
-------
>>> import numpy as np, pandas as pd
>>> from assimilate.design.plan import AnalysisPlan
>>> rng = np.random.default_rng(0)
>>> batch = pd.DataFrame({"d": rng.binomial(1, 0.5, 400), "x": rng.standard_normal(400)})
>>> batch["y"] = batch["d"] + batch["x"] + rng.standard_normal(400)
>>> plan = AnalysisPlan(unit_id="id", treatment="d", outcome="y", outcome_type="continuous",
...     design={"kind": "randomized"}, covariates=["x"], primary_estimator="regression_adjustment",
...     process_var=0.0, refuters={"placebo_treatment": {}})
>>> refutations = refute_batch(batch, plan, rng=np.random.default_rng(1))
>>> refutations["placebo_treatment"].verdict.status
'pass'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from assimilate.design._plan_rules import negative_control_column
from assimilate.diagnostics.refuters import (
    REFUTERS,
    Refutation,
    RefuterName,
    check_rng,
    placebo_treatment,
    undefined,
)
from assimilate.diagnostics.robustness import data_subsets, negative_control_outcome, random_common_cause
from assimilate.estimators import EffectEstimate
from assimilate.estimators.models import PropensityModel

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan

NULLS = {
    "placebo_treatment": "With the treatment permuted within the design's strata, the estimate is zero.",
    "negative_control_outcome": "The treatment has no effect on the declared negative-control outcome.",
    "random_common_cause": "Adding an independent random covariate barely moves the estimate.",
    "data_subsets": "On random subsets of the rows the estimate differs only by subsampling noise.",
}
"""Each refuter's null in short, for a refutation that could not run (the run states its own)."""


def refuter_columns(plan: AnalysisPlan) -> tuple[str, ...]:
    """Columns the plan's refuters read besides the model's: the negative-control outcome, if configured."""
    column = negative_control_column(plan)
    return () if column is None else (column,)


def refute_batch(
    valid: pd.DataFrame,
    plan: AnalysisPlan,
    *,
    rng: np.random.Generator,
    estimate: EffectEstimate | None = None,
    propensity: PropensityModel | None = None,
    problem: str = "",
) -> dict[str, Refutation]:
    """Run every refuter ``plan.refuters`` configures on one batch, by refuter name.

    Parameters
    ----------
    valid : DataFrame
        The batch's valid rows (the plan's columns and :func:`refuter_columns`).
    plan : AnalysisPlan
        The study's plan: primary estimator, covariates, categorical levels, estimand, design,
        propensity policy and bounds, cross-fitting folds and the refuters' settings.
    rng : numpy.random.Generator
        Split into one child per refuter (in the order of :data:`~assimilate.diagnostics.refuters.REFUTERS`).
    estimate : EffectEstimate, optional
        The batch's primary estimate (refitted by the refuters that need it when not given).
    propensity : PropensityModel, optional
        The propensity model fitted on these rows with the plan's covariates: its scores define the
        observational placebo's strata, and IPW's negative control reuses it.
    problem : str
        Why the batch has no usable primary estimate ("" when it has one): every refutation is then
        undefined with this reason (nothing to refute).

    Returns
    -------
    dict of str to Refutation
        One per configured refuter; undefined (with the reason) when it does not apply to the batch.
    """
    check_rng(rng)
    if plan.refuters is None:
        return {}
    configured = plan.refuters.configured
    children = dict(zip(REFUTERS, rng.spawn(len(REFUTERS)), strict=True))
    method = plan.primary_estimator
    results: dict[str, Refutation] = {}
    for key, settings in configured.items():
        name = cast(RefuterName, key)
        if problem:
            reason = f"no estimate to refute: {problem}"
            results[name] = undefined(name, method, NULLS[name], settings.alpha, reason)
            continue
        try:
            results[name] = _RUN[name](valid, plan, settings, children[name], estimate, propensity)
        except ValueError as error:  # a refuter's own check of the batch (e.g. a control column missing)
            reason = f"{type(error).__name__}: {error}"
            results[name] = undefined(name, method, NULLS[name], settings.alpha, reason)
    return results


def refutation_metadata(refutation: Refutation) -> dict[str, Any]:
    """A refutation's numbers for a check's metadata: null, effect, scale, statistic, p-value, refits, level."""

    def number(value: float | None) -> float | str:
        return "n/a" if value is None or not math.isfinite(value) else float(value)

    return {
        "null_hypothesis": refutation.null_hypothesis,
        "method": refutation.method,
        "effect": number(refutation.effect),
        "scale": number(refutation.std_error),
        "statistic": number(refutation.statistic),
        "p_value": number(refutation.p_value),
        "replicates": len(refutation.replicates),
        "failed_refits": refutation.n_failed,
        "level": refutation.alpha,
    }


def _common(plan: AnalysisPlan, settings: Any, rng: np.random.Generator) -> dict[str, Any]:
    """The primary estimator's arguments under the plan (``propensity`` is added per refuter)."""
    options: dict[str, Any] = {
        "method": plan.primary_estimator,
        "treatment": plan.treatment,
        "covariates": list(plan.model_columns),
        "estimand": plan.estimand,
        "rng": rng,
        "alpha": settings.alpha,
    }
    if plan.categorical and plan.primary_estimator != "difference_in_means":
        options["categories"] = {k: list(v) for k, v in plan.categorical.items()}
    if plan.primary_estimator in ("ipw", "aipw"):
        options |= {"policy": plan.propensity.policy, "bounds": tuple(plan.propensity.bounds)}
    if plan.primary_estimator == "aipw" and plan.cross_fitting_folds:
        options["n_folds"] = plan.cross_fitting_folds
    return options


def _placebo(
    valid: pd.DataFrame,
    plan: AnalysisPlan,
    settings: Any,
    rng: np.random.Generator,
    estimate: EffectEstimate | None,
    propensity: PropensityModel | None,
) -> Refutation:
    observational = plan.design.kind == "observational"
    scores = propensity.scores if observational and propensity is not None else None
    return placebo_treatment(
        valid,
        outcome=plan.outcome,
        design="observational" if observational else "randomized",
        propensity_scores=scores,
        units_per_stratum=settings.units_per_stratum,
        n_placebos=settings.n_placebos,
        **_common(plan, settings, rng),
    )


def _negative_control(
    valid: pd.DataFrame,
    plan: AnalysisPlan,
    settings: Any,
    rng: np.random.Generator,
    estimate: EffectEstimate | None,
    propensity: PropensityModel | None,
) -> Refutation:
    column = negative_control_column(plan)
    if column is None:  # the plan's load rules name one; a plan built without validation may not
        raise ValueError("the plan names no negative-control column")
    reused: dict[str, Any] = (
        {"propensity": propensity} if plan.primary_estimator == "ipw" and propensity is not None else {}
    )
    return negative_control_outcome(valid, negative_control=column, **_common(plan, settings, rng), **reused)


def _random_common_cause(
    valid: pd.DataFrame,
    plan: AnalysisPlan,
    settings: Any,
    rng: np.random.Generator,
    estimate: EffectEstimate | None,
    propensity: PropensityModel | None,
) -> Refutation:
    return random_common_cause(
        valid,
        outcome=plan.outcome,
        estimate=estimate,
        n_draws=settings.n_draws,
        **_common(plan, settings, rng),
    )


def _data_subsets(
    valid: pd.DataFrame,
    plan: AnalysisPlan,
    settings: Any,
    rng: np.random.Generator,
    estimate: EffectEstimate | None,
    propensity: PropensityModel | None,
) -> Refutation:
    return data_subsets(
        valid,
        outcome=plan.outcome,
        estimate=estimate,
        fraction=settings.fraction,
        n_subsets=settings.n_subsets,
        **_common(plan, settings, rng),
    )


_Runner = Callable[
    [pd.DataFrame, "AnalysisPlan", Any, np.random.Generator, EffectEstimate | None, PropensityModel | None],
    Refutation,
]
_RUN: Mapping[str, _Runner] = {
    "placebo_treatment": _placebo,
    "negative_control_outcome": _negative_control,
    "random_common_cause": _random_common_cause,
    "data_subsets": _data_subsets,
}

__all__ = ["NULLS", "refutation_metadata", "refute_batch", "refuter_columns"]
