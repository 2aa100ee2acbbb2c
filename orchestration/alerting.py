"""Which finished-run check evaluations become alerts: one on onset, one on recovery.

Open-source Dagster has no alert on a failed check (and a failed non-blocking check does not fail
the run), so the alert sensors read a finished run's check evaluations and pass them here. The
last alert sent per (study, check, partition) is read back from the alert log, so an alert is sent
once when a check starts failing and once when it passes again, however often the batch is re-run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dagster as dg

from resources.alerts import Alert

PARTITION_TAG = "dagster/partition"


@dataclass(frozen=True)
class CheckOutcome:
    """One check evaluation of a finished run."""

    study: str
    asset: str
    check_name: str
    partition_key: str
    passed: bool
    severity: str
    value: object
    threshold: object
    reason: str


def check_outcomes(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[CheckOutcome]:
    """The asset check evaluations recorded by a run, in order."""
    outcomes = []
    for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        event = record.get_dagster_event().event_specific_data
        metadata = {k: v.value for k, v in event.metadata.items()}
        outcomes.append(
            CheckOutcome(
                study=event.asset_key.path[0],
                asset=event.asset_key.path[-1],
                check_name=event.check_name,
                partition_key=event.partition or run.tags.get(PARTITION_TAG, ""),
                passed=bool(event.passed),
                severity=event.severity.value,
                value=metadata.get("observed_value"),
                threshold=metadata.get("threshold"),
                reason=str(metadata.get("reason", "")),
            )
        )
    return outcomes


def alerts_for(outcomes: Iterable[CheckOutcome], last_kind: Mapping[tuple[str, str], str]) -> list[Alert]:
    """One onset alert when a batch starts failing checks, one recovery alert when it passes again.

    Outcomes are grouped by (study, partition): a batch that fails overlap and balance at once gives
    one alert naming both. ``last_kind`` maps (study, partition) to the kind of the last alert sent.
    """
    groups: dict[tuple[str, str], list[CheckOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault((outcome.study, outcome.partition_key), []).append(outcome)
    alerts = []
    for (study, partition_key), group in groups.items():
        failed = [o for o in group if not o.passed]
        previous = last_kind.get((study, partition_key))
        if failed and previous != "onset":
            alerts.append(_alert(study, partition_key, "onset", failed))
        elif not failed and previous == "onset":
            alerts.append(_alert(study, partition_key, "recovery", group))
    return alerts


def _alert(study: str, partition_key: str, kind: str, outcomes: list[CheckOutcome]) -> Alert:
    where = f"batch {partition_key}" if partition_key else "posterior"
    if kind == "onset":
        details = "; ".join(f"{o.check_name} ({o.severity}): {o.reason}" for o in outcomes)
        message = f"{study} {where}: failed {details}"
        worst = "ERROR" if any(o.severity == "ERROR" for o in outcomes) else "WARN"
    else:
        message = f"{study} {where}: every check passes again"
        worst = "INFO"
    first = outcomes[0]
    return Alert.create(
        study=study,
        kind=kind,
        check_name=", ".join(o.check_name for o in outcomes) if kind == "onset" else "",
        partition_key=partition_key,
        severity=worst,
        value=first.value if kind == "onset" and len(outcomes) == 1 else None,
        threshold=first.threshold if kind == "onset" and len(outcomes) == 1 else None,
        message=message,
    )
