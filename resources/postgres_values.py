"""PostgreSQL values <-> pandas columns, as DuckDB converts them (``resources/postgres_tables.py``).

A frame's column gets the type DuckDB would register for it (named as DuckDB names types; an
all-NULL column is VARCHAR; values no column type holds are refused, naming the column); its values
are bound as Python values, NaN, NA and NaT as NULL (DuckDB stores them so). A column read back gets
the dtype DuckDB's ``.df()`` gives: integers and booleans as numpy types (pandas' nullable ones when
a NULL is present), floats with NaN for NULL, DATE and TIMESTAMP as ``datetime64[us]``, TIMESTAMPTZ
in UTC, INTERVAL as ``timedelta64[us]``, DECIMAL as float. Text with a NUL byte, which PostgreSQL
cannot store, is stored escaped and read back as it was (``ESCAPED_TEXT``).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

INTEGER_TYPES = {"SMALLINT": "Int16", "INTEGER": "Int32", "BIGINT": "Int64"}
FLOAT_TYPES = {"FLOAT": "float32", "DOUBLE": "float64"}
NUMBER_TYPES = {*INTEGER_TYPES, *FLOAT_TYPES}
# Result column type OIDs (execute_read) -> the names above.
OID_TYPES = {16: "BOOLEAN", 17: "BLOB", 20: "BIGINT", 21: "SMALLINT", 23: "INTEGER", 25: "VARCHAR"}
OID_TYPES |= {700: "FLOAT", 701: "DOUBLE", 1043: "VARCHAR", 1082: "DATE", 1083: "TIME", 1114: "TIMESTAMP"}
OID_TYPES |= {1184: "TIMESTAMP WITH TIME ZONE", 1186: "INTERVAL", 1700: "DECIMAL"}


def typed_frame(rows: list[tuple[Any, ...]], columns: dict[str, str]) -> pd.DataFrame:
    """Rows of a table whose columns have these types, with the dtypes DuckDB's ``.df()`` gives."""
    data = {
        name: read_column(kind, [row[i] for row in rows]) for i, (name, kind) in enumerate(columns.items())
    }
    return pd.DataFrame(data, columns=list(columns))


def read_column(kind: str, values: list[Any]) -> pd.Series | np.ndarray:
    """One column's values (as psycopg2 returns them) with the dtype DuckDB gives its ``kind``."""
    has_null = any(v is None for v in values)
    if kind in INTEGER_TYPES:
        dtype = INTEGER_TYPES[kind]
        return pd.array(values, dtype=dtype) if has_null else np.array(values, dtype=dtype.lower())
    if kind == "BOOLEAN":
        return pd.array(values, dtype="boolean") if has_null else np.array(values, dtype=bool)
    if kind in FLOAT_TYPES or kind.startswith("DECIMAL"):
        return np.array(
            [np.nan if v is None else float(v) for v in values], dtype=FLOAT_TYPES.get(kind, "float64")
        )
    if kind in ("DATE", "TIMESTAMP"):
        return pd.Series(pd.to_datetime(values), dtype="datetime64[us]")
    if kind == "TIMESTAMP WITH TIME ZONE":
        return pd.Series(pd.to_datetime(values, utc=True), dtype="datetime64[us, UTC]")
    if kind == "INTERVAL":
        return pd.Series(pd.to_timedelta(values), dtype="timedelta64[us]")
    if kind == "BLOB":
        return np.array([None if v is None else bytes(v) for v in values], dtype=object)
    if kind == "VARCHAR" and any(isinstance(v, str) and v.startswith(ESCAPED_TEXT) for v in values):
        values = [_from_stored_text(v) if isinstance(v, str) else v for v in values]
    return np.array(values, dtype=object)


# PostgreSQL text cannot hold a NUL byte (DuckDB's can, and a delivered cell may have one): such a
# value is stored as this marker and its JSON string, and so is a value that starts with the marker,
# so that every value reads back as it was written.
ESCAPED_TEXT = "\x01json:"


def _to_stored_text(value: Any) -> str:
    text = str(value)
    if "\x00" in text or text.startswith(ESCAPED_TEXT):
        return ESCAPED_TEXT + json.dumps(text)
    return text


def _from_stored_text(value: str) -> str:
    return str(json.loads(value[len(ESCAPED_TEXT) :])) if value.startswith(ESCAPED_TEXT) else value


def frame_types(frame: pd.DataFrame) -> dict[str, str]:
    """Each column's type, as DuckDB would register it (an all-NULL column is VARCHAR)."""
    return {str(name): _frame_type(frame[name], str(name)) for name in frame.columns}


def _frame_type(series: pd.Series, name: str) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(dtype):
        # PostgreSQL has no TINYINT and no unsigned types: the next signed type that holds them.
        size = np.dtype(str(dtype).lower()).itemsize
        width = size * (
            2 if pd.api.types.is_unsigned_integer_dtype(dtype) else 1
        )  # bytes a signed type needs
        if width > 8:
            raise ValueError(
                f"column {name!r}: values of type UBIGINT cannot be stored; store them as DOUBLE"
            )
        return {1: "SMALLINT", 2: "SMALLINT", 4: "INTEGER"}.get(width, "BIGINT")
    if pd.api.types.is_float_dtype(dtype):
        return "FLOAT" if str(dtype) == "float32" else "DOUBLE"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "TIMESTAMP WITH TIME ZONE"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "TIMESTAMP"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "INTERVAL"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return "VARCHAR"
    return _object_type([v for v in series.tolist() if not _is_null(v)], name)


def _object_type(values: list[Any], name: str) -> str:
    kinds = {_value_type(v) for v in values}
    if not kinds or ("VARCHAR" in kinds and kinds <= {"VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN"}):
        return "VARCHAR"
    if kinds <= {"BIGINT", "DOUBLE"}:
        return "DOUBLE" if "DOUBLE" in kinds else "BIGINT"
    if len(kinds) == 1 and None not in kinds:
        return kinds.pop()  # type: ignore[return-value]
    shown = sorted({type(v).__name__ for v in values})
    raise ValueError(
        f"column {name!r}: values of type {'/'.join(shown)} cannot be stored; store them as text (JSON)"
    )


def _value_type(value: Any) -> str | None:
    if isinstance(value, (bool, np.bool_)):
        return "BOOLEAN"
    if isinstance(value, (int, np.integer)):
        return "BIGINT"
    if isinstance(value, (float, np.floating, Decimal)):
        return "DOUBLE"
    if isinstance(value, str):
        return "VARCHAR"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP" if value.tzinfo is None else "TIMESTAMP WITH TIME ZONE"
    if isinstance(value, dt.date):
        return "DATE"
    if isinstance(value, dt.time):
        return "TIME"
    if isinstance(value, (dt.timedelta, np.timedelta64)):
        return "INTERVAL"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "BLOB"
    return None


def _is_null(value: Any) -> bool:
    return (
        value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value))
    )


def bind_values(series: pd.Series, kind: str) -> list[Any]:
    """The column as Python values psycopg2 binds (NaN, NA and NaT as NULL, as DuckDB stores them)."""
    if kind in ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE") and pd.api.types.is_datetime64_any_dtype(
        series.dtype
    ):
        return [None if pd.isna(v) else v.to_pydatetime() for v in series]
    if kind == "INTERVAL" and pd.api.types.is_timedelta64_dtype(series.dtype):
        return [None if pd.isna(v) else v.to_pytimedelta() for v in series]
    convert = {
        "BOOLEAN": bool,
        "SMALLINT": int,
        "INTEGER": int,
        "BIGINT": int,
        "FLOAT": float,
        "DOUBLE": float,
    }
    cast = convert.get(kind, _to_stored_text if kind == "VARCHAR" else lambda v: v)
    out = []
    for value in series.astype(object).tolist():
        if _is_null(value):
            out.append(None)
        elif kind == "BLOB":
            out.append(bytes(value))
        else:
            out.append(cast(value.to_pydatetime() if isinstance(value, pd.Timestamp) else value))
    return out
