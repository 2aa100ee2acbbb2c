"""Where alerts are delivered: a Slack-compatible webhook and e-mail, each within an overall deadline.

A delivery makes up to ``max_attempts`` tries (transient errors only, doubling ``backoff_s``), all
within ``deadline_s`` (or less, when the caller's budget is smaller), whatever the server does.
It returns the number of tries or raises ``DeliveryError`` whose message holds no secret. A sink
whose setting is malformed is a ``MisconfiguredSink``: every delivery fails with the reason.
"""

from __future__ import annotations

import http.client
import json
import math
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlsplit

from resources.alert_log import Alert
from resources.alert_network import SocketWatch, deadline, no_redirect_opener, tls_context

_TITLES = {"onset": "Check failing", "recovery": "Check recovered", "run_failure": "Run failed"}
_ERRORS = (OSError, ValueError, http.client.HTTPException, smtplib.SMTPException)


class DeliveryError(Exception):
    """A sink gave up on an alert (after its retries); the message holds no secret."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class RedirectRefused(http.client.HTTPException):
    """A webhook answered 3xx: the alert was not delivered (the Location may hold a token: not shown)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(
            f"HTTP {status} {reason}: a redirect, not followed; the alert was not delivered "
            "(set the webhook URL to the final address)"
        )


class AlertSink(Protocol):
    """Something an alert can be delivered to."""

    name: str
    target: str

    def deliver(self, alert: Alert, *, within_s: float | None = None) -> int:
        """Deliver within ``within_s`` (and the sink's deadline) or raise ``DeliveryError``; returns tries."""
        ...


@dataclass
class MisconfiguredSink:
    """A sink whose setting is malformed: each delivery fails (no network) with ``reason``."""

    name: str
    reason: str
    target: str = "-"

    def deliver(self, alert: Alert, *, within_s: float | None = None) -> int:
        raise DeliveryError(f"misconfigured: {self.reason}", 0)


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _retrying(
    send: Callable[[float], None],
    transient: Callable[[Exception], bool],
    *,
    max_attempts: int,
    backoff_s: float,
    deadline_s: float,
    secrets: Sequence[str],
) -> int:
    """Call ``send(seconds_left)`` until it succeeds; transient errors are retried while time is left."""
    end = time.monotonic() + deadline_s
    for attempt in range(1, max_attempts + 1):
        try:
            send(end - time.monotonic())
            return attempt
        except _ERRORS as error:
            text = redact(f"{type(error).__name__}: {error}", secrets)
            wait = backoff_s * 2 ** (attempt - 1)
            if attempt == max_attempts or not transient(error) or time.monotonic() + wait >= end:
                raise DeliveryError(text, attempt) from None
            time.sleep(wait)
    raise AssertionError("unreachable")


def _check_timing(timeout_s: float, deadline_s: float, max_attempts: int, backoff_s: float) -> None:
    if max_attempts < 1 or timeout_s <= 0 or deadline_s <= 0 or backoff_s < 0:
        raise ValueError("max_attempts must be >= 1, timeout_s and deadline_s > 0 and backoff_s >= 0")


class WebhookSink:
    """HTTP POST of a Slack-compatible JSON payload (``text``, ``blocks``) plus an ``alert`` object.

    Redirects are not followed: a 3xx is a failed delivery naming the status.
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        deadline_s: float = 15.0,
        max_attempts: int = 3,
        backoff_s: float = 1.0,
    ) -> None:
        parts = urlsplit(url)
        if not (url.isascii() and url.isprintable()) or " " in url:
            raise ValueError(
                "webhook url must be printable ASCII without spaces (the URL itself is not shown)"
            )
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number in 0..65535
        except ValueError:
            raise ValueError("webhook url has an invalid port (the URL itself is not shown)") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("webhook url must be an http(s) URL with a host (the URL itself is not shown)")
        _check_timing(timeout_s, deadline_s, max_attempts, backoff_s)
        self._url = url
        self.target = parts.hostname
        self.timeout_s, self.deadline_s = timeout_s, deadline_s
        self.max_attempts, self.backoff_s = max_attempts, backoff_s

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

    def deliver(self, alert: Alert, *, within_s: float | None = None) -> int:
        """POST the payload; retries connection errors, timeouts, HTTP 429 and 5xx."""
        body = json.dumps(self.payload(alert)).encode("utf-8")

        def send(seconds_left: float) -> None:
            watch = SocketWatch()
            request = urllib.request.Request(
                self._url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            # The scheme is http(s): checked in __init__ (urlopen would also open file:// URLs).
            with deadline(seconds_left, watch):
                try:
                    opened = no_redirect_opener(watch).open(
                        request, timeout=min(self.timeout_s, seconds_left)
                    )
                except urllib.error.HTTPError as error:
                    error.close()
                    if 300 <= error.code < 400:
                        raise RedirectRefused(error.code, error.reason) from None
                    raise
                with opened as response:
                    response.read()

        def transient(error: Exception) -> bool:
            if isinstance(error, RedirectRefused):
                return False
            if isinstance(error, urllib.error.HTTPError):
                return error.code == 429 or error.code >= 500
            return isinstance(error, OSError | http.client.HTTPException)

        parts = urlsplit(self._url)
        secrets = [self._url, parts.path if len(parts.path) > 1 else "", parts.query, parts.password or ""]
        return _retrying(
            send,
            transient,
            max_attempts=self.max_attempts,
            backoff_s=self.backoff_s,
            deadline_s=min(self.deadline_s, math.inf if within_s is None else within_s),
            secrets=secrets,
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
        deadline_s: float = 15.0,
        max_attempts: int = 3,
        backoff_s: float = 1.0,
    ) -> None:
        if not host or not recipients or not 0 < port < 65536:
            raise ValueError("email needs a host, a port in 1..65535 and at least one recipient")
        if not (host.isascii() and host.isprintable()) or " " in host:
            raise ValueError(f"email host must be printable ASCII without spaces, got {host!r}")
        _check_timing(timeout_s, deadline_s, max_attempts, backoff_s)
        self.target = host
        self.host, self.port, self.sender, self.recipients = host, port, sender, list(recipients)
        self._username, self._password, self.use_starttls = username, password, use_starttls
        self.timeout_s, self.deadline_s = timeout_s, deadline_s
        self.max_attempts, self.backoff_s = max_attempts, backoff_s

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

    def deliver(self, alert: Alert, *, within_s: float | None = None) -> int:
        """Send the e-mail; retries connection errors and temporary (4xx) SMTP replies."""
        email = self.message(alert)

        def send(seconds_left: float) -> None:
            watch = SocketWatch()
            smtp = watch.add(smtplib.SMTP(timeout=min(self.timeout_s, seconds_left)))
            with deadline(seconds_left, watch):
                try:
                    smtp.connect(self.host, self.port)
                    if self.use_starttls:
                        smtp.starttls(context=tls_context(watch))
                    if self._username:
                        smtp.login(self._username, self._password or "")
                    smtp.send_message(email)
                    smtp.quit()
                finally:
                    smtp.close()

        def transient(error: Exception) -> bool:
            if isinstance(error, smtplib.SMTPResponseException):
                return 400 <= error.smtp_code < 500
            if isinstance(error, smtplib.SMTPException):  # an OSError too: decide before the check below
                return isinstance(error, smtplib.SMTPServerDisconnected)
            return isinstance(error, OSError)

        return _retrying(
            send,
            transient,
            max_attempts=self.max_attempts,
            backoff_s=self.backoff_s,
            deadline_s=min(self.deadline_s, math.inf if within_s is None else within_s),
            secrets=[self._password or ""],
        )
