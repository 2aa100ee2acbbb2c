"""The studies-folder sensor: a broken study file is alerted once and shown, never stops the others.

The code location serves every study whose file loads (``scan_study_folder``). This sensor re-reads
the folder each tick: a file that breaks sends one onset alert with its ``file: key: rule`` message,
a file that loads again (or is removed) sends one recovery; its tick text in the UI lists the studies
running, the broken files and the files changed since the code location loaded. A changed file takes
effect when the code location reloads: ``dagster-daemon`` reloads it every minute, the UI on
"Reload definitions".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from orchestration.study_folder import StudyFolder, scan_study_folder
from resources.alerts import Alert, AlertsResource, StateKey, state_key

STUDY_FILE_SENSOR = "study_files"
STUDY_FILE_ASSET = "study_file"  # the alert's subject: the file, not an asset of the study
STUDY_FILE_CHECK = "study_file_loads"


def _file_state(key: str) -> StateKey:
    return state_key("study", key, "", STUDY_FILE_ASSET, STUDY_FILE_CHECK)


def _alert(key: str, kind: str, message: str) -> Alert:
    return Alert.create(
        study=key,
        kind=kind,
        check_name=STUDY_FILE_CHECK,
        partition_key="",
        severity="ERROR",
        value=None,
        threshold=None,
        message=message,
        scope="study",
        asset=STUDY_FILE_ASSET,
    )


def study_file_alerts(folder: StudyFolder, last_kinds: Mapping[StateKey, str]) -> list[Alert]:
    """Onset for each newly broken file, recovery for each file that loads again or is gone."""
    alerts = []
    present = set()
    for file in folder.files:
        present.add(file.key)
        last = last_kinds.get(_file_state(file.key))
        if file.broken and last != "onset":
            message = f"study file {file.path.name} does not load; its study is not running:\n{file.error}"
            alerts.append(_alert(file.key, "onset", message))
        elif not file.broken and last == "onset":
            alerts.append(_alert(file.key, "recovery", f"study file {file.path.name} loads again"))
    for state, kind in last_kinds.items():
        key = state[1]
        if kind == "onset" and state == _file_state(key) and key not in present:
            alerts.append(_alert(key, "recovery", f"broken study file {key} was removed"))
    return alerts


def folder_status(loaded: Mapping[str, str], folder: StudyFolder) -> str:
    """The tick text: studies running, broken files with their reasons, changes not yet loaded."""
    running = ", ".join(s.name for s in folder.studies) or "none"
    lines = [f"studies in {folder.root.name}/: {running}"]
    lines += [f"BROKEN, not running: {f.error}" for f in folder.broken]
    now = folder.fingerprint()
    changed = sorted(name for name in set(loaded) | set(now) if loaded.get(name) != now.get(name))
    if changed:
        lines.append(
            f"changed since this code location loaded: {', '.join(changed)} "
            "(takes effect on reload: dagster-daemon reloads every minute; in the UI, Reload definitions)"
        )
    return "\n".join(lines)


def build_study_file_sensor(studies_dir: Path, loaded: StudyFolder) -> dg.SensorDefinition:
    fingerprint = loaded.fingerprint()

    @dg.sensor(
        name=STUDY_FILE_SENSOR,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Watches the studies folder: a broken study file is alerted once and named here.",
    )
    def study_files(context: dg.SensorEvaluationContext, alerts: AlertsResource) -> dg.SkipReason:
        folder = scan_study_folder(studies_dir)
        router = alerts.router()
        for alert in study_file_alerts(folder, router.log.last_kinds()):
            context.log.warning(alert.message)
            router.queue(alert)  # delivered by the alert_deliveries sensor, within its budget
        return dg.SkipReason(folder_status(fingerprint, folder))

    return study_files
