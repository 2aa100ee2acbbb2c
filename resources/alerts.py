"""The alerts resource: the log path, the delivery limits and where the sinks' settings are.

Alerts go first to an always-on JSON-lines log (``alert_log``), then to a Slack-compatible webhook
and e-mail (``alert_sinks``) through a router that delivers within a time budget and re-sends on a
schedule (``alert_router``). Secrets (the webhook URL, the SMTP password) come only from
environment variables read when a router is built, and never reach the logs: a sink is recorded by
its kind and host only. A malformed setting never raises: its sink is a ``MisconfiguredSink`` whose
deliveries fail with the reason, and ``AlertsResource.check_sink_settings`` reports it when the
code location loads. The names used by importers of this module are re-exported here.

Example
-------
>>> router = AlertsResource(log_path="data/alerts.jsonl").router()  # doctest: +SKIP
>>> router.send(Alert.create(study="ab_checkout", kind="onset", ...))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg
from pydantic import Field

from resources.alert_log import (
    Alert,
    AlertKind,
    DeliveryOutcome,
    DeliveryStatus,
    JsonlAlertLog,
    QueuedDelivery,
    Scalar,
    Scope,
    Severity,
    StateKey,
    state_key,
)
from resources.alert_router import AlertRouter, Budget, ResendSchedule
from resources.alert_sinks import (
    AlertSink,
    DeliveryError,
    EmailSink,
    MisconfiguredSink,
    RedirectRefused,
    WebhookSink,
    redact,
)
from resources.study import AlertSettings

__all__ = [
    "Alert", "AlertKind", "AlertRouter", "AlertSink", "AlertsResource", "Budget", "DeliveryError",
    "DeliveryOutcome", "DeliveryStatus", "EmailSink", "JsonlAlertLog", "MisconfiguredSink",
    "QueuedDelivery", "RedirectRefused", "ResendSchedule", "Scalar", "Scope", "Severity", "StateKey",
    "WebhookSink", "state_key",
]  # fmt: skip

_SMTP_KEYS = ("HOST", "PORT", "USER", "PASSWORD", "FROM")
_log = logging.getLogger("assimilate.alerts")


class AlertsResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Alert log path, delivery limits and the NAMES of the environment variables of the sinks.

    Routers are built at run time: the webhook URL comes from ``webhook_url_env``; e-mail is on
    when ``<smtp_env_prefix>_HOST`` is set and there are recipients (``email_to``). ``timeout_s``
    bounds each network read, ``deadline_s`` a whole delivery (all its tries), ``budget_s`` all the
    deliveries of one evaluation; ``resend_*`` is the ``ResendSchedule``.
    """

    log_path: str = "data/alerts.jsonl"
    webhook_url_env: str = "ASSIMILATE_WEBHOOK_URL"
    smtp_env_prefix: str = "ASSIMILATE_SMTP"
    smtp_use_starttls: bool = True
    email_to: list[str] = Field(default_factory=list)
    timeout_s: float = 10.0
    deadline_s: float = 15.0
    max_attempts: int = 3
    backoff_s: float = 1.0
    budget_s: float = 20.0
    resend_rounds: int = 8
    resend_backoff_s: float = 60.0
    resend_backoff_max_s: float = 3600.0

    def router(self, study_alerts: AlertSettings | None = None) -> AlertRouter:
        """The router with the sinks whose settings are present in the environment now.

        With a study's ``alerts`` section, its webhook variable (None: no webhook), recipients and
        sender are used instead of the resource's; ``<prefix>_FROM`` still wins for the sender.
        A malformed setting never raises: its sink is a ``MisconfiguredSink``.
        """
        return self._router(self._sinks(study_alerts), {})

    def routing(self, study_alerts: Mapping[str, AlertSettings]) -> AlertRouter:
        """One router for every study: each study in ``study_alerts`` uses its own routes."""
        return self._router(self._sinks(None), {k: self._sinks(v) for k, v in study_alerts.items()})

    def check_sink_settings(self, study_alerts: Mapping[str, AlertSettings] | None = None) -> list[str]:
        """Log (as errors) and return the malformed sink settings; the alert log works regardless."""
        problems = self.routing(study_alerts or {}).misconfigured()
        for problem in problems:
            _log.error("alert sink misconfigured (alerts are still logged to %s): %s", self.log_path, problem)
        return problems

    def _router(self, sinks: list[AlertSink], routes: dict[str, list[AlertSink]]) -> AlertRouter:
        schedule = ResendSchedule(self.resend_rounds, self.resend_backoff_s, self.resend_backoff_max_s)
        log = JsonlAlertLog(self.log_path)
        return AlertRouter(log, sinks, routes=routes, schedule=schedule, budget_s=self.budget_s)

    def _sinks(self, study_alerts: AlertSettings | None) -> list[AlertSink]:
        webhook_env = self.webhook_url_env if study_alerts is None else study_alerts.webhook_url_env
        recipients = list(self.email_to if study_alerts is None else study_alerts.email_to)
        sender = "assimilate@localhost" if study_alerts is None else study_alerts.email_from
        timing: dict[str, Any] = {
            "timeout_s": self.timeout_s,
            "deadline_s": self.deadline_s,
            "max_attempts": self.max_attempts,
            "backoff_s": self.backoff_s,
        }
        sinks: list[AlertSink] = []
        url = os.environ.get(webhook_env, "").strip() if webhook_env else ""
        if url:
            where = f"environment variable {webhook_env}"
            sinks.append(_built("webhook", where, [url], lambda: WebhookSink(url, **timing)))
        prefix = self.smtp_env_prefix
        env = {key: os.environ.get(f"{prefix}_{key}", "").strip() for key in _SMTP_KEYS}
        if env["HOST"] and recipients:

            def email() -> EmailSink:
                if env["PORT"] and not env["PORT"].isdigit():
                    raise ValueError(f"{prefix}_PORT must be a port number, got {env['PORT']!r}")
                return EmailSink(
                    env["HOST"],
                    int(env["PORT"] or 587),
                    env["FROM"] or sender,
                    recipients,
                    username=env["USER"] or None,
                    password=env["PASSWORD"] or None,
                    use_starttls=self.smtp_use_starttls,
                    **timing,
                )

            sinks.append(_built("email", f"environment variables {prefix}_*", [env["PASSWORD"]], email))
        return sinks


def _built(name: str, where: str, secrets: list[str], make: Callable[[], AlertSink]) -> AlertSink:
    try:
        return make()
    except ValueError as error:
        return MisconfiguredSink(name, redact(f"{where}: {error}", secrets))
