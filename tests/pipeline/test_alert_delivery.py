"""Alerting that cannot be silenced: deadlines, a budget per evaluation, re-sends on a schedule.

Findings M5 (a hanging or dripping webhook stalled alerting), M6 (a redirect was recorded as
delivered), M7 (a malformed setting stopped even the JSON-lines log) and L6 (a rejected SMTP login
was retried at every evaluation, forever). Real servers on 127.0.0.1 only: http.server, raw sockets
that drip, aiosmtpd.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from orchestration.alert_sensors import ALERT_DELIVERY_SENSOR
from orchestration.instance import PROJECT_ROOT, prepare_dagster_home
from resources.alerts import (
    AlertRouter,
    AlertsResource,
    EmailSink,
    JsonlAlertLog,
    ResendSchedule,
    WebhookSink,
)
from resources.study import AlertSettings
from tests.pipeline.test_alerts import SECRET, Mailbox, alert, closed_port, hook_server, log_text, secret_url
from tests.pipeline_support import Project, ab_batch, example_study, webhook_receiver, write_batch


class Clock:
    """A settable clock (seconds since the epoch) for the re-send schedule."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def __call__(self) -> float:
        return self.now


def statuses(log: JsonlAlertLog) -> list[str]:
    return [row["status"] for row in log.deliveries()]


@dataclass
class Drip:
    """A raw TCP server that answers one byte every ``every_s`` until ``stop`` or ``for_s`` passed."""

    payload: bytes
    every_s: float
    for_s: float
    read_request: bool = True
    stop: threading.Event = field(default_factory=threading.Event)
    connections: int = 0


@contextmanager
def drip_server(drip: Drip) -> Iterator[int]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            drip.connections += 1
            if drip.read_request:
                self.request.settimeout(5)
                seen = b""
                while b"\r\n\r\n" not in seen:
                    seen += self.request.recv(65536)
            ends = time.monotonic() + drip.for_s
            payload = drip.payload
            while payload and not drip.stop.is_set() and time.monotonic() < ends:
                try:
                    self.request.sendall(payload[:1])
                except OSError:
                    return  # the client cut the connection: what the deadline is for
                payload = payload[1:] or drip.payload  # an endless answer
                drip.stop.wait(drip.every_s)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        drip.stop.set()
        server.shutdown()
        server.server_close()


HTTP_DRIP = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 64


@pytest.mark.parametrize("cut_in", ["status line", "body"])
def test_a_dripping_webhook_cannot_hold_a_delivery_past_its_deadline(tmp_path: Path, cut_in: str) -> None:
    """M5: urllib's timeout is per read, so one byte every 0.3 s held a delivery as long as it lasted."""
    payload = b"HTTP/1.1 200 OK\r\n" if cut_in == "status line" else HTTP_DRIP
    with drip_server(Drip(payload, every_s=0.3, for_s=45)) as port:
        sink = WebhookSink(secret_url(port), timeout_s=2, deadline_s=3, max_attempts=3, backoff_s=0.1)
        log = JsonlAlertLog(tmp_path / "alerts.jsonl")
        started = time.monotonic()
        (outcome,) = AlertRouter(log, [sink]).send(alert())
        elapsed = time.monotonic() - started
    assert elapsed < 15, f"the 3 s deadline did not hold: {elapsed:.1f} s (the server dripped for 45 s)"
    assert outcome.status == "failed" and "delivery deadline" in outcome.error
    assert [a.message for a in log.alerts()] == [alert().message]  # the log was written first
    assert SECRET not in log_text(log)


def test_a_dripping_smtp_greeting_cannot_hold_an_email_past_its_deadline(tmp_path: Path) -> None:
    with drip_server(Drip(b"220 slow.example ESMTP\r\n", every_s=0.3, for_s=45, read_request=False)) as port:
        sink = EmailSink("127.0.0.1", port, "a@localhost", ["ops@example.org"], use_starttls=False,
                         timeout_s=2, deadline_s=3, backoff_s=0.1)  # fmt: skip
        started = time.monotonic()
        (outcome,) = AlertRouter(JsonlAlertLog(tmp_path / "a.jsonl"), [sink]).send(alert())
        elapsed = time.monotonic() - started
    assert elapsed < 15 and outcome.status == "failed" and "delivery deadline" in outcome.error


@contextmanager
def hanging_server() -> Iterator[int]:
    """Accepts connections and never answers (the kernel completes the handshake: a listen backlog)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def test_one_evaluation_spends_at_most_its_budget_and_leaves_the_rest_queued(tmp_path: Path) -> None:
    """M5: 2 alerts to a hanging webhook took 66 s, and every evaluation re-sent everything again."""
    log = JsonlAlertLog(tmp_path / "alerts.jsonl")
    with hanging_server() as port:
        sink = WebhookSink(secret_url(port), timeout_s=10, deadline_s=2, max_attempts=3, backoff_s=0.1)
        router = AlertRouter(log, [sink], budget_s=4, clock=Clock())
        sent = [alert(partition_key=f"2025-0{m}-01") for m in range(1, 6)]
        for item in sent:
            router.queue(item)
        started = time.monotonic()
        done = router.deliver_due()
        elapsed = time.monotonic() - started
    assert elapsed < 8, f"one evaluation took {elapsed:.1f} s with a 4 s budget"
    assert [o.status for _, o in done] == ["failed", "pending", "pending", "pending", "pending"]
    assert "delivery deadline" in done[0][1].error
    assert all("not tried" in o.error for _, o in done[1:])
    assert len(log.alerts()) == 5 and len(log.undelivered()) == 5  # logged, and all still to deliver


@dataclass
class SlowHook:
    received: list[str] = field(default_factory=list)


@contextmanager
def slow_hook(delay_s: float) -> Iterator[tuple[SlowHook, int]]:
    state = SlowHook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            import json

            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(delay_s)
            state.received.append(body["alert"]["alert_id"])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_what_the_budget_leaves_is_delivered_at_later_evaluations_exactly_once(tmp_path: Path) -> None:
    log = JsonlAlertLog(tmp_path / "alerts.jsonl")
    with slow_hook(delay_s=0.8) as (hook, port):
        router = AlertRouter(log, [WebhookSink(secret_url(port), deadline_s=5)], budget_s=2.5, clock=Clock())
        sent = [alert(partition_key=f"2025-0{m}-01") for m in range(1, 7)]
        for item in sent:
            router.queue(item)
        first = router.deliver_due()
        delivered_first = [a.alert_id for a, o in first if o.status == "delivered"]
        assert 1 <= len(delivered_first) < 6, "the budget stops an evaluation before all six"
        assert [o.status for _, o in first[len(delivered_first) :]] == ["pending"] * (
            6 - len(delivered_first)
        )
        for _ in range(10):
            if not log.undelivered():
                break
            router.deliver_due()
    assert log.undelivered() == []
    assert sorted(hook.received) == sorted(a.alert_id for a in sent)  # each exactly once
    assert hook.received[: len(delivered_first)] == delivered_first  # oldest first


def test_an_undelivered_alert_is_resent_on_a_growing_schedule_then_given_up(tmp_path: Path) -> None:
    """M5/L6: no re-send at every evaluation; bounded rounds; 'gave_up' is in the log."""
    clock, log = Clock(), JsonlAlertLog(tmp_path / "alerts.jsonl")
    schedule = ResendSchedule(rounds=5, backoff_s=60, backoff_max_s=180)
    with hook_server(statuses=[500] * 100) as (server, port):
        sink = WebhookSink(secret_url(port), max_attempts=1)
        router = AlertRouter(log, [sink], schedule=schedule, clock=clock)
        router.send(alert())  # round 1
        tried_at = [0.0]
        for step in range(2 * 60 * 60 // 30):  # an evaluation every 30 s for two hours
            clock.now += 30
            if any(o.status != "pending" for _, o in router.deliver_due()):
                tried_at.append((step + 1) * 30.0)
    assert tried_at == [0, 30, 90, 210, 390]  # waits 0 (next evaluation), 60, 120, then capped at 180
    assert len(server.paths) == 5
    rows = log.deliveries()
    assert [r["status"] for r in rows] == ["pending"] + ["failed"] * 4 + ["gave_up"]
    assert rows[1]["next_attempt_at"] == "2026-01-01T00:00:00+00:00"  # due at the next evaluation
    assert rows[2]["next_attempt_at"] == "2026-01-01T00:01:30+00:00"
    assert "gave up after 5 failed deliveries" in rows[-1]["error"] and "HTTP Error 500" in rows[-1]["error"]
    assert log.undelivered() == [] and router.deliver_due() == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_webhook_redirect_is_a_failed_delivery_and_is_not_followed(tmp_path: Path, status: int) -> None:
    """M6: urllib followed a 302 with a body-less GET to another host and recorded 'delivered'."""
    other: list[tuple[str, str]] = []

    class Other(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            other.append(("GET", self.path))
            self.send_response(200)
            self.end_headers()

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: Any) -> None:
            return

    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=elsewhere.serve_forever, daemon=True).start()
    location = f"http://127.0.0.1:{elsewhere.server_address[1]}/moved/{SECRET}"

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        log = JsonlAlertLog(tmp_path / "alerts.jsonl")
        sink = WebhookSink(f"http://127.0.0.1:{hook.server_address[1]}/hook", backoff_s=0.01)
        (outcome,) = AlertRouter(log, [sink]).send(alert())
    finally:
        for server in (hook, elsewhere):
            server.shutdown()
            server.server_close()
    assert other == [], "the redirect was followed"
    assert (outcome.status, outcome.attempts) == ("failed", 1)
    assert f"HTTP {status}" in outcome.error and "redirect, not followed" in outcome.error
    assert SECRET not in log_text(log)  # the Location is not logged
    assert statuses(log) == ["pending", "failed"]


def test_a_rejected_smtp_login_backs_off_and_is_given_up(tmp_path: Path) -> None:
    """L6: a 535 was retried at every later evaluation, forever (10 AUTH per evaluation for 5 alerts)."""
    logins: list[str] = []

    def reject(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        logins.append(mechanism)
        return AuthResult(success=False, handled=False)

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=closed_port(), authenticator=reject,
                            auth_require_tls=False)  # fmt: skip
    controller.start()
    clock, log = Clock(), JsonlAlertLog(tmp_path / "alerts.jsonl")
    try:
        sink = EmailSink("127.0.0.1", controller.port, "a@localhost", ["ops@example.org"], username="bot",
                         password=SECRET, use_starttls=False, backoff_s=0.01)  # fmt: skip
        router = AlertRouter(log, [sink], schedule=ResendSchedule(rounds=4, backoff_s=60), clock=clock)
        for month in range(1, 6):
            router.queue(alert(partition_key=f"2025-0{month}-01"))
        per_evaluation = []
        for _ in range(3 * 60 * 60 // 30):  # an evaluation every 30 s for three hours
            before = len(logins)
            router.deliver_due()
            per_evaluation.append(len(logins) - before)
            clock.now += 30
    finally:
        controller.stop()
    logins_per_delivery = max(per_evaluation)  # smtplib tries each offered mechanism (PLAIN, LOGIN)
    assert logins_per_delivery <= 2, "one login per evaluation at most: a failing sink is not hammered"
    assert len(logins) == 5 * 4 * logins_per_delivery  # 4 rounds per alert, then given up
    assert sum(1 for n in per_evaluation[-200:] if n) == 0, "nothing is tried once all are given up"
    finals = {row["alert_id"]: row for row in log.deliveries()}
    assert {row["status"] for row in finals.values()} == {"gave_up"}
    assert all("535" in row["error"] for row in finals.values())
    assert mailbox.messages == [] and SECRET not in log_text(log)


def test_a_queued_alert_is_never_delivered_twice_by_concurrent_evaluations(tmp_path: Path) -> None:
    log = JsonlAlertLog(tmp_path / "alerts.jsonl")
    with hook_server() as (server, port):
        router = AlertRouter(log, [WebhookSink(secret_url(port))])
        router.queue(alert())
        with log.delivering() as ours:  # another evaluation is delivering
            assert ours
            assert router.deliver_due() == []
            (queued,) = router.send(alert(partition_key="2025-03-01"))
            assert queued.status == "pending" and "another evaluation" in queued.error
        assert [o.status for _, o in router.deliver_due()] == ["delivered", "delivered"]
        assert router.deliver_due() == []
    assert len(server.received) == 2


SKEWED = ab_batch(2, n=1000).assign(treatment=lambda f: (np.arange(len(f)) % 10 < 3).astype(int))


def test_a_malformed_sink_setting_never_stops_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """M7: a webhook URL without a scheme (or a non-numeric SMTP port) stopped every alert."""
    monkeypatch.setenv("ASSIMILATE_WEBHOOK_URL", f"hooks.example.com/services/T0/B0/{SECRET}")
    monkeypatch.setenv("ASSIMILATE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ASSIMILATE_SMTP_PORT", "smtp")
    monkeypatch.setenv("ASSIMILATE_SMTP_PASSWORD", SECRET)
    study = example_study("ab_checkout", alerts=AlertSettings(email_to=("ops@example.org",)))
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    with caplog.at_level(logging.ERROR, logger="assimilate.alerts"):
        defs = project.defs  # the code location loads, and says what is wrong
    loaded = [r.getMessage() for r in caplog.records if "misconfigured" in r.getMessage()]
    assert len(loaded) == 2
    assert "ASSIMILATE_WEBHOOK_URL: webhook url must be an http(s) URL" in loaded[0]
    assert "ASSIMILATE_SMTP_PORT must be a port number" in loaded[1]
    write_batch(project.landing("ab_checkout"), "2025-01", SKEWED)  # sample-ratio mismatch
    assert all(r.success for r in project.tick())
    log = JsonlAlertLog(project.data / "alerts.jsonl")
    assert [(a.kind, a.partition_key) for a in log.alerts()] == [("onset", "2025-01-01")]
    failed = {row["sink"]: row for row in log.deliveries() if row["status"] == "failed"}
    assert failed["webhook"]["error"].startswith("misconfigured: environment variable ASSIMILATE_WEBHOOK_URL")
    assert "ASSIMILATE_SMTP_PORT must be a port number, got 'smtp'" in failed["email"]["error"]
    assert SECRET not in log_text(log) and all(SECRET not in m for m in loaded)
    sensor = defs.resolve_sensor_def(ALERT_DELIVERY_SENSOR)
    tick = sensor(dg.build_sensor_context(instance=project.instance, resources=defs.resources))
    assert isinstance(tick, dg.SkipReason) and "MISCONFIGURED sink" in str(tick.skip_message)


def test_the_run_sensors_only_queue_and_the_delivery_sensor_delivers_within_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """M5 under the daemon: the run-status sensors' ticks failed while a hanging webhook held them."""
    project = Project(
        data=tmp_path / "data",
        studies=[example_study("ab_checkout")],
        instance=dg.DagsterInstance.ephemeral(),
    )
    with hanging_server() as port:
        monkeypatch.setenv("ASSIMILATE_WEBHOOK_URL", secret_url(port))
        defs = project.defs
        job = defs.resolve_job_def("ab_checkout_batch_job")
        write_batch(project.landing("ab_checkout"), "2025-01", SKEWED)
        result = job.execute_in_process(
            partition_key="2025-01-01", instance=project.instance, raise_on_error=False
        )
        run = project.instance.get_run_by_id(result.run_id)
        (success,) = project.instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)
        context = dg.build_run_status_sensor_context(
            sensor_name="assumption_alerts_on_success",
            dagster_event=success.dagster_event,  # type: ignore[arg-type]
            dagster_instance=project.instance,
            dagster_run=run,  # type: ignore[arg-type]
            resources=defs.resources,
        )
        started = time.monotonic()
        defs.resolve_sensor_def("assumption_alerts_on_success")(context)
        assert time.monotonic() - started < 5, "the run-status sensor waited for the webhook"
        log = JsonlAlertLog(project.data / "alerts.jsonl")
        assert [a.kind for a in log.alerts()] == ["onset"] and statuses(log) == ["pending"]

        quick = AlertsResource(log_path=str(log.path), deadline_s=2.0, budget_s=4.0)
        sensor = defs.resolve_sensor_def(ALERT_DELIVERY_SENSOR)
        started = time.monotonic()
        tick = sensor(dg.build_sensor_context(instance=project.instance, resources={"alerts": quick}))
        assert time.monotonic() - started < 8
    assert isinstance(tick, dg.SkipReason) and "failed 1" in str(tick.skip_message)
    assert statuses(log) == ["pending", "failed"]
    with webhook_receiver() as (url, received):  # the webhook is back: the next tick delivers
        monkeypatch.setenv("ASSIMILATE_WEBHOOK_URL", url)
        sensor(dg.build_sensor_context(instance=project.instance, resources={"alerts": quick}))
    assert [body["alert"]["kind"] for body in received] == ["onset"]
    assert statuses(log) == ["pending", "failed", "delivered"]


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {seconds} s")
        time.sleep(2)


@pytest.mark.slow
def test_under_the_daemon_a_hanging_webhook_fails_no_tick_and_delays_no_alert(tmp_path: Path) -> None:
    """M5 as seen under dagster-daemon: with a webhook that never answers, the run-status sensors'
    ticks failed from the second minute on and the onsets were logged minutes after their runs."""
    home = prepare_dagster_home(tmp_path / "dagster_home")
    data = tmp_path / "data"
    landing = data / "landing" / "ab_checkout"
    landing.mkdir(parents=True)
    months = ("2025-01", "2025-02", "2025-03")
    for seed, month in enumerate(months):
        skewed = ab_batch(seed, n=1000).assign(treatment=lambda f: (np.arange(len(f)) % 10 < 3).astype(int))
        write_batch(landing, month, skewed)  # each fails its sample-ratio check: one onset per batch
    location = tmp_path / "location.py"
    location.write_text(
        "from pathlib import Path\n"
        "from orchestration.definitions import build_definitions\n"
        "from resources.study import load_study\n"
        f"study = load_study(Path({str(PROJECT_ROOT / 'studies' / 'ab_checkout.yaml')!r}))\n"
        f"defs = build_definitions(studies=[study], data_dir=Path({str(data)!r}))\n"
    )
    instance = dg.DagsterInstance.from_config(str(home))
    log = JsonlAlertLog(data / "alerts.jsonl")
    with hanging_server() as port, (tmp_path / "daemon.log").open("wb") as output:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "PYTHONPATH": str(PROJECT_ROOT),
            "ASSIMILATE_WEBHOOK_URL": secret_url(port),
        }
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-f", str(location)],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def finished() -> list[dg.DagsterRun]:
                return [r for r in instance.get_runs() if r.is_finished]

            _wait(lambda: len(finished()) == len(months), 900, "the daemon did not finish the 3 runs")
            _wait(lambda: len(log.alerts()) >= len(months), 180, "the onsets were not logged")
            _wait(
                lambda: {r["status"] for r in log.deliveries()} >= {"failed"},
                180,
                "the delivery sensor did not try the webhook",
            )
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
    runs = {r.tags.get("dagster/partition"): r for r in finished()}
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs.values())
    for onset in (a for a in log.alerts() if a.asset != "landing_folder"):  # not the overdue months
        record = instance.get_run_record_by_id(runs[onset.partition_key].run_id)
        assert record is not None and record.end_time is not None
        late = datetime.fromisoformat(onset.created_at).timestamp() - record.end_time
        assert late < 120, f"the onset of {onset.partition_key} was logged {late:.0f} s after its run"
    ticks = {
        state.instigator_name: instance.get_ticks(state.instigator_origin_id, state.selector_id)
        for state in instance.all_instigator_state()
    }
    for name in ("assumption_alerts_on_success", ALERT_DELIVERY_SENSOR):
        assert ticks[name], f"{name} never ticked"
        failed = [t.error.message for t in ticks[name] if t.status.value == "FAILURE" and t.error]
        assert failed == [], f"{name} ticks failed: {failed[:2]}"
    assert any("delivery deadline" in (t.skip_reason or "") for t in ticks[ALERT_DELIVERY_SENSOR])
    assert SECRET not in log_text(log)
