"""The decision memo's inputs, filled from the warehouse: stored rows back into library objects."""

from __future__ import annotations

import math

import pandas as pd

from assets.common import read_verdicts
from assimilate.design import to_dot
from assimilate.diagnostics import innovation_diagnostics, trend_test_of
from assimilate.estimators import EffectEstimate
from assimilate.report import Baseline, DesignSummary, MemoInputs, verdicts_from_frame
from assimilate.result import AssimilationResult
from assimilate.sequential import ConfidenceSequence
from resources.graphviz import render_png
from resources.study import StudyConfig
from resources.warehouse import Warehouse


def latest_estimates(effects: pd.DataFrame, batch: str) -> tuple[EffectEstimate, ...]:
    """The stored estimates of one batch (estimators that failed on it are left out)."""
    if effects.empty:
        return ()
    rows = effects[(effects["partition_key"] == batch) & effects["error"].fillna("").eq("")]
    return tuple(
        EffectEstimate(
            estimate=float(row.estimate),
            std_error=float(row.std_error),
            n_treated=int(row.n_treated),
            n_control=int(row.n_control),
            method=str(row.method),
            se_method=str(row.se_method),
        )
        for row in rows.itertuples(index=False)
        if math.isfinite(row.estimate) and math.isfinite(row.std_error) and row.std_error > 0
    )


def baseline(store: Warehouse, study: StudyConfig, result: AssimilationResult) -> Baseline | None:
    """The control units' mean outcome in the latest admitted batch (None without one)."""
    admitted = [label for label, out in zip(result.labels, result.excluded, strict=True) if not out]
    if not admitted:
        return None
    rows = store.read_table(study.name, "covariates", partition_key=admitted[-1])
    if rows.empty or not {study.treatment, study.outcome} <= set(rows.columns):
        return None
    control = pd.to_numeric(rows.loc[rows[study.treatment] == 0, study.outcome], errors="coerce").dropna()
    if control.empty:
        return None
    return Baseline(mean=float(control.mean()), batch=admitted[-1], n_control=len(control))


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
    for row in failed.itertuples(index=False):
        gates.setdefault(str(row.partition_key), []).append(str(row.check_name))
    return gates


def memo_inputs(
    store: Warehouse,
    study: StudyConfig,
    result: AssimilationResult,
    *,
    always_valid: ConfidenceSequence | None = None,
) -> MemoInputs:
    """Everything the memo states, for the study's posterior ``result`` and its stored always-valid interval.

    The study file's acknowledged exclusions and planned looks go in as they are; the memo's
    status and decision rules are in :mod:`assimilate.report.decision`.
    """
    verdicts = read_verdicts(store, study)
    latest = result.labels[-1]  # the last landed period, from the same steps as the posterior
    estimates = latest_estimates(store.read_table(study.name, "batch_effects"), latest)
    if study.primary_estimator not in {e.method for e in estimates}:
        estimates = ()  # without the primary estimate the latest batch adds no evidence of its own
    design = study.design
    return MemoInputs(
        study=study.name,
        result=result,
        design=DesignSummary(
            kind=design.kind,
            treated_share=getattr(design, "treated_share", None),
            adjustment_set=study.model_columns,
            method_shortlist=study.method_shortlist(),
        ),
        latest_estimates=estimates,
        primary_estimator=study.primary_estimator,
        verdicts=verdicts_from_frame(verdicts) if not verdicts.empty else {},
        card=study.estimand_card,
        innovation=innovation_diagnostics(
            result,
            z_threshold=study.thresholds.innovation_z,
            min_ess_fraction=study.thresholds.min_ess_fraction,
        ),
        desired_direction=study.desired_direction,
        latest_batch=latest,
        acknowledged_exclusions=study.acknowledged,
        always_valid=always_valid,
        planned_looks=study.looks_planned,
        trend=trend_test_of(result),
        exclusions=failed_gates(verdicts, result),
        outcome_type=study.outcome_type,
        outcome_unit=study.outcome_unit,
        baseline=baseline(store, study, result),
        process_var_source="estimated" if study.process_var == "mle" else "set",
    )


def causal_dag_png(study: StudyConfig) -> bytes | None:
    """The study's causal graph as a PNG (adjustment set marked), or None without a graph."""
    dag = study.causal_dag()
    if dag is None:
        return None
    return render_png(to_dot(dag, adjustment=study.model_columns))
