"""The report reads the posterior's stored steps back and never runs a filter (real Dagster, real DuckDB).

A particle filter with a maximum-likelihood process variance is the expensive case: before, the
report ran the MLE and the particle filter again. Here every filter pass raises while the report
materializes, and its files come out the same as the ones written after the posterior's own run.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assimilate.filters import correlated, grid, kalman, mle, particle
from resources.study import StudyConfig
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

STUDY = "ab_checkout"
FILES = ("trajectory.csv", "summary.txt", "memo.md")


def refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("a filter ran while the report was written")


def test_the_report_materializes_from_stored_steps_with_every_filter_pass_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = example_study(STUDY).model_dump(mode="json")
    study = StudyConfig.model_validate(
        plan | {"backend": {"kind": "particle", "n_particles": 500}, "process_var": "mle"}
    )
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    for seed, month in enumerate(["2025-01", "2025-02", "2025-03", "2025-04"]):
        write_batch(project.landing(STUDY), month, ab_batch(seed, tau=0.5 + 0.3 * seed))
    assert all(r.success for r in project.tick())
    reports = project.data / "reports" / STUDY
    written = {name: (reports / name).read_text() for name in FILES}
    assert "particle filter, 4 batches" in written["summary.txt"] and "ess" in written["trajectory.csv"]
    for name in FILES:
        (reports / name).unlink()

    for module, names in {
        kalman: ("kalman_pass", "update"),
        particle: ("particle_pass",),
        correlated: ("_condition",),
        mle: ("kalman_pass", "grid_pass"),
        grid: ("grid_pass",),
    }.items():
        for name in names:
            monkeypatch.setattr(module, name, refuse)
    report = dg.AssetKey([STUDY, "posterior_report"])
    job = project.defs.resolve_job_def(f"{STUDY}_batch_job")
    run = job.execute_in_process(instance=project.instance, asset_selection=[report], raise_on_error=False)
    assert run.success, [e.message for e in run.all_events if e.is_failure]
    assert {name: (reports / name).read_text() for name in FILES} == written
    # The guard holds: the posterior itself, which does filter, fails under it.
    posterior = dg.AssetKey([STUDY, "effect_posterior"])
    failed = job.execute_in_process(
        instance=project.instance, asset_selection=[posterior], raise_on_error=False
    )
    assert not failed.success
