"""The rules between an analysis plan's fields: one ``key: rule`` line per problem found.

A column in two roles, an estimator the design cannot run, an estimand the estimators cannot
deliver, a standard error an estimator does not offer, a control that the causal graph says the
treatment causes, an N-of-1 study with more than one estimator. ``AnalysisPlan`` runs them all on
entry (``assimilate/design/plan.py``); a subclass extends ``_column_problems`` or
``_n_of_1_problems`` with rules of its own (the pipeline's study file does).

Example
-------
>>> from assimilate.design.plan import AnalysisPlan
>>> plan = AnalysisPlan.model_construct(
...     unit_id="id", treatment="d", outcome="d", covariates=(), categorical={}, post_treatment=(),
...     cluster=None,
... )
>>> column_problems(plan)
["outcome: column 'd' is already the treatment"]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from assimilate.design._did_rules import did_problems
from assimilate.design._weight_rules import weight_problems
from assimilate.design.dag import CausalDAG, DesignError
from assimilate.design.designs import IV_ESTIMATOR, UNIT_ESTIMATORS
from assimilate.estimators import supported_estimands
from assimilate.estimators.variance import OLS_METHODS

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan


def column_problems(plan: AnalysisPlan) -> list[str]:
    problems: list[str] = []
    roles = {"unit_id": plan.unit_id, "treatment": plan.treatment, "outcome": plan.outcome}
    seen: dict[str, str] = {}
    for role, column in roles.items():
        if column in seen:
            problems.append(f"{role}: column {column!r} is already the {seen[column]}")
        seen.setdefault(column, role)
    for key, columns in (("covariates", plan.covariates), ("post_treatment", plan.post_treatment)):
        for column in _duplicates(columns):
            problems.append(f"{key}: column {column!r} is listed twice")
    model_columns = [("covariates", c) for c in plan.covariates] + [
        ("categorical", c) for c in plan.categorical
    ]
    for key, column in model_columns:
        if column in roles.values():
            problems.append(f"{key}: column {column!r} is the {seen[column]}, not a covariate")
        if column in plan.post_treatment:
            problems.append(
                f"{key}: column {column!r} is listed in post_treatment: a column caused by the treatment "
                "is never allowed as a covariate"
            )
    for column in set(plan.covariates) & set(plan.categorical):
        problems.append(f"categorical: column {column!r} is also a numeric covariate")
    if plan.cluster is not None and plan.cluster in {
        *roles.values(),
        *plan.model_columns,
        *plan.post_treatment,
    }:
        problems.append(f"cluster: column {plan.cluster!r} is already a column of another role")
    for column in plan.post_treatment:
        if column in roles.values():
            problems.append(f"post_treatment: column {column!r} is the {seen[column]}")
    for column, levels in plan.categorical.items():
        if not levels:
            problems.append(f"categorical.{column}: needs at least one level")
        for level in _duplicates(levels):
            problems.append(f"categorical.{column}: level {level!r} is listed twice")
    return problems


def option_problems(plan: AnalysisPlan) -> list[str]:
    problems = []
    if plan.primary_estimator not in plan.estimators:
        problems.append(
            f"primary_estimator: {plan.primary_estimator!r} must be among estimators {list(plan.estimators)}"
        )
    for name in _duplicates(plan.estimators):
        problems.append(f"estimators: {name!r} is listed twice")
    problems += standard_error_problems(plan)
    problems += design_estimator_problems(plan)
    problems += weight_problems(plan)
    if plan.cross_fitting_folds is not None and "aipw" not in plan.estimators:
        problems.append("cross_fitting_folds: applies only to the aipw estimator, which is not in estimators")
    srm_keys = sorted(
        {"srm_alpha", "srm_min_units", "srm_false_alarm_per_year"} & plan.thresholds.model_fields_set
    )
    if srm_keys and plan.design.kind != "randomized":
        problems.append(
            f"thresholds.{srm_keys[0]}: the sample-ratio-mismatch check needs a randomized design "
            f"(design.kind is {plan.design.kind!r})"
        )
    low, high = plan.outcome_range
    if plan.outcome_type == "binary" and (low is not None or high is not None):
        problems.append("outcome_range: a binary outcome is 0 or 1; leave the range as [null, null]")
    if low is not None and high is not None and low >= high:
        problems.append(f"outcome_range: lower bound must be < upper bound (got [{low}, {high}])")
    return problems


def design_estimator_problems(plan: AnalysisPlan) -> list[str]:
    """Estimators the design cannot run, and an estimand they cannot deliver."""
    design = plan.design
    problems = [
        f"estimators: {name!r} cannot run under design.kind {design.kind!r} "
        f"(it runs {', '.join(design.estimators)})"
        for name in plan.estimators
        # n_of_1 has its own rules; a custom estimator, custom_estimator_problems
        if name not in (*design.estimators, "n_of_1", *plan.custom_estimators)
    ]
    problems += custom_estimator_problems(plan)
    if problems:
        return problems
    if design.estimand is not None:  # the design fixes whose effect it identifies
        card = plan.estimand_card
        if card is not None and card.estimand != design.estimand:
            problems.append(
                f"estimand_card.estimand: a {design.kind!r} design estimates the {design.estimand} "
                f"(got {card.estimand}); state {design.estimand} on the card"
            )
        return problems
    if plan.estimand == "LATE":
        return [
            "estimand_card.estimand: the LATE (the effect on compliers) needs an instrument: "
            "design: {kind: iv, instrument: [...]}"
        ]
    for name in plan.estimators:
        if name in plan.custom_estimators:  # it receives the plan's estimand and must return it
            continue
        if plan.estimand not in supported_estimands(name):
            problems.append(
                f"estimand_card.estimand: {plan.estimand} cannot be estimated by {name!r} "
                f"(in estimators; it estimates {', '.join(supported_estimands(name))})"
            )
    return problems


def custom_estimator_problems(plan: AnalysisPlan) -> list[str]:
    """A custom estimator under an instrument's design, or refitted by the refuters."""
    custom = [name for name in plan.estimators if name in plan.custom_estimators]
    problems = []
    if custom and plan.design.kind == "iv":
        problems += [
            f"estimators: {name!r} (custom_estimators) cannot run under design.kind 'iv': a custom estimator "
            f"receives no instrument; the design runs {IV_ESTIMATOR}"
            for name in custom
        ]
    if plan.primary_estimator in plan.custom_estimators and getattr(plan, "refuters", None) is not None:
        problems.append(
            f"refuters: they refit a built-in estimator; the primary estimator {plan.primary_estimator!r} "
            "is a custom one (custom_estimators)"
        )
    return problems


def instrument_problems(plan: AnalysisPlan, dag: CausalDAG | None) -> list[str]:
    """An instrument in another role, outside the graph, or with a path that bypasses the treatment."""
    if plan.design.kind != "iv":
        return []
    instruments = plan.design.instrument
    problems = [f"design.instrument: column {c!r} is listed twice" for c in _duplicates(instruments)]
    taken = {
        plan.unit_id: "unit_id",
        plan.treatment: "treatment",
        plan.outcome: "outcome",
        **dict.fromkeys(plan.model_columns, "a covariate"),
        **dict.fromkeys(plan.post_treatment, "post_treatment"),
        **({plan.cluster: "cluster"} if plan.cluster else {}),
    }
    problems += [f"design.instrument: column {c!r} is {taken[c]}" for c in instruments if c in taken]
    if dag is None or problems:
        return problems
    for z in instruments:
        if z not in dag.graph:
            problems.append(f"design.instrument: {z!r} is not in causal_graph; declare its edges or its role")
        elif not dag.causes(z, plan.treatment):
            problems.append(
                f"design.instrument: {z!r} does not cause the treatment {plan.treatment!r} in causal_graph"
            )
        elif (path := dag.open_instrument_path(z, plan.model_columns)) is not None:
            given = f"given {list(plan.model_columns)}" if plan.model_columns else "with no covariates"
            problems.append(
                f"design.instrument: {z!r} reaches the outcome {plan.outcome!r} other than through the "
                f"treatment: the path {dag.format_path(path)} in causal_graph is open {given}"
            )
    return problems


def design_problems(plan: AnalysisPlan) -> list[str]:
    problems: list[str] = []
    if plan.estimand_card is not None:
        known = {plan.unit_id, plan.treatment, plan.outcome, *plan.model_columns, *plan.post_treatment}
        known |= set(plan.did_columns)
        if plan.causal_graph is not None:
            known |= {v for edge in plan.causal_graph.edges for v in edge} | set(plan.causal_graph.roles)
        problems.extend(
            f"estimand_card.variables_to_audit: {v!r} is not a column of the study or a variable of causal_graph"
            for v in plan.estimand_card.variables_to_audit
            if v not in known
        )
    try:
        dag = plan.causal_dag()
    except DesignError as error:
        return [*problems, *(f"causal_graph.{c.section}: {c.message}" for c in error.conflicts)]
    problems += instrument_problems(plan, dag)
    problems += did_problems(plan)
    problems += refuter_problems(plan, dag)
    return problems if dag is None else [*problems, *graph_problems(plan, dag)]


def refuter_problems(plan: AnalysisPlan, dag: CausalDAG | None) -> list[str]:
    """Refuters the design cannot run, and a negative control the causal graph does not declare."""
    if plan.refuters is None:
        return []
    configured = plan.refuters.configured
    if plan.single_subject or plan.design.kind == "iv":
        why = (
            "an N-of-1 study has one subject's autocorrelated days, not units to permute or subsample"
            if plan.single_subject
            else "an iv design's 2SLS estimate is not one the refuters refit (they refit a unit-level "
            "estimator of the treatment given the covariates)"
        )
        return [f"refuters.{name}: does not apply to this study: {why}" for name in configured]
    if plan.primary_estimator not in UNIT_ESTIMATORS:  # a team's own estimator: no refit by name
        return [
            f"refuters.{name}: the primary estimator {plan.primary_estimator!r} is not one the refuters can "
            f"refit ({', '.join(UNIT_ESTIMATORS)})"
            for name in configured
        ]
    problems = []
    if plan.clustered:
        problems.append(
            "refuters: the refuters' standard errors are not clustered, so their levels would not hold in a "
            "clustered study (cluster or duplicate_units: cluster); remove the refuters or the clustering"
        )
    if "random_common_cause" in configured and plan.primary_estimator == "difference_in_means":
        problems.append(
            "refuters.random_common_cause: the primary estimator difference_in_means adjusts for no "
            "covariate, so a random common cause cannot move it"
        )
    if "negative_control_outcome" in configured:
        problems += negative_control_problems(plan, dag)
    return problems


def negative_control_column(plan: AnalysisPlan) -> str | None:
    """The negative-control outcome the plan's refuter reads: its ``column``, or the graph's only one."""
    settings = None if plan.refuters is None else plan.refuters.negative_control_outcome
    if settings is None:
        return None
    if settings.column is not None:
        return settings.column
    declared = _negative_controls(plan)
    return declared[0] if len(declared) == 1 else None


def negative_control_problems(plan: AnalysisPlan, dag: CausalDAG | None) -> list[str]:
    """The negative control: declared in the causal graph, one column, in no other role, not caused by the treatment."""
    key = "refuters.negative_control_outcome"
    declared = _negative_controls(plan)
    settings = None if plan.refuters is None else plan.refuters.negative_control_outcome
    chosen = None if settings is None else settings.column
    if not declared:
        return [
            f"{key}: needs a causal_graph role negative_control naming a column the treatment cannot affect "
            "(causal_graph: {roles: {<column>: negative_control}})"
        ]
    if chosen is not None and chosen not in declared:
        return [
            f"{key}.column: {chosen!r} has no role negative_control in causal_graph (declared: {list(declared)})"
        ]
    if chosen is None and len(declared) > 1:
        return [
            f"{key}: causal_graph declares {len(declared)} negative controls {list(declared)}; name one in column"
        ]
    column = negative_control_column(plan)
    taken = {
        plan.unit_id: "the unit_id",
        plan.treatment: "the treatment",
        plan.outcome: "the outcome",
        **dict.fromkeys(plan.model_columns, "a covariate"),
        **dict.fromkeys(plan.post_treatment, "post_treatment"),
        **dict.fromkeys(plan.instruments, "an instrument"),
        **({plan.cluster: "the cluster"} if plan.cluster else {}),
    }
    if column in taken:
        return [f"{key}: column {column!r} is {taken[column]}, not an outcome the treatment cannot affect"]
    if dag is not None and column in dag.graph and column in dag.descendants_of_treatment:
        return [
            f"{key}: column {column!r} is a descendant of the treatment {plan.treatment!r} in causal_graph"
        ]
    return []


def _negative_controls(plan: AnalysisPlan) -> tuple[str, ...]:
    from assimilate.diagnostics.refuters import negative_controls  # the rule's owner; heavy, so late

    return () if plan.causal_graph is None else negative_controls(plan.causal_graph.roles)


def graph_problems(plan: AnalysisPlan, dag: CausalDAG) -> list[str]:
    """Conflicts between the causal graph and the design, the covariates and post_treatment."""
    problems: list[str] = []
    treatment = plan.treatment
    if plan.design.kind == "randomized":
        problems.extend(
            f"causal_graph.edges: {cause!r} -> {treatment!r} contradicts the randomized design "
            "(only the randomization causes the treatment)"
            for cause in dag.parents(treatment)
        )
    keyed = [("covariates", c) for c in plan.covariates] + [("categorical", c) for c in plan.categorical]
    for key, column in keyed:
        if column in (plan.unit_id, treatment, plan.outcome):
            continue  # already reported as a role clash
        if column not in dag.graph:
            problems.append(f"{key}: {column!r} is not in causal_graph; declare its edges or its role")
        elif column in dag.descendants_of_treatment:
            problems.append(
                f"{key}: {column!r} is a descendant of the treatment {treatment!r} in causal_graph "
                "(post-treatment), so it cannot be a control"
            )
    problems.extend(
        f"post_treatment: {column!r} is not a descendant of the treatment {treatment!r} in causal_graph"
        for column in plan.post_treatment
        if column in dag.graph and column not in dag.descendants_of_treatment
    )
    if plan.design.kind == "observational" and not problems:
        path = dag.open_backdoor_path(plan.model_columns)
        if path is not None:
            suggestion = dag.adjustment_set()
            problems.append(
                f"covariates: the backdoor path {dag.format_path(path)} in causal_graph is open given "
                f"the covariates and categorical columns, so they are not a valid adjustment set"
                + (f" (causal_graph suggests {list(suggestion)})" if suggestion is not None else "")
            )
    return problems


def n_of_1_problems(plan: AnalysisPlan) -> list[str]:
    settings = plan.n_of_1
    if "n_of_1" not in plan.estimators:
        return (
            []
            if settings is None
            else ["n_of_1: applies only to the n_of_1 estimator, which is not in estimators"]
        )
    problems = [
        f"estimators: {name!r} compares units, but an N-of-1 study follows one subject: "
        "n_of_1 is its only estimator"
        for name in plan.estimators
        if name != "n_of_1"
    ]
    if plan.design.kind != "randomized":
        problems.append(
            "design.kind: an N-of-1 study randomizes the order of its treatment blocks: "
            f"kind must be 'randomized' (got {plan.design.kind!r})"
        )
    srm_keys = sorted(
        {"srm_alpha", "srm_min_units", "srm_false_alarm_per_year"} & plan.thresholds.model_fields_set
    )
    problems.extend(
        f"thresholds.{k}: the sample-ratio-mismatch check compares randomized units; an N-of-1 study "
        "randomizes blocks of one subject's days, so it does not apply"
        for k in srm_keys
    )
    if settings is None:
        return [
            *problems,
            "n_of_1: is required by the n_of_1 estimator: time (the day column), washout_days, block_days",
        ]
    if plan.unit_id != settings.time:
        problems.append(
            f"unit_id: an N-of-1 study follows one subject, so each row is one of its days: leave unit_id "
            f"out or set it to the day column {settings.time!r} (n_of_1.time), not {plan.unit_id!r}"
        )
    roles = {"treatment": plan.treatment, "outcome": plan.outcome}
    problems.extend(
        f"n_of_1.time: column {settings.time!r} is the {r}" for r, c in roles.items() if c == settings.time
    )
    if settings.time in (*plan.model_columns, *plan.post_treatment):
        problems.append(f"n_of_1.time: column {settings.time!r} is the day, not a covariate")
    if settings.washout_days >= settings.block_days:
        problems.append(
            f"n_of_1.washout_days: must be < block_days ({settings.block_days}): a washout of "
            f"{settings.washout_days} days would drop every day of every block"
        )
    return problems


def standard_error_problems(plan: AnalysisPlan) -> list[str]:
    problems = []
    if plan.standard_errors in ("CR1", "CR2") and not plan.clustered:
        problems.append(
            f"standard_errors: {plan.standard_errors} needs clusters: a cluster column or duplicate_units: cluster"
        )
    if plan.standard_errors is not None and plan.standard_errors.startswith("HC") and plan.clustered:
        problems.append(f"standard_errors: {plan.standard_errors} ignores the clusters; use CR1 or CR2")
    hat_matrix = {"HC0", "HC1", "HC2", "HC3", "CR2"}
    for name in plan.estimators:
        if name == IV_ESTIMATOR:
            if plan.standard_errors in ("HC2", "HC3", "CR2"):
                problems.append(
                    f"standard_errors: {plan.standard_errors} is not offered by {name!r}: use HC0, HC1 "
                    "or, with clusters, CR1"
                )
        elif plan.standard_errors in hat_matrix and name in plan.custom_estimators:
            problems.append(
                f"standard_errors: {plan.standard_errors} needs an OLS fit; {name!r} (custom_estimators) offers "
                "its own SE and, with clusters, CR1 from its influence values"
            )
        elif plan.standard_errors in hat_matrix and name not in OLS_METHODS:
            problems.append(
                f"standard_errors: {plan.standard_errors} needs an OLS fit; {name!r} (in estimators) offers "
                "its influence-function SE and, with clusters, CR1"
            )
    if plan.n_of_1 is not None and (plan.clustered or plan.standard_errors is not None):
        problems.append("cluster: an N-of-1 study has one subject; its SE comes from the AR(1) model")
    return problems


def _duplicates(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    repeated = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated
