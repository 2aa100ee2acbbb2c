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

from typing import Annotated, Any, Literal, get_args

import pandas as pd
from pydantic import (
    AfterValidator,
    Field,
    PlainValidator,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

from assimilate.design._plan_rules import column_problems, design_problems, n_of_1_problems, option_problems
from assimilate.design._segment_rules import effect_modifiers, segment_problems
from assimilate.design.card import CausalGraphSpec, EstimandCard
from assimilate.design.dag import CausalDAG
from assimilate.design.designs import DID_ESTIMATOR, IV_ESTIMATOR, UNIT_ESTIMATORS, Design
from assimilate.design.sections import (
    CalibrationAuditSettings,
    ColumnName,
    Integer,
    KalmanBackend,
    NOf1Settings,
    Number,
    OutcomeType,
    ParticleBackend,
    PriorSettings,
    PropensitySettings,
    RefuterSettings,
    SegmentSettings,
    Thresholds,
    _matching,
    _process_var,
    _Section,
    _unit,
)
from assimilate.design.shortlist import method_shortlist

EstimatorName = Literal[
    "difference_in_means",
    "regression_adjustment",
    "lin_interacted",
    "ipw",
    "aipw",
    "n_of_1",
    "two_stage_least_squares",
    "callaway_santanna",
]
BUILT_IN_ESTIMATORS: tuple[str, ...] = get_args(EstimatorName)


def _estimator_name(value: str, info: ValidationInfo) -> str:
    """A built-in estimator or a name of ``custom_estimators`` (validated before, so in ``info.data``)."""
    if "custom_estimators" not in info.data:  # the section failed: its own error says why
        return value
    known = [*BUILT_IN_ESTIMATORS, *info.data["custom_estimators"]]
    if value in known:
        return value
    quoted = [repr(name) for name in known]
    expected = f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    # The literal error the built-in names gave before custom estimators, so with its did-you-mean.
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


AnyEstimatorName = Annotated[str, AfterValidator(_estimator_name)]


def _not_built_in(name: str) -> str:
    if name in BUILT_IN_ESTIMATORS:
        raise ValueError(f"{name!r} is a built-in estimator's name; give the custom estimator another")
    return name


CUSTOM_NAME_PATTERN = r"[a-z][a-z0-9_]{0,39}"
CUSTOM_TARGET_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"
CustomEstimatorName = Annotated[
    str, _matching(CUSTOM_NAME_PATTERN, "an estimator name"), AfterValidator(_not_built_in)
]
CustomEstimatorTarget = Annotated[
    str, _matching(CUSTOM_TARGET_PATTERN, 'a function as "package.module:function"')
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
    # Sampling (survey) weights: each row stands for this many units of the target population, so every
    # unit-level estimator estimates the population's ATE, ATT or ATC (docs/INTERVALS.md); None: unweighted.
    weights: ColumnName | None = None
    estimand_card: EstimandCard | None = None
    causal_graph: CausalGraphSpec | None = None
    # A team's own estimators: name -> "package.module:function", imported by the shell at load time;
    # estimators and primary_estimator may name them (the contract: assimilate/estimators/custom.py).
    # Declared before them: their validator reads it.
    custom_estimators: dict[CustomEstimatorName, CustomEstimatorTarget] = Field(default_factory=dict)
    primary_estimator: AnyEstimatorName
    estimators: tuple[AnyEstimatorName, ...]
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
    # Refuters of each batch's primary estimate, as checks on batch_effect (WARN unless a refuter says
    # severity: ERROR); opt-in, since each refits the estimator (docs/GATES.md).
    refuters: RefuterSettings | None = None
    # Effects by segment of the causal graph's effect_modifier columns: bins, multiplicity rule, level,
    # severity (docs/SEGMENTS.md). Unset: the defaults, when the graph names an effect modifier.
    segments: SegmentSettings | None = None
    # The placebo audit of the primary estimator's intervals before its batches are fused, as a
    # study-level check on the posterior; opt-in (it refits the estimator; docs/GATES.md).
    calibration_audit: CalibrationAuditSettings | None = None

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
        problems = [*self._column_problems(), *option_problems(self), *design_problems(self)]
        problems += self._n_of_1_problems()
        problems += segment_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _column_problems(self) -> list[str]:
        """Columns in two roles, listed twice, or both a covariate and post-treatment."""
        return column_problems(self)

    def _n_of_1_problems(self) -> list[str]:
        """An N-of-1 study's own rules (one subject, one estimator, blocks and washout)."""
        return n_of_1_problems(self)

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
        if self.design.kind == "did":  # Callaway & Sant'Anna: the effect on the adopting cohorts
            return "ATT"
        return self.estimand_card.estimand if self.estimand_card is not None else "ATE"

    @property
    def effect_modifiers(self) -> tuple[str, ...]:
        """The causal graph's ``effect_modifier`` columns: the study estimates the effect on their segments."""
        return effect_modifiers(self)

    @property
    def segment_settings(self) -> SegmentSettings:
        """The ``segments:`` section, or its defaults."""
        return self.segments if self.segments is not None else SegmentSettings()

    @property
    def single_subject(self) -> bool:
        """Whether this is an N-of-1 study: one subject's days, so unit-level gates (SRM, overlap, balance) do not apply."""
        return self.n_of_1 is not None

    @property
    def instruments(self) -> tuple[str, ...]:
        """The design's instrument columns (an ``iv`` design), else none."""
        return tuple(getattr(self.design, "instrument", ()))

    @property
    def did_columns(self) -> tuple[str, ...]:
        """A did design's columns besides the roles: each unit's first treated batch, or its 0/1 group."""
        return tuple(getattr(self.design, "columns", ()))

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
        under ``design.kind: iv``, difference in differences under ``design.kind: did``; never
        (yet) a regression discontinuity. An N-of-1 study's table holds ``n_of_1`` and the unit-level estimators it
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
            design="randomized" if design.kind == "randomized" else "observational",
            covariates=self.model_columns,
            observed=(*self.model_columns, *self.post_treatment),
            panel=design.kind == "did",
        )
        iv = table["method"] == "instrumental_variables"
        if design.kind == "iv":
            checked = (
                "checked against causal_graph"
                if self.causal_graph is not None
                else "assumed (no causal_graph)"
            )
            table.loc[iv, "valid"] = True
            table.loc[iv, "reason"] = (
                f"instrument {list(design.instrument)}: {IV_ESTIMATOR} for the LATE, gated on an effective "
                f"first-stage F >= {design.min_first_stage_f:g}; the exclusion restriction is {checked}"
            )
        else:
            table.loc[iv & table["valid"], "reason"] += (
                "; to run it, declare design: {kind: iv, instrument: [...]}"
            )
            table.loc[iv, "valid"] = False
        did = table["method"] == "difference_in_differences"
        if design.kind == "did":
            table.loc[did, "reason"] = (
                f"panel of periods, cohorts from {design.first_treated!r}: {DID_ESTIMATOR} for the ATT of "
                f"each post-adoption period against {design.control.replace('_', '-')} units, gated on "
                f"a joint pre-trend test at {design.pre_trend_level:g} (parallel trends)"
            )
        else:
            table.loc[did & table["valid"], "reason"] += (
                "; to run it, declare design: {kind: did, first_treated: ...}"
            )
            table.loc[did, "valid"] = False
        not_run = table["method"].isin(["regression_discontinuity"]) & table["valid"]
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
