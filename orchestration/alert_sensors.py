"""Alert sensors: alert on each finished run's onsets and recoveries, and deliver on a time budget.

Two run-status sensors (success and failure) read a finished run's check evaluations, because a
failed non-blocking check does not fail the run, and a run that crashed still recorded the checks
it got to (see DAGSTER_NOTES.md). They only log and queue the alerts, so no sink can slow them:
Dagster calls them for up to five runs per evaluation, within one 60 s gRPC limit. The
``alert_deliveries`` sensor delivers what is queued, every 30 s, within one time budget
(``AlertsResource.budget_s``); what the budget leaves waits for its next tick.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import dagster as dg

from orchestration.alerting import PARTITION_TAG, alerts_for, check_outcomes
from resources.alerts import Alert, AlertRouter, AlertsResource, DeliveryOutcome, StateKey
from resources.study import AlertSettings, StudyConfig

ALERT_DELIVERY_SENSOR = "alert_deliveries"


def alerts_for_run(
    instance: dg.DagsterInstance, run: dg.DagsterRun, last_kinds: Mapping[StateKey, str]
) -> list[Alert]:
    """The onset/recovery alerts of one finished run; a failed run also alerts as such."""
    pending = alerts_for(check_outcomes(instance, run), last_kinds)
    if run.status == dg.DagsterRunStatus.FAILURE:
        study = run.tags.get("assimilate/study", run.job_name)
        partition_key = run.tags.get(PARTITION_TAG, "")
        where = f"batch {partition_key}" if partition_key else "posterior-only"
        if "dagster/asset_partition_range_start" in run.tags:  # a backfill's run over a range of batches
            where = "batches {}...{}".format(
                run.tags["dagster/asset_partition_range_start"],
                run.tags.get("dagster/asset_partition_range_end"),
            )
        pending.append(
            Alert.create(
                study=study,
                kind="run_failure",
                check_name="",
                partition_key=partition_key,
                severity="ERROR",
                value=None,
                threshold=None,
                message=f"{study}: {where} run {run.run_id[:8]} of {run.job_name} failed",
                # A run without a batch updates only the study's posterior and report.
                scope="batch" if partition_key else "study",
            )
        )
    return pending


def queue_alerts_for_run(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    alerts: AlertsResource,
    study_alerts: Mapping[str, AlertSettings] | None = None,
) -> list[Alert]:
    """Log and queue the alerts of one finished run for their study's routes; no delivery."""
    return _queue(alerts.routing(study_alerts or {}), instance, run)


def send_alerts_for_run(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    alerts: AlertsResource,
    study_alerts: Mapping[str, AlertSettings] | None = None,
) -> list[Alert]:
    """Queue the alerts of one finished run, then deliver what is due within one budget.

    The path of the in-process runner (no daemon, so no delivery sensor): the new alerts and the
    earlier ones whose re-send is due go out, of the studies in ``study_alerts`` (each by its own
    routes), or of every study when it is None.
    """
    router = alerts.routing(study_alerts or {})
    pending = _queue(router, instance, run)
    router.deliver_due(studies=None if study_alerts is None else set(study_alerts))
    return pending


def _queue(router: AlertRouter, instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[Alert]:
    pending = alerts_for_run(instance, run, router.log.last_kinds())
    for alert in pending:
        router.queue(alert)
    return pending


def delivery_summary(done: Sequence[tuple[Alert, DeliveryOutcome]], misconfigured: Sequence[str]) -> str:
    """One line per fact: counts by status, then each failure and each malformed sink setting."""
    counts = Counter(outcome.status for _, outcome in done)
    lines = [", ".join(f"{status} {counts[status]}" for status in sorted(counts)) or "nothing due"]
    lines += [
        f"{o.status}: {alert.study} {alert.kind} {alert.alert_id[:8]} to {o.sink} ({o.target}): {o.error}"
        + (f"; next attempt {o.next_attempt_at}" if o.next_attempt_at else "")
        for alert, o in done
        if o.status in ("failed", "gave_up")
    ]
    return "\n".join(lines + [f"MISCONFIGURED sink: {problem}" for problem in misconfigured])


def build_alert_sensors(studies: Sequence[StudyConfig]) -> list[dg.SensorDefinition]:
    routes = {study.name: study.alerts for study in studies}

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="assumption_alerts_on_success",
        monitor_all_code_locations=False,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts on failed (and recovered) assumption checks of successful runs.",
    )
    def on_success(context: dg.RunStatusSensorContext, alerts: AlertsResource) -> None:
        queue_alerts_for_run(context.instance, context.dagster_run, alerts, routes)

    @dg.run_failure_sensor(
        name="assumption_alerts_on_failure",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts on failed runs and on the checks they recorded before failing.",
    )
    def on_failure(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
        queue_alerts_for_run(context.instance, context.dagster_run, alerts, routes)

    @dg.sensor(
        name=ALERT_DELIVERY_SENSOR,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Delivers the queued alerts to the webhook and e-mail, within a time budget per tick.",
    )
    def alert_deliveries(context: dg.SensorEvaluationContext, alerts: AlertsResource) -> dg.SkipReason:
        router = alerts.routing(routes)
        done = router.deliver_due()
        summary = delivery_summary(done, router.misconfigured())
        if any(o.status != "delivered" for _, o in done) or router.misconfigured():
            context.log.warning(summary)
        return dg.SkipReason(summary)

    return [on_success, on_failure, alert_deliveries]
