"""One batch under a study's plan: the nuisance models fitted once, every estimator and verdict from them.

The propensity model ``e(x) = P(d = 1 | x) = expit(x'beta)`` and the arm-wise outcome models
``m_a(x) = E[y | x, d = a]`` are fitted once on the batch's design; IPW and AIPW read those fits,
the other estimators need none; the overlap verdict judges ``e(x)``, the balance verdict the
covariates weighted by it, the estimation verdict the primary estimate. Only AIPW with
``cross_fitting_folds`` fits again, on each fold's complement (that is what cross-fitting is).
A check that does not apply (an N-of-1 study, fewer than two units in an arm, a model that cannot
be fitted) is an undefined verdict with the reason, never an exception.

Example
-------
>>> import numpy as np
>>> from assimilate.design.plan import AnalysisPlan
>>> from assimilate.simulate import simulate_ab_stream
>>> frame = simulate_ab_stream(rng=np.random.default_rng(0)).batches[0]
>>> plan = AnalysisPlan(unit_id="unit_id", treatment="treatment", outcome="outcome",
...     outcome_type="continuous", design={"kind": "randomized"}, covariates=["x"],
...     primary_estimator="aipw", estimators=["difference_in_means", "aipw"], process_var=0.0)
>>> fit = fit_batch(frame, plan, batch="2025-01-01", rng=np.random.default_rng(0))
>>> fit.verdicts["estimation"].status, sorted(fit.tables())[:2]
('pass', ['balance', 'effects'])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from assimilate._frozen import FrozenDict
from assimilate._validation import check_choice
from assimilate.diagnostics.balance import BalanceComparison, weighted_balance
from assimilate.diagnostics.overlap import OverlapReport, overlap_report
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators._batch_effects import EFFECT_COLUMNS, Nuisance, estimate_batch
from assimilate.estimators._batch_tables import (
    INFLUENCE_COLUMNS,
    ROW_INDEX,
    influence_frame,
    outcome_coefficients,
    predictions,
    propensity_coefficients,
    score_table,
)
from assimilate.estimators._inputs import sampling_weights
from assimilate.estimators.custom import CustomEstimator
from assimilate.estimators.design_matrix import DesignMatrix, encode_covariates
from assimilate.estimators.influence import InfluenceContributions
from assimilate.estimators.iv_diagnostics import IV_METHOD, WEAK_INSTRUMENT_THRESHOLD, weak_instrument_verdict
from assimilate.estimators.models import PropensityModel, fit_propensity
from assimilate.estimators.outcome import OutcomeModel, fit_outcome_model
from assimilate.estimators.result import ESTIMANDS, EffectEstimate, Estimand

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan

TABLES = (
    "propensity_coefficients",
    "propensity_scores",
    "outcome_coefficients",
    "outcome_predictions",
    "effects",
    "balance",
    "influence",
)
"""The names of :meth:`BatchFit.tables`, in order."""


@dataclass(frozen=True)
class BatchFit:
    """A batch's nuisance fits, estimates and verdicts (see :func:`fit_batch`).

    Parameters
    ----------
    batch : str
        The batch's name (each verdict's reason starts with it).
    n_rows : int
        Valid rows of the batch, fitted or not.
    propensity : PropensityModel or None
        The propensity model, None when not fitted (``propensity_error`` says why).
    outcome : OutcomeModel or None
        The arm-wise outcome models, None when not fitted (``outcome_error`` says why).
    overlap : OverlapReport or None
        The overlap numbers of a fitted propensity model.
    balance : BalanceComparison or None
        Covariate balance before and after weighting by the fitted propensity.
    estimates : mapping
        Method -> EffectEstimate (with the study's standard error) of every estimator that gave one.
    errors : mapping
        Method -> why it gave none.
    influence : InfluenceContributions or None
        The primary estimator's per-row influence values, when its estimate is usable.
    verdicts : mapping
        ``"overlap"``, ``"balance"``, ``"estimation"``, ``"weak_instrument"`` (undefined, with the
        design's reason, unless it is an ``iv`` design).
    """

    batch: str
    n_rows: int
    propensity: PropensityModel | None
    propensity_error: str
    outcome: OutcomeModel | None
    outcome_error: str
    overlap: OverlapReport | None
    balance: BalanceComparison | None
    estimates: Mapping[str, EffectEstimate]
    errors: Mapping[str, str]
    influence: InfluenceContributions | None
    verdicts: Mapping[str, Verdict]
    frames: Mapping[str, pd.DataFrame] = field(repr=False)

    def tables(self, *, batch_rules: str = "", copy: bool = True) -> dict[str, pd.DataFrame]:
        """The batch's tables (:data:`TABLES`); ``batch_rules`` labels every effect row.

        Copies, unless ``copy`` is False: then the fit's own frames (to be written, not changed;
        at 1e7 rows a copy of the per-row tables is most of a gigabyte), the effects still a copy.
        """
        tables = {name: frame.copy() if copy else frame for name, frame in self.frames.items()}
        tables["effects"] = tables["effects"].assign(batch_rules=batch_rules)
        return tables

    def propensity_summary(self) -> dict[str, Any]:
        """The propensity fit's numbers: counts, score range, overlap shares; why not, if not fitted."""
        model, report = self.propensity, self.overlap
        if model is None or report is None:
            return {"fit": f"not fitted: {self.propensity_error}"} if self.propensity_error else {}
        return {
            "converged": model.converged,
            "clipped": model.n_clipped,
            "trimmed": model.n_trimmed,
            "propensity_min": float(np.min(model.scores)),
            "propensity_max": float(np.max(model.scores)),
            "overlap_eps": report.eps,
            "share_outside": report.share_outside,
            "share_outside_treated": report.share_outside_treated,
            "share_outside_control": report.share_outside_control,
            "ess_fraction": report.ess_fraction,
        }

    def outcome_summary(self) -> dict[str, Any]:
        """The outcome fit: its kind (or why not fitted) and every arm that fell back, with the reason."""
        if self.outcome is None:
            kind = f"not fitted: {self.outcome_error}" if self.outcome_error else "not fitted"
            return {"model": kind, "fallbacks": 0, "fallback_reasons": []}
        fallbacks = self.outcome.report()["outcome_fallbacks"]
        return {"model": self.outcome.kind, "fallbacks": len(fallbacks), "fallback_reasons": fallbacks}


def fit_batch(
    valid: pd.DataFrame,
    plan: AnalysisPlan,
    *,
    batch: str,
    rng: np.random.Generator,
    custom: Mapping[str, CustomEstimator] | None = None,
) -> BatchFit:
    """Fit one batch as ``plan`` says: nuisance models once, every estimator, the three verdicts.

    Parameters
    ----------
    valid : DataFrame
        The batch's valid rows (the plan's columns; ``row_index`` when the frame carries it).
    plan : AnalysisPlan
        Columns, estimators, estimand, propensity policy and bounds, cross-fitting, N-of-1
        settings, standard errors and thresholds.
    batch : str
        The batch's name, for the reasons.
    rng : numpy.random.Generator
        Cross-fitting's fold assignment (AIPW with ``cross_fitting_folds``); a custom estimator's ``rng``.
    custom : mapping, optional
        Name -> function of the plan's ``custom_estimators``, resolved by the caller (the library
        imports no user code); a name left out is that estimator's failure on every batch. The
        contract: :mod:`assimilate.estimators.custom`.

    Returns
    -------
    BatchFit
        Frozen; ``tables()`` gives the per-row and per-estimator tables.

    Notes
    -----
    The propensity model is fitted with the plan's policy and bounds; its raw scores serve every
    estimand (the ATT and ATC bound one side of them). Both models use the plan's design: the
    covariates with its declared categorical levels. An estimator whose model could not be
    fitted reports that model's error, as it would had it fitted the model itself.
    """
    from assimilate.design.plan import ONE_SUBJECT  # design.plan imports this package

    problem = usable_rows(plan, valid)
    weights, weight_problem = batch_weights(plan, valid)
    problem = problem or weight_problem
    # Not assessed whatever the rows: one subject's days, or a design without a propensity (iv).
    no_propensity = ONE_SUBJECT if plan.single_subject else plan.design.not_assessed("overlap")
    design, propensity, outcome, overlap = None, None, None, None
    fits = Nuisance(None, "", None, "")
    treatment = np.empty(0, np.int64)
    if problem is None:
        design = encode_covariates(valid, list(plan.model_columns), categories=plan.categorical)
        treatment = valid[plan.treatment].to_numpy(dtype=np.int64)
        fits = _nuisance_fits(
            plan, valid, design, treatment, fit_propensity_model=no_propensity is None, weights=weights
        )
        propensity, outcome = fits.propensity, fits.outcome
        overlap = None if propensity is None else calibrated_overlap(plan, propensity, treatment, design)
    effects = estimate_batch(
        valid,
        plan,
        batch=batch,
        rng=rng,
        problem=problem,
        design=design,
        fits=fits,
        custom=custom,
        weights=weights,
    )
    balance = None if propensity is None else _balance(plan, valid, propensity, weights)
    verdicts = {
        "overlap": _overlap_verdict(plan, batch, no_propensity or problem, fits.propensity_error, overlap),
        "balance": _balance_verdict(plan, batch, no_propensity, balance),
        "estimation": effects.verdict,
        "weak_instrument": _weak_instrument_verdict(plan, batch, effects.estimates),
    }
    frames = {
        "propensity_coefficients": propensity_coefficients(propensity),
        "propensity_scores": score_table(valid, plan.unit_id, treatment, propensity),
        "outcome_coefficients": outcome_coefficients(outcome),
        "outcome_predictions": predictions(valid, outcome),
        "effects": effects.table,
        "balance": pd.DataFrame() if balance is None else balance.to_frame(),
        "influence": influence_frame(valid, plan.unit_id, effects.influence),
    }
    return BatchFit(
        batch=batch,
        n_rows=len(valid),
        propensity=propensity,
        propensity_error=fits.propensity_error,
        outcome=outcome,
        outcome_error=fits.outcome_error,
        overlap=overlap,
        balance=balance,
        estimates=FrozenDict(effects.estimates),
        errors=FrozenDict(effects.errors),
        influence=effects.influence,
        verdicts=FrozenDict(verdicts),
        frames=FrozenDict(frames),
    )


def usable_rows(plan: AnalysisPlan, valid: pd.DataFrame) -> str | None:
    """None when both arms have at least two valid units; otherwise the reason."""
    if valid.empty:
        return "no valid rows"
    n_treated = int(valid[plan.treatment].sum())
    n_control = len(valid) - n_treated
    if min(n_treated, n_control) < 2:
        return (
            f"needs at least 2 treated and 2 control units, got {n_treated} treated and {n_control} control"
        )
    return None


def batch_weights(plan: AnalysisPlan, valid: pd.DataFrame) -> tuple[np.ndarray | None, str | None]:
    """The plan's sampling weights of the valid rows (mean 1; None when unweighted), or why they are unusable."""
    if plan.weights is None or valid.empty:
        return None, None
    try:
        return sampling_weights(valid[plan.weights].to_numpy(), len(valid), name=plan.weights), None
    except (KeyError, ValueError) as error:
        return None, f"weights: {error}"


def calibrated_overlap(
    plan: AnalysisPlan, model: PropensityModel, treatment: np.ndarray, design: DesignMatrix
) -> OverlapReport:
    """The overlap gate under the plan's rule; the calibrated rule corrects for the fit's own noise.

    Its correction needs the plain maximum-likelihood fit on ``design``; when the fit had to fall
    back (a penalized fit after separation), the scores are judged as known propensities instead.
    """
    thresholds = plan.thresholds
    options: dict[str, Any] = {
        "eps": thresholds.overlap_eps,
        "max_share_outside": thresholds.overlap_max_share_outside,
        "trimmed": model.n_trimmed,
        "rule": thresholds.gate_rule,
        "alpha": thresholds.overlap_alpha,
        "estimand": unit_estimand(plan),
    }
    try:
        return overlap_report(model.scores, treatment, design=design.values, **options)
    except ValueError:
        return overlap_report(model.scores, treatment, **options)


def unit_estimand(plan: AnalysisPlan) -> Estimand:
    """The plan's estimand, one a propensity or outcome model can target (ATE, ATT or ATC)."""
    return check_choice("estimand", plan.estimand, ESTIMANDS)


def _nuisance_fits(
    plan: AnalysisPlan,
    valid: pd.DataFrame,
    design: DesignMatrix,
    treatment: np.ndarray,
    *,
    fit_propensity_model: bool,
    weights: np.ndarray | None = None,
) -> Nuisance:
    """The propensity model (when the plan judges overlap) and the outcome model, each fitted once.

    A model that cannot be fitted is None beside the library's reason (separation, a singular
    design), which the overlap verdict and the estimators that need the model report. With sampling
    ``weights`` both are the survey-weighted fits (Ridgeway et al. 2015; docs/INTERVALS.md).
    """
    propensity, propensity_error = None, ""
    if fit_propensity_model:
        bounds = (plan.propensity.bounds[0], plan.propensity.bounds[1])
        try:
            propensity = fit_propensity(
                design, treatment, policy=plan.propensity.policy, bounds=bounds, weights=weights
            )
        except ValueError as error:
            propensity_error = str(error)
    try:
        outcome = fit_outcome_model(
            design, treatment, valid[plan.outcome].to_numpy(dtype=float), weights=weights
        )
    except ValueError as error:
        return Nuisance(propensity, propensity_error, None, str(error))
    return Nuisance(propensity, propensity_error, outcome, "")


def _overlap_rule(plan: AnalysisPlan) -> str:
    t = plan.thresholds
    return f"share outside [{t.overlap_eps}, {1 - t.overlap_eps}] <= {t.overlap_max_share_outside}"


def _overlap_verdict(
    plan: AnalysisPlan, batch: str, not_assessed: str | None, error: str, report: OverlapReport | None
) -> Verdict:
    threshold, rule = plan.thresholds.overlap_max_share_outside, _overlap_rule(plan)
    if report is not None:
        return report.verdict
    if error:  # no scores, so no overlap numbers: the value is n/a, never a stand-in such as inf
        return Verdict("overlap", None, threshold, rule, "fail", f"batch {batch}: {error}")
    return Verdict.undefined(
        "overlap", threshold=threshold, rule=rule, reason=f"batch {batch}: {not_assessed}"
    )


def _balance(
    plan: AnalysisPlan, valid: pd.DataFrame, model: PropensityModel, weights: np.ndarray | None = None
) -> BalanceComparison:
    """The max |SMD| after weighting by the fitted propensity (times the sampling weights), over the units it keeps."""
    kept = ~np.isnan(model.used_scores)  # a trimming policy's dropped units have no used score
    # These columns only, and not copied: a 1e7-row frame is gigabytes.
    covariates = pd.DataFrame({column: valid[column] for column in plan.model_columns}, copy=False)
    return weighted_balance(
        covariates if kept.all() else covariates[kept],
        valid[plan.treatment].to_numpy()[kept],
        propensity=model.used_scores[kept],
        threshold=plan.thresholds.max_abs_smd,
        rule=plan.thresholds.gate_rule,
        alpha=plan.thresholds.balance_alpha,
        estimand=unit_estimand(plan),
        sample_weights=None if weights is None else weights[kept],
    )


def _balance_verdict(
    plan: AnalysisPlan, batch: str, not_assessed: str | None, balance: BalanceComparison | None
) -> Verdict:
    threshold = plan.thresholds.max_abs_smd
    if balance is not None:
        return balance.verdict
    return Verdict.undefined(
        "balance",
        threshold=threshold,
        rule=f"max |SMD| after weighting <= {threshold}",
        reason=not_assessed or f"batch {batch}: no propensity scores",
    )


__all__ = [
    "EFFECT_COLUMNS",
    "INFLUENCE_COLUMNS",
    "ROW_INDEX",
    "TABLES",
    "BatchFit",
    "calibrated_overlap",
    "fit_batch",
    "influence_frame",
    "usable_rows",
]


def _weak_instrument_verdict(
    plan: AnalysisPlan, batch: str, estimates: Mapping[str, EffectEstimate]
) -> Verdict:
    """The instrument's strength (effective first-stage F) against the design's threshold."""
    threshold = getattr(plan.design, "min_first_stage_f", WEAK_INSTRUMENT_THRESHOLD)
    not_assessed = plan.design.not_assessed("weak_instrument")
    estimate = estimates.get(IV_METHOD)
    if not_assessed is None and estimate is not None:
        return weak_instrument_verdict(estimate, threshold=threshold)
    reason = not_assessed or f"batch {batch}: no {IV_METHOD} estimate, so no first stage to judge"
    rule = f"effective first-stage F >= {threshold:g}"
    return Verdict.undefined("weak_instrument", threshold=threshold, rule=rule, reason=reason)
