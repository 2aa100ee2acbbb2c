"""Alert sensors: read each finished run's check evaluations and alert on onset and recovery.

Two run-status sensors (success and failure) because a failed non-blocking check does not fail the
run, and a run that crashed still recorded the checks it got to (see DAGSTER_NOTES.md).
"""

from collections.abc import Mapping, Sequence

import dagster as dg

from orchestration.alerting import PARTITION_TAG, alerts_for, check_outcomes
from orchestration.study_config import AlertSettings, StudyConfig
from resources.alerts import Alert, AlertsResource


def send_alerts_for_run(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    alerts: AlertsResource,
    study_alerts: Mapping[str, AlertSettings] | None = None,
) -> list[Alert]:
    """Send the onset/recovery alerts of one finished run; a failed run also alerts as such.

    Each alert goes to its study's routes (``alerts:`` in the study file) when given.
    """
    router = alerts.router()
    router.retry_pending()  # alerts a sink refused earlier are re-sent before new ones
    pending = alerts_for(check_outcomes(instance, run), router.log.last_kinds())
    if run.status == dg.DagsterRunStatus.FAILURE:
        study = run.tags.get("assimilate/study", run.job_name)
        partition_key = run.tags.get(PARTITION_TAG, "")
        where = f"batch {partition_key}" if partition_key else "posterior-only"
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
    routes = study_alerts or {}
    for alert in pending:
        settings = routes.get(alert.study)
        (router if settings is None else alerts.router(settings)).send(alert)
    return pending


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
        send_alerts_for_run(context.instance, context.dagster_run, alerts, routes)

    @dg.run_failure_sensor(
        name="assumption_alerts_on_failure",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts on failed runs and on the checks they recorded before failing.",
    )
    def on_failure(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
        send_alerts_for_run(context.instance, context.dagster_run, alerts, routes)

    return [on_success, on_failure]
