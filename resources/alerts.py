"""Alert sinks: an always-on JSONL log, a Slack-compatible webhook and e-mail, behind one router.

``AlertRouter.send`` writes the alert to the log first, then tries every sink with bounded retries
and backoff. A sink failure never raises: it is recorded in the delivery log as ``failed`` with
the error, and ``retry_pending`` re-sends every undelivered alert later. Secrets (the webhook URL,
the SMTP password) come only from environment variables read when the router is built, and never
reach the logs: a sink is recorded by its kind and host only.

Files: ``alerts.jsonl`` holds one JSON object per alert; ``alerts.deliveries.jsonl`` (beside it)
one line per delivery status change (pending -> delivered | failed).

An alert's ``scope`` says what its onset/recovery state belongs to: ``"batch"`` (every per-batch
check of one partition, together) or ``"study"`` (one check of an unpartitioned asset, such as the
posterior, whatever run evaluated it; ``partition_key`` then only names that run's batch).

Example
-------
>>> log = JsonlAlertLog("data/alerts.jsonl")  # doctest: +SKIP
>>> router = AlertRouter(log, [WebhookSink(os.environ["ASSIMILATE_WEBHOOK_URL"])])  # doctest: +SKIP
>>> router.send(Alert.create(study="ab_checkout", kind="onset", ...))  # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import numbers
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from assimilate._validation import check_choice
from orchestration.study_config import AlertSettings

AlertKind = Literal["onset", "recovery", "run_failure"]
Severity = Literal["INFO", "WARN", "ERROR"]
DeliveryStatus = Literal["pending", "delivered", "failed"]
Scope = Literal["batch", "study"]
Scalar = float | int | str | None
StateKey = tuple[str, ...]
_KINDS: tuple[AlertKind, ...] = ("onset", "recovery", "run_failure")
_SEVERITIES: tuple[Severity, ...] = ("INFO", "WARN", "ERROR")
_SCOPES: tuple[Scope, ...] = ("batch", "study")
_SMTP_KEYS = ("HOST", "PORT", "USER", "PASSWORD", "FROM")
_log = logging.getLogger("assimilate.alerts")
_TITLES = {"onset": "Check failing", "recovery": "Check recovered", "run_failure": "Run failed"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _scalar(name: str, value: object) -> Scalar:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else str(number)  # JSON has no inf/nan: say it in text
    raise ValueError(f"{name} must be a number, text or None, got {type(value).__name__}")


def state_key(scope: str, study: str, partition_key: str, asset: str, check_name: str) -> StateKey:
    """What onset and recovery are tracked for: a study's batch, or one study-level check."""
    return ("study", study, asset, check_name) if scope == "study" else ("batch", study, partition_key)


@dataclass(frozen=True)
class Alert:
    """One alert: a check that started failing (onset), passes again (recovery), or a failed run."""

    alert_id: str
    study: str
    kind: AlertKind
    check_name: str
    partition_key: str
    severity: Severity
    value: Scalar
    threshold: Scalar
    message: str
    created_at: str
    # Defaults: lines logged before scopes existed were all per-batch alerts.
    scope: Scope = "batch"
    asset: str = ""

    @classmethod
    def create(
        cls,
        *,
        study: str,
        kind: str,
        check_name: str,
        partition_key: str,
        severity: str,
        value: object,
        threshold: object,
        message: str,
        scope: str = "batch",
        asset: str = "",
    ) -> Alert:
        """A new alert with a fresh id and the current UTC time (ISO 8601)."""
        if scope == "study" and kind != "run_failure" and not (asset and check_name):
            # Its state is keyed by (study, asset, check): without them a recovery could never match.
            raise ValueError("a study-level check alert needs its asset and check_name")
        return cls(
            alert_id=uuid.uuid4().hex,
            study=study,
            kind=check_choice("kind", kind, _KINDS),
            check_name=check_name,
            partition_key=partition_key,
            severity=check_choice("severity", severity, _SEVERITIES),
            value=_scalar("value", value),
            threshold=_scalar("threshold", threshold),
            message=message,
            created_at=_now(),
            scope=check_choice("scope", scope, _SCOPES),
            asset=asset,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """The alert of one log line (a field missing from an older line takes its default)."""
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})

    @property
    def state_key(self) -> StateKey:
        """The onset/recovery state this alert updates (see ``state_key``)."""
        return state_key(self.scope, self.study, self.partition_key, self.asset, self.check_name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


@dataclass(frozen=True)
class DeliveryOutcome:
    """What happened to one alert at one sink; ``target`` is the sink's host, never a secret."""

    sink: str
    target: str
    status: DeliveryStatus
    attempts: int
    error: str = ""


class DeliveryError(Exception):
    """A sink gave up on an alert (after its retries); the message holds no secret."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class AlertSink(Protocol):
    """Something an alert can be delivered to."""

    name: str
    target: str

    def deliver(self, alert: Alert) -> int:
        """Deliver or raise ``DeliveryError``; returns the number of attempts used."""
        ...


def _retrying(
    send: Callable[[], None],
    transient: Callable[[Exception], bool],
    *,
    max_attempts: int,
    backoff_s: float,
    secrets: Sequence[str],
) -> int:
    """Call ``send`` until it succeeds, retrying transient errors with doubling backoff."""
    for attempt in range(1, max_attempts + 1):
        try:
            send()
            return attempt
        except (OSError, http.client.HTTPException, smtplib.SMTPException) as error:
            text = _redact(f"{type(error).__name__}: {error}", secrets)
            if attempt == max_attempts or not transient(error):
                raise DeliveryError(text, attempt) from None
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class WebhookSink:
    """HTTP POST of a Slack-compatible JSON payload (``text``, ``blocks``) plus an ``alert`` object."""

    name = "webhook"

    def __init__(
        self, url: str, *, timeout_s: float = 10.0, max_attempts: int = 3, backoff_s: float = 1.0
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook url must be an http(s) URL with a host (the URL itself is not shown)")
        if max_attempts < 1 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("max_attempts must be >= 1, timeout_s > 0 and backoff_s >= 0")
        self._url = url
        self.target = parts.hostname
        self.timeout_s, self.max_attempts, self.backoff_s = timeout_s, max_attempts, backoff_s

    def __repr__(self) -> str:
        return f"WebhookSink(host={self.target!r})"

    @staticmethod
    def payload(alert: Alert) -> dict[str, Any]:
        """The JSON body: Slack's ``text`` and ``blocks``, and the alert's fields under ``alert``."""
        title = _TITLES[alert.kind]
        facts = [f"*study* {alert.study}"]
        if alert.scope == "study":
            # The check is about the whole study: the batch only says which run evaluated it.
            facts += ["*scope* study", f"*asset* {alert.asset or '-'}"]
            facts.append(f"*run of batch* {alert.partition_key or '- (posterior-only run)'}")
        else:
            facts.append(f"*batch* {alert.partition_key or '-'}")
        facts.append(f"*severity* {alert.severity}")
        if alert.check_name:
            facts.append(f"*check* {alert.check_name}")
        if alert.value is not None:
            facts.append(f"*value* {alert.value} (threshold {alert.threshold})")
        return {
            "text": f"[{alert.severity}] {title}: {alert.message}",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}* - {alert.message}"}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": " | ".join(facts)}]},
            ],
            "alert": alert.to_dict(),
        }

    def deliver(self, alert: Alert) -> int:
        """POST the payload; retries connection errors, timeouts, HTTP 429 and 5xx."""
        body = json.dumps(self.payload(alert)).encode("utf-8")

        def send() -> None:
            request = urllib.request.Request(
                self._url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            # The scheme is http(s): checked in __init__ (urlopen would also open file:// URLs).
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()

        def transient(error: Exception) -> bool:
            if isinstance(error, urllib.error.HTTPError):
                return error.code == 429 or error.code >= 500
            return isinstance(error, OSError | http.client.HTTPException)

        parts = urlsplit(self._url)
        secrets = [self._url, parts.path if len(parts.path) > 1 else "", parts.query, parts.password or ""]
        return _retrying(
            send, transient, max_attempts=self.max_attempts, backoff_s=self.backoff_s, secrets=secrets
        )


class EmailSink:
    """Plain-text e-mail through an SMTP server (``smtplib``), optionally with STARTTLS and login."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        use_starttls: bool = True,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = 3,
        backoff_s: float = 1.0,
    ) -> None:
        if not host or not recipients or not 0 < port < 65536:
            raise ValueError("email needs a host, a port in 1..65535 and at least one recipient")
        self.target = host
        self.host, self.port, self.sender, self.recipients = host, port, sender, list(recipients)
        self._username, self._password, self.use_starttls = username, password, use_starttls
        self.timeout_s, self.max_attempts, self.backoff_s = timeout_s, max_attempts, backoff_s

    def __repr__(self) -> str:
        return f"EmailSink(host={self.host!r}, port={self.port}, recipients={len(self.recipients)})"

    def message(self, alert: Alert) -> EmailMessage:
        """The e-mail of one alert."""
        email = EmailMessage()
        if alert.scope == "study":
            where = f" {alert.asset} {alert.check_name}".rstrip()
        else:
            where = f" batch {alert.partition_key}" if alert.partition_key else ""
        email["Subject"] = f"[assimilate] {alert.severity} {alert.kind}: {alert.study}{where}"
        email["From"] = self.sender
        email["To"] = ", ".join(self.recipients)
        lines = [alert.message, ""] + [f"{k}: {v}" for k, v in alert.to_dict().items() if k != "message"]
        email.set_content("\n".join(lines))
        return email

    def deliver(self, alert: Alert) -> int:
        """Send the e-mail; retries connection errors and temporary (4xx) SMTP replies."""
        email = self.message(alert)

        def send() -> None:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.use_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._username:
                    smtp.login(self._username, self._password or "")
                smtp.send_message(email)

        def transient(error: Exception) -> bool:
            if isinstance(error, smtplib.SMTPResponseException):
                return 400 <= error.smtp_code < 500
            if isinstance(error, smtplib.SMTPException):  # an OSError too: decide before the check below
                return isinstance(error, smtplib.SMTPServerDisconnected)
            return isinstance(error, OSError)

        secrets = [self._password or ""]
        return _retrying(
            send, transient, max_attempts=self.max_attempts, backoff_s=self.backoff_s, secrets=secrets
        )


class JsonlAlertLog:
    """Append-only JSONL files: alerts in ``path``, delivery statuses in ``<stem>.deliveries.jsonl``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.deliveries_path = self.path.with_name(f"{self.path.stem}.deliveries.jsonl")

    def append(self, alert: Alert) -> None:
        """Append one alert line."""
        _append_line(self.path, alert.to_dict())

    def record_delivery(self, alert_id: str, outcome: DeliveryOutcome) -> None:
        """Append one delivery status line."""
        _append_line(self.deliveries_path, {"alert_id": alert_id, "at": _now(), **asdict(outcome)})

    def alerts(self) -> list[Alert]:
        """Every logged alert, oldest first."""
        return [Alert.from_dict(row) for row in _read_lines(self.path)]

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery status line, oldest first."""
        return _read_lines(self.deliveries_path)

    def last_kinds(self, kinds: Sequence[str] = ("onset", "recovery")) -> dict[StateKey, str]:
        """``Alert.state_key`` -> kind of the last alert of those ``kinds`` (check alerts by default)."""
        return {a.state_key: a.kind for a in self.alerts() if a.kind in kinds}

    def undelivered(self) -> list[tuple[Alert, str]]:
        """(alert, sink name) pairs whose latest delivery status is not ``delivered``."""
        latest: dict[tuple[str, str], str] = {}
        for row in self.deliveries():
            latest[(row["alert_id"], row["sink"])] = row["status"]
        by_id = {a.alert_id: a for a in self.alerts()}
        return [
            (by_id[i], sink) for (i, sink), status in latest.items() if status != "delivered" and i in by_id
        ]


def _append_line(path: Path, record: Mapping[str, Any]) -> None:
    """Append one line with O_APPEND, checking that every byte was written.

    Each line goes in one ``write`` so concurrent writers never interleave; a short write (a full
    disk) is continued until the line is complete or the system says why it cannot be. A torn line
    left by an earlier failure is closed first, so the new line never joins it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(descriptor).st_size
        if size and os.pread(descriptor, 1, size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            written = os.write(descriptor, view)
            if written <= 0:
                raise OSError(f"{path}: could not append an alert line ({len(view)} bytes not written)")
            view = view[written:]
    finally:
        os.close(descriptor)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line; a torn line (a write cut short) is skipped with a warning."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    complete = lines[:-1]  # a last piece without newline is a write still in progress
    rows = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            _log.warning("%s: line %d is not JSON (%s): skipped as a torn write", path, number, error.msg)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            _log.warning("%s: line %d is not a JSON object: skipped", path, number)
    return rows


class AlertRouter:
    """Log every alert, then deliver it to each sink; sink failures are logged, never raised."""

    def __init__(self, log: JsonlAlertLog, sinks: Sequence[AlertSink] = ()) -> None:
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique, got {names}")
        self.log = log
        self.sinks = list(sinks)

    def send(self, alert: Alert) -> list[DeliveryOutcome]:
        """Log ``alert`` and deliver it to every sink; one outcome per sink."""
        self.log.append(alert)
        return [self._deliver(alert, sink) for sink in self.sinks]

    def retry_pending(self) -> list[tuple[Alert, DeliveryOutcome]]:
        """Re-send every logged alert not yet delivered to a configured sink."""
        sinks = {s.name: s for s in self.sinks}
        return [
            (alert, self._deliver(alert, sinks[name]))
            for alert, name in self.log.undelivered()
            if name in sinks
        ]

    def _deliver(self, alert: Alert, sink: AlertSink) -> DeliveryOutcome:
        self.log.record_delivery(alert.alert_id, DeliveryOutcome(sink.name, sink.target, "pending", 0))
        try:
            attempts = sink.deliver(alert)
            outcome = DeliveryOutcome(sink.name, sink.target, "delivered", attempts)
        except DeliveryError as error:
            outcome = DeliveryOutcome(sink.name, sink.target, "failed", error.attempts, str(error))
        self.log.record_delivery(alert.alert_id, outcome)
        return outcome


class AlertsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Alert log path and the NAMES of the environment variables holding the sinks' settings.

    The router is built at run time: the webhook URL comes from ``webhook_url_env``; e-mail is on
    when ``ASSIMILATE_SMTP_HOST`` is set and there are recipients (``email_to``).
    """

    log_path: str = "data/alerts.jsonl"
    webhook_url_env: str = "ASSIMILATE_WEBHOOK_URL"
    smtp_env_prefix: str = "ASSIMILATE_SMTP"
    smtp_use_starttls: bool = True
    email_to: list[str] = Field(default_factory=list)
    timeout_s: float = 10.0
    max_attempts: int = 3
    backoff_s: float = 1.0

    def router(self, study_alerts: AlertSettings | None = None) -> AlertRouter:
        """The router with the sinks whose settings are present in the environment now.

        With a study's ``alerts`` section, its webhook variable (None: no webhook), recipients and
        sender are used instead of the resource's; ``<prefix>_FROM`` still wins for the sender.
        """
        webhook_env = self.webhook_url_env if study_alerts is None else study_alerts.webhook_url_env
        recipients = list(self.email_to if study_alerts is None else study_alerts.email_to)
        sender = "assimilate@localhost" if study_alerts is None else study_alerts.email_from
        retry: dict[str, Any] = {
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_attempts,
            "backoff_s": self.backoff_s,
        }
        sinks: list[AlertSink] = []
        url = os.environ.get(webhook_env, "").strip() if webhook_env else ""
        if url:
            try:
                sinks.append(WebhookSink(url, **retry))
            except ValueError as error:
                raise ValueError(f"environment variable {webhook_env}: {error}") from None
        env = {key: os.environ.get(f"{self.smtp_env_prefix}_{key}", "").strip() for key in _SMTP_KEYS}
        if env["HOST"] and recipients:
            if env["PORT"] and not env["PORT"].isdigit():
                raise ValueError(f"{self.smtp_env_prefix}_PORT must be a port number, got {env['PORT']!r}")
            email = EmailSink(
                env["HOST"],
                int(env["PORT"] or 587),
                env["FROM"] or sender,
                recipients,
                username=env["USER"] or None,
                password=env["PASSWORD"] or None,
                use_starttls=self.smtp_use_starttls,
                **retry,
            )
            sinks.append(email)
        return AlertRouter(JsonlAlertLog(self.log_path), sinks)
