"""A pandas frame on its way into DuckDB and back: its names checked, registered for SQL, its types.

``resources/duckdb_tables.py`` writes what is registered here. Every identifier is checked against
``^[A-Za-z_][A-Za-z0-9_]{0,62}$`` before it is double-quoted; a large frame with text columns is
handed over as an Arrow table when Arrow reads each column as DuckDB reads it from pandas, and a
partition's rows come back through Arrow when their types convert as DuckDB's ``df()`` converts them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]

from resources.arrow_memory import ArrowParts

IDENTIFIER_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
PARTITION_COLUMN = "partition_key"
# The column of a frame that carries several partitions (resources/partition_writes.py): each row's key.
PARTITION_ROWS = "assimilate_partition_of_row"
INCOMING = "__assimilate_incoming"
# From this many rows a frame with text columns is handed to DuckDB as an Arrow table. Measured on
# a frame of 8 numeric and 2 text columns: 30% less time at 1e6 rows (0.68 s against 0.97 s), 20%
# at 4e5, even at 3e5, and 5% to 15% more below (the conversion and a second binding cost more
# than DuckDB's reading of the text from pandas saves).
ARROW_ROWS = 300_000
INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
}
FLOAT_TYPES = {"FLOAT", "DOUBLE"}
TEMPORAL_TYPE = re.compile(r"TIMESTAMP(_S|_MS|_NS| WITH TIME ZONE)?")
STORABLE_TYPE = re.compile(
    r"BOOLEAN|VARCHAR|DATE|TIME|INTERVAL|BLOB|UUID|DECIMAL\(\d+,\d+\)|"
    + "|".join(INTEGER_TYPES | FLOAT_TYPES)
)


def quote_identifier(name: object, *, what: str = "identifier") -> str:
    """``name`` double-quoted for SQL, after checking it against the safe identifier pattern."""
    if not isinstance(name, str) or re.fullmatch(IDENTIFIER_PATTERN, name) is None:
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise ValueError(f"{what} {shown} is not allowed: must match ^{IDENTIFIER_PATTERN}$")
    return f'"{name}"'


def column_list(columns: Iterable[str]) -> str:
    """``columns`` checked and double-quoted, comma-separated: a SELECT's list."""
    return ", ".join(quote_identifier(c, what="column") for c in columns)


def partitions_filter(statement: str, partition_keys: Sequence[str]) -> tuple[str, list[Any]]:
    """``statement`` restricted to the rows of ``partition_keys``, with its bound values (either backend)."""
    if len(partition_keys) == 1:
        return f"{statement} WHERE {PARTITION_COLUMN} = ?", [partition_keys[0]]
    return f"{statement} WHERE {PARTITION_COLUMN} = ANY(?)", [list(partition_keys)]


def checked_frame(schema: str, table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame to store, after checking the table and column names (categoricals become text)."""
    where = f"{schema}.{table}"
    quote_identifier(table, what="table")
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{where}: frame must be a pandas DataFrame, got {type(frame).__name__}")
    if isinstance(frame.columns, pd.MultiIndex):
        raise ValueError(f"{where}: frame columns must be flat names, not a MultiIndex")
    seen: dict[str, object] = {}
    for column in frame.columns:
        quote_identifier(column, what=f"{where}: column")
        if str(column).lower() in seen:
            raise ValueError(
                f"{where}: columns {seen[str(column).lower()]!r} and {column!r} differ only in case"
            )
        seen[str(column).lower()] = column
    if len(frame) and not len(frame.columns):
        raise ValueError(f"{where}: a frame with {len(frame)} rows has no columns")
    for reserved in (PARTITION_COLUMN, PARTITION_ROWS):
        if reserved in seen:
            raise ValueError(f"{where}: column {reserved!r} is reserved for the partition key")
    categories = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    if categories:
        frame = frame.astype(dict.fromkeys(categories, "string"))
    if frame.index.equals(pd.RangeIndex(len(frame))):
        return frame  # no copy of a million rows to renumber them as they are numbered
    return frame.reset_index(drop=True)  # and contiguous again: DuckDB cannot scan a reversed column


def register_frame(connection: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> dict[str, str]:
    """Register the frame for SQL and return its column types (an all-NULL column is VARCHAR).

    A frame of ``ARROW_ROWS`` rows or more with text columns is registered as an Arrow table when
    Arrow reads every column as DuckDB reads it from pandas (the same types), else as it is. It
    stays registered until the next frame replaces it or the block's cursor closes (unregistering
    costs ~0.2 ms a table); the types are the bound view's, as DESCRIBE names them, without a query.
    """
    if not len(frame.columns):
        return {}
    types = _registered_types(connection, frame)
    if len(frame) >= ARROW_ROWS and any(dtype == np.dtype(object) for dtype in frame.dtypes):
        as_arrow = _arrow_table(frame)
        if as_arrow is not None and _registered_types(connection, as_arrow) != types:
            _registered_types(connection, frame)  # arrow read a column otherwise: keep pandas' reading
    for column, kind in types.items():
        if (
            kind != '"NULL"'
            and STORABLE_TYPE.fullmatch(kind) is None
            and TEMPORAL_TYPE.fullmatch(kind) is None
        ):
            raise ValueError(
                f"column {column!r}: values of type {kind} cannot be stored; store them as text (JSON)"
            )
    return {column: "VARCHAR" if kind == '"NULL"' else kind for column, kind in types.items()}


def _registered_types(
    connection: duckdb.DuckDBPyConnection, frame: pd.DataFrame | pa.Table
) -> dict[str, str]:
    connection.register(INCOMING, frame)
    view = connection.view(INCOMING)
    return {str(name): str(kind) for name, kind in zip(view.columns, view.types, strict=True)}


def _arrow_table(frame: pd.DataFrame) -> pa.Table | None:
    """The frame as an Arrow table, or None when Arrow cannot convert one of its columns."""
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


# The types whose column a frame from Arrow gives as DuckDB's df() does (a test holds them equal):
# not HUGEINT or DECIMAL (Python decimals from Arrow), DATE (dates), nor zoned timestamps.
ARROW_READ_TYPES = (INTEGER_TYPES - {"HUGEINT"}) | FLOAT_TYPES | {"BOOLEAN", "VARCHAR", "TIMESTAMP"}
_NULLABLE = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def frame_from_arrow(table: pa.Table, *, arrow_text: Collection[str] = ()) -> pd.DataFrame:
    """``table`` as the frame DuckDB's ``df()`` gives, built without holding the rows twice
    (the text columns of ``arrow_text`` as ``ARROW_TEXT``: resources/arrow_memory.py).

    pandas copies the column arrays ``df()`` hands it into blocks, so a read holds much of its rows
    twice at its peak (0.93 GiB for a 2e6-row frame of 0.57); here each column becomes its own block and Arrow frees its buffers as they are
    converted (``split_blocks``, ``self_destruct``). Integer and boolean columns with a NULL become
    pandas' nullable types, as in ``df()``; without one they stay numpy's.
    """
    nullable = [column for column in table.column_names if _needs_nullable(table.column(column))]
    converted = {name: table.column(name).to_pandas(types_mapper=_NULLABLE.get) for name in nullable}
    frame = ArrowParts.of(table, arrow_text=arrow_text).to_pandas()  # ids apart: resources/arrow_memory.py
    for name, values in converted.items():  # in place of the float (object) column Arrow made
        frame[name] = values
    return frame


def _needs_nullable(column: pa.ChunkedArray) -> bool:
    return column.null_count > 0 and column.type in _NULLABLE
