"""Draft an estimand card, a causal graph or a memo with a language model: optional, never trusted.

Any OpenAI-compatible chat endpoint works: ``POST {base_url}/chat/completions`` with the model,
the messages, ``temperature: 0`` and JSON mode. The answer is validated against the schemas a
study file uses (``EstimandCard``, ``CausalGraphSpec`` plus the study's treatment and outcome, or
``{"markdown": ...}`` for a memo); only a valid answer is written, as a draft file that the
pipeline never reads -- it counts only once an analyst copies it into the study YAML. Every call
is audited (see :mod:`resources.drafting_log`).

Configuration comes from arguments or the environment (``ASSIMILATE_LLM_BASE_URL``,
``ASSIMILATE_LLM_MODEL``, ``ASSIMILATE_LLM_TIMEOUT_S``); the API key is read at call time from the
environment variable whose name is configured (default ``ASSIMILATE_LLM_API_KEY``) and is sent as a
Bearer header only when set. Without a model configured nothing here is needed.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from resources.drafting_log import DraftingLog, DraftingRecord, redact, strip_credentials
from resources.drafting_schema import (
    DRAFT_KINDS,
    DraftError,
    DraftKind,
    build_messages,
    render_draft,
    validate_draft,
)
from resources.study import ENV_VAR_PATTERN, StudyConfig

BASE_URL_ENV = "ASSIMILATE_LLM_BASE_URL"
MODEL_ENV = "ASSIMILATE_LLM_MODEL"
TIMEOUT_ENV = "ASSIMILATE_LLM_TIMEOUT_S"
DEFAULT_API_KEY_ENV = "ASSIMILATE_LLM_API_KEY"
MAX_REPLY_BYTES = 2_000_000


class LlmNotConfiguredError(ValueError):
    """No (or only part of a) language model endpoint is configured."""


@dataclass(frozen=True)
class LlmSettings:
    """Where the model is, which one, the NAME of the API-key variable and the request timeout."""

    base_url: str
    model: str
    api_key_env: str = DEFAULT_API_KEY_ENV
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base URL must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError(f"base URL must not hold credentials: put the API key in ${self.api_key_env}")
        if re.fullmatch(r"\S{1,200}", self.model) is None:
            raise ValueError("model must be a name without spaces (1 to 200 characters)")
        if re.fullmatch(ENV_VAR_PATTERN, self.api_key_env) is None:
            raise ValueError(f"api_key_env must be an environment variable NAME matching ^{ENV_VAR_PATTERN}$")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {self.timeout_s!r}")

    @classmethod
    def resolve(
        cls,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key_env: str = DEFAULT_API_KEY_ENV,
        timeout_s: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> LlmSettings:
        """Arguments first, then the environment; ``LlmNotConfiguredError`` if base URL or model is missing."""
        env = os.environ if environ is None else environ
        url = (base_url or env.get(BASE_URL_ENV, "")).strip()
        name = (model or env.get(MODEL_ENV, "")).strip()
        missing = [var for var, value in ((BASE_URL_ENV, url), (MODEL_ENV, name)) if not value]
        if missing:
            raise LlmNotConfiguredError(
                f"no language model configured: set {' and '.join(missing)} (or pass --base-url/--model). "
                "Drafting is optional; the pipeline works without it."
            )
        if timeout_s is None:
            text = env.get(TIMEOUT_ENV, "").strip()
            try:
                timeout_s = float(text) if text else 60.0
            except ValueError:
                raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds, got {text!r}") from None
        return cls(base_url=url, model=name, api_key_env=api_key_env, timeout_s=timeout_s)


def request_completion(settings: LlmSettings, messages: list[dict[str, str]], api_key: str | None) -> str:
    """The raw body of one chat-completion reply; ``DraftError`` (timeout / http_error) otherwise."""
    body = {
        "model": settings.model,
        "messages": messages,
        "temperature": 0,
        "response_format": {"type": "json_object"},
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    parts = urlsplit(settings.base_url)
    url = parts._replace(path=parts.path.rstrip("/") + "/chat/completions").geturl()
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    where = strip_credentials(url)
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
            raw = response.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as error:
        try:
            text: str | None = error.read(MAX_REPLY_BYTES).decode("utf-8", "replace")
        except OSError:  # the status is what matters; a body that stalls is not waited for again
            text = None
        message = f"{where} answered HTTP {error.code} {error.reason}"
        raise DraftError("http_error", message, raw_response=text) from None
    except TimeoutError:
        raise DraftError("timeout", f"{where} gave no answer within {settings.timeout_s:g} s") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise DraftError("timeout", f"{where} gave no answer within {settings.timeout_s:g} s") from None
        raise DraftError("http_error", f"{where} cannot be reached: {error.reason}") from None
    except (OSError, http.client.HTTPException) as error:
        raise DraftError("http_error", f"{where} broke the connection: {error!r}") from None
    text = raw[:MAX_REPLY_BYTES].decode("utf-8", "replace")
    if len(raw) > MAX_REPLY_BYTES:
        raise DraftError(
            "http_error", f"{where} answered more than {MAX_REPLY_BYTES} bytes", raw_response=text
        )
    return text


def draft(
    kind: DraftKind,
    *,
    study: StudyConfig,
    brief: str,
    settings: LlmSettings,
    drafts_dir: Path,
    log: DraftingLog,
    out: Path | None = None,
) -> Path:
    """Ask the model, validate, write the draft file, audit the call; the draft's path or ``DraftError``.

    The file goes to ``out`` (never overwritten) or ``drafts_dir/<study>/<kind>-<UTC time>.yaml``
    (``.md`` for a memo).
    """
    if kind not in DRAFT_KINDS:
        raise ValueError(f"kind must be one of {DRAFT_KINDS}, got {kind!r}")
    if not brief.strip():
        raise ValueError("brief must not be empty")
    now = datetime.now(UTC)
    messages = build_messages(kind, study, brief)
    api_key = os.environ.get(settings.api_key_env, "").strip() or None
    record = partial(
        DraftingRecord,
        draft_id=uuid.uuid4().hex,
        recorded_at=now.isoformat(timespec="seconds"),
        study=study.name,
        kind=kind,
        model=settings.model,
        base_url=settings.base_url,
        timeout_s=settings.timeout_s,
        messages=messages,
    )
    reply: str | None = None
    try:
        reply = request_completion(settings, messages, api_key)
        document = validate_draft(kind, reply, study)
    except DraftError as error:
        message = f"{kind} draft for study {study.name}: {redact(str(error), api_key)}"
        raw = reply if reply is not None else error.raw_response
        log.record(
            record(outcome=error.outcome, raw_response=raw, error=message, draft_path=None), secret=api_key
        )
        raise DraftError(error.outcome, message, raw_response=redact(raw, api_key)) from None
    suffix = ".md" if kind == "memo" else ".yaml"
    path = out or drafts_dir / study.name / f"{kind}-{now:%Y%m%dT%H%M%SZ}{suffix}"
    try:
        written = _write_draft(
            path, render_draft(kind, document, study.name, settings.model, now), numbered=out is None
        )
    except OSError as error:
        failed = f"{kind} draft for study {study.name}: valid, but not written: {error}"
        log.record(record(outcome="valid", raw_response=reply, error=failed, draft_path=None), secret=api_key)
        raise
    log.record(
        record(outcome="valid", raw_response=reply, error=None, draft_path=str(written)), secret=api_key
    )
    return written


def _write_draft(path: Path, text: str, *, numbered: bool) -> Path:
    """Create ``path`` (or ``<stem>-2``, ``-3``, ... when ``numbered``); an existing file is never replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000 if numbered else 2):
        target = path if attempt == 1 else path.with_stem(f"{path.stem}-{attempt}")
        try:
            with target.open("x", encoding="utf-8") as handle:
                handle.write(text)
        except FileExistsError:
            continue
        return target
    raise FileExistsError(f"{path} already exists: a draft never overwrites a file")
