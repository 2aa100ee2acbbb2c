"""Landing sensors: a new or changed batch file requests a run for its partition."""

import json

import dagster as dg

from orchestration.jobs import study_job_name
from orchestration.landing import run_key, scan_landing, withdrawn_files
from orchestration.partitions import study_partitions
from orchestration.study_config import StudyConfig
from resources.landing import LandingResource


def landing_sensor_name(study: StudyConfig) -> str:
    return f"{study.name}_landing_sensor"


def build_landing_sensor(study: StudyConfig) -> dg.SensorDefinition:
    partitions = study_partitions(study)

    @dg.sensor(
        name=landing_sensor_name(study),
        job_name=study_job_name(study),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Watches the {study.name} landing folder; a new or changed file requests its partition.",
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext, landing: LandingResource
    ) -> dg.SensorResult | dg.SkipReason:
        folder = landing.study_folder(study)
        if not folder.is_dir():
            return dg.SkipReason(f"landing folder {study.landing_folder}/ does not exist yet")
        cursor = json.loads(context.cursor) if context.cursor else {}
        valid_keys = set(partitions.get_partition_keys(dynamic_partitions_store=None))
        scan = scan_landing(folder, cadence=study.cadence, cursor=cursor, valid_keys=valid_keys)
        for name, reason in scan.unmapped:
            context.log.warning(f"{study.name}: file {name!r} left untouched: {reason}")
        requests = [
            dg.RunRequest(
                run_key=run_key(study.name, landed.partition_key, landed.sha256),
                partition_key=landed.partition_key,
                tags={"assimilate/file": landed.path.name, "assimilate/sha256": landed.sha256},
            )
            for landed in scan.new_or_changed
        ]
        for name, key, sha256 in withdrawn_files(folder, cadence=study.cadence, cursor=cursor, scan=scan):
            context.log.info(f"{study.name}: file {name!r} was removed: batch {key} is withdrawn")
            requests.append(
                dg.RunRequest(
                    run_key=f"{run_key(study.name, key, sha256)}:withdrawn",
                    partition_key=key,
                    tags={"assimilate/withdrawn": name},
                )
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(scan.next_cursor, sort_keys=True))

    return landing_sensor
