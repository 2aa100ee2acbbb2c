"""Every landed content reaches the warehouse once per change: reverts, restores, vanished files, failed runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from orchestration.reconcile import LOST_AFTER_S, MAX_ATTEMPTS, Attempt, ReconcileState, RunStatus, plan
from orchestration.runner import execute_request, run_landed_batches, tick_landing_sensor
from orchestration.sensors import LandingCursor
from resources.landing_files import file_sha256
from tests.backend_support import duckdb_only  # noqa: F401 (a fixture)
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

P1, P2 = "2025-01-01", "2025-02-01"


class Fake:
    """The instance as ``plan`` sees it: materialized contents and run statuses."""

    def __init__(self) -> None:
        self.materialized: dict[str, str | None] = {}
        self.status: dict[str, RunStatus] = {}
        self.keys = 0

    def key(self, partition: str, sha: str | None) -> str:
        self.keys += 1
        return f"{partition}:{sha}:{self.keys}"

    def plan(self, wanted: dict[str, str | None], state: ReconcileState, now: float = 0.0, **kw: object):  # type: ignore[no-untyped-def]
        return plan(
            wanted,
            state,
            materialized=lambda p: self.materialized.get(p),
            run_status=lambda k: self.status.get(k, "missing"),
            now=now,
            new_key=self.key,
            **kw,  # type: ignore[arg-type]
        )

    def land(self, result, partition: str) -> None:  # type: ignore[no-untyped-def]
        """The requested run for ``partition`` succeeds and reads what was requested."""
        (request,) = [r for r in result.requests if r.partition_key == partition]
        self.status[request.run_key] = "success"
        self.materialized[partition] = request.content


def test_new_changed_reverted_withdrawn_and_restored_contents_each_get_one_run() -> None:
    fake = Fake()
    state = ReconcileState()
    keys = []
    for content in ["A", "B", "A", None, "A"]:
        result = fake.plan({P1: content}, state)
        assert [(r.partition_key, r.content, r.attempt) for r in result.requests] == [(P1, content, 1)]
        keys.append(result.requests[0].run_key)
        fake.land(result, P1)
        state = fake.plan({P1: content}, result.state).state  # the next tick confirms it
        assert state.confirmed == {P1: content} and not state.attempts
        assert not fake.plan({P1: content}, state).requests
    assert len(set(keys)) == len(keys), "a run key is never reused"


def test_a_pending_run_is_waited_for_and_a_lost_request_is_judged_again() -> None:
    fake = Fake()
    first = fake.plan({P1: "A"}, ReconcileState(), now=100.0)
    (request,) = first.requests
    assert not fake.plan({P1: "A"}, first.state, now=101.0).requests  # not launched yet
    fake.status[request.run_key] = "in_progress"
    assert not fake.plan({P1: "A"}, first.state, now=100.0 + 2 * LOST_AFTER_S).requests
    del fake.status[request.run_key]
    lost = fake.plan({P1: "A"}, first.state, now=100.0 + LOST_AFTER_S + 1)
    assert [(r.content, r.attempt) for r in lost.requests] == [("A", 2)]


def test_a_content_that_arrives_while_its_run_is_in_flight_gets_its_own_run() -> None:
    fake = Fake()
    first = fake.plan({P1: "A"}, ReconcileState())
    fake.status[first.requests[0].run_key] = "in_progress"
    second = fake.plan({P1: "B"}, first.state)
    assert [(r.content, r.attempt) for r in second.requests] == [("B", 1)]


def test_failed_runs_are_retried_then_given_up_once_until_the_file_changes() -> None:
    fake = Fake()
    state = ReconcileState()
    attempts = []
    gave_up = []
    for _ in range(MAX_ATTEMPTS + 2):
        result = fake.plan({P1: "A"}, state)
        attempts += [r.attempt for r in result.requests]
        gave_up += list(result.gave_up_keys)
        for request in result.requests:
            fake.status[request.run_key] = "failure"
            fake.materialized[P1] = "A"  # the raw file was stored before the run failed: not landed
        state = result.state
    assert attempts == list(range(1, MAX_ATTEMPTS + 1))
    assert gave_up == [P1], "given up once, alerted once"
    changed = fake.plan({P1: "B"}, state)
    assert [(r.content, r.attempt) for r in changed.requests] == [("B", 1)]


def test_a_partition_whose_file_cannot_be_judged_is_never_withdrawn() -> None:
    fake = Fake()
    fake.materialized[P1] = "A"
    state = ReconcileState(confirmed={P1: "A"})
    assert not fake.plan({}, state, undecided=frozenset({P1})).requests
    assert [r.content for r in fake.plan({}, state).requests] == [None]


def test_state_round_trips_through_json() -> None:
    state = ReconcileState(confirmed={P1: "A", P2: None}, attempts={P2: Attempt(None, "k", 2, 5.0, True)})
    assert ReconcileState.from_dict(state.to_dict()) == state


# --- through the real pipeline (in-process runs on an ephemeral instance) ---


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(
        data=tmp_path / "data",
        studies=[example_study("ab_checkout")],
        instance=dg.DagsterInstance.ephemeral(),
    )


def stored(project: Project) -> dict[str, str]:
    files = project.warehouse.read_table("ab_checkout", "raw_files")
    return dict(zip(files["partition_key"], files["sha256"], strict=True))


def test_reverted_withdrawn_and_restored_files_end_as_the_folder_is(project: Project, tmp_path: Path) -> None:
    """Finding H1: under the daemon, content seen before was never run again (run key used once)."""
    landing = project.landing("ab_checkout")
    a, b = tmp_path / "A.csv", tmp_path / "B.csv"
    ab_batch(1).to_csv(a, index=False)
    ab_batch(2).to_csv(b, index=False)
    target = landing / "2025-01.csv"
    run_keys = []
    for step in ["A", "B", "A", "remove", "A"]:
        if step == "remove":
            target.unlink()
        else:
            shutil.copyfile(a if step == "A" else b, target)
        runs = project.tick()
        assert len(runs) == 1 and runs[0].success, step
        run_keys.append(runs[0].dagster_run.tags["dagster/run_key"])
        expected = {} if step == "remove" else {P1: file_sha256(target)}
        assert stored(project) == expected, step
        assert project.tick() == [], "a partition that matches its file needs no run"
    assert len(set(run_keys)) == 5


def test_a_file_away_while_its_run_reads_it_is_run_again_when_it_is_back(project: Project) -> None:
    """Finding H2: the cursor had already taken the file, so it was lost for good."""
    study = project.studies[0]
    landing = project.landing("ab_checkout")
    write_batch(landing, "2025-01", ab_batch(1))
    path = write_batch(landing, "2025-02", ab_batch(2))
    tick = tick_landing_sensor(project.defs, project.instance, study, project.cursors.get(study.name))
    assert isinstance(tick, dg.SensorResult)
    project.cursors[study.name] = tick.cursor
    content = path.read_bytes()
    path.unlink()  # away while the requested runs read (a delete-then-copy upload)
    results = [execute_request(project.defs, project.instance, study, r) for r in tick.run_requests]
    # DECISIONS 6: a requested partition without its file fails its run, naming the file expected.
    assert [r.success for r in results] == [True, False]
    failure = results[1].get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and "expected 2025-02.csv" in failure.message
    assert list(stored(project)) == [P1]
    path.write_bytes(content)
    runs = project.tick()
    assert [r.success for r in runs] == [True]
    assert stored(project)[P2] == file_sha256(path)
    assert project.tick() == []


@pytest.mark.slow
@pytest.mark.usefixtures("duckdb_only")  # the fault is a folder where the DuckDB file should be
def test_a_failed_run_is_retried_and_a_content_that_keeps_failing_is_given_up_with_one_alert(
    project: Project,
) -> None:
    """Finding M1: a failed run was never retried; the period then read "no batch landed"."""
    landing = project.landing("ab_checkout")
    write_batch(landing, "2025-01", ab_batch(1))
    blocker = project.data / "warehouse.duckdb"
    blocker.mkdir(parents=True)  # the warehouse cannot be opened: every run fails
    assert [r.success for r in project.tick()] == [False]
    blocker.rmdir()
    assert [r.success for r in project.tick()] == [True], "retried once the fault is gone"
    assert list(stored(project)) == [P1]

    write_batch(landing, "2025-02", ab_batch(2))
    (project.data / "warehouse.duckdb").rename(project.data / "kept.duckdb")
    blocker.mkdir()
    outcomes = [[r.success for r in project.tick()] for _ in range(MAX_ATTEMPTS + 2)]
    assert outcomes == [[False]] * MAX_ATTEMPTS + [[], []]
    given_up = [a for a in project.alerts() if "not retried until its file changes" in a.message]
    assert len(given_up) == 1 and given_up[0].partition_key == P2
    blocker.rmdir()
    (project.data / "kept.duckdb").rename(project.data / "warehouse.duckdb")
    write_batch(landing, "2025-02", ab_batch(3))  # a corrected file is tried again
    assert [r.success for r in project.tick()] == [True]
    assert sorted(stored(project)) == [P1, P2]


@pytest.mark.usefixtures("duckdb_only")  # the DuckDB file is deleted
def test_a_deleted_warehouse_is_alerted_and_rebuilt_to_the_same_posterior(project: Project) -> None:
    """Finding M11: the posterior silently restarted from the next batch."""
    landing = project.landing("ab_checkout")
    for month in range(1, 4):
        write_batch(landing, f"2025-0{month}", ab_batch(month))
    assert all(r.success for r in project.tick())
    assert project.tick() == []  # the next tick (30 s later under the daemon) knows the warehouse
    before = project.steps("ab_checkout")
    for path in project.data.glob("warehouse.duckdb*"):
        path.unlink()
    write_batch(landing, "2025-04", ab_batch(4))
    runs = project.tick()
    assert len(runs) == 4 and all(r.success for r in runs), "every landed batch is run again"
    lost = [a for a in project.alerts() if "the warehouse is missing" in a.message]
    assert len(lost) == 1 and "3 landed batches are rebuilt" in lost[0].message
    after = project.steps("ab_checkout")
    columns = ["batch", "estimate", "std_error", "posterior_mean", "posterior_sd"]
    assert after[columns].iloc[:3].reset_index(drop=True).equals(before[columns].reset_index(drop=True))
    assert list(after["batch"]) == ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"]
    assert project.tick() == []


def test_an_edited_study_re_judges_every_batch_under_its_new_rules(project: Project) -> None:
    """Finding M8: old batches kept the old estimator and thresholds while the memo named the new ones."""
    landing = project.landing("ab_checkout")
    for month in range(1, 4):
        write_batch(landing, f"2025-0{month}", ab_batch(month))
    assert all(r.success for r in project.tick())
    project.studies = [
        example_study(
            "ab_checkout",
            primary_estimator="difference_in_means",
            estimators=("difference_in_means", "regression_adjustment"),
        )
    ]
    write_batch(landing, "2025-04", ab_batch(4))
    runs = project.tick()
    assert len(runs) == 4 and all(r.success for r in runs), "the three earlier batches are re-run"
    effects = project.warehouse.read_table("ab_checkout", "batch_effects")
    primary = effects[effects["is_primary"]].set_index("partition_key").sort_index()
    assert set(primary["method"]) == {"difference_in_means"}
    steps = project.steps("ab_checkout").set_index("batch")
    assert steps["estimate"].to_dict() == primary["estimate"].to_dict()
    assert project.tick() == []
    # Filter settings change no batch: editing them re-runs nothing.
    project.studies = [project.studies[0].model_copy(update={"process_var": 0.01})]
    assert project.tick() == []


@pytest.mark.parametrize(
    "cursor", ['{"files": {}, "attempts": {"2025-01-01": {"sha": 1}}}', "[1, 2]", "not json"]
)
def test_a_cursor_this_version_cannot_read_starts_afresh_from_the_instance(cursor: str) -> None:
    read = LandingCursor.read(cursor)
    assert (read.files, read.state, read.warehouse_id) == ({}, ReconcileState(), None)


def test_the_same_file_landed_for_two_periods_is_refused_naming_both(project: Project) -> None:
    """Finding M10: it was assimilated twice, the posterior shrinking as for independent evidence."""
    landing = project.landing("ab_checkout")
    first = write_batch(landing, "2025-01", ab_batch(1))
    shutil.copyfile(first, landing / "2025-02.csv")
    assert all(r.success for r in project.tick())
    verdicts = project.warehouse.read_table("ab_checkout", "verdicts_raw_batch").set_index("partition_key")
    assert verdicts.at[P1, "status"] == "pass"
    assert verdicts.at[P2, "status"] == "fail"
    assert "the same file" in verdicts.at[P2, "reason"] and P1 in verdicts.at[P2, "reason"]
    steps = project.steps("ab_checkout").set_index("batch")
    assert not steps.at[P1, "excluded"] and steps.at[P2, "excluded"]


def test_the_same_file_landed_twice_in_one_range_is_refused_naming_both(project: Project) -> None:
    """In one range step the first batch's file row is held (DECISIONS 51) when the second is read."""
    landing = project.landing("ab_checkout")
    first = write_batch(landing, "2025-01", ab_batch(1))
    shutil.copyfile(first, landing / "2025-02.csv")
    runs = run_landed_batches(
        project.defs, project.instance, project.studies, cursors=project.cursors, backfill=True
    )
    assert all(r.success for r in runs)
    tags = [r.dagster_run.tags for r in runs]
    assert {
        "dagster/asset_partition_range_start": P1,
        "dagster/asset_partition_range_end": P2,
    }.items() <= tags[0].items()
    verdicts = project.warehouse.read_table("ab_checkout", "verdicts_raw_batch").set_index("partition_key")
    assert (verdicts.at[P1, "status"], verdicts.at[P2, "status"]) == ("pass", "fail")
    assert "the same file" in verdicts.at[P2, "reason"] and P1 in verdicts.at[P2, "reason"]
