"""A schedule per study: at each cadence tick, the period that just ended, if its file is there."""

import dagster as dg

from assets.partitions import study_partitions
from orchestration.instance_records import RULES_TAG, latest_materialized_sha256
from orchestration.jobs import study_job_name
from resources.cadence import NAMED, cron_of, period_of, previous_key
from resources.landing import LandingFileError, LandingResource
from resources.landing_files import file_sha256, run_key
from resources.study import StudyConfig

# Two hours into each period for the named cadences; a cron cadence ticks when its period starts.
CRON = {name: cron.replace("0 0 ", "0 2 ", 1) for name, cron in NAMED.items()}


def build_schedule(
    study: StudyConfig, partitions: dg.TimeWindowPartitionsDefinition | None = None
) -> dg.ScheduleDefinition:
    partitions = partitions or study_partitions(study)

    @dg.schedule(
        name=f"{study.name}_schedule",
        cron_schedule=CRON.get(study.cadence, cron_of(study.cadence)),
        job_name=study_job_name(study),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Materializes the {study.name} period that just ended when its file has landed.",
    )
    def study_schedule(
        context: dg.ScheduleEvaluationContext, landing: LandingResource
    ) -> dg.RunRequest | dg.SkipReason:
        tick = context.scheduled_execution_time
        newest = previous_key(period_of(tick, study.cadence), study.cadence)
        try:
            path = landing.file_for(study, newest)
        except LandingFileError as error:
            return dg.SkipReason(str(error))
        if newest not in partitions.get_partition_keys(current_time=tick):
            # Landed after the code location loaded: the landing sensor runs it after the next load.
            return dg.SkipReason(f"batch {newest} is not among the loaded partitions yet")
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
