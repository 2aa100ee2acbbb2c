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

Example
-------
>>> design = InstrumentalVariablesDesign(kind="iv", instrument=("offer",))
>>> design.estimators, design.estimand
(('two_stage_least_squares',), 'LATE')
>>> design.not_assessed("overlap") is not None
True
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from assimilate.design.sections import ColumnName, Number, Probability, _Section

UNIT_ESTIMATORS = ("difference_in_means", "regression_adjustment", "lin_interacted", "ipw", "aipw")
IV_ESTIMATOR = "two_stage_least_squares"
SINGLE_SUBJECT_ESTIMATOR = "n_of_1"

_NEEDS_RANDOMIZATION = (
    "not assessed: the sample-ratio-mismatch check compares the arms' sizes with the designed split, "
    "which only a randomized design has"
)
_NO_PROPENSITY = (
    "not assessed: an instrumental-variables design does not weight or adjust by the propensity of "
    "treatment; the instrument's strength is judged by the weak-instrument gate"
)
_NEEDS_INSTRUMENT = "not assessed: the study has no instrument (design.kind is not iv)"


class RandomizedDesign(_Section):
    """Units randomized to treatment with a designed treated share."""

    kind: Literal["randomized"]
    treated_share: Probability = 0.5

    estimators: ClassVar[tuple[str, ...]] = (*UNIT_ESTIMATORS, SINGLE_SUBJECT_ESTIMATOR)
    estimand: ClassVar[str | None] = None  # the card's (ATE, ATT or ATC)

    def not_assessed(self, check: str) -> str | None:
        """Why ``check`` does not apply to this design, or None when it does."""
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
        return _NO_PROPENSITY if check in ("overlap", "balance") else None


_IV_CHECKS = frozenset({"weak_instrument", "first_stage_sign"})

Design = Annotated[
    RandomizedDesign | ObservationalDesign | InstrumentalVariablesDesign, Field(discriminator="kind")
]
