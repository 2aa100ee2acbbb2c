"""One broken study file never stops the others: it is alerted once, shown, and comes back when fixed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from orchestration.definitions import build_definitions
from orchestration.jobs import study_job_name
from orchestration.runner import run_landed_batches
from orchestration.study_files import STUDY_FILE_SENSOR, study_file_alerts
from orchestration.study_folder import scan_study_folder
from resources.alerts import AlertsResource, JsonlAlertLog
from tests.pipeline_support import ab_batch, write_batch

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def ab_study(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((STUDIES / "ab_checkout.yaml").read_text())
    data["name"] = name
    data["landing_folder"] = name
    return data


def write(folder: Path, file_name: str, data: dict[str, Any]) -> Path:
    path = folder / file_name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def broken(name: str) -> dict[str, Any]:
    data = ab_study(name)
    data["cadence"] = "hourly"  # not a cadence: a load error naming the key
    return data


def folder_with_a_broken_study(tmp_path: Path) -> Path:
    studies = tmp_path / "studies"
    studies.mkdir()
    write(studies, "alpha.yaml", ab_study("alpha"))
    write(studies, "beta.yaml", ab_study("beta"))
    write(studies, "gamma.yaml", broken("gamma"))
    return studies


def tick(defs: dg.Definitions, instance: dg.DagsterInstance) -> str:
    sensor = defs.resolve_sensor_def(STUDY_FILE_SENSOR)
    result = sensor(dg.build_sensor_context(instance=instance, resources=defs.resources))
    assert isinstance(result, dg.SkipReason)
    return str(result.skip_message)


def test_the_scan_keeps_good_studies_and_names_each_broken_file(tmp_path: Path) -> None:
    studies = folder_with_a_broken_study(tmp_path)
    write(studies, "zeta.yml", ab_study("alpha"))  # a copy of a study's name
    folder = scan_study_folder(studies)
    assert [s.name for s in folder.studies] == ["alpha", "beta"]
    assert [f.path.name for f in folder.broken] == ["gamma.yaml", "zeta.yml"]
    gamma, zeta = folder.broken
    assert gamma.error.startswith(f"{studies / 'gamma.yaml'}: cadence:")
    assert "study 'alpha' is already defined in" in zeta.error


def test_a_broken_study_next_to_two_good_ones_leaves_the_good_ones_running(tmp_path: Path) -> None:
    studies = folder_with_a_broken_study(tmp_path)
    data = tmp_path / "data"
    defs = build_definitions(studies_dir=studies, data_dir=data)
    good = scan_study_folder(studies).studies
    for study in good:
        landing = data / "landing" / study.landing_folder
        landing.mkdir(parents=True)
        write_batch(landing, "2025-01", ab_batch(1))
    instance = dg.DagsterInstance.ephemeral()
    runs = run_landed_batches(defs, instance, good, cursors={})
    assert [r.success for r in runs] == [True, True]
    assert {r.dagster_run.job_name for r in runs} == {study_job_name(s) for s in good}


def test_the_broken_file_is_alerted_once_shown_and_recovers_when_fixed(tmp_path: Path) -> None:
    studies = folder_with_a_broken_study(tmp_path)
    data = tmp_path / "data"
    defs = build_definitions(studies_dir=studies, data_dir=data)
    instance = dg.DagsterInstance.ephemeral()
    log = JsonlAlertLog(data / "alerts.jsonl")

    status = tick(defs, instance)
    assert "studies in studies/: alpha, beta" in status
    assert "BROKEN, not running:" in status and "gamma.yaml: cadence:" in status
    (onset,) = log.alerts()
    assert (onset.kind, onset.study, onset.severity) == ("onset", "gamma", "ERROR")
    assert "gamma.yaml: cadence:" in onset.message and "not running" in onset.message

    tick(defs, instance)
    assert len(log.alerts()) == 1, "a broken file is alerted once, not every tick"

    write(studies, "gamma.yaml", ab_study("gamma"))
    status = tick(defs, instance)
    assert "BROKEN" not in status
    assert "changed since this code location loaded: gamma.yaml" in status
    assert [a.kind for a in log.alerts()] == ["onset", "recovery"]
    # The next load of the code location (a daemon reload) serves the fixed study.
    reloaded = build_definitions(studies_dir=studies, data_dir=data)
    (gamma,) = [s for s in scan_study_folder(studies).studies if s.name == "gamma"]
    assert reloaded.resolve_job_def(study_job_name(gamma)).name == study_job_name(gamma)


def test_a_removed_broken_file_recovers_and_other_alerts_are_ignored(tmp_path: Path) -> None:
    studies = folder_with_a_broken_study(tmp_path)
    resource = AlertsResource(log_path=str(tmp_path / "alerts.jsonl"))
    router = resource.router()
    for alert in study_file_alerts(scan_study_folder(studies), router.log.last_kinds()):
        router.send(alert)
    (studies / "gamma.yaml").unlink()
    later = study_file_alerts(scan_study_folder(studies), router.log.last_kinds())
    assert [(a.kind, a.study) for a in later] == [("recovery", "gamma")]
    assert "removed" in later[0].message


def test_the_project_code_location_loads_with_the_study_file_sensor() -> None:
    defs = build_definitions(data_dir=Path("unused"))
    assert defs.resolve_sensor_def(STUDY_FILE_SENSOR).name == STUDY_FILE_SENSOR


def test_two_studies_never_share_a_landing_folder(tmp_path: Path) -> None:
    """Finding L7: two studies on one landing folder both ingested every file."""
    studies = tmp_path / "studies"
    studies.mkdir()
    write(studies, "alpha.yaml", ab_study("alpha"))
    write(studies, "beta.yaml", ab_study("beta") | {"landing_folder": "alpha"})
    folder = scan_study_folder(studies)
    assert [s.name for s in folder.studies] == ["alpha"]
    (beta,) = folder.broken
    assert "beta.yaml: landing_folder: 'alpha' is already the landing folder of" in beta.error
