"""The rules of a plan's sampling weights (``weights:``): one ``key: rule`` line per problem found.

Sampling weights reach every unit-level estimator (difference in means, regression adjustment,
Lin's interacted regression, IPW, AIPW) and the balance check. A weights column in another role,
or with a part of the study that would run unweighted on its rows (an instrument's 2SLS, another
design's estimator, an N-of-1 series, a team's own estimator whose contract has no weights, the
refuters, the segment effects, the calibration audit), is refused at load: its estimates would
answer for the sample while the others answer for the population.

Example
-------
>>> from assimilate.design.plan import AnalysisPlan
>>> plan = AnalysisPlan.model_construct(
...     unit_id="id", treatment="d", outcome="y", covariates=("w",), categorical={}, post_treatment=(),
...     cluster=None, weights="w", estimators=("difference_in_means",), custom_estimators={},
...     refuters=None, n_of_1=None,
... )
>>> weight_problems(plan)[:1]
["weights: column 'w' is already a covariate"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assimilate.design.designs import UNIT_ESTIMATORS

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan

WEIGHTED_DESIGNS = ("randomized", "observational")
"""The designs whose estimators take sampling weights."""


def weight_problems(plan: AnalysisPlan) -> list[str]:
    """The weights column in another role, and each part of the study that would ignore the weights."""
    column = getattr(plan, "weights", None)
    if column is None:
        return []
    taken = {
        plan.unit_id: "the unit_id",
        plan.treatment: "the treatment",
        plan.outcome: "the outcome",
        **dict.fromkeys(plan.covariates, "a covariate"),
        **dict.fromkeys(plan.categorical, "a categorical covariate"),
        **dict.fromkeys(plan.post_treatment, "post_treatment"),
        **dict.fromkeys(getattr(getattr(plan, "design", None), "instrument", ()), "an instrument"),
        **({plan.cluster: "the cluster"} if plan.cluster else {}),
    }
    if column in taken:
        return [f"weights: column {column!r} is already {taken[column]}"]
    problems = []
    kind = getattr(getattr(plan, "design", None), "kind", None)
    if kind is not None and kind not in WEIGHTED_DESIGNS:
        problems.append(
            f"weights: design.kind {kind!r} runs no estimator that takes sampling weights "
            f"(they apply to the {', '.join(WEIGHTED_DESIGNS)} designs' {', '.join(UNIT_ESTIMATORS)})"
        )
    if plan.n_of_1 is not None:
        problems.append("weights: an N-of-1 study follows one subject; its days carry no sampling weights")
    if plan.standard_errors in ("HC0", "HC1", "HC2", "HC3", "CR2") and "lin_interacted" in plan.estimators:
        problems.append(
            f"standard_errors: {plan.standard_errors} needs an OLS fit; weighted, 'lin_interacted' (in "
            "estimators) also counts its estimated covariate means: its own SE and, with clusters, CR1"
        )
    problems += [
        f"weights: estimator {name!r} (custom_estimators) receives no sampling weights (its contract: "
        "data, treatment, outcome, covariates, estimand, rng), so it would estimate the sample's effect, "
        "not the population's; remove weights or the custom estimator"
        for name in plan.estimators
        if name in plan.custom_estimators
    ]
    unweighted = {
        "refuters": plan.refuters is not None,
        "segments": bool(_effect_modifiers(plan)),
        "calibration_audit": getattr(plan, "calibration_audit", None) is not None,
    }
    problems += [
        f"{key}: refits the primary estimator without the sampling weights (weights: {column!r}); "
        f"remove {key if key != 'segments' else 'the effect modifiers'} or weights"
        for key, unweighted_part in unweighted.items()
        if unweighted_part
    ]
    return problems


def _effect_modifiers(plan: AnalysisPlan) -> tuple[str, ...]:
    try:
        return tuple(getattr(plan, "effect_modifiers", ()))
    except (AttributeError, TypeError, ValueError):  # a plan built without validation
        return ()
