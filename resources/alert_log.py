"""The alert log: alerts and their delivery statuses as append-only JSON lines, always written first.

``alerts.jsonl`` holds one JSON object per alert; ``alerts.deliveries.jsonl`` (beside it) one line per
delivery status change of an (alert, sink) pair: ``pending`` (queued) -> ``delivered``, or
``failed`` (with the time of the next attempt) ... -> ``gave_up``. A torn line (a write cut short by
a full disk) is skipped when read and closed before the next append, so it never stops alerting.

An alert's ``scope`` says what its onset/recovery state belongs to: ``"batch"`` (every per-batch
check of one partition, together) or ``"study"`` (one check of an unpartitioned asset, such as the
posterior, whatever run evaluated it; ``partition_key`` then only names that run's batch).
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import numbers
import os
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from assimilate._validation import check_choice

AlertKind = Literal["onset", "recovery", "run_failure"]
Severity = Literal["INFO", "WARN", "ERROR"]
DeliveryStatus = Literal["pending", "delivered", "failed", "gave_up"]
Scope = Literal["batch", "study"]
Scalar = float | int | str | None
StateKey = tuple[str, ...]
_KINDS: tuple[AlertKind, ...] = ("onset", "recovery", "run_failure")
_SEVERITIES: tuple[Severity, ...] = ("INFO", "WARN", "ERROR")
_SCOPES: tuple[Scope, ...] = ("batch", "study")
_log = logging.getLogger("assimilate.alerts")


def iso_time(epoch_s: float | None = None) -> str:
    """UTC ISO 8601 to the second: now, or at ``epoch_s``."""
    moment = datetime.now(UTC) if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)
    return moment.isoformat(timespec="seconds")


def _epoch(text: object) -> float:
    """Seconds since the epoch of an ISO time; a missing or unreadable one is due now (0)."""
    try:
        return datetime.fromisoformat(str(text)).timestamp() if text else 0.0
    except ValueError:
        return 0.0


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
            created_at=iso_time(),
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
    """What happened to one alert at one sink; ``target`` is the sink's host, never a secret.

    ``attempts`` counts the tries within this delivery; ``next_attempt_at`` (UTC, ISO 8601) is set
    on a ``failed`` delivery that will be tried again.
    """

    sink: str
    target: str
    status: DeliveryStatus
    attempts: int
    error: str = ""
    next_attempt_at: str = ""


@dataclass(frozen=True)
class QueuedDelivery:
    """An (alert, sink) pair not yet delivered nor given up: ``failures`` rounds failed so far."""

    alert: Alert
    sink: str
    failures: int
    due_at: float  # seconds since the epoch; 0 when never tried


class JsonlAlertLog:
    """Append-only JSONL files: alerts in ``path``, delivery statuses in ``<stem>.deliveries.jsonl``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.deliveries_path = self.path.with_name(f"{self.path.stem}.deliveries.jsonl")

    def append(self, alert: Alert) -> None:
        """Append one alert line."""
        _append_line(self.path, alert.to_dict())

    def record_delivery(self, alert_id: str, outcome: DeliveryOutcome, *, at: str | None = None) -> None:
        """Append one delivery status line."""
        _append_line(self.deliveries_path, {"alert_id": alert_id, "at": at or iso_time(), **asdict(outcome)})

    def alerts(self) -> list[Alert]:
        """Every logged alert, oldest first (a line that is not an alert is skipped with a warning)."""
        alerts = []
        for row in _read_lines(self.path):
            try:
                alerts.append(Alert.from_dict(row))
            except TypeError:
                _log.warning("%s: a line without the fields of an alert was skipped", self.path)
        return alerts

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery status line, oldest first."""
        return _read_lines(self.deliveries_path)

    def last_kinds(self, kinds: Sequence[str] = ("onset", "recovery")) -> dict[StateKey, str]:
        """``Alert.state_key`` -> kind of the last alert of those ``kinds`` (check alerts by default)."""
        return {a.state_key: a.kind for a in self.alerts() if a.kind in kinds}

    def queued(self) -> list[QueuedDelivery]:
        """Every (alert, sink) whose latest status is ``pending`` or ``failed``, oldest alert first."""
        latest: dict[tuple[str, str], tuple[str, float]] = {}
        failures: Counter[tuple[str, str]] = Counter()
        for row in self.deliveries():
            pair = (str(row.get("alert_id")), str(row.get("sink")))
            status = row.get("status")
            failures[pair] += status == "failed"
            latest[pair] = (str(status), _epoch(row.get("next_attempt_at")))
        order = {a.alert_id: (index, a) for index, a in enumerate(self.alerts())}
        queue = [
            QueuedDelivery(order[alert_id][1], sink, failures[(alert_id, sink)], due_at)
            for (alert_id, sink), (status, due_at) in latest.items()
            if status in ("pending", "failed") and alert_id in order  # a torn alert line cannot be re-sent
        ]
        return sorted(queue, key=lambda q: order[q.alert.alert_id][0])

    def undelivered(self) -> list[tuple[Alert, str]]:
        """(alert, sink name) pairs still to deliver (neither delivered nor given up)."""
        return [(q.alert, q.sink) for q in self.queued()]

    @contextmanager
    def delivering(self) -> Iterator[bool]:
        """Hold the delivery lock; yields False when another evaluation holds it (then deliver nothing).

        An advisory ``flock`` on the deliveries file: two sensors (or processes) never send the same
        queued alert twice. Appending lines does not take it.
        """
        self.deliveries_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.deliveries_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(descriptor)  # releases the lock


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
