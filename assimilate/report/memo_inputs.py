"""What a decision memo is written from: frozen inputs the pipeline fills from its warehouse.

``MemoInputs`` holds the study's estimand card, its design, the assimilated posterior, the latest
batch's estimates and every batch's check verdicts (a mapping ``batch label -> verdicts``;
:func:`verdicts_from_frame` builds it from a tidy verdict table), the outcome's type and unit (so
every effect is written on its scale, :mod:`assimilate.report.units`), and optionally the analysts'
acknowledged exclusions and an always-valid confidence sequence. From them it derives what the
memo must lead with: which batches were excluded and why, which checks failed, the status and the
decision (rules in :mod:`assimilate.report.decision`). The inputs pickle and deep-copy.

Example
-------
>>> from assimilate import causal_kalman
>>> res = causal_kalman([0.5, 0.6], [0.1, 0.1], labels=["m1", "m2"], excluded=[False, True],
...                     exclusion_reasons=["", "failed balance"], prior_mean=0.0, prior_var=1.0)
>>> inputs = MemoInputs(study="demo", result=res, design=DesignSummary(kind="randomized"),
...                     latest_estimates=(), primary_estimator="difference_in_means")
>>> inputs.status, inputs.excluded_batches()
('provisional', {'m2': ('failed balance',)})
>>> from dataclasses import replace
>>> replace(inputs, acknowledged_exclusions={"m2": "tracking outage, fixed"}).status
'pass'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from assimilate._frozen import FrozenDict
from assimilate._validation import check_choice
from assimilate.design.card import EstimandCard
from assimilate.diagnostics.innovations import InnovationReport, innovation_diagnostics
from assimilate.diagnostics.plan_audit import StoredAudit
from assimilate.diagnostics.trend import TrendTest
from assimilate.diagnostics.verdict import Status, Verdict
from assimilate.estimators.result import EffectEstimate
from assimilate.report._words import check_name
from assimilate.report.confounding import ConfounderSensitivity
from assimilate.report.decision import (
    DEFAULT_MAX_UNACKNOWLEDGED_SHARE,
    Decision,
    Direction,
    MemoStatus,
    check_share,
    decide,
    provisional_reasons,
)
from assimilate.report.event_study import EventStudySummary
from assimilate.report.guardrails import GuardrailPosterior
from assimilate.report.units import OUTCOME_TYPES, Baseline, EffectScale, OutcomeType
from assimilate.report.who_benefits import WhoBenefits
from assimilate.result import AssimilationResult
from assimilate.sequential import ConfidenceSequence, confidence_sequence

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan

DesignKind = Literal["randomized", "observational", "iv", "did"]
ProcessVarSource = Literal["set", "estimated"]
SHORTLIST_COLUMNS = ("method", "valid", "reason")
_STATUSES: tuple[Status, ...] = ("pass", "fail", "undefined")
NAIVE_METHODS = frozenset({"difference_in_means", "naive"})
"""Estimator names that do not adjust for covariates."""


@dataclass(frozen=True, kw_only=True)
class DesignSummary:
    """How treatment was assigned and what the estimate adjusts for.

    Parameters
    ----------
    kind : {"randomized", "observational", "iv"}
        Randomized with a designed split, observational (treatment not assigned by the study), or
        instrumental variables (an instrument moved the treatment; the estimate is the LATE).
    treated_share : float, optional
        The designed share of treated units (randomized designs).
    adjustment_set : sequence of str
        Covariates the estimators adjust for (pre-treatment by the study's causal graph).
    method_shortlist : DataFrame, optional
        Columns ``method``, ``valid``, ``reason``: which estimators suit this design and why.
    instruments : sequence of str
        The instrument columns of an ``iv`` design.
    """

    kind: DesignKind
    treated_share: float | None = None
    adjustment_set: Sequence[str] = ()
    method_shortlist: pd.DataFrame | None = field(default=None, compare=False)
    instruments: Sequence[str] = ()

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, ("randomized", "observational", "iv", "did"))
        object.__setattr__(self, "instruments", tuple(str(name) for name in self.instruments))
        if self.treated_share is not None and not 0.0 < float(self.treated_share) < 1.0:
            raise ValueError(f"treated_share must lie strictly between 0 and 1, got {self.treated_share!r}")
        object.__setattr__(self, "adjustment_set", tuple(str(name) for name in self.adjustment_set))
        shortlist = self.method_shortlist
        if shortlist is not None:
            missing = [c for c in SHORTLIST_COLUMNS if c not in shortlist.columns]
            if missing:
                raise ValueError(
                    f"method_shortlist lacks column(s) {missing}; it needs {list(SHORTLIST_COLUMNS)}"
                )
            object.__setattr__(self, "method_shortlist", shortlist.loc[:, list(SHORTLIST_COLUMNS)].copy())

    @classmethod
    def from_plan(cls, plan: AnalysisPlan) -> DesignSummary:
        """The design a study's analysis plan states: its kind, split, adjustment set, instruments and shortlist."""
        design = plan.design
        return cls(
            kind=design.kind,
            instruments=plan.instruments,
            treated_share=getattr(design, "treated_share", None),
            adjustment_set=plan.model_columns,
            method_shortlist=plan.method_shortlist(),
        )


@dataclass(frozen=True, kw_only=True)
class MemoInputs:
    """Everything a decision memo states, each piece as the library or the warehouse holds it.

    Parameters
    ----------
    study : str
        The study's name.
    result : AssimilationResult
        The posterior after every batch (trajectory, final mean/sd/interval, excluded flags).
    design : DesignSummary
        Design kind, adjustment set and method shortlist.
    latest_estimates : sequence of EffectEstimate
        The latest batch's estimates, one per estimator (may be empty: no estimate).
    primary_estimator : str
        The ``method`` of the estimate the filter uses.
    verdicts : mapping of str to sequence of Verdict
        Every check's verdict, per batch label (see :func:`verdicts_from_frame`).
    card : EstimandCard, optional
        The study's estimand card; without it the memo says the estimand was not stated.
    exclusions : mapping of str to sequence of str
        Failed check names per excluded batch; batches the result excluded that are missing here
        are named with the result's exclusion reason.
    innovation : InnovationReport, optional
        Innovation and drift checks of the posterior (computed with default thresholds if absent).
    true_effect : float, optional
        The true effect at the latest batch, when known (simulations).
    desired_direction : {"increase", "decrease"}, optional
        Which change of the outcome is wanted; None leaves the judgement to the reader.
    latest_batch : str, optional
        Label of the batch ``latest_estimates`` come from (default: the result's last label).
    acknowledged_exclusions : mapping of str to str
        Excluded batches an analyst has reviewed, batch -> reason: named in the memo, they no longer
        hold the status back. Entries for batches that were not excluded are shown as not applied.
    max_unacknowledged_share : float
        Share of batches that may stay excluded without acknowledgement before the status is
        provisional (default 0.1).
    always_valid : ConfidenceSequence, optional
        The always-valid interval per batch (e.g. with the batches' covariance); computed from the
        result's estimates, standard errors and exclusions (independent batches) if absent.
    trend : TrendTest, optional
        The test for a trend in the effect (does it wear off?) with the steady-state effect.
    planned_looks : int
        Horizon the computed sequence is tuned for: its interval is narrowest after this many
        batches as precise as the first admitted one (default 12).
    outcome_type : {"continuous", "binary"}
        A binary outcome's effects are written in percentage points.
    outcome_unit : str, optional
        The continuous outcome's unit (e.g. ``"USD"``), written per the card's unit; without it
        effects are in "outcome units". Must be None for a binary outcome.
    baseline : Baseline, optional
        The control units' mean outcome in a recent batch (a rate for a binary outcome).
    process_var_source : {"set", "estimated"}, optional
        Whether the filter's process variance was set by the study or estimated from the batches
        (default: estimated when the result carries a ``process_var_fit``, else not said).
    sensitivity : ConfounderSensitivity, optional
        An observational study's sensitivity to an unmeasured confounder in its latest admitted batch
        (:mod:`assimilate.report.confounding`).
    guardrails : tuple of GuardrailPosterior
        The study's guardrail outcomes, judged together in the memo's "Guardrails" section
        (:mod:`assimilate.report.guardrails`).
    segments : WhoBenefits, optional
        The effect by segment of the study's effect modifiers, fused, with the segments that differ
        (:mod:`assimilate.report.who_benefits`); None: no such section.
    calibration_audit : StoredAudit, optional
        The placebo audit of the primary estimator's intervals (named in the checklist); None: the
        study configures none.
    """

    study: str
    result: AssimilationResult
    design: DesignSummary
    latest_estimates: Sequence[EffectEstimate]
    primary_estimator: str
    verdicts: Mapping[str, Sequence[Verdict]] = field(default_factory=dict)
    card: EstimandCard | None = None
    exclusions: Mapping[str, Sequence[str]] = field(default_factory=dict)
    innovation: InnovationReport | None = None
    true_effect: float | None = None
    desired_direction: Direction | None = None
    latest_batch: str | None = None
    acknowledged_exclusions: Mapping[str, str] = field(default_factory=dict)
    max_unacknowledged_share: float = DEFAULT_MAX_UNACKNOWLEDGED_SHARE
    always_valid: ConfidenceSequence | None = None
    planned_looks: int = 12
    trend: TrendTest | None = None
    outcome_type: OutcomeType = "continuous"
    outcome_unit: str | None = None
    baseline: Baseline | None = None
    process_var_source: ProcessVarSource | None = None
    sensitivity: ConfounderSensitivity | None = None
    # The study's guardrail outcomes, each with its own posterior (assimilate/report/guardrails.py).
    guardrails: tuple[GuardrailPosterior, ...] = ()
    # The effect by segment of the study's effect modifiers (assimilate/report/who_benefits.py).
    segments: WhoBenefits | None = None
    # The study's calibration audit of its primary estimator (assimilate/diagnostics/plan_audit.py);
    # None: the study configures none.
    calibration_audit: StoredAudit | None = None
    # A did study's event study and pre-trend test (assimilate/report/event_study.py); None otherwise.
    event_study: EventStudySummary | None = None

    def __post_init__(self) -> None:
        labels = self.result.labels
        if not labels:
            raise ValueError("result has no batch: a memo needs at least one")
        if self.desired_direction is not None:
            check_choice("desired_direction", self.desired_direction, ("increase", "decrease"))
        check_choice("outcome_type", self.outcome_type, OUTCOME_TYPES)
        if self.outcome_unit is not None:
            unit = " ".join(str(self.outcome_unit).split())
            if not unit:
                raise ValueError("outcome_unit must be None or a non-empty unit name")
            if self.outcome_type == "binary":
                raise ValueError(
                    "a binary outcome's effects are in percentage points: outcome_unit must be None"
                )
            object.__setattr__(self, "outcome_unit", unit)
        if self.process_var_source is None and "process_var_fit" in self.result.details:
            object.__setattr__(self, "process_var_source", "estimated")
        if self.process_var_source is not None:
            check_choice("process_var_source", self.process_var_source, ("set", "estimated"))
        if self.true_effect is not None and not math.isfinite(self.true_effect):
            raise ValueError(f"true_effect must be finite, got {self.true_effect!r}")
        estimates = tuple(self.latest_estimates)
        methods = [e.method for e in estimates]
        if estimates and self.primary_estimator not in methods:
            raise ValueError(f"primary_estimator {self.primary_estimator!r} is not among {methods}")
        latest = labels[-1] if self.latest_batch is None else self.latest_batch
        if latest not in labels:
            raise ValueError(f"latest_batch {latest!r} is not a batch of the result")
        excluded_labels = {label for label, flag in zip(labels, self.result.excluded, strict=True) if flag}
        unknown = sorted(set(self.exclusions) - excluded_labels)
        if unknown:
            raise ValueError(f"exclusions name batch(es) {unknown} that the result did not exclude")
        object.__setattr__(self, "latest_estimates", estimates)
        object.__setattr__(self, "latest_batch", latest)
        verdicts = {str(k): tuple(v) for k, v in self.verdicts.items()}
        object.__setattr__(self, "verdicts", FrozenDict(verdicts))
        exclusions = {str(k): tuple(str(n) for n in v) for k, v in self.exclusions.items()}
        object.__setattr__(self, "exclusions", FrozenDict(exclusions))
        acknowledged = {str(k): str(v).strip() for k, v in self.acknowledged_exclusions.items()}
        missing = sorted(k for k, v in acknowledged.items() if not v)
        if missing:
            raise ValueError(f"acknowledged exclusion(s) {missing} need a reason")
        object.__setattr__(self, "acknowledged_exclusions", FrozenDict(acknowledged))
        object.__setattr__(self, "max_unacknowledged_share", check_share(self.max_unacknowledged_share))
        if int(self.planned_looks) != self.planned_looks or self.planned_looks < 1:
            raise ValueError(f"planned_looks must be a positive integer, got {self.planned_looks!r}")
        if self.always_valid is not None and self.always_valid.labels != labels:
            raise ValueError(
                "always_valid must have one interval per batch of the result, with the same labels"
            )

    @property
    def latest(self) -> str:
        """Label of the latest batch."""
        return str(self.latest_batch)

    @property
    def outcome_name(self) -> str:
        """The outcome as the card names it."""
        return self.card.outcome if self.card is not None else "the outcome"

    @property
    def treatment_name(self) -> str:
        """The treatment as the card names it."""
        return self.card.treatment if self.card is not None else "the treatment"

    @cached_property
    def scale(self) -> EffectScale:
        """How every effect is written: percentage points or the unit, digits from the final posterior sd."""
        return EffectScale.of(
            outcome_type=self.outcome_type,
            outcome_unit=self.outcome_unit,
            per=self.card.unit if self.card is not None else None,
            sd=self.result.final_sd,
        )

    @property
    def primary(self) -> EffectEstimate | None:
        """The latest batch's primary estimate, if there is one."""
        return next((e for e in self.latest_estimates if e.method == self.primary_estimator), None)

    def batch_order(self) -> list[str]:
        """Batch labels in time order, then labels that only the verdicts know."""
        labels = list(self.result.labels)
        return labels + sorted(set(self.verdicts) - set(labels))

    def excluded_batches(self) -> dict[str, tuple[str, ...]]:
        """Every batch that did not update the posterior, with the failed checks (or the reason)."""
        result = self.result
        named: dict[str, tuple[str, ...]] = {}
        for label, flag, reason in zip(result.labels, result.excluded, result.exclusion_reasons, strict=True):
            if flag:
                named[label] = tuple(self.exclusions.get(label, ())) or (reason or "excluded",)
        return named

    def acknowledged(self) -> dict[str, str]:
        """Excluded batches an analyst acknowledged, batch -> reason, in time order."""
        excluded = self.excluded_batches()
        return {b: self.acknowledged_exclusions[b] for b in excluded if b in self.acknowledged_exclusions}

    def unmatched_acknowledgements(self) -> tuple[str, ...]:
        """Acknowledged batches that were not excluded (nothing to acknowledge; shown as not applied)."""
        return tuple(b for b in self.acknowledged_exclusions if b not in self.excluded_batches())

    def failed_checks(self) -> dict[str, tuple[Verdict, ...]]:
        """Failed verdicts per batch, batches in time order (batches without a failure left out)."""
        failed = {b: tuple(v for v in self.verdicts.get(b, ()) if v.failed) for b in self.batch_order()}
        return {b: v for b, v in failed.items() if v}

    def innovation_report(self) -> InnovationReport:
        """The posterior's innovation checks (given, or computed with the default thresholds)."""
        return self.innovation if self.innovation is not None else innovation_diagnostics(self.result)

    def posterior_verdicts(self) -> tuple[Verdict, ...]:
        """Checks of the posterior itself: latest innovation, drift, calibration, particle ESS."""
        report = self.innovation_report()
        return (report.latest_innovation, report.one_sided, report.nis, report.ess)

    @property
    def n_used(self) -> int:
        """Batches whose estimate updated the posterior."""
        return int(np.sum(~self.result.excluded))

    def status_reasons(self) -> tuple[str, ...]:
        """Why the status is provisional, one clause per rule that holds (see :mod:`~assimilate.report.decision`)."""
        return provisional_reasons(
            batches=self.result.labels,
            latest=self.latest,
            excluded=self.excluded_batches(),
            acknowledged=self.acknowledged_exclusions,
            failed_posterior_checks=[check_name(v.name) for v in self.posterior_verdicts() if v.failed],
            max_unacknowledged_share=self.max_unacknowledged_share,
        )

    @property
    def status(self) -> MemoStatus:
        """``no evidence`` (no batch used), ``provisional`` (a rule of :meth:`status_reasons` holds), ``pass``."""
        if self.n_used == 0:
            return "no evidence"
        return "provisional" if self.status_reasons() else "pass"

    @cached_property
    def decision_interval(self) -> ConfidenceSequence:
        """The always-valid interval per batch: given, or computed from the result (independent batches)."""
        if self.always_valid is not None:
            return self.always_valid
        result = self.result
        return confidence_sequence(
            result.estimates,
            result.standard_errors,
            excluded=result.excluded,
            labels=result.labels,
            alpha=result.alpha,
            planned_looks=self.planned_looks,
        )

    @property
    def decision(self) -> Decision:
        """The recommendation: :func:`~assimilate.report.decision.decide` on the status and the latest always-valid interval."""
        lower, upper = self.decision_interval.conf_int()
        return decide(status=self.status, lower=lower, upper=upper, desired_direction=self.desired_direction)


def format_statistic(value: float | None) -> str:
    """A check's statistic or threshold: three significant digits, ``n/a`` when absent."""
    if value is None:
        return "n/a"
    return f"{value:.3g}"


def _cell(row: Mapping[Any, Any], name: str) -> Any:
    value = row.get(name)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def verdicts_from_frame(frame: pd.DataFrame) -> dict[str, tuple[Verdict, ...]]:
    """Verdicts per batch from a tidy table, one row per (batch, check).

    Parameters
    ----------
    frame : DataFrame
        Columns ``batch`` (or ``partition_key``), ``check`` (or ``check_name``) and ``status``
        (``pass``/``fail``/``undefined``); optional ``value``, ``threshold``, ``rule``, ``reason``.

    Returns
    -------
    dict of str to tuple of Verdict
        Keyed by batch label, verdicts in the table's row order.
    """
    table = frame.rename(columns={"partition_key": "batch", "check_name": "check"})
    missing = [c for c in ("batch", "check", "status") if c not in table.columns]
    if missing:
        raise ValueError(f"verdict table lacks column(s) {missing}")
    grouped: dict[str, list[Verdict]] = {}
    for row in table.to_dict(orient="records"):
        status = check_choice("status", str(row["status"]), _STATUSES)
        value, threshold = _cell(row, "value"), _cell(row, "threshold")
        verdict = Verdict(
            name=str(row["check"]),
            value=None if value is None else float(value),
            threshold=None if threshold is None else float(threshold),
            rule=str(_cell(row, "rule") or ""),
            status=status,
            reason=str(_cell(row, "reason") or ""),
        )
        grouped.setdefault(str(row["batch"]), []).append(verdict)
    return {batch: tuple(verdicts) for batch, verdicts in grouped.items()}
