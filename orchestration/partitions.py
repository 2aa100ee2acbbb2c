"""Time-window partitions at each study's cadence, from its start date."""

from __future__ import annotations

import dagster as dg

from orchestration.study_config import StudyConfig


def study_partitions(study: StudyConfig) -> dg.TimeWindowPartitionsDefinition:
    """Partitions at the study's cadence; the open period is a partition too (end_offset=1).

    A batch file for the current period therefore maps to a partition as soon as it lands.
    """
    start = study.start_date.isoformat()
    if study.cadence == "daily":
        return dg.DailyPartitionsDefinition(start_date=start, end_offset=1)
    if study.cadence == "weekly":
        return dg.WeeklyPartitionsDefinition(start_date=start, end_offset=1)
    return dg.MonthlyPartitionsDefinition(start_date=start, end_offset=1)
