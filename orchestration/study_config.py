"""Study configuration: one YAML file per study, validated into a frozen ``StudyConfig``.

A study is one treatment/outcome question with its data stream. Its YAML names the landing folder,
the cadence of the batches, the columns, the design, the estimators, the filter (prior, process
variance, backend), the assumption-check thresholds and the alert targets. Every column name
becomes a SQL identifier, so it must match ``^[A-Za-z_][A-Za-z0-9_]{0,62}$``.

Example
-------
>>> study = load_study(Path(__file__).parent.parent / "studies" / "ab_checkout.yaml")
>>> study.cadence, study.primary_estimator
('monthly', 'regression_adjustment')

Errors name the file, the key path and the rule, one line per problem::

    studies/x.yaml: thresholds.max_abs_smd: must be > 0 (got -1)

Two optional sections write the design down: ``estimand_card:`` (the question, the estimand and
its assumptions) and ``causal_graph:`` (``edges`` as ``[cause, effect]`` pairs and/or ``roles``).
With a causal graph, the graph, the role table and the column lists are checked against each other
at load time; a model column caused by the treatment is an error::

    studies/x.yaml: covariates: 'engagement' is a descendant of the treatment 'outreach' in causal_graph (post-treatment), so it cannot be a control
"""

from __future__ import annotations

import calendar
import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, get_args

import pandas as pd
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from assimilate.design import CausalDAG, CausalGraphSpec, DesignError, EstimandCard, method_shortlist
from assimilate.estimators import supported_estimands
from assimilate.estimators.variance import OLS_METHODS
from orchestration.cadence import cadence_from_config, periods_per_year

Cadence = Literal["daily", "weekly", "monthly"]
OutcomeType = Literal["continuous", "binary"]
EstimatorName = Literal[
    "difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw", "n_of_1"
]
UNIT_ESTIMATORS = ("difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw")
PropensityPolicy = Literal["clip", "trim", "none"]

STUDY_NAME_PATTERN = r"[a-z][a-z0-9_]{0,39}"
# Names the warehouse keeps for itself: a study (schema) or column with one of them would load, then
# make every run fail. DuckDB's own schemas and catalogs, and the warehouse file's stem (a schema
# named like the database is ambiguous).
RESERVED_STUDY_NAMES = frozenset(
    {"main", "temp", "system", "information_schema", "pg_catalog", "memory", "warehouse", "assimilate_meta"}
)
RESERVED_COLUMNS = frozenset({"partition_key", "row_index"})
COLUMN_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
ENV_VAR_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
EMAIL_PATTERN = r"[^@\s]+@[^@\s]+"
_FOLDER_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"


class StudyConfigError(ValueError):
    """A study file that cannot be used; the message has one ``file: key: rule`` line per problem."""


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


def _matching(pattern: str, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if re.fullmatch(pattern, value) is None:
            raise ValueError(f"must be {what} matching ^{pattern}$")
        return value

    return AfterValidator(check)


def _process_var(value: Any) -> float | str:
    rule = 'must be a number >= 0 or "mle"'
    if value == "mle":
        return "mle"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(rule)
    try:
        number = float(value)
    except ValueError:
        raise ValueError(rule) from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(rule)
    return number


def _relative_folder(value: str) -> str:
    parts = PurePosixPath(value).parts
    if value.startswith(("/", "~")) or "\\" in value or not parts:
        raise ValueError("must be a relative folder under the landing root (no absolute path)")
    if ".." in parts or any(re.fullmatch(_FOLDER_PART, p) is None for p in parts):
        raise ValueError(f"must be a relative folder of parts matching ^{_FOLDER_PART}$ (no '..')")
    return value


Number = Annotated[float, BeforeValidator(_no_bool)]
Integer = Annotated[int, BeforeValidator(_no_bool)]
Probability = Annotated[Number, Field(gt=0, lt=1)]
ColumnName = Annotated[str, _matching(COLUMN_PATTERN, "a safe column name")]
EnvVarName = Annotated[
    str, _matching(ENV_VAR_PATTERN, "the NAME of an environment variable holding the secret")
]
EmailAddress = Annotated[str, _matching(EMAIL_PATTERN, "an e-mail address")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RandomizedDesign(_Section):
    """Units randomized to treatment with a designed treated share."""

    kind: Literal["randomized"]
    treated_share: Probability = 0.5


class ObservationalDesign(_Section):
    """Treatment not assigned by the study: adjustment relies on the covariates."""

    kind: Literal["observational"]


class PropensitySettings(_Section):
    """How extreme propensity scores are handled by IPW/AIPW."""

    policy: PropensityPolicy = "clip"
    bounds: tuple[Probability, Probability] = (0.01, 0.99)

    @model_validator(mode="after")
    def _ordered(self) -> PropensitySettings:
        if self.bounds[0] >= self.bounds[1]:
            raise ValueError(f"bounds: lower bound must be < upper bound (got {list(self.bounds)})")
        return self


def _reason(value: str) -> str:
    if not value.strip():
        raise ValueError("needs a reason: say why the batch may be set aside")
    return value.strip()


_DURATION = re.compile(r"(?:([0-9]+(?:\.[0-9]+)?)([wdhm]))+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([wdhm])")
_DURATION_UNIT = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


def _duration(value: Any) -> timedelta | None:
    """Hours as a number, or a duration written like ``36h``, ``2d``, ``1d12h``, ``90m``, ``1w``."""
    rule = 'must be a duration >= 0: hours as a number, or text like "36h", "2d", "1d12h", "90m"'
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(rule)
    if isinstance(value, int | float):
        hours = float(value)
        if not math.isfinite(hours) or hours < 0:
            raise ValueError(rule)
        return timedelta(hours=hours)
    text = str(value).replace(" ", "").lower() if isinstance(value, str) else ""
    if text.startswith("p"):  # ISO 8601, as the config's JSON form writes it
        try:
            iso = TypeAdapter(timedelta).validate_python(text.upper())
        except ValidationError:
            raise ValueError(rule) from None
        if iso < timedelta(0):
            raise ValueError(rule)
        return iso
    if not _DURATION.fullmatch(text):
        raise ValueError(rule)
    parts: dict[str, float] = {}
    for number, unit in _DURATION_PART.findall(text):
        parts[_DURATION_UNIT[unit]] = parts.get(_DURATION_UNIT[unit], 0.0) + float(number)
    return timedelta(**parts)


def _unit(value: str) -> str:
    text = " ".join(value.split())
    if not text or len(text) > 40:
        raise ValueError("must be a short unit name of 1 to 40 characters, e.g. USD or minutes")
    return text


class PriorSettings(_Section):
    """Belief about the effect before the first batch: a normal prior, or diffuse."""

    mean: Number | None = None
    variance: Annotated[Number, Field(gt=0)] | None = None
    diffuse: bool = False

    @model_validator(mode="after")
    def _complete(self) -> PriorSettings:
        given = self.mean is not None or self.variance is not None
        if self.diffuse and given:
            raise ValueError("a diffuse prior takes no mean or variance")
        if not self.diffuse and (self.mean is None or self.variance is None):
            raise ValueError("needs both mean and variance, or diffuse: true")
        return self


class KalmanBackend(_Section):
    """Exact Kalman filter (Gaussian observations)."""

    kind: Literal["kalman"]


class ParticleBackend(_Section):
    """Bootstrap particle filter, optionally with Student-t observation errors."""

    kind: Literal["particle"]
    n_particles: Annotated[Integer, Field(ge=100)] = 2000
    observation: Literal["gaussian", "student_t"] = "gaussian"
    df: Annotated[Number, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _df_for_student_t(self) -> ParticleBackend:
        if self.observation == "student_t" and self.df is None:
            raise ValueError("df: is required when observation is student_t")
        if self.observation == "gaussian" and self.df is not None:
            raise ValueError("df: applies only to observation: student_t")
        return self


class Thresholds(_Section):
    """Thresholds of the assumption checks (all optional, with these defaults)."""

    max_abs_smd: Annotated[Number, Field(gt=0)] = 0.1
    overlap_eps: Annotated[Number, Field(gt=0, lt=0.5)] = 0.05
    overlap_max_share_outside: Annotated[Number, Field(ge=0, le=1)] = 0.1
    srm_alpha: Probability = 0.001
    srm_min_units: Annotated[Integer, Field(ge=1)] = 100
    innovation_z: Annotated[Number, Field(gt=0)] = 3.0
    min_ess_fraction: Annotated[Number, Field(gt=0, le=1)] = 0.2
    max_quarantine_share: Annotated[Number, Field(ge=0, le=1)] = 0.05
    # "calibrated": a gate fails only when a violation is both beyond its practical bound above and
    # beyond sampling noise at the stated false-alarm rate (docs/GATES.md); "fixed": the bounds alone.
    gate_rule: Literal["calibrated", "fixed"] = "calibrated"
    balance_alpha: Probability = 0.01
    overlap_alpha: Probability = 0.01
    srm_false_alarm_per_year: Probability = 0.01


class AlertSettings(_Section):
    """Alert targets. Secrets stay in the environment: only variable names are configured."""

    webhook_url_env: EnvVarName | None = "ASSIMILATE_WEBHOOK_URL"
    email_to: tuple[EmailAddress, ...] = ()
    email_from: EmailAddress = "assimilate@localhost"


class NOf1Settings(_Section):
    """One subject's N-of-1 trial: a row per day, randomized alternating treatment blocks, a washout.

    The study's ``unit_id`` is the day column (one subject: each row is one of its days).
    """

    time: ColumnName  # the day of each row (YYYY-MM-DD)
    washout_days: Annotated[Integer, Field(ge=0)]  # carry-over: days dropped after every switch
    block_days: Annotated[Integer, Field(ge=1)]  # length of a treatment block, as designed
    trend: bool = False  # also fit a linear drift of the subject's baseline


class StudyConfig(_Section):
    """One study, as validated from its YAML file (see the module docstring for the layout)."""

    name: Annotated[str, _matching(STUDY_NAME_PATTERN, "a study name (DuckDB schema, Dagster key prefix)")]
    description: str = ""
    landing_folder: Annotated[str, AfterValidator(_relative_folder)]
    # daily, weekly, monthly, yearly, or a cron expression ({cron: "0 0 * * 1-5"}): orchestration/cadence.py
    cadence: Annotated[str, BeforeValidator(cadence_from_config)]
    start_date: date
    # The last day of the study: no batch is expected (or read) for a period that starts after it.
    end_date: date | None = None
    # How long after its period ends a batch may land before it is overdue (None: per cadence).
    grace_period: Annotated[timedelta | None, BeforeValidator(_duration)] = None
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
    design: Annotated[RandomizedDesign | ObservationalDesign, Field(discriminator="kind")]
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
    alerts: AlertSettings = AlertSettings()
    seed: Annotated[Integer, Field(ge=0)] = 0
    # An analyst's word on an excluded batch: batch start date -> why it may be set aside. The memo
    # then stops counting it against the status (it stays excluded and named); the audit keeps it.
    acknowledged_exclusions: dict[date, Annotated[str, AfterValidator(_reason)]] = Field(default_factory=dict)
    # How many times the study will be looked at: tunes the always-valid interval (None: a year of
    # batches at the cadence). It stays valid at any number of looks; it is narrowest near this one.
    planned_looks: Annotated[Integer, Field(ge=1)] | None = None

    @property
    def looks_planned(self) -> int:
        """``planned_looks``, or a year of batches at the study's cadence."""
        return self.planned_looks or self.batches_per_year

    @property
    def batches_per_year(self) -> int:
        """How many periods of the study's cadence start in a year (daily 365, ..., yearly 1)."""
        return periods_per_year(self.cadence)

    @property
    def acknowledged(self) -> dict[str, str]:
        """``acknowledged_exclusions`` keyed by partition key (``YYYY-MM-DD``)."""
        return {day.isoformat(): reason for day, reason in self.acknowledged_exclusions.items()}

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        """``landing_folder`` defaults to the name, ``estimators`` to the primary one."""
        if isinstance(data, dict):
            data = dict(data)
            if "landing_folder" not in data and isinstance(data.get("name"), str):
                data["landing_folder"] = data["name"]
            if "estimators" not in data and isinstance(data.get("primary_estimator"), str):
                data["estimators"] = [data["primary_estimator"]]
        return data

    @model_validator(mode="after")
    def _end_after_start(self) -> StudyConfig:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(
                f"end_date: must be on or after start_date {self.start_date} (got {self.end_date})"
            )
        return self

    @model_validator(mode="after")
    def _unit_fits_outcome(self) -> StudyConfig:
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
    def _cross_field_rules(self) -> StudyConfig:
        problems = [*self._column_problems(), *self._option_problems(), *self._design_problems()]
        problems += self._n_of_1_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _reserved_problems(self) -> list[str]:
        problems = []
        if self.name in RESERVED_STUDY_NAMES:
            problems.append(f"name: {self.name!r} is reserved by the warehouse (a DuckDB schema or catalog)")
        columns = [
            ("unit_id", self.unit_id),
            ("treatment", self.treatment),
            ("outcome", self.outcome),
            *(("covariates", c) for c in self.covariates),
            *(("categorical", c) for c in self.categorical),
            *(("post_treatment", c) for c in self.post_treatment),
        ]
        first: dict[str, str] = {}
        for key, column in columns:
            if column.lower() in RESERVED_COLUMNS:
                problems.append(f"{key}: column name {column!r} is reserved by the warehouse")
            other = first.setdefault(column.lower(), column)
            if other != column:
                problems.append(
                    f"{key}: columns {other!r} and {column!r} differ only in case (the warehouse does not tell them apart)"
                )
        return problems

    def _column_problems(self) -> list[str]:
        problems = self._reserved_problems()
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
        for name in self.estimators:
            if self.estimand not in supported_estimands(name):
                problems.append(
                    f"estimand_card.estimand: {self.estimand} cannot be estimated by {name!r} "
                    f"(in estimators; it estimates {', '.join(supported_estimands(name))})"
                )
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
        days = _SHORTEST_PERIOD_DAYS.get(self.cadence, 365 // max(self.batches_per_year, 1))
        if days < 2 * settings.block_days:
            problems.append(
                f"cadence: a {self.cadence!r} batch holds {days} day(s), fewer than two treatment blocks of "
                f"{settings.block_days} days (n_of_1.block_days): a batch needs days of both arms; use a "
                "longer cadence or shorter blocks"
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
            if self.standard_errors in hat_matrix and name not in OLS_METHODS:
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
    def estimand(self) -> Literal["ATE", "ATT", "ATC"]:
        """Whose average effect every estimator estimates: the estimand card's, else the ATE."""
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
        """Which estimators this study's design supports and why others are rejected.

        Columns ``method``, ``valid``, ``reason`` (see :func:`assimilate.design.method_shortlist`);
        the study's batches are cross-sections without a running variable. An N-of-1 study's table
        holds ``n_of_1`` and the unit-level estimators it rules out.
        """
        if self.single_subject:
            return pd.DataFrame(
                [{"method": "n_of_1", "valid": True, "reason": _N_OF_1_FIT}]
                + [{"method": m, "valid": False, "reason": _UNIT_LEVEL} for m in UNIT_ESTIMATORS],
                columns=["method", "valid", "reason"],
            )
        return method_shortlist(
            self.causal_dag(),
            design=self.design.kind,
            covariates=self.model_columns,
            observed=(*self.model_columns, *self.post_treatment),
        )

    @property
    def batch_rules_hash(self) -> str:
        """sha256 (16 hex) of what decides how a batch is read, judged and estimated.

        A batch materialized under other rules is re-run (orchestration/sensors.py), so the posterior
        never mixes batches judged under old and new rules. The filter's settings, the card, the
        alerts and the calendar are left out: they change no batch.
        """
        data = self.model_dump(mode="json", exclude=_NOT_BATCH_RULES)
        if data.get("n_of_1") is None:  # a study without the section keeps the hash it had before it
            data.pop("n_of_1", None)
        for key, default in (("cluster", None), ("standard_errors", None), ("duplicate_units", "reject")):
            if data.get(key) == default:  # a study without the key keeps the hash it had before it
                data.pop(key, None)
        if self.estimand != "ATE":  # the card is left out, but its estimand changes every estimate
            data["estimand"] = self.estimand
        data["thresholds"] = {k: v for k, v in data["thresholds"].items() if k not in _POSTERIOR_THRESHOLDS}
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    @property
    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the whole config (sorted keys), for the audit trail."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_NOT_BATCH_RULES = {
    "description",
    "landing_folder",
    "cadence",
    "start_date",
    "end_date",
    "grace_period",
    "desired_direction",
    "outcome_unit",
    "estimand_card",
    "prior",
    "process_var",
    "backend",
    "alerts",
    "acknowledged_exclusions",
    "planned_looks",
}
_SHORTEST_PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 28, "yearly": 365}
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
_POSTERIOR_THRESHOLDS = {"innovation_z", "min_ess_fraction"}


def _duplicates(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    repeated = []
    for value in values:
        if value in seen and value not in repeated:
            repeated.append(value)
        seen.add(value)
    return repeated


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate one study YAML file (``yaml.safe_load``).

    Raises
    ------
    StudyConfigError
        Naming the file, the key path and the rule for every problem found.
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise StudyConfigError(f"{where}: cannot be read: {error}") from error
    try:
        data = _safe_load_study(text)
    except _RepeatedKey as error:
        raise StudyConfigError(f"{where}: {error}") from error
    except yaml.YAMLError as error:
        raise StudyConfigError(f"{where}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise StudyConfigError(f"{where}: must hold a mapping of keys (got {type(data).__name__})")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as error:
        raise StudyConfigError("\n".join(f"{where}: {line}" for line in error_lines(error))) from error


_SECRET_KEYS = {("alerts", "webhook_url_env")}  # a misplaced secret is never echoed back
_TAGS = {"randomized", "observational", "kalman", "particle"}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_BOUND_KEYS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def error_lines(error: ValidationError) -> list[str]:
    """One ``key.path: rule (got value)`` line per pydantic error, cross-field rules split per line."""
    lines: list[str] = []
    for item in error.errors():
        location = _location(item["loc"])
        kind = item["type"]
        message = str(item["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")
        context = item.get("ctx") or {}
        hint = ""  # a suggestion after the value: "; did you mean 'covariates'?"
        if kind in _BOUNDS:
            message = f"must be {_BOUNDS[kind]} {context[_BOUND_KEYS[kind]]}"
        elif kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "unknown key"
            hint = _suggestion(str(item["loc"][-1]), _known_keys(tuple(item["loc"][:-1])), list_known=True)
        elif kind in ("literal_error", "union_tag_invalid"):
            expected = context.get("expected", context.get("expected_tags", ""))
            message = f"must be one of {expected}"
            if isinstance(item.get("input"), str):
                hint = _suggestion(item["input"], re.findall(r"'([^']*)'", str(expected)))
        elif kind.startswith("date_") and tuple(item["loc"]) not in _SECRET_KEYS:
            lines.append(f"{location}: {_date_problem(item.get('input'))}")
            continue
        elif kind == "string_type":
            message = "must be text (quote it in YAML)"
        elif kind == "union_tag_not_found":
            message = f"needs a '{context.get('discriminator', 'kind').strip(chr(39))}' key"
        prefix = f"{location}: " if location else ""
        if "\n" in message or (kind == "value_error" and isinstance(item.get("input"), dict)):
            # A cross-field rule: its lines already name their keys and values.
            lines.extend(f"{prefix}{line}" for line in message.splitlines())
        elif kind in ("missing", "extra_forbidden") or tuple(item["loc"]) in _SECRET_KEYS:
            lines.append(f"{prefix}{message}{hint}")
        else:
            lines.append(f"{prefix}{message} (got {_short(item.get('input'))}){hint}")
    return lines


def _safe_load_study(text: str) -> Any:
    """``yaml.safe_load`` through ``_StudyLoader`` (a SafeLoader: no Python objects are built)."""
    loader = _StudyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class _RepeatedKey(yaml.YAMLError):
    """A key given twice in one mapping: YAML would silently keep the last."""


class _StudyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` with two changes for study files.

    A date stays text, so that pydantic reads it and a bad one (``2026-09-31``) is reported under
    its key rather than raised by the YAML reader; a key given twice in a mapping is an error.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise _RepeatedKey(f"{key}: is given twice (lines {seen[key]} and {line}); keep one")
            if isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _date_as_text(loader: _StudyLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_StudyLoader.add_constructor("tag:yaml.org,2002:timestamp", _date_as_text)
_DATE_PARTS = re.compile(r"\s*([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})\s*")


def _date_problem(value: Any) -> str:
    """Why a study file's date is not one, e.g. ``'2026-09-31' is not a valid date (September has 30 days)``."""
    shown = _short(value)
    parts = _DATE_PARTS.fullmatch(value) if isinstance(value, str) else None
    if parts is None:
        return f"{shown} is not a date: write it as YYYY-MM-DD, e.g. 2025-01-31"
    year, month, day = (int(p) for p in parts.groups())
    if not 1 <= month <= 12:
        return f"{shown} is not a valid date (there is no month {month}: months run 1 to 12)"
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        name = calendar.month_name[month] + (f" {year}" if month == 2 else "")
        return f"{shown} is not a valid date ({name} has {days} days)"
    return f"{shown} is not a date written YYYY-MM-DD: write {year:04d}-{month:02d}-{day:02d}"


def _suggestion(word: str, known: Iterable[str], *, list_known: bool = False) -> str:
    """``; did you mean 'covariates'?`` for the closest known word; else, with ``list_known``, the
    known words when there are few."""
    options = [k for k in known if k != word]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    if list_known and 0 < len(options) <= 12:
        return f"; the known keys here: {', '.join(options)}"
    return ""


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section at ``loc`` accepts (a discriminated section: its ``kind``'s keys)."""
    model: type[BaseModel] = StudyConfig
    parts = list(loc)
    while parts:
        field = model.model_fields.get(str(parts.pop(0)))
        candidates = _models_in(field.annotation) if field is not None else []
        if len(candidates) > 1 and parts:  # a union: pydantic puts the chosen kind in the path
            tag = parts.pop(0)
            candidates = [m for m in candidates if tag in _kinds(m)]
        if len(candidates) != 1:
            return []
        model = candidates[0]
    return list(model.model_fields)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _kinds(model: type[BaseModel]) -> tuple[Any, ...]:
    kind = model.model_fields.get("kind")
    return get_args(kind.annotation) if kind is not None else ()


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for index, part in enumerate(loc):
        if index == 1 and part in _TAGS and loc[0] in ("design", "backend"):
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part in ("[key]",) or str(part).startswith("function-"):
            continue
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
