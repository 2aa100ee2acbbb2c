"""The study's analysis plan: the statistical half of a study file, as one frozen object.

``AnalysisPlan`` is the specification every estimator, gate, filter setting and memo reads, in the
sense of a linearmodels "model": which columns play which role, the design, the estimand, the
estimators and their standard errors, the propensity policy, the prior and process variance of the
filter, the thresholds of the checks and the seed. Its cross-field rules are checked on entry
(a column in two roles, an estimand the estimators cannot deliver, a control that the causal
graph says is caused by the treatment) and reported one ``key: rule`` line per problem. The
pipeline's study file adds the name, landing folder, cadence and alerts on top
(``resources/study.py``); a notebook builds a plan directly.

Example
-------
>>> plan = AnalysisPlan(
...     unit_id="visitor", treatment="treated", outcome="order_value", outcome_type="continuous",
...     design={"kind": "randomized"}, covariates=["age"], primary_estimator="regression_adjustment",
...     process_var=0.0,
... )
>>> plan.estimators, plan.estimand, plan.model_columns
(('regression_adjustment',), 'ATE', ('age',))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import (
    AfterValidator,
    Field,
    PlainValidator,
    model_validator,
)

from assimilate.design.card import CausalGraphSpec, EstimandCard
from assimilate.design.dag import CausalDAG, DesignError
from assimilate.design.designs import IV_ESTIMATOR, UNIT_ESTIMATORS, Design
from assimilate.design.sections import (
    ColumnName,
    Integer,
    KalmanBackend,
    NOf1Settings,
    Number,
    OutcomeType,
    ParticleBackend,
    PriorSettings,
    PropensitySettings,
    Thresholds,
    _process_var,
    _Section,
    _unit,
)
from assimilate.design.shortlist import method_shortlist
from assimilate.estimators import supported_estimands
from assimilate.estimators.variance import OLS_METHODS

EstimatorName = Literal[
    "difference_in_means",
    "regression_adjustment",
    "lin_interacted",
    "ipw",
    "aipw",
    "n_of_1",
    "two_stage_least_squares",
]


class AnalysisPlan(_Section):
    """What a study estimates and how: columns, design, estimators, filter, thresholds, seed.

    Every field is a key of the study file, with the same name and default. A plan is frozen:
    changing a setting means validating a new plan, never mutation in place.
    """

    unit_id: ColumnName
    treatment: ColumnName
    outcome: ColumnName
    outcome_type: OutcomeType
    outcome_range: tuple[Number | None, Number | None] = (None, None)
    # The outcome's unit (e.g. "USD", "minutes"): the memo writes every effect in it, per the card's
    # unit. A binary outcome's effects are percentage points, so it takes none.
    outcome_unit: Annotated[str, AfterValidator(_unit)] | None = None
    # Which change of the outcome is wanted: the memo's recommendation reads the sign with it.
    desired_direction: Literal["increase", "decrease"] | None = None
    design: Design
    covariates: tuple[ColumnName, ...] = ()
    categorical: dict[ColumnName, tuple[str, ...]] = Field(default_factory=dict)
    post_treatment: tuple[ColumnName, ...] = ()
    # Units correlated within groups (a school, a store, a household): cluster-robust standard errors
    # on this column, CR1 unless standard_errors says CR2, interval on t with G - 1 df (docs/INTERVALS.md).
    cluster: ColumnName | None = None
    # HC0-HC3 (difference in means and regression adjustment), CR1, CR2; None keeps each estimator's
    # own (docs/INTERVALS.md).
    standard_errors: Literal["HC0", "HC1", "HC2", "HC3", "CR1", "CR2"] | None = None
    # A unit id repeated within a batch: "reject" quarantines the repeats (the default); "cluster"
    # keeps them and clusters the standard errors on the unit id (with the cluster column, if any).
    duplicate_units: Literal["reject", "cluster"] = "reject"
    estimand_card: EstimandCard | None = None
    causal_graph: CausalGraphSpec | None = None
    primary_estimator: EstimatorName
    estimators: tuple[EstimatorName, ...]
    # One subject's daily series (primary_estimator: n_of_1): the day column, the washout, the blocks.
    n_of_1: NOf1Settings | None = None
    propensity: PropensitySettings = PropensitySettings()
    cross_fitting_folds: Annotated[Integer, Field(ge=2)] | None = None
    prior: PriorSettings | None = None
    process_var: Annotated[float | Literal["mle"], PlainValidator(_process_var)]
    backend: Annotated[KalmanBackend | ParticleBackend, Field(discriminator="kind")] = KalmanBackend(
        kind="kalman"
    )
    thresholds: Thresholds = Thresholds()
    seed: Annotated[Integer, Field(ge=0)] = 0
    # How many times the study will be looked at: tunes the always-valid interval (None: a year of
    # batches at the cadence). It stays valid at any number of looks; it is narrowest near this one.
    planned_looks: Annotated[Integer, Field(ge=1)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        """``estimators`` default to the primary one."""
        if isinstance(data, dict):
            data = dict(data)
            if "estimators" not in data and isinstance(data.get("primary_estimator"), str):
                data["estimators"] = [data["primary_estimator"]]
        return data

    @model_validator(mode="after")
    def _unit_fits_outcome(self) -> AnalysisPlan:
        if self.outcome_type == "binary" and self.outcome_unit is not None:
            raise ValueError(
                "outcome_unit: a binary outcome's effect is reported in percentage points; leave outcome_unit out"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _day_is_the_row_id(cls, data: Any) -> Any:
        """An N-of-1 study's rows are one subject's days: ``unit_id`` defaults to ``n_of_1.time``."""
        if isinstance(data, dict) and "unit_id" not in data and isinstance(data.get("n_of_1"), dict):
            time = data["n_of_1"].get("time")
            if isinstance(time, str):
                data = {**data, "unit_id": time}
        return data

    @model_validator(mode="after")
    def _cross_field_rules(self) -> AnalysisPlan:
        problems = [*self._column_problems(), *self._option_problems(), *self._design_problems()]
        problems += self._n_of_1_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _column_problems(self) -> list[str]:
        problems: list[str] = []
        roles = {"unit_id": self.unit_id, "treatment": self.treatment, "outcome": self.outcome}
        seen: dict[str, str] = {}
        for role, column in roles.items():
            if column in seen:
                problems.append(f"{role}: column {column!r} is already the {seen[column]}")
            seen.setdefault(column, role)
        for key, columns in (("covariates", self.covariates), ("post_treatment", self.post_treatment)):
            for column in _duplicates(columns):
                problems.append(f"{key}: column {column!r} is listed twice")
        model_columns = [("covariates", c) for c in self.covariates] + [
            ("categorical", c) for c in self.categorical
        ]
        for key, column in model_columns:
            if column in roles.values():
                problems.append(f"{key}: column {column!r} is the {seen[column]}, not a covariate")
            if column in self.post_treatment:
                problems.append(
                    f"{key}: column {column!r} is listed in post_treatment: a column caused by the treatment "
                    "is never allowed as a covariate"
                )
        for column in set(self.covariates) & set(self.categorical):
            problems.append(f"categorical: column {column!r} is also a numeric covariate")
        if self.cluster is not None and self.cluster in {
            *roles.values(),
            *self.model_columns,
            *self.post_treatment,
        }:
            problems.append(f"cluster: column {self.cluster!r} is already a column of another role")
        for column in self.post_treatment:
            if column in roles.values():
                problems.append(f"post_treatment: column {column!r} is the {seen[column]}")
        for column, levels in self.categorical.items():
            if not levels:
                problems.append(f"categorical.{column}: needs at least one level")
            for level in _duplicates(levels):
                problems.append(f"categorical.{column}: level {level!r} is listed twice")
        return problems

    def _option_problems(self) -> list[str]:
        problems = []
        if self.primary_estimator not in self.estimators:
            problems.append(
                f"primary_estimator: {self.primary_estimator!r} must be among "
                f"estimators {list(self.estimators)}"
            )
        for name in _duplicates(self.estimators):
            problems.append(f"estimators: {name!r} is listed twice")
        problems += self._standard_error_problems()
        problems += self._design_estimator_problems()
        if self.cross_fitting_folds is not None and "aipw" not in self.estimators:
            problems.append(
                "cross_fitting_folds: applies only to the aipw estimator, which is not in estimators"
            )
        srm_keys = sorted(
            {"srm_alpha", "srm_min_units", "srm_false_alarm_per_year"} & self.thresholds.model_fields_set
        )
        if srm_keys and self.design.kind != "randomized":
            problems.append(
                f"thresholds.{srm_keys[0]}: the sample-ratio-mismatch check needs a randomized design "
                f"(design.kind is {self.design.kind!r})"
            )
        low, high = self.outcome_range
        if self.outcome_type == "binary" and (low is not None or high is not None):
            problems.append("outcome_range: a binary outcome is 0 or 1; leave the range as [null, null]")
        if low is not None and high is not None and low >= high:
            problems.append(f"outcome_range: lower bound must be < upper bound (got [{low}, {high}])")
        return problems

    def _design_estimator_problems(self) -> list[str]:
        """Estimators the design cannot run, and an estimand they cannot deliver."""
        design = self.design
        problems = [
            f"estimators: {name!r} cannot run under design.kind {design.kind!r} "
            f"(it runs {', '.join(design.estimators)})"
            for name in self.estimators
            if name not in design.estimators and name != "n_of_1"  # n_of_1 has its own rules
        ]
        if problems:
            return problems
        if design.estimand is not None:  # the design fixes whose effect it identifies
            card = self.estimand_card
            if card is not None and card.estimand != design.estimand:
                problems.append(
                    f"estimand_card.estimand: a {design.kind!r} design estimates the {design.estimand} "
                    f"(got {card.estimand}); state {design.estimand} on the card"
                )
            return problems
        if self.estimand == "LATE":
            return [
                "estimand_card.estimand: the LATE (the effect on compliers) needs an instrument: "
                "design: {kind: iv, instrument: [...]}"
            ]
        for name in self.estimators:
            if self.estimand not in supported_estimands(name):
                problems.append(
                    f"estimand_card.estimand: {self.estimand} cannot be estimated by {name!r} "
                    f"(in estimators; it estimates {', '.join(supported_estimands(name))})"
                )
        return problems

    def _instrument_problems(self, dag: CausalDAG | None) -> list[str]:
        """An instrument in another role, outside the graph, or with a path that bypasses the treatment."""
        if self.design.kind != "iv":
            return []
        instruments = self.design.instrument
        problems = [f"design.instrument: column {c!r} is listed twice" for c in _duplicates(instruments)]
        taken = {
            self.unit_id: "unit_id",
            self.treatment: "treatment",
            self.outcome: "outcome",
            **dict.fromkeys(self.model_columns, "a covariate"),
            **dict.fromkeys(self.post_treatment, "post_treatment"),
            **({self.cluster: "cluster"} if self.cluster else {}),
        }
        problems += [f"design.instrument: column {c!r} is {taken[c]}" for c in instruments if c in taken]
        if dag is None or problems:
            return problems
        for z in instruments:
            if z not in dag.graph:
                problems.append(
                    f"design.instrument: {z!r} is not in causal_graph; declare its edges or its role"
                )
            elif not dag.causes(z, self.treatment):
                problems.append(
                    f"design.instrument: {z!r} does not cause the treatment {self.treatment!r} in causal_graph"
                )
            elif (path := dag.open_instrument_path(z, self.model_columns)) is not None:
                given = f"given {list(self.model_columns)}" if self.model_columns else "with no covariates"
                problems.append(
                    f"design.instrument: {z!r} reaches the outcome {self.outcome!r} other than through the "
                    f"treatment: the path {dag.format_path(path)} in causal_graph is open {given}"
                )
        return problems

    def _design_problems(self) -> list[str]:
        problems = []
        if self.estimand_card is not None:
            known = {self.unit_id, self.treatment, self.outcome, *self.model_columns, *self.post_treatment}
            if self.causal_graph is not None:
                known |= {v for edge in self.causal_graph.edges for v in edge} | set(self.causal_graph.roles)
            problems.extend(
                f"estimand_card.variables_to_audit: {v!r} is not a column of the study or a variable of causal_graph"
                for v in self.estimand_card.variables_to_audit
                if v not in known
            )
        try:
            dag = self.causal_dag()
        except DesignError as error:
            return [*problems, *(f"causal_graph.{c.section}: {c.message}" for c in error.conflicts)]
        problems += self._instrument_problems(dag)
        return problems if dag is None else [*problems, *self._graph_problems(dag)]

    def _graph_problems(self, dag: CausalDAG) -> list[str]:
        """Conflicts between the causal graph and the design, the covariates and post_treatment."""
        problems = []
        treatment = self.treatment
        if self.design.kind == "randomized":
            problems.extend(
                f"causal_graph.edges: {cause!r} -> {treatment!r} contradicts the randomized design "
                "(only the randomization causes the treatment)"
                for cause in dag.parents(treatment)
            )
        keyed = [("covariates", c) for c in self.covariates] + [("categorical", c) for c in self.categorical]
        for key, column in keyed:
            if column in (self.unit_id, treatment, self.outcome):
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
            for column in self.post_treatment
            if column in dag.graph and column not in dag.descendants_of_treatment
        )
        if self.design.kind == "observational" and not problems:
            path = dag.open_backdoor_path(self.model_columns)
            if path is not None:
                suggestion = dag.adjustment_set()
                problems.append(
                    f"covariates: the backdoor path {dag.format_path(path)} in causal_graph is open given "
                    f"the covariates and categorical columns, so they are not a valid adjustment set"
                    + (f" (causal_graph suggests {list(suggestion)})" if suggestion is not None else "")
                )
        return problems

    def _n_of_1_problems(self) -> list[str]:
        settings = self.n_of_1
        if "n_of_1" not in self.estimators:
            return (
                []
                if settings is None
                else ["n_of_1: applies only to the n_of_1 estimator, which is not in estimators"]
            )
        problems = [
            f"estimators: {name!r} compares units, but an N-of-1 study follows one subject: "
            "n_of_1 is its only estimator"
            for name in self.estimators
            if name != "n_of_1"
        ]
        if self.design.kind != "randomized":
            problems.append(
                "design.kind: an N-of-1 study randomizes the order of its treatment blocks: "
                f"kind must be 'randomized' (got {self.design.kind!r})"
            )
        srm_keys = sorted(
            {"srm_alpha", "srm_min_units", "srm_false_alarm_per_year"} & self.thresholds.model_fields_set
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
        if self.unit_id != settings.time:
            problems.append(
                f"unit_id: an N-of-1 study follows one subject, so each row is one of its days: leave unit_id "
                f"out or set it to the day column {settings.time!r} (n_of_1.time), not {self.unit_id!r}"
            )
        roles = {"treatment": self.treatment, "outcome": self.outcome}
        problems.extend(
            f"n_of_1.time: column {settings.time!r} is the {r}"
            for r, c in roles.items()
            if c == settings.time
        )
        if settings.time in (*self.model_columns, *self.post_treatment):
            problems.append(f"n_of_1.time: column {settings.time!r} is the day, not a covariate")
        if settings.washout_days >= settings.block_days:
            problems.append(
                f"n_of_1.washout_days: must be < block_days ({settings.block_days}): a washout of "
                f"{settings.washout_days} days would drop every day of every block"
            )
        return problems

    def _standard_error_problems(self) -> list[str]:
        problems = []
        if self.standard_errors in ("CR1", "CR2") and not self.clustered:
            problems.append(
                f"standard_errors: {self.standard_errors} needs clusters: a cluster column or duplicate_units: cluster"
            )
        if self.standard_errors is not None and self.standard_errors.startswith("HC") and self.clustered:
            problems.append(f"standard_errors: {self.standard_errors} ignores the clusters; use CR1 or CR2")
        hat_matrix = {"HC0", "HC1", "HC2", "HC3", "CR2"}
        for name in self.estimators:
            if name == IV_ESTIMATOR:
                if self.standard_errors in ("HC2", "HC3", "CR2"):
                    problems.append(
                        f"standard_errors: {self.standard_errors} is not offered by {name!r}: use HC0, HC1 "
                        "or, with clusters, CR1"
                    )
            elif self.standard_errors in hat_matrix and name not in OLS_METHODS:
                problems.append(
                    f"standard_errors: {self.standard_errors} needs an OLS fit; {name!r} (in estimators) offers "
                    "its influence-function SE and, with clusters, CR1"
                )
        if self.n_of_1 is not None and (self.clustered or self.standard_errors is not None):
            problems.append("cluster: an N-of-1 study has one subject; its SE comes from the AR(1) model")
        return problems

    @property
    def clustered(self) -> bool:
        """Whether standard errors are clustered (a cluster column, or repeated units kept)."""
        return self.cluster is not None or self.duplicate_units == "cluster"

    @property
    def estimand(self) -> Literal["ATE", "ATT", "ATC", "LATE"]:
        """Whose average effect every estimator estimates.

        The design's when it fixes one (the LATE for an instrument), else the estimand card's,
        else the ATE.
        """
        if self.design.kind == "iv":
            return "LATE"
        return self.estimand_card.estimand if self.estimand_card is not None else "ATE"

    @property
    def single_subject(self) -> bool:
        """Whether this is an N-of-1 study: one subject's days, so unit-level gates (SRM, overlap, balance) do not apply."""
        return self.n_of_1 is not None

    @property
    def model_columns(self) -> tuple[str, ...]:
        """Every column that enters a propensity or outcome model: covariates, then categorical."""
        return (*self.covariates, *self.categorical)

    def causal_dag(self) -> CausalDAG | None:
        """The study's causal DAG, or None without a ``causal_graph:`` section.

        Built on each call (graphs are small) so that a ``model_copy`` never sees a stale graph.

        Raises
        ------
        DesignError
            Only for a config built without validation (``model_construct``): a loaded study's
            graph was checked at load time.
        """
        if self.causal_graph is None:
            return None
        return CausalDAG(self.causal_graph, treatment=self.treatment, outcome=self.outcome)

    def method_shortlist(self) -> pd.DataFrame:
        """Which estimators this study's design supports and can run, and why others are rejected.

        Columns ``method``, ``valid``, ``reason`` (see :func:`assimilate.design.method_shortlist`);
        the study's batches are cross-sections without a running variable. A method is valid only
        when the design identifies the effect and the pipeline runs it: instrumental variables
        under ``design.kind: iv``; never (yet) difference in differences or a regression
        discontinuity. An N-of-1 study's table holds ``n_of_1`` and the unit-level estimators it
        rules out.
        """
        if self.single_subject:
            return pd.DataFrame(
                [{"method": "n_of_1", "valid": True, "reason": _N_OF_1_FIT}]
                + [{"method": m, "valid": False, "reason": _UNIT_LEVEL} for m in UNIT_ESTIMATORS],
                columns=["method", "valid", "reason"],
            )
        design = self.design
        table = method_shortlist(
            self.causal_dag(),
            design="observational" if design.kind == "iv" else design.kind,
            covariates=self.model_columns,
            observed=(*self.model_columns, *self.post_treatment),
        )
        iv = table["method"] == "instrumental_variables"
        if design.kind == "iv":
            checked = (
                "checked against causal_graph"
                if self.causal_graph is not None
                else "assumed (no causal_graph)"
            )
            table.loc[iv, ["valid", "reason"]] = [
                True,
                f"instrument {list(design.instrument)}: {IV_ESTIMATOR} for the LATE, gated on an effective "
                f"first-stage F >= {design.min_first_stage_f:g}; the exclusion restriction is {checked}",
            ]
        else:
            table.loc[iv & table["valid"], "reason"] += (
                "; to run it, declare design: {kind: iv, instrument: [...]}"
            )
            table.loc[iv, "valid"] = False
        not_run = (
            table["method"].isin(["difference_in_differences", "regression_discontinuity"]) & table["valid"]
        )
        table.loc[not_run, "reason"] += "; not run by assimilate's pipeline yet"
        table.loc[not_run, "valid"] = False
        return table


# Why the unit-level gates (sample-ratio mismatch, overlap, balance) are not assessed in an N-of-1 study.
ONE_SUBJECT = (
    "not assessed: an N-of-1 study follows one subject whose days are randomized in blocks, "
    "so there are no units to compare"
)
_N_OF_1_FIT = (
    "one subject's randomized blocks of days: GLS with AR(1) errors by REML and a Kenward-Roger "
    "interval, the washout days dropped"
)
_UNIT_LEVEL = "compares units; an N-of-1 study has one subject, whose days are autocorrelated"


def _duplicates(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    repeated = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated
