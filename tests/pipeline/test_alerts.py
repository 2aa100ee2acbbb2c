"""Alert sinks against real loopback servers: webhook (http.server) and SMTP (aiosmtpd)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from resources.alerts import (
    Alert,
    AlertRouter,
    AlertsResource,
    DeliveryOutcome,
    EmailSink,
    JsonlAlertLog,
    MisconfiguredSink,
    WebhookSink,
)
from resources.study import AlertSettings
from tests.pipeline_support import Project, ab_batch, example_study, write_batch

SECRET = "SECRETTOKEN123"


@dataclass
class HookServer:
    """A real HTTP server on 127.0.0.1 answering POSTs with the next queued status (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


@contextmanager
def hook_server(statuses: list[int] | None = None, port: int = 0) -> Iterator[tuple[HookServer, int]]:
    state = HookServer(statuses=list(statuses or []))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.paths.append(self.path)
            status = state.statuses.pop(0) if state.statuses else 200
            if status == 200:
                state.received.append(json.loads(body))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"error")

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def secret_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/services/T000/B000/{SECRET}?token={SECRET}"


def alert(kind: str = "onset", partition_key: str = "2025-02-01", **changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "study": "retention_outreach",
        "kind": kind,
        "check_name": "check_propensity_model_overlap",
        "partition_key": partition_key,
        "severity": "ERROR",
        "value": 0.31,
        "threshold": 0.1,
        "message": "retention_outreach batch 2025-02-01: failed overlap",
    }
    return Alert.create(**{**fields, **changes})


POSTERIOR_CHECK = "check_effect_posterior_one_sided_innovations"


def study_alert(kind: str, partition_key: str) -> Alert:
    """An alert of a study-level (posterior) check, seen in the run of ``partition_key``."""
    return alert(
        kind,
        partition_key,
        scope="study",
        asset="effect_posterior",
        check_name=POSTERIOR_CHECK,
        severity="WARN",
        message=f"retention_outreach effect_posterior (study-level): {POSTERIOR_CHECK} (WARN) failing",
    )


def log_text(log: JsonlAlertLog) -> str:
    return "".join(p.read_text() for p in (log.path, log.deliveries_path) if p.exists())


def test_webhook_posts_a_slack_payload_with_the_alert(tmp_path: Path) -> None:
    with hook_server() as (server, port):
        log = JsonlAlertLog(tmp_path / "alerts.jsonl")
        router = AlertRouter(log, [WebhookSink(secret_url(port), backoff_s=0.01)])
        sent = alert()
        outcomes = router.send(sent)
    assert outcomes == [DeliveryOutcome("webhook", "127.0.0.1", "delivered", 1)]
    assert server.paths == [f"/services/T000/B000/{SECRET}?token={SECRET}"]
    (payload,) = server.received
    assert payload["alert"] == sent.to_dict()
    assert payload["alert"]["kind"] == "onset" and payload["alert"]["partition_key"] == "2025-02-01"
    assert "failed overlap" in payload["text"] and payload["text"].startswith("[ERROR]")
    assert payload["blocks"][0]["type"] == "section"
    assert "*value* 0.31 (threshold 0.1)" in payload["blocks"][1]["elements"][0]["text"]
    assert [a.to_dict() for a in log.alerts()] == [sent.to_dict()]
    assert [d["status"] for d in log.deliveries()] == ["pending", "delivered"]
    assert SECRET not in log_text(log)
    assert all(d["target"] == "127.0.0.1" and d["sink"] == "webhook" for d in log.deliveries())


def test_webhook_retries_a_500_and_then_delivers(tmp_path: Path) -> None:
    with hook_server(statuses=[500, 503]) as (server, port):
        router = AlertRouter(
            JsonlAlertLog(tmp_path / "a.jsonl"), [WebhookSink(secret_url(port), backoff_s=0.01)]
        )
        (outcome,) = router.send(alert())
    assert outcome.status == "delivered" and outcome.attempts == 3
    assert len(server.paths) == 3 and len(server.received) == 1


def test_webhook_gives_up_after_its_attempts_and_a_4xx_is_not_retried(tmp_path: Path) -> None:
    log = JsonlAlertLog(tmp_path / "a.jsonl")
    with hook_server(statuses=[500, 500, 500]) as (server, port):
        router = AlertRouter(log, [WebhookSink(secret_url(port), max_attempts=3, backoff_s=0.01)])
        (outcome,) = router.send(alert())
    assert (outcome.status, outcome.attempts, len(server.paths)) == ("failed", 3, 3)
    assert "HTTP Error 500" in outcome.error
    with hook_server(statuses=[404]) as (server, port):
        router = AlertRouter(log, [WebhookSink(secret_url(port), max_attempts=3, backoff_s=0.01)])
        (outcome,) = router.send(alert())
    assert (outcome.status, outcome.attempts, len(server.paths)) == ("failed", 1, 1)
    assert SECRET not in log_text(log)


def test_refused_webhook_is_logged_undelivered_then_retry_pending_delivers(tmp_path: Path) -> None:
    port = closed_port()
    log = JsonlAlertLog(tmp_path / "alerts.jsonl")
    router = AlertRouter(log, [WebhookSink(secret_url(port), max_attempts=2, backoff_s=0.01, timeout_s=2)])
    first, second = alert(partition_key="2025-01-01"), alert(partition_key="2025-02-01")
    outcomes = [router.send(first), router.send(second)]  # never raises
    assert [o.status for (o,) in outcomes] == ["failed", "failed"]
    assert "Connection refused" in outcomes[0][0].error or "refused" in outcomes[0][0].error.lower()
    assert [(a.alert_id, sink) for a, sink in log.undelivered()] == [
        (first.alert_id, "webhook"),
        (second.alert_id, "webhook"),
    ]
    assert SECRET not in log_text(log)

    with hook_server(port=port) as (server, _):
        retried = router.retry_pending()
    assert [(a.alert_id, o.status) for a, o in retried] == [
        (first.alert_id, "delivered"),
        (second.alert_id, "delivered"),
    ]
    assert [p["alert"]["alert_id"] for p in server.received] == [first.alert_id, second.alert_id]
    assert log.undelivered() == []
    assert router.retry_pending() == []  # nothing left: no duplicate delivery
    assert len(log.alerts()) == 2  # the alerts themselves are logged once


@dataclass
class Mailbox:
    """aiosmtpd handler: records every message the server accepts (sender, recipients, raw bytes)."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)

    # aiosmtpd calls its handler's hooks by these names.
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        self.messages.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd in its own thread; no AUTH offered without TLS)."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=closed_port())
    controller.start()
    try:
        yield mailbox, int(controller.port)
    finally:
        controller.stop()


def test_email_is_delivered_to_a_real_smtp_server(tmp_path: Path) -> None:
    with smtp_server() as (mailbox, port):
        sink = EmailSink("127.0.0.1", port, "assimilate@localhost", ["ops@example.org", "lead@example.org"],
                         use_starttls=False, backoff_s=0.01)  # fmt: skip
        router = AlertRouter(JsonlAlertLog(tmp_path / "a.jsonl"), [sink])
        (outcome,) = router.send(alert())
        for _ in range(100):
            if mailbox.messages:
                break
            threading.Event().wait(0.02)
    assert outcome == DeliveryOutcome("email", "127.0.0.1", "delivered", 1)
    ((sender, recipients, data),) = mailbox.messages
    assert sender == "assimilate@localhost"
    assert recipients == ["ops@example.org", "lead@example.org"]
    text = data.decode()
    assert "Subject: [assimilate] ERROR onset: retention_outreach batch 2025-02-01" in text
    assert "failed overlap" in text and "check_propensity_model_overlap" in text


def test_email_failure_is_logged_without_the_password(tmp_path: Path) -> None:
    with smtp_server() as (mailbox, port):
        sink = EmailSink("127.0.0.1", port, "a@localhost", ["ops@example.org"], username="bot",
                         password=SECRET, use_starttls=False, backoff_s=0.01)  # fmt: skip
        log = JsonlAlertLog(tmp_path / "a.jsonl")
        (outcome,) = AlertRouter(log, [sink]).send(alert())
    assert outcome.status == "failed" and outcome.attempts == 1  # no AUTH on this server: permanent
    assert "AUTH" in outcome.error
    assert mailbox.messages == []
    assert SECRET not in log_text(log) and SECRET not in repr(sink)


def test_one_failing_sink_does_not_stop_the_others(tmp_path: Path) -> None:
    log = JsonlAlertLog(tmp_path / "a.jsonl")
    with smtp_server() as (_, smtp_port):
        email = EmailSink("127.0.0.1", smtp_port, "a@localhost", ["ops@example.org"], use_starttls=False)
        webhook = WebhookSink(secret_url(closed_port()), max_attempts=1, backoff_s=0.01)
        outcomes = AlertRouter(log, [webhook, email]).send(alert())
    assert [(o.sink, o.status) for o in outcomes] == [("webhook", "failed"), ("email", "delivered")]
    assert [sink for _, sink in log.undelivered()] == ["webhook"]


def test_alert_create_validates_and_serializes() -> None:
    with pytest.raises(ValueError, match="kind must be one of 'onset', 'recovery', 'run_failure'"):
        alert(kind="warning")
    with pytest.raises(ValueError, match="severity must be one of"):
        alert(severity="CRITICAL")
    with pytest.raises(ValueError, match="value must be a number, text or None"):
        alert(value=[1, 2])
    infinite = alert(value=float("inf"), threshold=None)
    assert infinite.value == "inf"  # JSON has no infinity: kept as text, never a silent NaN
    assert json.loads(json.dumps(infinite.to_dict(), allow_nan=False))["value"] == "inf"
    numpy_values = alert(value=np.float64(0.25), threshold=np.int64(3))
    assert (numpy_values.value, numpy_values.threshold) == (0.25, 3)
    assert type(numpy_values.value) is float and type(numpy_values.threshold) is int
    assert alert().alert_id != alert().alert_id
    assert alert().created_at.endswith("+00:00")
    with pytest.raises(AttributeError):
        infinite.kind = "recovery"  # type: ignore[misc]


def test_last_kinds_follow_onset_and_recovery_and_ignore_run_failures(tmp_path: Path) -> None:
    log = JsonlAlertLog(tmp_path / "a.jsonl")
    assert log.last_kinds() == {}
    router = AlertRouter(log)
    router.send(alert("onset", "2025-01-01"))
    router.send(alert("onset", "2025-02-01"))
    router.send(alert("recovery", "2025-01-01"))
    router.send(alert("run_failure", "2025-02-01"))
    # A study-level check keeps one state whatever batch's run saw it: its recovery seen in the
    # run of another batch still closes the onset.
    router.send(study_alert("onset", "2025-02-01"))
    router.send(study_alert("recovery", "2025-03-01"))
    assert log.last_kinds() == {
        ("batch", "retention_outreach", "2025-01-01"): "recovery",
        ("batch", "retention_outreach", "2025-02-01"): "onset",
        ("study", "retention_outreach", "effect_posterior", POSTERIOR_CHECK): "recovery",
    }
    assert [a.kind for a in log.alerts()] == [
        "onset",
        "onset",
        "recovery",
        "run_failure",
        "onset",
        "recovery",
    ]
    lines = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [(line["kind"], line["scope"]) for line in lines] == [
        ("onset", "batch"),
        ("onset", "batch"),
        ("recovery", "batch"),
        ("run_failure", "batch"),
        ("onset", "study"),
        ("recovery", "study"),
    ]  # one line per alert


def test_a_log_line_written_before_scopes_existed_reads_as_a_batch_alert(tmp_path: Path) -> None:
    log = JsonlAlertLog(tmp_path / "a.jsonl")
    old = {k: v for k, v in alert().to_dict().items() if k not in ("scope", "asset")}
    log.path.write_text(json.dumps(old) + "\n")
    (read,) = log.alerts()
    assert (read.scope, read.asset, read.state_key) == (
        "batch",
        "",
        ("batch", "retention_outreach", "2025-02-01"),
    )
    with pytest.raises(ValueError, match="scope must be one of"):
        alert(scope="global")
    with pytest.raises(ValueError, match="study-level check alert needs its asset and check_name"):
        alert(scope="study")  # no asset: its recovery could never be matched


def test_a_study_level_alert_reads_as_one_and_names_the_run_only_as_context(tmp_path: Path) -> None:
    sent = study_alert("onset", "2025-04-01")
    with hook_server() as (server, port):
        AlertRouter(JsonlAlertLog(tmp_path / "a.jsonl"), [WebhookSink(secret_url(port))]).send(sent)
    (payload,) = server.received
    assert payload["alert"]["scope"] == "study" and payload["alert"]["asset"] == "effect_posterior"
    assert payload["alert"]["partition_key"] == "2025-04-01"
    facts = payload["blocks"][1]["elements"][0]["text"]
    assert "*scope* study" in facts and "*run of batch* 2025-04-01" in facts
    assert "*batch*" not in facts  # not presented as a failure of that batch
    with smtp_server() as (mailbox, smtp_port):
        sink = EmailSink("127.0.0.1", smtp_port, "a@localhost", ["ops@example.org"], use_starttls=False)
        (outcome,) = AlertRouter(JsonlAlertLog(tmp_path / "b.jsonl"), [sink]).send(sent)
        for _ in range(100):
            if mailbox.messages:
                break
            threading.Event().wait(0.02)
    assert outcome.status == "delivered"
    received = BytesParser(policy=policy.default).parsebytes(mailbox.messages[0][2])
    assert (
        received["Subject"]
        == f"[assimilate] WARN onset: retention_outreach effect_posterior {POSTERIOR_CHECK}"
    )


def test_log_survives_concurrent_appends_and_a_torn_last_line(tmp_path: Path) -> None:
    log = JsonlAlertLog(tmp_path / "a.jsonl")
    long_message = "x" * 20_000  # larger than one buffered write

    def write(worker: int) -> None:
        for index in range(50):
            log.append(alert(message=f"{worker}-{index} {long_message}"))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(log.alerts()) == 200
    with log.path.open("a") as handle:
        handle.write('{"alert_id": "torn')  # a write still in progress
    assert len(log.alerts()) == 200
    log.path.write_text('{"broken\n' + log.path.read_text())
    assert len(log.alerts()) == 200  # a torn line is skipped, never fatal


def test_a_torn_line_from_a_short_write_never_joins_the_next_alert(tmp_path: Path) -> None:
    log = JsonlAlertLog(tmp_path / "a.jsonl")
    log.append(alert(message="first"))
    with log.path.open("a") as handle:
        handle.write('{"alert_id": "torn", "kind": "ons')  # a write cut short by a full disk
    log.append(alert(message="after the tear"))
    log.append(alert(message="and the next"))
    assert [a.message for a in log.alerts()] == ["first", "after the tear", "and the next"]
    lines = log.path.read_text().splitlines()
    assert lines[1] == '{"alert_id": "torn", "kind": "ons'  # kept as it was, on its own line


def test_a_torn_alert_log_stops_no_run_and_no_later_alert(tmp_path: Path) -> None:
    """Finding H3: one torn line in alerts.jsonl used to stop every later alert and the tick's runs."""
    project = Project(
        data=tmp_path / "data",
        studies=[example_study("ab_checkout")],
        instance=dg.DagsterInstance.ephemeral(),
    )
    landing = project.landing("ab_checkout")
    write_batch(landing, "2025-01", ab_batch(1))
    assert all(r.success for r in project.tick())
    (project.data / "alerts.jsonl").write_bytes(b'{"alert_id": "torn", "kind": "ons\n')
    skewed = ab_batch(2, n=1000).assign(treatment=lambda f: (np.arange(len(f)) % 10 < 3).astype(int))
    write_batch(landing, "2025-02", skewed)  # sample-ratio mismatch: an onset alert
    for month in ("2025-03", "2025-04"):
        write_batch(landing, month, ab_batch(int(month[-1])))
    runs = project.tick()
    assert len(runs) == 3 and all(r.success for r in runs)
    stored = sorted(project.warehouse.read_table("ab_checkout", "raw_files")["partition_key"])
    assert stored == ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"]
    assert [(a.kind, a.partition_key) for a in project.alerts()] == [("onset", "2025-02-01")]


def test_sink_arguments_are_checked_without_echoing_the_url() -> None:
    with pytest.raises(ValueError, match="http") as raised:
        WebhookSink(f"file:///etc/{SECRET}")
    assert SECRET not in str(raised.value)
    with pytest.raises(ValueError, match="recipient"):
        EmailSink("localhost", 25, "a@localhost", [])
    with pytest.raises(ValueError, match="unique"):
        AlertRouter(JsonlAlertLog("a.jsonl"), [WebhookSink("http://a/"), WebhookSink("http://b/")])
    assert SECRET not in repr(WebhookSink(secret_url(1)))


def test_resource_reads_the_environment_only_when_building_the_router(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASSIMILATE_WEBHOOK_URL", raising=False)
    for key in ("HOST", "PORT", "USER", "PASSWORD", "FROM"):
        monkeypatch.delenv(f"ASSIMILATE_SMTP_{key}", raising=False)
    resource = AlertsResource(
        log_path=str(tmp_path / "alerts.jsonl"), email_to=["ops@example.org"], backoff_s=0.01
    )
    assert resource.router().sinks == []  # only the log
    with hook_server() as (server, port), smtp_server() as (mailbox, smtp_port):
        monkeypatch.setenv("ASSIMILATE_WEBHOOK_URL", secret_url(port))
        monkeypatch.setenv("ASSIMILATE_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("ASSIMILATE_SMTP_PORT", str(smtp_port))
        monkeypatch.setenv("ASSIMILATE_SMTP_FROM", "pipeline@localhost")
        router = resource.model_copy(update={"smtp_use_starttls": False}).router()
        outcomes = router.send(alert())
        for _ in range(100):
            if mailbox.messages:
                break
            threading.Event().wait(0.02)
    assert [(o.sink, o.status) for o in outcomes] == [("webhook", "delivered"), ("email", "delivered")]
    assert len(server.received) == 1 and mailbox.messages[0][0] == "pipeline@localhost"
    assert SECRET not in log_text(router.log)
    no_email = AlertSettings(email_to=())
    assert [sink.name for sink in resource.router(no_email).sinks] == ["webhook"]  # no recipients
    study_alerts = AlertSettings(webhook_url_env=None, email_to=("study@example.org",))
    (email,) = resource.router(study_alerts).sinks  # the study turned its webhook off
    assert isinstance(email, EmailSink) and email.recipients == ["study@example.org"]
    assert email.sender == "pipeline@localhost"  # the deployment's sender wins
    monkeypatch.setenv("ASSIMILATE_WEBHOOK_URL", "ftp://host/" + SECRET)
    (webhook, _) = resource.router().sinks  # a malformed setting never raises: its sink says why
    assert isinstance(webhook, MisconfiguredSink)
    assert webhook.reason.startswith("environment variable ASSIMILATE_WEBHOOK_URL: webhook url must be")
    assert SECRET not in webhook.reason
    monkeypatch.delenv("ASSIMILATE_WEBHOOK_URL")
    monkeypatch.setenv("ASSIMILATE_SMTP_PORT", "smtp")
    (email,) = resource.router().sinks
    assert (
        isinstance(email, MisconfiguredSink) and "ASSIMILATE_SMTP_PORT must be a port number" in email.reason
    )
    assert AlertsResource().log_path == "data/alerts.jsonl"
