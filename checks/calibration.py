"""The calibration audit as a study-level check on effect_posterior.

With ``calibration_audit:`` in the study file, every posterior update audits the primary estimator
on the stored valid rows of the batches it would admit
(:func:`assimilate.diagnostics.plan_audit.audit_plan`); the check reports the placebo intervals'
misses, their number, the miss rate, the z statistic and the one-sided p-value. Its severity is WARN,
or ERROR with ``refuse: true``: a failed audit then keeps the estimator's batches out of the posterior
(:meth:`~assimilate.diagnostics.plan_audit.StudyAudit.admitted`). Below ``min_batches`` admitted
batches it is not assessed.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd

from assimilate.diagnostics import catalogue
from assimilate.diagnostics.plan_audit import NAME, StoredAudit, StudyAudit, audit_plan
from checks.results import ERROR, WARN, Verdicts, check_name
from resources.study import StudyConfig
from resources.warehouse import Warehouse

CALIBRATION_TABLE = "calibration_audit"
"""The warehouse table of the latest audit (one row), read by the memo."""
ROWS_TABLE = "covariates"


def audit_study(store: Warehouse, study: StudyConfig, observed: pd.DataFrame) -> StudyAudit | None:
    """The audit of the study's primary estimator over the admitted batches of ``observed`` (None unless configured).

    Parameters
    ----------
    store : Warehouse
        Holds each batch's stored valid rows (``covariates``).
    study : StudyConfig
        The study (its ``calibration_audit`` section and its team's estimators).
    observed : DataFrame
        :func:`assimilate.admission.observations` of every period; its admitted batches are audited.
    """
    if study.calibration_audit is None:
        return None
    labels: list[str] = (
        []
        if observed.empty
        else observed.loc[~observed["excluded"].astype(bool), "batch"].astype(str).tolist()
    )
    if len(labels) < study.calibration_audit.min_batches:  # not assessed: nothing to read
        return audit_plan(dict.fromkeys(labels, pd.DataFrame()), study, custom=study.custom_functions)
    rows = store.read_table(study.name, ROWS_TABLE, partition_keys=labels)
    keys = rows["partition_key"].astype(str) if not rows.empty else pd.Series(dtype=str)
    batches = {
        label: rows[keys == label].reset_index(drop=True) if not rows.empty else pd.DataFrame()
        for label in labels
    }
    return audit_plan(batches, study, custom=study.custom_functions)


def stored_audit(store: Warehouse, study: StudyConfig) -> StoredAudit | None:
    """The latest stored audit for the memo (None unless the study configures one)."""
    if study.calibration_audit is None:  # a table left from an earlier version of the study is not its word
        return None
    return StoredAudit.from_frame(store.read_table(study.name, CALIBRATION_TABLE))


def audit_spec(study: StudyConfig, asset_key: dg.AssetKey) -> dg.AssetCheckSpec:
    """The check's spec: what it asks, the study's settings, and what a failure does."""
    settings = study.calibration_audit
    if settings is None:
        raise ValueError(f"study {study.name}: no calibration_audit section, so no audit check")
    consequence = (
        "A failure keeps every batch of the primary estimator out of the posterior (refuse: true) and raises an alert."
        if settings.refuse
        else "A failure is reported and alerted; the batches still enter the posterior (refuse: false)."
    )
    return dg.AssetCheckSpec(
        check_name(asset_key.path[-1], NAME),
        asset=asset_key,
        description=(
            f"{catalogue.check_spec(NAME).question} This study: primary estimator {study.primary_estimator}, "
            f"placebos permuted within the design's strata, {settings.placebos} per batch, judged from "
            f"{settings.min_batches} admitted batches, audit_alpha = {settings.audit_alpha}, tolerance = "
            f"{settings.tolerance}. {consequence}"
        ),
    )


def audit_verdicts(study: StudyConfig, audit: StudyAudit | None) -> Verdicts:
    """The audit's verdict at the study's severity (none unless configured)."""
    if audit is None or study.calibration_audit is None:
        return {}
    return {NAME: (audit.verdict, ERROR if study.calibration_audit.refuse else WARN)}


def audit_metadata(audit: StudyAudit | None) -> dict[str, dict[str, Any]]:
    """The check's numbers: misses, placebo intervals, miss rate, z, p-value, batches, refused."""
    if audit is None or audit.audit is None:
        return {}
    row = audit.to_frame().iloc[0]
    p_value = row["p_value"]
    numbers: dict[str, Any] = {
        "method": str(row["method"]),
        "misses": int(row["misses"]),
        "placebo_intervals": int(row["n_intervals"]),
        "miss_rate": float(row["miss_rate"]),
        "nominal_miss_rate": float(1 - row["level"]),
        "z": float(row["statistic"]),
        "p_value": float(p_value) if pd.notna(p_value) else "n/a",
        "batches_audited": int(row["batches"]),
        "refused": bool(row["refused"]),
        "per_batch": dg.MetadataValue.md(audit.audit.to_frame().to_markdown(index=False)),
    }
    return {NAME: numbers}


__all__ = [
    "CALIBRATION_TABLE",
    "audit_metadata",
    "audit_spec",
    "audit_study",
    "audit_verdicts",
    "stored_audit",
]
