"""A schedule per study: at each cadence tick, the period that just ended, if its file is there."""

import dagster as dg

from orchestration.instance_records import RULES_TAG, latest_materialized_sha256
from orchestration.jobs import study_job_name
from orchestration.landing import file_sha256, run_key
from orchestration.partitions import study_partitions
from orchestration.study_config import StudyConfig
from resources.landing import LandingFileError, LandingResource

CRON = {"daily": "0 2 * * *", "weekly": "0 2 * * 0", "monthly": "0 2 1 * *"}


def build_schedule(study: StudyConfig) -> dg.ScheduleDefinition:
    partitions = study_partitions(study)

    @dg.schedule(
        name=f"{study.name}_schedule",
        cron_schedule=CRON[study.cadence],
        job_name=study_job_name(study),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Materializes the {study.name} period that just ended when its file has landed.",
    )
    def study_schedule(
        context: dg.ScheduleEvaluationContext, landing: LandingResource
    ) -> dg.RunRequest | dg.SkipReason:
        keys = partitions.get_partition_keys(current_time=context.scheduled_execution_time)
        if len(keys) < 2:
            return dg.SkipReason("no period has ended yet")
        newest = keys[-2]  # keys[-1] is the period that just started (end_offset=1)
        try:
            path = landing.file_for(study, newest)
        except LandingFileError as error:
            return dg.SkipReason(str(error))
        sha256 = file_sha256(path)
        if latest_materialized_sha256(context.instance, study, newest) == sha256:
            return dg.SkipReason(f"batch {newest} is already materialized from this file")
        return dg.RunRequest(
            run_key=run_key(study.name, newest, sha256),
            partition_key=newest,
            tags={
                "assimilate/file": path.name,
                "assimilate/sha256": sha256,
                RULES_TAG: study.batch_rules_hash,
            },
        )

    return study_schedule
