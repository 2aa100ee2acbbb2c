"""A decision memo's inputs from a study's analysis plan and its stored tables.

The pipeline stores each batch's estimates (one row per estimator), every check's verdict and the
posterior's steps; :func:`memo_inputs` turns those rows back into library objects: the latest
batch's estimates, the verdicts per batch, the failed gates of each excluded batch, the control
mean of the latest admitted batch (:func:`baseline`, ``mean(y_i : d_i = 0)``) and the innovation
and trend checks of the posterior under the plan's thresholds. For an observational design it also
fits the one OLS ``Y ~ D + X`` of that batch that the sensitivity analysis needs (:func:`sensitivity`);
no estimator or filter runs here.

Example
-------
>>> import pandas as pd
>>> from assimilate import causal_kalman
>>> from assimilate.design.plan import AnalysisPlan
>>> plan = AnalysisPlan(
...     unit_id="visitor", treatment="treated", outcome="order_value", outcome_type="continuous",
...     design={"kind": "randomized"}, primary_estimator="difference_in_means", process_var=0.0,
... )
>>> result = causal_kalman([0.5, 0.6], [0.1, 0.1], labels=["m1", "m2"], prior_mean=0.0, prior_var=1.0)
>>> inputs = memo_inputs(plan, result, study="demo", effects=pd.DataFrame(), verdicts=pd.DataFrame())
>>> inputs.status, inputs.design.kind, latest_admitted(result)
('pass', 'randomized', 'm2')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pandas as pd

from assimilate.diagnostics.innovations import innovation_diagnostics
from assimilate.diagnostics.trend import trend_test_of
from assimilate.estimators.result import EffectEstimate
from assimilate.report.confounding import ConfounderSensitivity, confounder_sensitivity
from assimilate.report.memo_inputs import DesignSummary, MemoInputs, verdicts_from_frame
from assimilate.report.units import Baseline
from assimilate.result import AssimilationResult
from assimilate.sequential import ConfidenceSequence

if TYPE_CHECKING:
    from assimilate.design.plan import AnalysisPlan


def latest_estimates(effects: pd.DataFrame, batch: str) -> tuple[EffectEstimate, ...]:
    """The stored estimates of one batch (estimators that failed on it are left out).

    ``effects`` holds ``batch_effects`` rows: partition_key, method, estimate, std_error,
    n_treated, n_control, se_method, error.
    """
    if effects.empty:
        return ()
    rows = effects[(effects["partition_key"] == batch) & effects["error"].fillna("").eq("")]
    return tuple(
        EffectEstimate(
            estimate=float(row["estimate"]),
            std_error=float(row["std_error"]),
            n_treated=int(row["n_treated"]),
            n_control=int(row["n_control"]),
            method=str(row["method"]),
            se_method=str(row["se_method"]),
        )
        for row in rows.to_dict("records")
        if math.isfinite(row["estimate"]) and math.isfinite(row["std_error"]) and row["std_error"] > 0
    )


def latest_admitted(result: AssimilationResult) -> str | None:
    """The label of the latest batch that updated the posterior (None without one)."""
    admitted = [label for label, out in zip(result.labels, result.excluded, strict=True) if not out]
    return admitted[-1] if admitted else None


def latest_row_columns(plan: AnalysisPlan) -> tuple[str, ...]:
    """The columns of a batch's stored rows that :func:`baseline` and :func:`sensitivity` read."""
    model = plan.model_columns if plan.design.kind == "observational" else ()
    return tuple(dict.fromkeys((plan.treatment, plan.outcome, *model)))


def baseline(rows: pd.DataFrame | None, plan: AnalysisPlan, batch: str | None) -> Baseline | None:
    """The control units' mean outcome in ``rows`` (one batch's stored rows), or None without controls."""
    if batch is None or rows is None or rows.empty or not {plan.treatment, plan.outcome} <= set(rows.columns):
        return None
    outcome = rows.loc[rows[plan.treatment] == 0, plan.outcome]
    control = pd.to_numeric(outcome, errors="coerce").dropna()
    if control.empty:
        return None
    return Baseline(mean=float(control.mean()), batch=batch, n_control=len(control))


def sensitivity(
    rows: pd.DataFrame | None, plan: AnalysisPlan, batch: str | None, *, alpha: float
) -> ConfounderSensitivity | None:
    """An observational plan's sensitivity to an unmeasured confounder in ``rows`` (None for other designs)."""
    if plan.design.kind != "observational" or batch is None or rows is None or rows.empty:
        return None
    return confounder_sensitivity(
        rows,
        treatment=plan.treatment,
        outcome=plan.outcome,
        covariates=plan.model_columns,
        batch=batch,
        categories=plan.categorical,
        outcome_type=plan.outcome_type,
        alpha=alpha,
    )


def failed_gates(verdicts: pd.DataFrame, result: AssimilationResult) -> dict[str, list[str]]:
    """The failed ERROR checks of each batch the result kept out because of them."""
    out = {
        label
        for label, flag, reason in zip(result.labels, result.excluded, result.exclusion_reasons, strict=True)
        if flag and reason.startswith("failed ")
    }
    if verdicts.empty or not out:
        return {}
    failed = verdicts[
        (verdicts["status"] == "fail")
        & (verdicts["severity"] == "ERROR")
        & verdicts["partition_key"].isin(out)
    ]
    gates: dict[str, list[str]] = {}
    for row in failed.to_dict("records"):
        gates.setdefault(str(row["partition_key"]), []).append(str(row["check_name"]))
    return gates


def memo_inputs(
    plan: AnalysisPlan,
    result: AssimilationResult,
    *,
    study: str,
    effects: pd.DataFrame,
    verdicts: pd.DataFrame,
    latest_rows: pd.DataFrame | None = None,
    always_valid: ConfidenceSequence | None = None,
    planned_looks: int = 12,
    acknowledged_exclusions: Mapping[str, str] | None = None,
) -> MemoInputs:
    """Everything the memo states, for a study's posterior ``result`` and its stored tables.

    Parameters
    ----------
    plan : AnalysisPlan
        The study's plan: design, estimators, card, thresholds, outcome and its unit.
    result : AssimilationResult
        The posterior after every batch (e.g. :func:`assimilate.incremental.result_from_steps`).
    study : str
        The study's name.
    effects : DataFrame
        Stored per-batch estimates (:func:`latest_estimates`); the latest batch's go in when the
        primary estimator gave one (without it the batch adds no evidence of its own).
    verdicts : DataFrame
        Every stored verdict (partition_key, check_name, severity, status, value, threshold, reason).
    latest_rows : DataFrame, optional
        The stored rows of :func:`latest_admitted` (the baseline's control units and, for an
        observational design, the sensitivity analysis: :func:`sensitivity`).
    always_valid : ConfidenceSequence, optional
        The stored always-valid interval per batch (computed from ``result`` if absent).
    planned_looks : int
        The horizon the always-valid interval is tuned for.
    acknowledged_exclusions : mapping of str to str, optional
        Excluded batches an analyst has acknowledged, batch -> reason.

    Returns
    -------
    MemoInputs
        Status and decision rules: :mod:`assimilate.report.decision`.
    """
    latest = result.labels[-1]  # the last landed period, from the same steps as the posterior
    estimates = latest_estimates(effects, latest)
    if plan.primary_estimator not in {e.method for e in estimates}:
        estimates = ()
    thresholds = plan.thresholds
    return MemoInputs(
        study=study,
        result=result,
        design=DesignSummary.from_plan(plan),
        latest_estimates=estimates,
        primary_estimator=plan.primary_estimator,
        verdicts=verdicts_from_frame(verdicts) if not verdicts.empty else {},
        card=plan.estimand_card,
        innovation=innovation_diagnostics(
            result, z_threshold=thresholds.innovation_z, min_ess_fraction=thresholds.min_ess_fraction
        ),
        desired_direction=plan.desired_direction,
        latest_batch=latest,
        acknowledged_exclusions=dict(acknowledged_exclusions or {}),
        always_valid=always_valid,
        planned_looks=planned_looks,
        trend=trend_test_of(result),
        exclusions=failed_gates(verdicts, result),
        outcome_type=plan.outcome_type,
        outcome_unit=plan.outcome_unit,
        baseline=baseline(latest_rows, plan, latest_admitted(result)),
        process_var_source="estimated" if plan.process_var == "mle" else "set",
        sensitivity=sensitivity(latest_rows, plan, latest_admitted(result), alpha=result.alpha),
    )
