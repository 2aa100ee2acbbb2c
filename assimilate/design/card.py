"""The estimand card and the declared causal graph of a study, as validated data.

A study's design is written down before any number is computed: what question, which units, which
contrast, which effect (ATE or ATT), under which assumptions, and the causal graph (edges and/or a
table of variable roles) that decides which variables may be adjusted for. These models are the
schema of the ``estimand_card:`` and ``causal_graph:`` sections of a study file; the graph logic
(adjustment sets, forbidden controls) lives in :mod:`assimilate.design.dag`.

Example
-------
>>> card = EstimandCard(
...     business_question="Does the new checkout raise order value?",
...     causal_question="Effect of the new checkout flow on order value per visitor",
...     unit="visitor", treatment="new checkout flow", control_condition="current checkout flow",
...     outcome="order value", time_window="the visit", target_population="all visitors",
...     estimand="ATE", required_assumptions=["randomization"], likely_threats=["novelty effect"],
... )
>>> card.estimand
'ATE'
>>> CausalGraphSpec(edges=[("x", "d"), ("x", "y"), ("d", "y")]).edges[0]
('x', 'd')
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Estimand = Literal["ATE", "ATT", "ATC", "LATE"]
VariableRole = Literal[
    "treatment",
    "outcome",
    "confounder",
    "precision",
    "effect_modifier",
    "mediator",
    "post_treatment",
    "collider",
    "instrument",
    "outcome_proxy",
    "negative_control",
]
"""Roles a variable can play. ``mediator`` and ``post_treatment`` are caused by the treatment and
are never controls; ``collider`` must not be conditioned on; ``instrument`` affects the outcome only
through the treatment (adjusting for it costs precision and can amplify bias); ``negative_control``
is an outcome the treatment cannot affect but an unmeasured confounder would (its estimated effect
should be zero: :func:`assimilate.diagnostics.refuters.negative_controls`); it is never a control."""

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Variable = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EstimandCard(_Model):
    """What is estimated, for whom, and under which assumptions: the study's question in words.

    Attributes
    ----------
    business_question : str
        The decision the number informs.
    causal_question : str
        The same question as a contrast of potential outcomes.
    unit, treatment, control_condition, outcome, time_window, target_population : str
        The elements of the contrast.
    estimand : {"ATE", "ATT", "ATC", "LATE"}
        Average effect over the target population, or over the treated.
    required_assumptions : list of str
        What must hold for the estimate to be causal (e.g. no unmeasured confounding, overlap).
    likely_threats : list of str
        What could break those assumptions in this study.
    variables_to_audit : list of str
        Columns whose timing or meaning an analyst should verify.
    """

    business_question: Text
    causal_question: Text
    unit: Text
    treatment: Text
    control_condition: Text
    outcome: Text
    time_window: Text
    target_population: Text
    estimand: Estimand
    required_assumptions: list[Text] = Field(min_length=1)
    likely_threats: list[Text] = Field(default_factory=list)
    variables_to_audit: list[Variable] = Field(default_factory=list)


class CausalGraphSpec(_Model):
    """The declared causal graph: directed edges ``(cause, effect)`` and/or a variable-role table.

    Either part may be empty, not both, and no edge may be a self-loop. The study's treatment and
    outcome columns are the graph's treatment and outcome nodes. A variable named only in ``roles``
    gets the edges its role implies (see :class:`assimilate.design.dag.CausalDAG`); a variable in
    ``edges`` that also has a role must play that role in the graph.
    """

    edges: list[tuple[Variable, Variable]] = Field(default_factory=list)
    roles: dict[Variable, VariableRole] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _well_formed(self) -> CausalGraphSpec:
        problems = []
        if not self.edges and not self.roles:
            problems.append("needs edges, roles or both (both are empty)")
        for cause, effect in self.edges:
            if cause == effect:
                problems.append(
                    f"edges: {cause!r} -> {effect!r} is a self-loop; a variable cannot cause itself"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self
