"""Guardrail outcomes of a study: each one a study of its own, derived from the primary at load.

A study's ``guardrails:`` lists outcomes that must not be harmed (a refund rate, support contacts,
latency) while the primary outcome is what the study is for. Each guardrail is run as a *derived
study* named ``<study>__<outcome>``: the primary's batches, landing folder, covariates, design,
estimators, checks and filter, with the guardrail's outcome, type, unit, range and direction. So
each guardrail has its own assets, warehouse tables (its own schema), checks and alerts, and its
own posterior; the primary's job runs them with its own, and the primary's memo reports them
(``assimilate/report/guardrails.py``).

Example (in a study file)::

    guardrails:
      - outcome: refunded
        outcome_type: binary
        desired_direction: decrease   # required: a rise in refunds is the harm
        margin: 0.02                  # optional: a rise up to 2 points is tolerated
        prior: {mean: 0.0, variance: 0.01}   # optional: the filter's, on the refund rate's scale
        process_var: 0.000001                # optional: as above (unset: the primary's)

Load rules, each an error naming the key: a guardrail's outcome may not be the primary outcome,
another guardrail's outcome or a column of another role (unit id, treatment, covariate, categorical,
post-treatment, cluster, instrument, a refuter's negative control, a variable of the causal graph);
its study name must fit the study-name rule.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field, PlainValidator, ValidationError, model_validator

from assimilate.design.sections import (
    ColumnName,
    Number,
    OutcomeType,
    PriorSettings,
    _process_var,
    _Section,
    _unit,
)
from resources.study_file import validation_lines

if TYPE_CHECKING:
    from resources.study import StudyConfig

GUARDRAIL_SEPARATOR = "__"


class Guardrail(_Section):
    """One guardrail outcome: which column, its type and unit, which way is harm, and the tolerance."""

    outcome: ColumnName
    outcome_type: OutcomeType
    outcome_unit: Annotated[str, AfterValidator(_unit)] | None = None
    outcome_range: tuple[Number | None, Number | None] = (None, None)
    # The wanted change: the harm is a change the other way (required, there is no default harm).
    desired_direction: Literal["increase", "decrease"]
    # A non-inferiority margin in the outcome's units (a proportion for a binary outcome): a harm
    # smaller than it is tolerated. 0: any harm counts.
    margin: Annotated[Number, Field(ge=0)] = 0.0
    # The filter's prior and process variance are on the outcome's scale: a guardrail in other units
    # than the primary's sets its own (unset: the primary's, which fits only an outcome of its scale).
    prior: PriorSettings | None = None
    process_var: Annotated[float | Literal["mle"], PlainValidator(_process_var)] | None = None

    @model_validator(mode="after")
    def _fits_its_type(self) -> Guardrail:
        low, high = self.outcome_range
        if self.outcome_type == "binary" and self.outcome_unit is not None:
            raise ValueError(
                "outcome_unit: a binary outcome's effect is reported in percentage points; leave outcome_unit out"
            )
        if self.outcome_type == "binary" and (low is not None or high is not None):
            raise ValueError("outcome_range: a binary outcome is 0 or 1; leave the range as [null, null]")
        if low is not None and high is not None and low >= high:
            raise ValueError(f"outcome_range: lower bound must be < upper bound (got [{low}, {high}])")
        if self.outcome_type == "binary" and self.margin >= 1:
            raise ValueError(f"margin: a binary outcome's margin is a proportion below 1 (got {self.margin})")
        return self


def guardrail_study_name(study_name: str, outcome: str) -> str:
    """The derived study's name: ``<study>__<outcome>`` (lower case, as study names are)."""
    return f"{study_name}{GUARDRAIL_SEPARATOR}{outcome.lower()}"


def guardrail_problems(study: StudyConfig) -> list[str]:
    """One ``guardrails[i].key: rule`` line per guardrail that clashes with the study's columns or names."""
    from resources.study import STUDY_NAME_PATTERN  # the rule the derived names must also meet

    roles = _column_roles(study)
    problems: list[str] = []
    first: dict[str, int] = {}
    for index, guardrail in enumerate(study.guardrails):
        where = f"guardrails[{index}].outcome"
        column = guardrail.outcome
        if column.lower() in roles:
            problems.append(f"{where}: column {column!r} is already the study's {roles[column.lower()]}")
        if column.lower() in first:
            problems.append(f"{where}: column {column!r} is already guardrails[{first[column.lower()]}]")
        first.setdefault(column.lower(), index)
        name = guardrail_study_name(study.name, column)
        if re.fullmatch(STUDY_NAME_PATTERN, name) is None:
            problems.append(
                f"{where}: the guardrail's study name {name!r} must match ^{STUDY_NAME_PATTERN}$ "
                "(at most 40 characters): shorten the study name or the column"
            )
    return problems


def derive_guardrail_studies(study: StudyConfig) -> tuple[StudyConfig, ...]:
    """One validated study per guardrail, as described in the module docstring.

    Raises
    ------
    ValueError
        With one line per problem: a clash (:func:`guardrail_problems`) or a derived study that
        does not validate (its lines prefixed with the guardrail's key).
    """
    if not study.guardrails:
        return ()
    problems = guardrail_problems(study)
    if problems:
        raise ValueError("\n".join(problems))
    # What the analyst wrote (unset keys stay unset, so no default counts as set in the copy).
    base = study.model_dump(mode="python", exclude_unset=True, exclude={"guardrails"})
    derived = []
    for index, guardrail in enumerate(study.guardrails):
        data = _guardrail_data(study, base, guardrail)
        try:
            child = type(study).model_validate(data)
        except ValidationError as error:
            lines = validation_lines(error, model=type(study))
            raise ValueError("\n".join(f"guardrails[{index}]: {line}" for line in lines)) from None
        derived.append(child)
    return tuple(derived)


def _guardrail_data(study: StudyConfig, base: dict[str, Any], guardrail: Guardrail) -> dict[str, Any]:
    data = {key: value for key, value in base.items() if key not in _OUTCOME_KEYS}
    data |= {
        "name": guardrail_study_name(study.name, guardrail.outcome),
        "landing_folder": study.landing_folder,
        "description": f"Guardrail {guardrail.outcome} of {study.name}. {study.description}".strip(),
        "outcome": guardrail.outcome,
        "outcome_type": guardrail.outcome_type,
        "outcome_range": guardrail.outcome_range,
        "desired_direction": guardrail.desired_direction,
    }
    for key in ("outcome_unit", "prior", "process_var"):
        if getattr(guardrail, key) is not None:
            data[key] = getattr(guardrail, key)
    if study.estimand_card is not None:  # the same question, asked of the guardrail's outcome
        card = study.estimand_card.model_dump(mode="python", exclude_unset=True)
        card["outcome"] = f"{guardrail.outcome} (guardrail of {study.name})"
        if card.get("causal_question"):
            card["causal_question"] += f"; here asked of the guardrail outcome {guardrail.outcome}"
        data["estimand_card"] = card
    if study.causal_graph is not None:  # the same graph, with the guardrail in the outcome's node
        graph = study.causal_graph.model_dump(mode="python", exclude_unset=True)
        rename = {study.outcome: guardrail.outcome}
        graph["edges"] = [[rename.get(a, a), rename.get(b, b)] for a, b in graph.get("edges", [])]
        data["causal_graph"] = graph
    return data


# The primary's outcome keys: a guardrail gives its own (an unset one keeps its default).
_OUTCOME_KEYS = {"outcome", "outcome_type", "outcome_unit", "outcome_range", "desired_direction"}


def _column_roles(study: StudyConfig) -> dict[str, str]:
    """Lower-cased column -> the role it already plays in the study (a guardrail outcome may take none)."""
    roles: dict[str, str] = {}
    named = [
        ("unit_id", study.unit_id),
        ("treatment", study.treatment),
        ("outcome", study.outcome),
        *(("covariate", c) for c in study.covariates),
        *(("categorical column", c) for c in study.categorical),
        *(("post-treatment column", c) for c in study.post_treatment),
        *(("instrument", c) for c in study.instruments),
        ("cluster", study.cluster),
        ("n_of_1.time", study.n_of_1.time if study.n_of_1 is not None else None),
        ("weights", getattr(study, "weights", None)),  # a study's sampling weights, where the plan has them
    ]
    negative = study.refuters.negative_control_outcome if study.refuters is not None else None
    named.append(("negative-control outcome", getattr(negative, "column", None)))
    if study.causal_graph is not None:
        graph = study.causal_graph
        named += [("causal_graph variable", v) for edge in graph.edges for v in edge]
        named += [("causal_graph variable", v) for v in graph.roles]
    for role, column in named:
        if isinstance(column, str):
            roles.setdefault(column.lower(), role)
    return roles
