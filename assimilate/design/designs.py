"""A study's design: how the treatment came about, and so which estimators and checks apply.

One class per kind of design, each a section of the study file (``design: {kind: ...}``). The
design alone answers which estimators can identify the effect, which estimand they deliver, and
which assumption checks are assessed (the others are reported as not assessed, with the reason,
never as passed). Adding a design (a regression discontinuity, a synthetic control) is one class
here plus its estimator and its gate.

- ``randomized``: units randomized with a designed treated share; every unit-level estimator; all
  checks, the sample-ratio-mismatch check among them.
- ``observational``: the treatment was not assigned by the study; adjustment for the covariates
  (which a causal graph can prove sufficient); no sample-ratio check.
- ``iv``: an instrument moves the treatment and reaches the outcome only through it; two-stage
  least squares for the effect on compliers (LATE), judged by the weak-instrument gate, with the
  Anderson-Rubin interval that stays valid when the instrument is weak.
- ``did``: each batch is one period of a panel in which cohorts of units adopt the treatment at
  known periods (a staggered rollout); Callaway & Sant'Anna's effect on the treated (ATT) in each
  post-adoption period, the pre-adoption periods' placebo effects gating them through a joint
  pre-trend test (parallel trends).

Example
-------
>>> design = InstrumentalVariablesDesign(kind="iv", instrument=("offer",))
>>> design.estimators, design.estimand
(('two_stage_least_squares',), 'LATE')
>>> design.not_assessed("overlap") is not None
True
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from assimilate.design.sections import COLUMN_PATTERN, ColumnName, Number, Probability, _Section

UNIT_ESTIMATORS = ("difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw")
IV_ESTIMATOR = "two_stage_least_squares"
SINGLE_SUBJECT_ESTIMATOR = "n_of_1"
DID_ESTIMATOR = "callaway_santanna"

_NEEDS_RANDOMIZATION = (
    "not assessed: the sample-ratio-mismatch check compares the arms' sizes with the designed split, "
    "which only a randomized design has"
)
_NO_PROPENSITY = (
    "not assessed: an instrumental-variables design does not weight or adjust by the propensity of "
    "treatment; the instrument's strength is judged by the weak-instrument gate"
)
_NEEDS_INSTRUMENT = "not assessed: the study has no instrument (design.kind is not iv)"
_NEEDS_PANEL = (
    "not assessed: the pre-trend test compares periods before and after adoption, which only a "
    "difference-in-differences design (design.kind: did) has"
)
_DID_NO_PROPENSITY = (
    "not assessed: a difference-in-differences design compares each cohort's change over time with "
    "the comparison units' change; it does not weight or adjust by a propensity of treatment"
)
_DID_NO_SPLIT = (
    "not assessed: in a difference-in-differences design adoption follows the rollout, not a "
    "designed random split, so there is no sample ratio to check"
)
_DID_PANEL_UNITS = (
    "not assessed: a panel's units return every period by design; the posterior fuses the periods "
    "with the correlation their shared units give"
)


class RandomizedDesign(_Section):
    """Units randomized to treatment with a designed treated share."""

    kind: Literal["randomized"]
    treated_share: Probability = 0.5

    estimators: ClassVar[tuple[str, ...]] = (*UNIT_ESTIMATORS, SINGLE_SUBJECT_ESTIMATOR)
    estimand: ClassVar[str | None] = None  # the card's (ATE, ATT or ATC)

    def not_assessed(self, check: str) -> str | None:
        """Why ``check`` does not apply to this design, or None when it does."""
        if check in _DID_CHECKS:
            return _NEEDS_PANEL
        return _NEEDS_INSTRUMENT if check in _IV_CHECKS else None


class ObservationalDesign(_Section):
    """Treatment not assigned by the study: adjustment relies on the covariates."""

    kind: Literal["observational"]

    estimators: ClassVar[tuple[str, ...]] = UNIT_ESTIMATORS
    estimand: ClassVar[str | None] = None

    def not_assessed(self, check: str) -> str | None:
        """Why ``check`` does not apply to this design, or None when it does."""
        if check == "srm":
            return _NEEDS_RANDOMIZATION
        if check in _DID_CHECKS:
            return _NEEDS_PANEL
        return _NEEDS_INSTRUMENT if check in _IV_CHECKS else None


class InstrumentalVariablesDesign(_Section):
    """An instrument (an encouragement, an offer, a lottery) that moves the treatment.

    Its exclusion restriction (it reaches the outcome only through the treatment, given the
    covariates) is checked against the causal graph at load time when the study declares one.
    """

    kind: Literal["iv"]
    instrument: Annotated[tuple[ColumnName, ...], Field(min_length=1)]
    # The weak-instrument gate: a batch whose effective first-stage F is below this is excluded
    # (Staiger & Stock 1997's rule of thumb; Montiel Olea & Pflueger 2013's effective F).
    min_first_stage_f: Annotated[Number, Field(gt=0)] = 10.0

    estimators: ClassVar[tuple[str, ...]] = (IV_ESTIMATOR,)
    estimand: ClassVar[str | None] = "LATE"

    def not_assessed(self, check: str) -> str | None:
        """Why ``check`` does not apply to this design, or None when it does."""
        if check == "srm":
            return _NEEDS_RANDOMIZATION
        if check in _DID_CHECKS:
            return _NEEDS_PANEL
        return _NO_PROPENSITY if check in ("overlap", "balance") else None


def _label(value: object) -> object:
    """A YAML date (``2025-04-01``) is a batch label: its ISO text; anything else is left to the type."""
    return value.isoformat() if isinstance(value, dt.date) else value


BATCH_LABEL_PATTERN = r"\d{4}-\d{2}-\d{2}"
"""A batch label (a partition key: the period's start date); any other ``first_treated`` is a column."""


def _label_or_column(value: str) -> str:
    if re.fullmatch(BATCH_LABEL_PATTERN, value):
        try:
            dt.date.fromisoformat(value)
        except ValueError as error:
            raise ValueError(f"{value!r} is not a batch label (a date YYYY-MM-DD): {error}") from None
        return value
    if re.fullmatch(COLUMN_PATTERN, value) is None:
        raise ValueError(
            f"must be a batch label (YYYY-MM-DD, single adoption) or a column of each unit's first treated "
            f"batch matching ^{COLUMN_PATTERN}$ (got {value!r})"
        )
    return value


class DifferenceInDifferencesDesign(_Section):
    """A staggered rollout observed as a panel, one period per batch (Callaway & Sant'Anna 2021).

    ``first_treated`` is either a batch label (``2025-04-01``: every unit with ``group == 1``
    adopts then; ``group`` is the 0/1 column of those units) or a column holding each unit's first
    treated batch label (empty or ``never`` for a never-treated unit). A batch before the first
    adoption is a pre-period: its placebo effect is a lead of the joint pre-trend test, which
    gates every post-period batch (``pre_trend`` check, ERROR at ``pre_trend_level``).
    """

    kind: Literal["did"]
    first_treated: Annotated[str, BeforeValidator(_label), AfterValidator(_label_or_column)]
    group: ColumnName | None = None
    control: Literal["not_yet_treated", "never_treated"] = "not_yet_treated"
    # The pre-trend test's level: a post-period batch is excluded when the leads' joint p-value is below it.
    pre_trend_level: Probability = 0.05
    # The analyst's reason for keeping post-period batches despite a failed pre-trend test: the check
    # stays, as WARN, so the failure is still shown and alerted (docs/DID.md).
    pre_trend_acknowledged: Annotated[str, Field(min_length=3)] | None = None

    estimators: ClassVar[tuple[str, ...]] = (DID_ESTIMATOR,)
    estimand: ClassVar[str | None] = "ATT"

    @property
    def adoption_label(self) -> str | None:
        """The common adoption batch (single adoption), or None when ``first_treated`` is a column."""
        return self.first_treated if re.fullmatch(BATCH_LABEL_PATTERN, self.first_treated) else None

    @property
    def cohort_column(self) -> str | None:
        """The column of each unit's first treated batch, or None under single adoption."""
        return None if self.adoption_label is not None else self.first_treated

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns every row must carry besides the plan's roles: the cohort column or the group."""
        return tuple(c for c in (self.cohort_column, self.group) if c is not None)

    def not_assessed(self, check: str) -> str | None:
        """Why ``check`` does not apply to this design, or None when it does."""
        if check == "srm":
            return _DID_NO_SPLIT
        if check in ("overlap", "balance"):
            return _DID_NO_PROPENSITY
        if check == "returning_units":
            return _DID_PANEL_UNITS
        if check in _IV_CHECKS:
            return _NEEDS_INSTRUMENT
        return None


_IV_CHECKS = frozenset({"weak_instrument", "first_stage_sign"})
_DID_CHECKS = frozenset({"pre_trend"})

Design = Annotated[
    RandomizedDesign | ObservationalDesign | InstrumentalVariablesDesign | DifferenceInDifferencesDesign,
    Field(discriminator="kind"),
]
