"""Which finished-run check evaluations become alerts: one on onset, one on recovery.

Open-source Dagster has no alert on a failed check (and a failed non-blocking check does not fail
the run), so the alert sensors read a finished run's check evaluations and pass them here. The last
alert sent per subject is read back from the alert log, so an alert is sent once when a subject
starts failing and once when it passes again, however often it is re-evaluated. Two subjects:

* a batch (study, partition) for the checks of partitioned assets: one alert names every failed
  check of the batch, and re-running the batch does not alert twice;
* one check (study, asset, check) for the checks of unpartitioned assets (the posterior's): each
  batch's run re-evaluates them for the whole study, so keying them by the run's partition would
  raise a new onset for every batch of a lasting drift and never send the recovery. A per-batch
  check about the stream rather than the batch (returning units: a standing panel returns every
  batch) says so with ``alert_scope: study`` in its metadata and is tracked the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dagster as dg

from resources.alerts import Alert, StateKey, state_key

PARTITION_TAG = "dagster/partition"


@dataclass(frozen=True)
class CheckOutcome:
    """One check evaluation of a finished run; ``partition_key`` is the run's batch for study checks."""

    study: str
    asset: str
    check_name: str
    partition_key: str
    passed: bool
    severity: str
    value: object
    threshold: object
    reason: str
    scope: str = "batch"

    @property
    def state_key(self) -> StateKey:
        return state_key(self.scope, self.study, self.partition_key, self.asset, self.check_name)


def check_outcomes(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[CheckOutcome]:
    """The asset check evaluations recorded by a run, in order.

    Dagster gives an evaluation a partition only when its check is partitioned (a per-batch check);
    the checks of an unpartitioned asset (the posterior) have none, even in a batch's run. (The
    run's planned-materialization events cannot tell: they give every asset the run's partition.)
    """
    run_partition = run.tags.get(PARTITION_TAG, "")
    outcomes = []
    for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        event = record.get_dagster_event().event_specific_data
        metadata = {k: v.value for k, v in event.metadata.items()}
        outcomes.append(
            CheckOutcome(
                study=event.asset_key.path[0],
                asset=event.asset_key.path[-1],
                check_name=event.check_name,
                partition_key=event.partition or run_partition,
                passed=bool(event.passed),
                severity=event.severity.value,
                value=metadata.get("observed_value"),
                threshold=metadata.get("threshold"),
                reason=str(metadata.get("reason", "")),
                scope="study"
                if event.partition is None or metadata.get("alert_scope") == "study"
                else "batch",
            )
        )
    return outcomes


def alerts_for(outcomes: Iterable[CheckOutcome], last_kind: Mapping[StateKey, str]) -> list[Alert]:
    """Onset alerts for subjects that start failing, recovery alerts for those passing again.

    Per-batch outcomes are grouped by batch: a batch that fails overlap and balance at once gives
    one alert naming both. Study-level outcomes are one subject per check. ``last_kind`` maps
    ``state_key`` to the kind of the last alert sent (``JsonlAlertLog.last_kinds``).
    """
    groups: dict[StateKey, list[CheckOutcome]] = {}
    for outcome in outcomes:
        groups.setdefault(outcome.state_key, []).append(outcome)
    alerts = []
    for key, group in groups.items():
        if group[0].scope == "study":
            group = group[-1:]  # the run's last word on the check (a check is evaluated once per run)
        failed = [o for o in group if not o.passed]
        previous = last_kind.get(key)
        if failed and previous != "onset":
            alerts.append(_alert("onset", failed))
        elif not failed and previous == "onset":
            alerts.append(_alert("recovery", group))
    return alerts


def _alert(kind: str, outcomes: list[CheckOutcome]) -> Alert:
    first = outcomes[0]
    study, partition_key = first.study, first.partition_key
    if first.scope == "study":
        where = f"{study} {first.asset} (study-level)"
        seen = f"run of batch {partition_key}" if partition_key else "posterior-only run"
        fails = f"({first.severity}) fails: {first.reason}" if first.reason else f"({first.severity}) fails"
        message = f"{where}: {first.check_name} {fails if kind == 'onset' else 'passes again'} [{seen}]"
        worst = first.severity if kind == "onset" else "INFO"
        check_name = first.check_name  # a study-level recovery names its check: its state key
    elif kind == "onset":
        details = "; ".join(f"{o.check_name} ({o.severity}): {o.reason}" for o in outcomes)
        message = f"{study} batch {partition_key}: failed {details}"
        worst = "ERROR" if any(o.severity == "ERROR" for o in outcomes) else "WARN"
        check_name = ", ".join(o.check_name for o in outcomes)
    else:
        message = f"{study} batch {partition_key}: every check passes again"
        worst, check_name = "INFO", ""
    single = kind == "onset" and len(outcomes) == 1
    return Alert.create(
        study=study,
        kind=kind,
        check_name=check_name,
        partition_key=partition_key,
        severity=worst,
        value=first.value if single else None,
        threshold=first.threshold if single else None,
        message=message,
        scope=first.scope,
        asset=first.asset if first.scope == "study" else "",
    )
