"""Overdue batches and misnamed files: one alert on onset, one on recovery, however often the sensors tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.definitions import build_definitions
from orchestration.freshness import build_freshness_sensor, overdue_batches
from orchestration.runner import tick_landing_sensor
from resources.alerts import AlertsResource, JsonlAlertLog
from resources.landing import LandingResource
from resources.study import StudyConfig
from tests.pipeline_support import example_study

MONTHLY = example_study("ab_checkout")  # monthly from 2025-01-01; default grace 5 days


def study(**changes: Any) -> StudyConfig:
    return StudyConfig.model_validate({**MONTHLY.model_dump(mode="json"), **changes})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_batch_is_overdue_after_its_period_ends_plus_the_grace_period() -> None:
    keys = lambda s, landed, now: [o.partition_key for o in overdue_batches(s, landed, at(now))]  # noqa: E731
    assert keys(MONTHLY, set(), "2025-02-05 23:59") == []  # January's file is due by Feb 6, 00:00
    assert keys(MONTHLY, set(), "2025-02-06 00:00") == ["2025-01-01"]
    # From the first landed batch on: a gap and the tail; nothing before it, nothing not yet due.
    assert keys(MONTHLY, {"2025-03-01", "2025-05-01"}, "2025-07-01") == ["2025-04-01"]
    assert keys(MONTHLY, {"2025-03-01", "2025-05-01"}, "2025-07-06") == ["2025-04-01", "2025-06-01"]
    assert keys(study(grace_period="1h"), {"2025-01-01"}, "2025-03-01 01:00") == ["2025-02-01"]
    assert keys(study(end_date="2025-02-10"), {"2025-01-01"}, "2026-01-01") == ["2025-02-01"]
    yearly = study(cadence="yearly", start_date="2024-01-01")
    assert keys(yearly, {"2024-01-01"}, "2026-01-30") == []  # 30 days of grace for a yearly batch
    assert keys(yearly, {"2024-01-01"}, "2026-01-31") == ["2025-01-01"]
    weekdays = study(cadence={"cron": "0 0 * * 1-5"}, start_date="2025-01-06")  # a quarter of the period
    assert keys(weekdays, {"2025-01-06"}, "2025-01-08 06:00") == ["2025-01-07"]


def test_an_overdue_batch_raises_one_alert_and_one_recovery_when_it_lands(tmp_path: Path) -> None:
    landing = LandingResource(root=str(tmp_path / "landing"))
    alerts = AlertsResource(log_path=str(tmp_path / "alerts.jsonl"))
    folder = tmp_path / "landing" / "ab_checkout"
    folder.mkdir(parents=True)
    (folder / "2025-01.csv").write_text("x")
    clock = [at("2025-03-01")]
    sensor = build_freshness_sensor([MONTHLY], now=lambda: clock[0])

    def tick() -> str:
        result = sensor(dg.build_sensor_context(resources={"landing": landing, "alerts": alerts}))
        assert isinstance(result, dg.SkipReason)
        return result.skip_message or ""

    assert tick() == "ab_checkout: on time"  # February's batch is due by March 6
    clock[0] = at("2025-03-07")
    assert "1 overdue: 2025-02.csv" in tick()
    for hours in range(1, 6):  # the daemon ticks on: no second alert
        clock[0] = at("2025-03-07") + timedelta(hours=hours)
        tick()
    log = JsonlAlertLog(tmp_path / "alerts.jsonl")
    assert [(a.kind, a.partition_key) for a in log.alerts()] == [("onset", "2025-02-01")]
    onset = log.alerts()[0]
    assert "2025-02.csv" in onset.message and "ab_checkout/" in onset.message and onset.scope == "study"

    (folder / "2025-02.csv").write_text("x")
    assert tick() == "ab_checkout: on time"
    tick()
    assert [(a.kind, a.partition_key) for a in log.alerts()] == [
        ("onset", "2025-02-01"),
        ("recovery", "2025-02-01"),
    ]
    assert "landed as 2025-02.csv" in log.alerts()[-1].message

    # A backlog (the daemon was down from March to August) is one alert, recovered once all land.
    clock[0] = at("2025-08-10")
    assert "5 overdue" in tick()
    tick()
    backlog = log.alerts()[2:]
    assert [(a.kind, a.check_name) for a in backlog] == [("onset", "batch_due:2025-03-01..2025-07-01")]
    assert "5 batches are overdue: 2025-03.csv" in backlog[0].message
    for month in range(3, 8):
        (folder / f"2025-0{month}.csv").write_text("x")
        tick()
    assert [a.kind for a in log.alerts()[2:]] == ["onset", "recovery"]


def test_a_misnamed_file_raises_one_alert_across_many_landing_sensor_ticks(tmp_path: Path) -> None:
    weekly = study(
        name="monday_ab", landing_folder="monday_ab", cadence={"cron": "0 0 * * 1"}, start_date="2025-01-06"
    )
    data = tmp_path / "data"
    folder = data / "landing" / "monday_ab"
    folder.mkdir(parents=True)
    (folder / "2025-01-07.csv").write_text("unit_id,x,treatment,outcome\n")  # a Tuesday
    (folder / "readme.txt").write_text("notes")
    instance = dg.DagsterInstance.ephemeral()
    cursor = None
    for _ in range(4):
        defs = build_definitions(studies=[weekly], data_dir=data)
        result = tick_landing_sensor(defs, instance, weekly, cursor)
        assert isinstance(result, dg.SensorResult) and result.run_requests == []
        cursor = result.cursor
    log = JsonlAlertLog(data / "alerts.jsonl")
    onsets = {a.check_name: a for a in log.alerts()}
    assert [a.kind for a in log.alerts()] == ["onset", "onset"]
    tuesday = onsets["file_name:2025-01-07.csv"]
    assert "Tuesday" in tuesday.message and "2025-01-06.csv" in tuesday.message  # the expected name nearby
    assert "next batch is due as 2025-01-06.csv" in onsets["file_name:readme.txt"].message

    (folder / "2025-01-07.csv").rename(folder / "2025-01-06.csv")
    for _ in range(2):
        defs = build_definitions(studies=[weekly], data_dir=data)
        result = tick_landing_sensor(defs, instance, weekly, cursor)
        assert isinstance(result, dg.SensorResult)
        cursor = result.cursor
    assert [(a.kind, a.check_name) for a in log.alerts()][2:] == [("recovery", "file_name:2025-01-07.csv")]
