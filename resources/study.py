"""A study file: the analysis plan plus what the pipeline needs to run it, validated into ``StudyConfig``.

A study is one treatment/outcome question with its data stream. Its YAML names the landing folder,
the cadence of the batches, the start and end, the alert targets and the analyst's word on excluded
batches; every other key is the study's analysis plan (``assimilate.design.plan.AnalysisPlan``:
columns, design, estimators, filter, thresholds), at the top level of the same file. Every column
name becomes a SQL identifier, so it must match ``^[A-Za-z_][A-Za-z0-9_]{0,62}$``.

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

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from assimilate.design.plan import AnalysisPlan
from assimilate.design.sections import _matching, _Section
from assimilate.estimators.custom import CustomEstimator
from resources.batch_source_config import BatchSource
from resources.cadence import cadence_from_config, periods_per_year
from resources.custom_estimators import resolve_custom_estimators
from resources.guardrails import Guardrail, derive_guardrail_studies
from resources.study_file import RepeatedKeyError, safe_load, validation_lines

STUDY_NAME_PATTERN = r"[a-z][a-z0-9_]{0,39}"
# Names the warehouse keeps for itself: a study (schema) or column with one of them would load, then
# make every run fail. DuckDB's own schemas and catalogs, and the warehouse file's stem (a schema
# named like the database is ambiguous).
RESERVED_STUDY_NAMES = frozenset(
    {"main", "temp", "system", "information_schema", "pg_catalog", "memory", "warehouse", "assimilate_meta"}
)
RESERVED_COLUMNS = frozenset({"partition_key", "row_index"})
ENV_VAR_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
EMAIL_PATTERN = r"[^@\s]+@[^@\s]+"
_FOLDER_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"


class StudyConfigError(ValueError):
    """A study file that cannot be used; the message has one ``file: key: rule`` line per problem."""


def _relative_folder(value: str) -> str:
    parts = PurePosixPath(value).parts
    if value.startswith(("/", "~")) or "\\" in value or not parts:
        raise ValueError("must be a relative folder under the landing root (no absolute path)")
    if ".." in parts or any(re.fullmatch(_FOLDER_PART, p) is None for p in parts):
        raise ValueError(f"must be a relative folder of parts matching ^{_FOLDER_PART}$ (no '..')")
    return value


EnvVarName = Annotated[
    str, _matching(ENV_VAR_PATTERN, "the NAME of an environment variable holding the secret")
]
EmailAddress = Annotated[str, _matching(EMAIL_PATTERN, "an e-mail address")]


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


class AlertSettings(_Section):
    """Alert targets. Secrets stay in the environment: only variable names are configured."""

    webhook_url_env: EnvVarName | None = "ASSIMILATE_WEBHOOK_URL"
    email_to: tuple[EmailAddress, ...] = ()
    email_from: EmailAddress = "assimilate@localhost"


class StudyConfig(AnalysisPlan):
    """One study, as validated from its YAML file: its analysis plan and its place in the pipeline."""

    name: Annotated[str, _matching(STUDY_NAME_PATTERN, "a study name (DuckDB schema, Dagster key prefix)")]
    description: str = ""
    landing_folder: Annotated[str, AfterValidator(_relative_folder)]
    # daily, weekly, monthly, yearly, or a cron expression ({cron: "0 0 * * 1-5"}): resources/cadence.py
    cadence: Annotated[str, BeforeValidator(cadence_from_config)]
    start_date: date
    # The last day of the study: no batch is expected (or read) for a period that starts after it.
    end_date: date | None = None
    # How long after its period ends a batch may land before it is overdue (None: per cadence).
    grace_period: Annotated[timedelta | None, BeforeValidator(_duration)] = None
    alerts: AlertSettings = AlertSettings()
    # An analyst's word on an excluded batch: batch start date -> why it may be set aside. The memo
    # then stops counting it against the status (it stays excluded and named); the audit keeps it.
    acknowledged_exclusions: dict[date, Annotated[str, AfterValidator(_reason)]] = Field(default_factory=dict)
    # Outcomes that must not be harmed, each run as a study of its own (resources/guardrails.py).
    guardrails: tuple[Guardrail, ...] = ()
    # Where batches come from, unless the landing folder's files; unset, it is left out of both hashes.
    source: BatchSource | None = Field(default=None, exclude_if=lambda value: value is None)
    _estimator_functions: dict[str, CustomEstimator] = PrivateAttr(default_factory=dict)

    @property
    def custom_functions(self) -> Mapping[str, CustomEstimator]:
        """Name -> function of ``custom_estimators``, imported when the study loaded (fit_batch's ``custom``)."""
        return dict(self._estimator_functions)

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
    def _landing_folder_default(cls, data: Any) -> Any:
        """``landing_folder`` defaults to the name."""
        if isinstance(data, dict) and "landing_folder" not in data and isinstance(data.get("name"), str):
            data = {**data, "landing_folder": data["name"]}
        return data

    @model_validator(mode="after")
    def _end_after_start(self) -> StudyConfig:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(
                f"end_date: must be on or after start_date {self.start_date} (got {self.end_date})"
            )
        return self

    @model_validator(mode="after")
    def _import_custom_estimators(self) -> StudyConfig:
        """The team's functions, imported now: a target that fails is a load error naming it."""
        functions, problems = resolve_custom_estimators(self.custom_estimators)
        if problems:
            raise ValueError("\n".join(problems))
        self._estimator_functions = functions
        return self

    @model_validator(mode="after")
    def _guardrails_load(self) -> StudyConfig:
        derive_guardrail_studies(self)  # each guardrail's study validates now: a clash is a load error
        return self

    def _column_problems(self) -> list[str]:
        return [*self._reserved_problems(), *super()._column_problems()]

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
            *(("design.instrument", c) for c in getattr(self.design, "instrument", ())),
            *((("weights", self.weights),) if self.weights is not None else ()),
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

    def _n_of_1_problems(self) -> list[str]:
        problems = super()._n_of_1_problems()
        settings = self.n_of_1
        if settings is None or "n_of_1" not in self.estimators:
            return problems
        days = _SHORTEST_PERIOD_DAYS.get(self.cadence, 365 // max(self.batches_per_year, 1))
        if days < 2 * settings.block_days:
            problems.append(
                f"cadence: a {self.cadence!r} batch holds {days} day(s), fewer than two treatment blocks of "
                f"{settings.block_days} days (n_of_1.block_days): a batch needs days of both arms; use a "
                "longer cadence or shorter blocks"
            )
        return problems

    @property
    def batch_rules_hash(self) -> str:
        """sha256 (16 hex) of what decides how a batch is read, judged and estimated.

        A batch materialized under other rules is re-run (orchestration/sensors.py), so the posterior
        never mixes batches judged under old and new rules. The filter's settings, the card, the
        alerts and the calendar are left out: they change no batch.
        """
        data = self.model_dump(mode="json", exclude=_NOT_BATCH_RULES)
        for section in ("n_of_1", "refuters", "segments", "weights"):  # unset: the hash it had before the key
            if data.get(section) is None:
                data.pop(section, None)
        if not data.get("custom_estimators"):  # a study without the key keeps the hash it had before it
            data.pop("custom_estimators", None)
        # The primary's runs also run its guardrails: what changes their batches re-runs the batches.
        data.pop("guardrails", None)
        if self.guardrails:
            data["guardrails"] = [g.model_dump(mode="json", exclude=_NOT_GUARD) for g in self.guardrails]
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
        data = self.model_dump(mode="json")
        for key in (
            "custom_estimators",
            "refuters",
            "segments",
            "guardrails",
            "calibration_audit",
            "weights",
        ):  # a study without the key keeps its hash (and code version)
            if not data.get(key):
                data.pop(key, None)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
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
    "calibration_audit",  # judges the fused history, not a batch: changing it re-runs no batch
}
_NOT_GUARD = {"desired_direction", "margin", "outcome_unit", "prior", "process_var"}  # no batch's
_SHORTEST_PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 28, "yearly": 365}
_POSTERIOR_THRESHOLDS = {"innovation_z", "min_ess_fraction"}


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
        data = safe_load(text)
    except RepeatedKeyError as error:
        raise StudyConfigError(f"{where}: {error}") from error
    except yaml.YAMLError as error:
        raise StudyConfigError(f"{where}: not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise StudyConfigError(f"{where}: must hold a mapping of keys (got {type(data).__name__})")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as error:
        raise StudyConfigError("\n".join(f"{where}: {line}" for line in error_lines(error))) from error


def error_lines(error: ValidationError) -> list[str]:
    """One ``key.path: rule (got value)`` line per problem of a study's validation error."""
    return validation_lines(error, model=StudyConfig)
