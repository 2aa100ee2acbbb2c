"""The audit trail of language-model drafting: one record per call, in a JSON-lines file and the warehouse.

Every call is recorded whatever its outcome (``valid``, ``invalid_json``, ``schema_violation``,
``timeout``, ``http_error``): the kind, the study, the prompt messages, the raw reply, the error,
the draft file (if one was written), the model and the endpoint. The endpoint is stored without
user, password, query or fragment, and any text that contains the API key has it replaced by
``[redacted]`` before it is written anywhere.

Files: ``<audit_root>/<study>/drafting.jsonl`` (appended); warehouse table ``<study>.drafting_log``
with one partition per call (``partition_key`` = the draft id), so a record is never duplicated.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from resources.duckdb_tables import quote_identifier
from resources.warehouse import Warehouse

DraftOutcome = Literal["valid", "invalid_json", "schema_violation", "timeout", "http_error"]
LOG_TABLE = "drafting_log"
LOG_FILE = "drafting.jsonl"
REDACTED = "[redacted]"


def strip_credentials(url: str) -> str:
    """``url`` without user, password, query or fragment: what may be logged about an endpoint."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redact(text: str | None, secret: str | None) -> str | None:
    """``text`` with every occurrence of ``secret`` replaced (an endpoint may echo what it was sent)."""
    if text is None or not secret:
        return text
    return text.replace(secret, REDACTED)


@dataclass(frozen=True)
class DraftingRecord:
    """One drafting call as it is audited (``messages`` are the chat messages sent)."""

    draft_id: str
    recorded_at: str
    study: str
    kind: str
    model: str
    base_url: str
    timeout_s: float
    messages: list[dict[str, str]]
    outcome: DraftOutcome
    raw_response: str | None
    error: str | None
    draft_path: str | None

    def redacted(self, secret: str | None) -> DraftingRecord:
        """The record with ``secret`` removed from every text and the endpoint's credentials stripped."""
        return DraftingRecord(
            draft_id=self.draft_id,
            recorded_at=self.recorded_at,
            study=self.study,
            kind=self.kind,
            model=self.model,
            base_url=str(redact(strip_credentials(self.base_url), secret)),
            timeout_s=self.timeout_s,
            messages=[{k: str(redact(v, secret)) for k, v in m.items()} for m in self.messages],
            outcome=self.outcome,
            raw_response=redact(self.raw_response, secret),
            error=redact(self.error, secret),
            draft_path=self.draft_path,
        )


class DraftingLog:
    """Appends drafting records to ``<audit_root>/<study>/drafting.jsonl`` and the warehouse."""

    def __init__(self, audit_root: str | Path, warehouse: Warehouse) -> None:
        self.audit_root = Path(audit_root)
        self.warehouse = warehouse

    def path(self, study: str) -> Path:
        """The JSON-lines file of ``study``."""
        quote_identifier(study, what="study")
        return self.audit_root / study / LOG_FILE

    def record(self, record: DraftingRecord, *, secret: str | None = None) -> DraftingRecord:
        """Write ``record`` (redacted of ``secret``) to both places; returns what was written."""
        clean = record.redacted(secret)
        target = self.path(clean.study)
        target.parent.mkdir(parents=True, exist_ok=True)
        # The file first: it needs no lock, so a busy warehouse never loses the record.
        with target.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(clean), sort_keys=True, ensure_ascii=False) + "\n")
        row = {k: v for k, v in asdict(clean).items() if k != "messages"}
        row["messages_json"] = json.dumps(clean.messages, ensure_ascii=False)
        frame = pd.DataFrame([row]).astype(
            {"raw_response": "object", "error": "object", "draft_path": "object"}
        )
        self.warehouse.replace_partition(clean.study, LOG_TABLE, clean.draft_id, frame)
        return clean
