"""The small sections of a study's analysis plan and the field types they share.

Each section is a frozen pydantic model that forbids unknown keys: the propensity policy, the prior,
the filter backend, the check thresholds, an N-of-1 trial's settings, the refuters run on each
batch. ``ColumnName`` and the
number types refuse what YAML would otherwise coerce silently (``true`` as 1, a column name that
is no SQL identifier).

Example
-------
>>> Thresholds(max_abs_smd=0.2).overlap_eps
0.05
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

OutcomeType = Literal["continuous", "binary"]

PropensityPolicy = Literal["clip", "trim", "none"]

COLUMN_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,62}"


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


Number = Annotated[float, BeforeValidator(_no_bool)]
Integer = Annotated[int, BeforeValidator(_no_bool)]
Probability = Annotated[Number, Field(gt=0, lt=1)]
ColumnName = Annotated[str, _matching(COLUMN_PATTERN, "a safe column name")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PropensitySettings(_Section):
    """How extreme propensity scores are handled by IPW/AIPW."""

    policy: PropensityPolicy = "clip"
    bounds: tuple[Probability, Probability] = (0.01, 0.99)

    @model_validator(mode="after")
    def _ordered(self) -> PropensitySettings:
        if self.bounds[0] >= self.bounds[1]:
            raise ValueError(f"bounds: lower bound must be < upper bound (got {list(self.bounds)})")
        return self


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


class NOf1Settings(_Section):
    """One subject's N-of-1 trial: a row per day, randomized alternating treatment blocks, a washout.

    The study's ``unit_id`` is the day column (one subject: each row is one of its days).
    """

    time: ColumnName  # the day of each row (YYYY-MM-DD)
    washout_days: Annotated[Integer, Field(ge=0)]  # carry-over: days dropped after every switch
    block_days: Annotated[Integer, Field(ge=1)]  # length of a treatment block, as designed
    trend: bool = False  # also fit a linear drift of the subject's baseline


def _configured(value: Any) -> Any:
    """A refuter's key written with no settings (``placebo_treatment:``) runs it with the defaults."""
    return {} if value is None else value


class _RefuterSettings(_Section):
    """What every refuter takes: the severity of its check and its level (its stated false-alarm rate)."""

    # WARN reports and alerts; ERROR keeps a batch whose refuter fails out of the posterior.
    severity: Literal["WARN", "ERROR"] = "WARN"
    alpha: Probability = 0.05


class PlaceboSettings(_RefuterSettings):
    """The placebo treatment: ``n_placebos`` permutations within the design's strata."""

    n_placebos: Annotated[Integer, Field(ge=2)] = 10
    units_per_stratum: Annotated[Integer, Field(ge=2)] = 50  # observational: propensity strata


class NegativeControlSettings(_RefuterSettings):
    """The negative-control outcome: ``column`` (default: the causal graph's only ``negative_control``)."""

    column: ColumnName | None = None


class RandomCommonCauseSettings(_RefuterSettings):
    """The random common cause: ``n_draws`` independent standard-normal covariates, each added alone."""

    n_draws: Annotated[Integer, Field(ge=1)] = 5


class DataSubsetsSettings(_RefuterSettings):
    """Data subsets: ``n_subsets`` random subsets of a ``fraction`` of the rows."""

    n_subsets: Annotated[Integer, Field(ge=1)] = 10
    fraction: Probability = 0.8


class RefuterSettings(_Section):
    """The refuters run on every batch's primary estimate (opt-in: each costs refits; docs/GATES.md)."""

    placebo_treatment: Annotated[PlaceboSettings | None, BeforeValidator(_configured)] = None
    negative_control_outcome: Annotated[NegativeControlSettings | None, BeforeValidator(_configured)] = None
    random_common_cause: Annotated[RandomCommonCauseSettings | None, BeforeValidator(_configured)] = None
    data_subsets: Annotated[DataSubsetsSettings | None, BeforeValidator(_configured)] = None

    @model_validator(mode="after")
    def _some(self) -> RefuterSettings:
        if not self.configured:
            raise ValueError(
                "needs at least one refuter: placebo_treatment, negative_control_outcome, "
                "random_common_cause or data_subsets"
            )
        return self

    @property
    def configured(self) -> dict[str, _RefuterSettings]:
        """The configured refuters by name, in the order above."""
        names = ("placebo_treatment", "negative_control_outcome", "random_common_cause", "data_subsets")
        return {name: s for name in names if (s := getattr(self, name)) is not None}


def _cut_points(cuts: tuple[float, ...]) -> tuple[float, ...]:
    if not cuts or any(b <= a for a, b in itertools.pairwise(cuts)):
        raise ValueError(f"must be one or more strictly increasing cut points (got {list(cuts)})")
    return cuts


CutPoints = Annotated[tuple[Number, ...], AfterValidator(_cut_points)]


class SegmentSettings(_Section):
    """Effects by segment of the causal graph's ``effect_modifier`` columns (docs/SEGMENTS.md).

    A categorical modifier's segments are its declared levels; a continuous one is cut into ``bins``
    quantile bins of the study's first landed batch, or at the ``edges`` given here,
    so a segment is the same rows' definition in every batch.
    """

    bins: Annotated[Integer, Field(ge=2, le=20)] = 4
    # A continuous modifier's inner cut points, fixed by hand (else quantiles of the first batch).
    edges: dict[ColumnName, CutPoints] = Field(default_factory=dict)
    # Across every segment of every modifier: Holm (family-wise error) or Benjamini-Hochberg (FDR).
    multiplicity: Literal["holm", "bh"] = "holm"
    level: Probability = 0.05
    # WARN reports and alerts; ERROR reports it as an error. Neither keeps a batch out: a segment whose
    # effect differs is a finding about the effect, not a broken batch.
    severity: Literal["WARN", "ERROR"] = "WARN"


class CalibrationAuditSettings(_Section):
    """The placebo audit of the primary estimator's intervals over the admitted batches (docs/GATES.md)."""

    placebos: Annotated[Integer, Field(ge=2)] = 20  # placebo treatments per batch
    min_batches: Annotated[Integer, Field(ge=2)] = 6  # judged from this many admitted batches
    # true: a failed audit keeps every batch of the estimator out of the posterior (ERROR); false: WARN.
    refuse: bool = False
    audit_alpha: Probability = 0.01  # the audit's false-alarm rate
    tolerance: Annotated[Number, Field(ge=0, lt=0.5)] = 0.02  # how far above 5% the miss rate must be
    units_per_stratum: Annotated[Integer, Field(ge=2)] = 50  # observational: propensity strata
