"""A study's ``source:`` key: where its batches come from when not from files in its landing folder.

Unset, a study's batches are the files in its landing folder (``resources/landing.py``). Two other
sources (read by ``resources/batch_sources.py``; docs/DEPLOY.md, "Batch sources")::

    source: {kind: parquet_dataset, path: "events/day={batch}/*.parquet"}
    source: {kind: sql, query: "SELECT * FROM events WHERE day = $batch", database: warehouse}
    source: {kind: sql, query: "...", database: {url_env: EVENTS_DB_URL}}

``{batch}`` and ``$batch`` stand for the partition key (``2025-01-01``). A relative ``path`` is under
the landing root. In a query, ``$batch`` is a bound parameter, never pasted into the text.

Example
-------
>>> ParquetDatasetSource(kind="parquet_dataset", path="events/day={batch}/*.parquet").path
'events/day={batch}/*.parquet'
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from assimilate.design.sections import _matching, _Section

BATCH_PLACEHOLDER = "{batch}"
# $batch, not the start of a longer name ($batch_day is no placeholder: an error at load).
SQL_PARAMETER = re.compile(r"\$batch(?![A-Za-z0-9_])")
_OTHER_DOLLAR_NAME = re.compile(r"\$(?!batch(?![A-Za-z0-9_]))[A-Za-z_][A-Za-z0-9_]*")
ENV_VAR_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"


def _dataset_path(value: str) -> str:
    if value.count(BATCH_PLACEHOLDER) != 1:
        raise ValueError(
            f"must hold the placeholder {BATCH_PLACEHOLDER} exactly once (got {value.count(BATCH_PLACEHOLDER)}), "
            'e.g. "events/day={batch}/*.parquet"'
        )
    if "{" in value.replace(BATCH_PLACEHOLDER, "") or "}" in value.replace(BATCH_PLACEHOLDER, ""):
        raise ValueError(f"has a brace that is not the placeholder {BATCH_PLACEHOLDER}")
    if "\\" in value:
        raise ValueError("must use / between folders (no backslash)")
    parts = PurePosixPath(value).parts
    if not value.startswith("/") and (value.startswith("~") or ".." in parts):
        raise ValueError("a relative path must stay under the landing root (no '..', no '~')")
    if ".." in parts:
        raise ValueError("must not contain '..'")
    return value


def _sql_query(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a SELECT query")
    if SQL_PARAMETER.search(value) is None:
        raise ValueError("must use the parameter $batch (the partition key, bound by the database)")
    other = _OTHER_DOLLAR_NAME.search(value)
    if other is not None:
        raise ValueError(f"only the parameter $batch is bound; {other.group(0)!r} is not")
    if "?" in value:
        raise ValueError("must not hold '?' (the placeholder $batch is bound as '?')")
    if ";" in value.strip().rstrip(";"):
        raise ValueError("must be one statement (no ';' inside)")
    return value.strip().rstrip(";").strip()


def _database(value: Any) -> Any:
    """``warehouse`` or ``{url_env: NAME}``, checked here so an error is one line naming the key."""
    if value == "warehouse" or isinstance(value, DatabaseUrl):
        return value
    name = value.get("url_env") if isinstance(value, dict) and set(value) == {"url_env"} else None
    if not isinstance(name, str) or re.fullmatch(ENV_VAR_PATTERN, name) is None:
        raise ValueError(
            'must be "warehouse" or {url_env: NAME}, NAME an environment variable (matching '
            f"^{ENV_VAR_PATTERN}$) that holds duckdb:///file or postgresql://..."
        )
    return value


class ParquetDatasetSource(_Section):
    """A partitioned Parquet dataset: every file matching ``path`` for a partition is its batch."""

    kind: Literal["parquet_dataset"]
    path: Annotated[str, AfterValidator(_dataset_path)]


class DatabaseUrl(_Section):
    """Another database, its URL (``duckdb:///file`` or ``postgresql://...``) in an environment variable."""

    url_env: Annotated[str, _matching(ENV_VAR_PATTERN, "the NAME of an environment variable holding the URL")]


class SqlSource(_Section):
    """A query run per partition with ``$batch`` bound to the partition key."""

    kind: Literal["sql"]
    query: Annotated[str, AfterValidator(_sql_query)]
    database: Annotated[Literal["warehouse"] | DatabaseUrl, BeforeValidator(_database)] = "warehouse"


BatchSource = Annotated[ParquetDatasetSource | SqlSource, Field(discriminator="kind")]
