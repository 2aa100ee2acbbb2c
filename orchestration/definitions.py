"""The only place that assembles Dagster ``Definitions``: one asset group per study YAML."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from assets import build_study_assets
from orchestration.alert_sensors import build_alert_sensors
from orchestration.instance import PROJECT_ROOT
from orchestration.jobs import build_study_job
from orchestration.schedules import build_schedule
from orchestration.sensors import build_landing_sensor
from orchestration.study_config import StudyConfig, load_studies
from resources.alerts import AlertsResource
from resources.landing import LandingResource
from resources.reports import ReportsResource
from resources.warehouse import WarehouseResource

STUDIES_DIR = PROJECT_ROOT / "studies"
DATA_DIR = PROJECT_ROOT / "data"


def build_definitions(
    *, studies: list[StudyConfig] | None = None, studies_dir: Path = STUDIES_DIR, data_dir: Path = DATA_DIR
) -> dg.Definitions:
    """Definitions for every study; resources point into ``data_dir`` (the embedded defaults)."""
    studies = load_studies(studies_dir) if studies is None else studies
    with warnings.catch_warnings():
        # Partitioned check specs are a preview feature of Dagster 1.13; they are what records the
        # partition of each check evaluation, which the alerts and the UI need.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        assets = [a for study in studies for a in build_study_assets(study)]
    return dg.Definitions(
        assets=assets,
        jobs=[build_study_job(study) for study in studies],
        sensors=[*(build_landing_sensor(study) for study in studies), *build_alert_sensors(studies)],
        schedules=[build_schedule(study) for study in studies],
        resources={
            "warehouse": WarehouseResource(path=str(data_dir / "warehouse.duckdb")),
            "landing": LandingResource(root=str(data_dir / "landing")),
            "reports": ReportsResource(root=str(data_dir / "reports")),
            "alerts": AlertsResource(log_path=str(data_dir / "alerts.jsonl")),
        },
    )


defs = build_definitions()
