"""Verdicts from the library, turned into Dagster asset check results and stored rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

from assimilate.diagnostics import Verdict

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


def naming_batch(verdict: Verdict, batch: str) -> Verdict:
    """The verdict with a reason that starts by naming the batch (every stored reason does)."""
    prefix = f"batch {batch}"
    if verdict.reason.startswith(prefix):
        return verdict
    return dataclasses.replace(verdict, reason=f"{prefix}: {verdict.reason}" if verdict.reason else prefix)


def check_name(asset: str, prop: str) -> str:
    """Checks are named ``check_<asset>_<property>``."""
    return f"check_{asset}_{prop}"


def check_spec(
    asset_key: dg.AssetKey, prop: str, description: str, partitions: dg.PartitionsDefinition | None = None
) -> dg.AssetCheckSpec:
    """Spec of a check computed inside its asset's step (so the verdict exists before the posterior)."""
    return dg.AssetCheckSpec(
        check_name(asset_key.path[-1], prop),
        asset=asset_key,
        description=description,
        partitions_def=partitions,
    )


def check_result(
    asset_key: dg.AssetKey,
    prop: str,
    verdict: Verdict,
    *,
    severity: dg.AssetCheckSeverity,
    metadata: Mapping[str, Any] | None = None,
) -> dg.AssetCheckResult:
    """An undefined verdict passes (the test does not apply) with its reason in the metadata."""
    values: dict[str, Any] = {
        "status": verdict.status,
        "observed_value": verdict.value if verdict.value is not None else "n/a",
        "threshold": verdict.threshold if verdict.threshold is not None else "n/a",
        "rule": verdict.rule,
        "reason": verdict.reason,
    }
    false_alarm_rate = getattr(verdict, "false_alarm_rate", None)  # calibrated gates state theirs
    if false_alarm_rate is not None:
        values["false_alarm_rate"] = float(false_alarm_rate)
    values.update(metadata or {})
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name(asset_key.path[-1], prop),
        passed=not verdict.failed,
        severity=severity,
        metadata=values,
        description=str(verdict),
    )


def verdict_rows(asset: str, verdicts: Mapping[str, tuple[Verdict, dg.AssetCheckSeverity]]) -> pd.DataFrame:
    """Rows for the warehouse's verdict table of one asset partition."""
    return pd.DataFrame(
        [
            {
                "asset": asset,
                "check_name": check_name(asset, prop),
                "severity": severity.value,
                "status": verdict.status,
                "value": verdict.value,
                "threshold": verdict.threshold,
                "rule": verdict.rule,
                "reason": verdict.reason,
            }
            for prop, (verdict, severity) in verdicts.items()
        ],
        columns=["asset", "check_name", "severity", "status", "value", "threshold", "rule", "reason"],
    )
