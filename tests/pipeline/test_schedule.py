"""The study schedule: at a cadence tick, the period that just ended, if its file has landed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from orchestration.instance import prepare_dagster_home
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

TICK = datetime(2025, 4, 1, 2, 0, tzinfo=UTC)  # the monthly tick after March ended


def _evaluate(project: Project) -> dg.RunRequest | dg.SkipReason:
    defs = project.defs
    schedule = defs.resolve_schedule_def("ab_checkout_schedule")
    context = dg.build_schedule_context(
        instance=project.instance, scheduled_execution_time=TICK, resources=defs.resources
    )
    result = schedule(context)
    assert isinstance(result, dg.RunRequest | dg.SkipReason)
    return result


def test_schedule_requests_the_period_that_just_ended_only_when_its_file_is_there(tmp_path: Path) -> None:
    project = Project(
        data=tmp_path / "data",
        studies=[example_study("ab_checkout")],
        instance=dg.DagsterInstance.from_config(str(prepare_dagster_home(tmp_path / "home"))),
    )
    project.landing("ab_checkout")
    skipped = _evaluate(project)
    assert isinstance(skipped, dg.SkipReason) and "2025-03-01" in (skipped.skip_message or "")

    write_batch(project.landing("ab_checkout"), "2025-03", ab_batch(3))
    request = _evaluate(project)
    assert isinstance(request, dg.RunRequest) and request.partition_key == "2025-03-01"

    assert all(r.success for r in project.tick())  # the sensor materializes it
    again = _evaluate(project)
    assert isinstance(again, dg.SkipReason) and "already materialized" in (again.skip_message or "")
