"""The rules of a study's effect modifiers and its ``segments:`` section, one ``key: rule`` line each.

An effect modifier is a column with the causal graph's role ``effect_modifier``; the pipeline
estimates the effect on each of its segments (:mod:`assimilate.estimators.plan_segments`). A
segment's effect is a refit of the primary estimator on the segment's rows, so the modifier must be
a column the batch's rows carry (a covariate or a categorical column), the estimator one that can be
refitted on a subset, and the standard errors the estimator's own (not clustered).

Example
-------
>>> from assimilate.design.plan import AnalysisPlan
>>> AnalysisPlan(
...     unit_id="u", treatment="d", outcome="y", outcome_type="continuous", design={"kind": "randomized"},
...     covariates=["x"], primary_estimator="difference_in_means", process_var=0.0,
...     causal_graph={"roles": {"x": "effect_modifier"}},
... ).effect_modifiers
('x',)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan

SEGMENT_METHODS = ("difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw")
"""The estimators a segment's rows can be refitted with (:func:`assimilate.estimators.segments.segment_effects`)."""


def effect_modifiers(plan: AnalysisPlan) -> tuple[str, ...]:
    """The columns whose causal-graph role is ``effect_modifier``, in the order the graph lists them."""
    if plan.causal_graph is None:
        return ()
    return tuple(v for v, role in plan.causal_graph.roles.items() if role == "effect_modifier")


def segment_problems(plan: AnalysisPlan) -> list[str]:
    """Every broken rule of the effect modifiers and the ``segments:`` section."""
    modifiers = effect_modifiers(plan)
    settings = plan.segments
    if not modifiers:
        if settings is None:
            return []
        return [
            "segments: needs at least one causal_graph role effect_modifier (causal_graph: {roles: {<column>: effect_modifier}})"
        ]
    problems = [
        f"causal_graph.roles.{m}: an effect modifier must be a covariate or a categorical column "
        "(its segments are cut from each batch's rows)"
        for m in modifiers
        if m not in plan.model_columns
    ]
    if plan.primary_estimator not in SEGMENT_METHODS:
        problems.append(
            f"causal_graph.roles: effects by segment refit the primary estimator on each segment's rows; "
            f"{plan.primary_estimator!r} cannot be (use one of {list(SEGMENT_METHODS)}, or drop the effect_modifier roles)"
        )
    if plan.clustered:
        problems.append(
            "causal_graph.roles: effects by segment use each estimator's own standard errors, not clustered ones; "
            "a study with cluster or duplicate_units: cluster cannot have effect modifiers yet"
        )
    for column in settings.edges if settings is not None else {}:
        if column not in modifiers:
            problems.append(f"segments.edges.{column}: {column!r} is not an effect_modifier of causal_graph")
        elif column in plan.categorical:
            problems.append(
                f"segments.edges.{column}: {column!r} is categorical: its segments are its levels, it has no edges"
            )
    return problems
