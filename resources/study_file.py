"""Reading a study file: YAML without surprises, and validation errors as one line per problem.

``safe_load`` is ``yaml.safe_load`` (no Python objects are built) that keeps dates as text, so a bad
date is reported under its key, and refuses a key given twice in a mapping (YAML keeps the last).
``validation_lines`` turns a pydantic ``ValidationError`` into ``key.path: rule (got value)`` lines,
with a suggestion for a misspelled key or option; a secret is never echoed back.

Example
-------
>>> safe_load("start_date: 2025-01-31")
{'start_date': '2025-01-31'}
>>> safe_load("a: 1\\na: 2")
Traceback (most recent call last):
resources.study_file.RepeatedKeyError: a: is given twice (lines 1 and 2); keep one
"""

from __future__ import annotations

import calendar
import difflib
import re
from collections.abc import Iterable
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

_SECRET_KEYS = {("alerts", "webhook_url_env")}  # a misplaced secret is never echoed back
_TAGS = {"randomized", "observational", "kalman", "particle"}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_BOUND_KEYS = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def validation_lines(error: ValidationError, *, model: type[BaseModel]) -> list[str]:
    """One ``key.path: rule (got value)`` line per pydantic error of ``model``, cross-field rules split per line."""
    lines: list[str] = []
    for item in error.errors():
        location = _location(item["loc"])
        kind = item["type"]
        message = str(item["msg"]).removeprefix("Value error, ").replace("Input should be", "must be")
        context = item.get("ctx") or {}
        hint = ""  # a suggestion after the value: "; did you mean 'covariates'?"
        if kind in _BOUNDS:
            message = f"must be {_BOUNDS[kind]} {context[_BOUND_KEYS[kind]]}"
        elif kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "unknown key"
            hint = _suggestion(
                str(item["loc"][-1]), _known_keys(model, tuple(item["loc"][:-1])), list_known=True
            )
        elif kind in ("literal_error", "union_tag_invalid"):
            expected = context.get("expected", context.get("expected_tags", ""))
            message = f"must be one of {expected}"
            if isinstance(item.get("input"), str):
                hint = _suggestion(item["input"], re.findall(r"'([^']*)'", str(expected)))
        elif kind.startswith("date_") and tuple(item["loc"]) not in _SECRET_KEYS:
            lines.append(f"{location}: {_date_problem(item.get('input'))}")
            continue
        elif kind == "string_type":
            message = "must be text (quote it in YAML)"
        elif kind == "union_tag_not_found":
            message = f"needs a '{context.get('discriminator', 'kind').strip(chr(39))}' key"
        prefix = f"{location}: " if location else ""
        if "\n" in message or (kind == "value_error" and isinstance(item.get("input"), dict)):
            # A cross-field rule: its lines already name their keys and values.
            lines.extend(f"{prefix}{line}" for line in message.splitlines())
        elif kind in ("missing", "extra_forbidden") or tuple(item["loc"]) in _SECRET_KEYS:
            lines.append(f"{prefix}{message}{hint}")
        else:
            lines.append(f"{prefix}{message} (got {_short(item.get('input'))}){hint}")
    return lines


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` through ``_StudyLoader`` (a SafeLoader: no Python objects are built)."""
    loader = _StudyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


class RepeatedKeyError(yaml.YAMLError):
    """A key given twice in one mapping: YAML would silently keep the last."""


class _StudyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` with two changes for study files.

    A date stays text, so that pydantic reads it and a bad one (``2026-09-31``) is reported under
    its key rather than raised by the YAML reader; a key given twice in a mapping is an error.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise RepeatedKeyError(f"{key}: is given twice (lines {seen[key]} and {line}); keep one")
            if isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _date_as_text(loader: _StudyLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_StudyLoader.add_constructor("tag:yaml.org,2002:timestamp", _date_as_text)
_DATE_PARTS = re.compile(r"\s*([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})\s*")


def _date_problem(value: Any) -> str:
    """Why a study file's date is not one, e.g. ``'2026-09-31' is not a valid date (September has 30 days)``."""
    shown = _short(value)
    parts = _DATE_PARTS.fullmatch(value) if isinstance(value, str) else None
    if parts is None:
        return f"{shown} is not a date: write it as YYYY-MM-DD, e.g. 2025-01-31"
    year, month, day = (int(p) for p in parts.groups())
    if not 1 <= month <= 12:
        return f"{shown} is not a valid date (there is no month {month}: months run 1 to 12)"
    days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= days:
        name = calendar.month_name[month] + (f" {year}" if month == 2 else "")
        return f"{shown} is not a valid date ({name} has {days} days)"
    return f"{shown} is not a date written YYYY-MM-DD: write {year:04d}-{month:02d}-{day:02d}"


def _suggestion(word: str, known: Iterable[str], *, list_known: bool = False) -> str:
    """``; did you mean 'covariates'?`` for the closest known word; else, with ``list_known``, the
    known words when there are few."""
    options = [k for k in known if k != word]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    if list_known and 0 < len(options) <= 12:
        return f"; the known keys here: {', '.join(options)}"
    return ""


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section of ``model`` at ``loc`` accepts (a discriminated section: its ``kind``'s keys)."""
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if isinstance(part, int):  # an item of a list section (guardrails[0]): its model's keys
            continue
        field = model.model_fields.get(str(part))
        candidates = _models_in(field.annotation) if field is not None else []
        if len(candidates) > 1 and parts:  # a union: pydantic puts the chosen kind in the path
            tag = parts.pop(0)
            candidates = [m for m in candidates if tag in _kinds(m)]
        if len(candidates) != 1:
            return []
        model = candidates[0]
    return list(model.model_fields)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _kinds(model: type[BaseModel]) -> tuple[Any, ...]:
    kind = model.model_fields.get("kind")
    return get_args(kind.annotation) if kind is not None else ()


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for index, part in enumerate(loc):
        if index == 1 and part in _TAGS and loc[0] in ("design", "backend"):
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part in ("[key]",) or str(part).startswith("function-"):
            continue
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
