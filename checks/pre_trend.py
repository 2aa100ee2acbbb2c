"""The pre-trend gate of a difference-in-differences study: the stored placebos jointly zero.

Every pre-period batch stored its placebo effect (``callaway_santanna_placebo`` in
``batch_effects``) and each unit's influence value on it (``batch_influence``). At a post-period
batch the check reads them back, builds their unit-clustered covariance from the influence values
and runs the joint Wald test (:func:`assimilate.estimators.did_batch.stored_pre_trend`): ERROR when
its p-value is below ``design.pre_trend_level``, so no post-period batch reaches the posterior
while the adopting units were already drifting away before adoption. A pre-period placebo that
is missing (its batch not yet run) fails the check too, naming the batch: a post period is never
admitted on fewer placebos than the panel has. The analyst acts by fixing the comparison
(``design.control``) or, keeping the design, by ``design.pre_trend_acknowledged: <reason>``,
which makes the check WARN: still run, shown and alerted, no longer excluding (docs/DID.md).
"""

from __future__ import annotations

import base64
from typing import Any

import dagster as dg
import pandas as pd

from assimilate.diagnostics.catalogue import Severity
from assimilate.diagnostics.verdict import Verdict
from assimilate.estimators.batch import BatchFit
from assimilate.estimators.did_batch import PLACEBO_METHOD, stored_pre_trend
from assimilate.report import figure_to_png
from assimilate.report.event_study import event_study_plot, event_study_table
from checks.returning_units import INFLUENCE_TABLE
from resources.study import StudyConfig

NAME = "pre_trend"


def pre_trend_severities(study: StudyConfig) -> dict[str, Severity]:
    """``pre_trend``'s severity when the analyst acknowledged a failed pre-trend (WARN); else the catalogue's."""
    acknowledged = getattr(study.design, "pre_trend_acknowledged", None)
    return {NAME: "WARN"} if study.design.kind == "did" and acknowledged else {}


def pre_trend_verdict(
    study: StudyConfig, history: dict[str, pd.DataFrame], fit: BatchFit, batch: str
) -> tuple[Verdict, dict[str, Any]]:
    """The joint test of the stored placebos at a post-period batch; undefined (with the reason) otherwise."""
    design = study.design
    rule = f"joint Wald test that the pre-period placebos are 0: p-value >= {getattr(design, 'pre_trend_level', 0.05):g}"
    reason = design.not_assessed(NAME)
    estimate = fit.estimates.get(study.primary_estimator)
    if reason is None and estimate is None:
        reason = f"batch {batch}: no effect in this period (a pre-period or an estimation error)"
    if reason is not None or estimate is None:
        return Verdict.undefined(NAME, threshold=None, rule=rule, reason=reason or ""), {}
    cohorts = [c for c in estimate.diagnostics.get("cohorts", ()) if c != "later"]
    first_adoption = min(cohorts)
    effects = _current(history.get("batch_effects", pd.DataFrame()), study, batch)
    stored_rows = history.get("covariates", pd.DataFrame())
    labels = stored_rows["partition_key"].astype(str) if "partition_key" in stored_rows.columns else ()
    periods = sorted({*labels, batch})
    periods = [p for p in periods if p <= batch]
    expected = [p for p in periods[1:] if p < first_adoption]  # the first period has no placebo
    leads = (
        effects[effects["method"] == PLACEBO_METHOD][["partition_key", "estimate"]]
        if not effects.empty
        else effects
    )
    stored = set(leads["partition_key"].astype(str)) if not leads.empty else set()
    missing = [p for p in expected if p not in stored]
    if missing:
        return Verdict.evaluate(
            NAME,
            value=float("nan"),
            threshold=design.pre_trend_level,
            rule=rule,
            passed=False,
            reason=f"batch {batch}: the placebo of pre-period batch(es) {missing} is not stored yet; "
            "run them, then re-run this batch",
        ), {}
    influence = history.get(INFLUENCE_TABLE, pd.DataFrame(columns=["partition_key", "unit_id", "influence"]))
    found, study_of_leads = stored_pre_trend(
        leads[leads["partition_key"].astype(str).isin(expected)] if expected else leads.iloc[0:0],
        influence,
        periods=periods,
        first_adoption=first_adoption,
        alpha=design.pre_trend_level,
    )
    said = found.reason
    if found.status == "fail" and design.pre_trend_acknowledged:  # kept in as WARN (pre_trend_severities)
        said += f"; acknowledged by the analyst: {design.pre_trend_acknowledged}"
    verdict = Verdict(NAME, found.value, found.threshold, rule, found.status, said)
    if study_of_leads is None:
        return verdict, {}
    return verdict, _metadata(study, found.to_dict(), effects, fit, batch, first_adoption)


def _current(effects: pd.DataFrame, study: StudyConfig, batch: str) -> pd.DataFrame:
    """Earlier batches' stored estimates under the study's current batch rules (stale ones are re-run)."""
    if effects.empty:
        return effects
    rows = effects[effects["partition_key"].astype(str) < batch]
    if "batch_rules" in rows.columns:
        rows = rows[rows["batch_rules"].fillna("") == study.batch_rules_hash]
    return rows


def _metadata(
    study: StudyConfig, found: dict[str, Any], effects: pd.DataFrame, fit: BatchFit, batch: str, first: str
) -> dict[str, Any]:
    """The leads, the statistic, the p-value and the event-study plot (placebos and effects so far)."""
    now = fit.frames["effects"].assign(partition_key=batch)
    table = event_study_table(pd.concat([effects, now], ignore_index=True), first_adoption=first)
    figure = event_study_plot(
        table,
        title=f"{study.name} {batch}: event study",
        ylabel=f"effect on {study.outcome}",
        pre_trend={"statistic": found["statistic"], "p_value": found["value"], "status": found["status"]},
    )
    png = base64.b64encode(figure_to_png(figure)).decode()
    leads = "\n".join(
        f"| {k} | {e:.4g} | {s:.3g} |"
        for k, e, s in zip(found["leads"], found["lead_estimates"], found["lead_std_errors"], strict=True)
    )
    return {
        "statistic": found["statistic"] if found["statistic"] is not None else "n/a",
        "p_value": found["value"] if found["value"] is not None else "n/a",
        "leads": len(found["leads"]),
        "first_adoption": first,
        "lead_estimates": dg.MetadataValue.md("| event time | placebo | SE |\n|---|---|---|\n" + leads),
        "event_study": dg.MetadataValue.md(f"![event_study](data:image/png;base64,{png})"),
    }
