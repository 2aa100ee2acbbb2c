"""Verdicts from the library, turned into Dagster asset check results, run tags and stored rows.

Dagster shows what a check result says, so a result is yielded only for an assessed verdict
(pass or fail). A verdict that is undefined (the test does not apply: SRM in an observational
study, ESS on the Kalman backend, any check of a withdrawn batch) is not reported: the instance
records the check as skipped in that run (the assets are one-asset multi-assets that may leave a
check out, ``assets.common.checked_asset``), its reason goes into the materialization's metadata,
and the warehouse's verdict rows keep the status "undefined" with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
import pandas as pd

from assimilate.diagnostics import Verdict, catalogue

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN
EXCLUDED_TAG = "assimilate/excluded"
"""Run tag naming the failed ERROR checks that keep the run's batch out of the posterior."""

Verdicts = Mapping[str, tuple[Verdict, dg.AssetCheckSeverity]]


def naming_batch(verdict: Verdict, batch: str) -> Verdict:
    """The verdict with a reason that starts by naming the batch (every stored reason does)."""
    prefix = f"batch {batch}"
    if verdict.reason.startswith(prefix):
        return verdict
    return dataclasses.replace(verdict, reason=f"{prefix}: {verdict.reason}" if verdict.reason else prefix)


def severity(prop: str, overrides: Mapping[str, catalogue.Severity] | None = None) -> dg.AssetCheckSeverity:
    """The check's severity, as Dagster's: the study's (``overrides``, e.g. a refuter made ERROR), else
    the catalogue's (``assimilate/diagnostics/catalogue.py``)."""
    return ERROR if severity_name(prop, overrides) == "ERROR" else WARN


def severity_name(prop: str, overrides: Mapping[str, catalogue.Severity] | None = None) -> catalogue.Severity:
    """``"ERROR"`` or ``"WARN"``: the study's override of the check, else the catalogue's severity."""
    return (overrides or {}).get(prop, catalogue.check_spec(prop).severity)


def check_name(asset: str, prop: str) -> str:
    """Checks are named ``check_<asset>_<property>``."""
    return f"check_{asset}_{prop}"


def check_description(prop: str, detail: str = "", *, level: catalogue.Severity | None = None) -> str:
    """The catalogue's question, the study's numbers (``detail``), and what a failure does at its
    severity (``level``: the study's, when it overrides the catalogue's)."""
    entry = catalogue.check_spec(prop)
    level = level or entry.severity
    consequence = catalogue.ERROR_CONSEQUENCE if level == "ERROR" else catalogue.WARN_CONSEQUENCE
    study = f" This study: {detail}." if detail else ""
    return f"{entry.question}{study} {consequence}"


def check_spec(
    asset_key: dg.AssetKey,
    prop: str,
    detail: str = "",
    partitions: dg.PartitionsDefinition | None = None,
    *,
    level: catalogue.Severity | None = None,
) -> dg.AssetCheckSpec:
    """Spec of a check computed inside its asset's step (so the verdict exists before the posterior).

    The description is the catalogue's (``assimilate/diagnostics/catalogue.py``) with the study's
    thresholds in ``detail`` and its severity in ``level`` when the study overrides the catalogue's.
    """
    return dg.AssetCheckSpec(
        check_name(asset_key.path[-1], prop),
        asset=asset_key,
        description=check_description(prop, detail, level=level),
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
    """The result of an assessed verdict; an undefined one has none (see :func:`check_results`)."""
    if verdict.status == "undefined":
        raise ValueError(
            f"{check_name(asset_key.path[-1], prop)} was not assessed ({verdict.reason}): "
            "a check that was not assessed is left unreported, never reported as passed"
        )
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
        passed=verdict.passed,
        severity=severity,
        metadata=values,
        description=str(verdict),
    )


def check_results(
    asset_key: dg.AssetKey, verdicts: Verdicts, metadata: Mapping[str, Mapping[str, Any]] | None = None
) -> Iterator[dg.AssetCheckResult]:
    """Results of the assessed verdicts only; ``metadata`` adds entries per property."""
    for prop, (verdict, severity) in verdicts.items():
        if verdict.status != "undefined":
            yield check_result(
                asset_key, prop, verdict, severity=severity, metadata=(metadata or {}).get(prop)
            )


def not_assessed(asset: str, verdicts: Verdicts) -> dict[str, Any]:
    """Materialization metadata naming each check that was not assessed, with the reason."""
    lines = [
        f"- **{check_name(asset, prop)}**: {verdict.reason or verdict.rule}"
        for prop, (verdict, _) in verdicts.items()
        if verdict.status == "undefined"
    ]
    return {"not_assessed": dg.MetadataValue.md("\n".join(lines))} if lines else {}


def gate_failures(events: Iterable[object]) -> list[str]:
    """Names of the failed ERROR checks among a step's yielded events (each keeps its batch out).

    A step over a range of batches reports its checks as evaluations (assets/partition_range.py).
    """
    return [
        str(event.check_name)
        for event in events
        if isinstance(event, dg.AssetCheckResult | dg.AssetCheckEvaluation)
        and not event.passed
        and event.severity == ERROR
    ]


def mark_excluded(context: dg.AssetExecutionContext, failed_checks: Iterable[str]) -> None:
    """Tag the run with the ERROR checks that failed in it, so the run list shows the exclusion.

    A failed gate does not fail the run (the posterior must still take the batch's predict-only
    step), so without the tag the run is as green as any other.
    """
    failed = set(failed_checks)
    if not failed:
        return
    run_id = context.run.run_id
    run = context.instance.get_run_by_id(run_id)  # earlier steps of this run may have tagged it
    earlier = (run.tags if run else context.run.tags).get(EXCLUDED_TAG, "")
    names = sorted(failed | {name for name in earlier.split(", ") if name})
    context.instance.add_run_tags(run_id, {EXCLUDED_TAG: ", ".join(names)})


def verdict_rows(asset: str, verdicts: Verdicts) -> pd.DataFrame:
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
