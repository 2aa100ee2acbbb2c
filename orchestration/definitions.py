"""The only place that assembles Dagster ``Definitions``: one asset group per study YAML."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import dagster as dg

from assets import build_study_assets
from assets.partitions import cut_partitions, last_batches
from orchestration.alert_sensors import build_alert_sensors
from orchestration.executor import pipeline_executor
from orchestration.freshness import build_freshness_sensor
from orchestration.instance import pipeline_data_dir, pipeline_studies_dir
from orchestration.jobs import build_study_job
from orchestration.schedules import build_schedule
from orchestration.sensors import build_landing_sensor
from orchestration.study_files import build_study_file_sensor
from orchestration.study_folder import scan_study_folder
from resources.alerts import AlertsResource
from resources.guardrails import derive_guardrail_studies
from resources.landing import LandingResource
from resources.reports import ReportsResource
from resources.study import StudyConfig
from resources.warehouse import WarehouseResource


def build_definitions(
    *,
    studies: list[StudyConfig] | None = None,
    studies_dir: Path | None = None,
    data_dir: Path | None = None,
) -> dg.Definitions:
    """Definitions for ``studies``, or for every study file of ``studies_dir`` that loads.

    Scanning a folder, a broken study file never stops the others: they are served, and the
    ``study_files`` sensor alerts the broken one and names it in the UI. Resources point into
    ``data_dir``. Both folders default to the pipeline's (``ASSIMILATE_STUDIES_DIR``,
    ``ASSIMILATE_DATA_DIR``, else ``studies/`` and ``data/``).
    """
    data_dir = pipeline_data_dir() if data_dir is None else data_dir
    # The data folder's DuckDB file, or the PostgreSQL database ASSIMILATE_WAREHOUSE_URL names.
    warehouse = WarehouseResource.for_data_dir(data_dir)
    folder_sensors: list[dg.SensorDefinition] = []
    if studies is None:
        folder = scan_study_folder(studies_dir or pipeline_studies_dir())
        studies = folder.studies
        for broken in folder.broken:
            logging.getLogger("assimilate").error("study not loaded (the others are): %s", broken.error)
        folder_sensors.append(build_study_file_sensor(folder.root, folder))
    with warnings.catch_warnings():
        # Partitioned check specs are a preview feature of Dagster 1.13; they are what records the
        # partition of each check evaluation, which the alerts and the UI need.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        # A single-run backfill policy is beta in 1.13; it is what runs a range of batches in one run.
        warnings.filterwarnings("ignore", message=".*backfill_policy", category=dg.BetaWarning)
        # Partitions end one period after each study's last landed batch, read at this load
        # (assets/partitions.py).
        latest = last_batches(studies, data_dir / "landing", warehouse.open(lock_timeout_s=5.0))
        cut = {study.name: cut_partitions(study, latest[study.name]) for study in studies}
        assets = [a for study in studies for a in build_study_assets(study, cut[study.name])]
        # Each guardrail is a study of its own over its primary's batches (resources/guardrails.py).
        guarded = [(study, g) for study in studies for g in derive_guardrail_studies(study)]
        assets += [a for study, g in guarded for a in build_study_assets(g, cut[study.name])]
    alerts = AlertsResource(log_path=str(data_dir / "alerts.jsonl"))
    alerts.check_sink_settings({study.name: study.alerts for study in studies})  # logs; never raises
    return dg.Definitions(
        assets=assets,
        # Every step runs in the run's own process: a study's steps are a chain in one DuckDB write
        # pool of limit 1, so a process per step (the default) bought no parallelism and cost a
        # Python start and project import per step (~3.5 s each, most of a CLI run). A team's
        # deployment sends the steps to a Dask cluster instead (orchestration/executor.py).
        executor=pipeline_executor(),
        jobs=[build_study_job(study) for study in studies],
        sensors=[
            *(build_landing_sensor(study, cut[study.name]) for study in studies),
            *build_alert_sensors([*studies, *(g for _, g in guarded)]),
            build_freshness_sensor(studies),
            *folder_sensors,
        ],
        schedules=[build_schedule(study, cut[study.name]) for study in studies],
        resources={
            "warehouse": warehouse,
            "landing": LandingResource(root=str(data_dir / "landing")),
            "reports": ReportsResource(root=str(data_dir / "reports")),
            "alerts": alerts,
        },
    )


defs = build_definitions()
