"""DuckDB tables from pandas frames: safe identifiers, DDL and DML, column types that evolve.

What ``resources/duckdb_warehouse.py`` runs inside its transactions, on a connection it holds
(``resources/postgres_tables.py`` has the same functions for PostgreSQL). Every
identifier is checked against ``^[A-Za-z_][A-Za-z0-9_]{0,62}$`` and double-quoted; every value is a
bound parameter. A partitioned table carries a ``partition_key VARCHAR`` column, and a partition is
replaced by a DELETE and an INSERT in the caller's transaction. An existing table accepts a new
frame when no value is lost: a new column is added, a column whose stored values are all NULL takes
the new type, integer and float columns widen to DOUBLE; any other type change is an error.

Example
-------
>>> quote_identifier("batch_effects")
'"batch_effects"'
>>> quote_identifier("x; DROP TABLE y")
Traceback (most recent call last):
ValueError: identifier 'x; DROP TABLE y' is not allowed: must match ^[A-Za-z_][A-Za-z0-9_]{0,62}$
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import pandas as pd

from resources.arrow_memory import ARROW_TEXT, as_arrow_text
from resources.duckdb_frames import (
    ARROW_READ_TYPES,
    FLOAT_TYPES,
    INCOMING,
    INTEGER_TYPES,
    PARTITION_COLUMN,
    PARTITION_ROWS,
    TEMPORAL_TYPE,
    column_list,
    frame_from_arrow,
    partitions_filter,
    quote_identifier,
    register_frame,
)
from resources.duckdb_frames import checked_frame as checked_frame  # the same interface as postgres_tables

_VALUES = "__assimilate_values"
# Each database connection's catalog name (fixed for its life: nothing here runs USE).
_CATALOGS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, str] = weakref.WeakKeyDictionary()
# A cursor of a leased connection -> that connection (resources/warehouse_lease.py).
_DATABASES: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection] = (
    weakref.WeakKeyDictionary()
)


def replace_whole(
    connection: duckdb.DuckDBPyConnection, schema: str, table: str, frame: pd.DataFrame
) -> None:
    """Replace a whole table by ``frame`` (dropped and created again with the frame's columns)."""
    target = qualified_name(connection, schema, table)
    run_sql(connection, f"DROP TABLE IF EXISTS {target}")
    if len(frame.columns):  # a frame without columns leaves no table (reads back the same)
        _create(connection, target, register_frame(connection, frame))
        _insert(connection, target, list(frame.columns))


def replace_partition_rows(
    connection: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    partition_keys: Sequence[str],
    frame: pd.DataFrame,
    stored: dict[str, str] | None,
) -> None:
    """Replace partitions' rows by ``frame``: one partition's, or several (each row's partition in
    ``PARTITION_ROWS``); ``stored`` is the table's columns (None: no table yet)."""
    target = qualified_name(connection, schema, table)
    incoming = register_frame(connection, frame)
    key_per_row = incoming.pop(PARTITION_ROWS, None) is not None
    if stored is None:
        _create(connection, target, {PARTITION_COLUMN: "VARCHAR", **incoming})
    else:
        require_partitioned(schema, table, stored)
        run_sql(connection, *partitions_filter(f"DELETE FROM {target}", partition_keys))
        _evolve(connection, schema, table, target, stored, incoming)
    if incoming:
        _insert(connection, target, list(incoming), partition_key=partition_keys[0], key_per_row=key_per_row)


def is_lock_error(error: Exception) -> bool:
    """Whether opening the file failed because another process holds its lock."""
    text = str(error)
    return isinstance(error, duckdb.IOException) and (
        "Could not set lock" in text or "Conflicting lock" in text
    )


def run_sql(
    connection: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None
) -> list[Any]:
    """Execute and fetch everything (DuckDB 2 refuses new work while a result is unfinished)."""
    return connection.execute(sql, params).fetchall()


def note_cursor(cursor: duckdb.DuckDBPyConnection, connection: duckdb.DuckDBPyConnection) -> None:
    """Record that ``cursor`` is a cursor of ``connection`` (what :func:`database_of` answers)."""
    _DATABASES[cursor] = connection


def database_of(connection: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """The connection that opened the database: a noted cursor's connection, else ``connection`` itself.

    What holds for the whole open database (its catalog name, its committed identity row) is kept
    against it, so each cursor of a leased connection need not ask again.
    """
    return _DATABASES.get(connection, connection)


def qualified_name(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> str:
    """catalog.schema.table, fully quoted: a schema never collides with the file's catalog name."""
    database = database_of(connection)
    catalog = _CATALOGS.get(database)
    if catalog is None:  # asked once per open database: a step asks for every table it reads or writes
        catalog = _CATALOGS[database] = str(run_sql(connection, "SELECT current_database()")[0][0])
    quoted_catalog = '"' + catalog.replace('"', '""') + '"'
    return (
        f"{quoted_catalog}.{quote_identifier(schema, what='schema')}.{quote_identifier(table, what='table')}"
    )


def table_columns(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str] | None:
    """Column name -> type of an existing table, None if it does not exist.

    The table's relation, bound and not run: ~0.1 ms against ~2 ms for a duckdb_columns() query,
    with the same type names.
    """
    relation = _table_relation(connection, qualified_name(connection, schema, table))
    if relation is None:
        return None
    return {str(name): str(kind) for name, kind in zip(relation.columns, relation.types, strict=True)}


def _table_relation(connection: duckdb.DuckDBPyConnection, name: str) -> duckdb.DuckDBPyRelation | None:
    """The stored table ``name``, or None; a missing table's error leaves a transaction usable.

    For a missing table DuckDB tries a replacement scan: a Python variable of that name here (this
    frame's or the module's), which is refused (not a frame) or gives a relation that is not a table.
    """
    try:
        relation = connection.table(name)
    except (duckdb.CatalogException, duckdb.InvalidInputException):
        return None
    return relation if relation.type == "TABLE_RELATION" else None


def tables_columns(
    connection: duckdb.DuckDBPyConnection, schema: str, tables: Collection[str]
) -> dict[str, dict[str, str]]:
    """The existing ones of ``tables``: lower-case name -> column name -> type."""
    found = {table.lower(): table_columns(connection, schema, table) for table in tables}
    return {table: columns for table, columns in found.items() if columns is not None}


def schema_tables(connection: duckdb.DuckDBPyConnection, schema: str) -> dict[str, dict[str, str]]:
    """Every table of a schema: lower-case name -> column name -> type (one catalog query).

    duckdb_columns() rather than information_schema.columns: the same rows without the view's
    joins. One query per ``reading()`` block, which may read any table of the schema.
    """
    rows = run_sql(
        connection,
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = current_database() AND lower(schema_name) = lower(?) "
        "ORDER BY table_name, column_index",
        [schema],
    )
    tables: dict[str, dict[str, str]] = {}
    for table, column, kind in rows:
        tables.setdefault(str(table).lower(), {})[str(column)] = str(kind)
    return tables


def require_partitioned(schema: str, table: str, columns: Mapping[str, str]) -> None:
    """Refuse a partition read or write on a table without a partition column."""
    if PARTITION_COLUMN not in columns:
        raise ValueError(f"{schema}.{table}: not a partitioned table (it has no {PARTITION_COLUMN} column)")


def keys_to_read(partition_key: str | None, partition_keys: Collection[str] | None) -> list[str] | None:
    """The partitions a read asks for (None: all), from one key or a collection of them."""
    if partition_key is not None and partition_keys is not None:
        raise ValueError("give partition_key or partition_keys, not both")
    keys = [partition_key] if partition_key is not None else partition_keys
    if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
        raise ValueError("partition_keys must be a collection of strings")
    return None if keys is None else list(keys)


def chosen_columns(
    schema: str, table: str, stored: Mapping[str, str], columns: Sequence[str] | None
) -> Mapping[str, str]:
    """The stored types of ``columns`` (all: None), in their order; a ValueError names those not stored."""
    if columns is None:
        return stored
    if isinstance(columns, str):
        raise ValueError("columns must be a sequence of column names, not one string")
    missing = [c for c in columns if c not in stored]
    if missing:
        raise ValueError(f"{schema}.{table} has no column(s) {missing}; it has {list(stored)}")
    return {column: stored[column] for column in dict.fromkeys(columns)}


def _create(connection: duckdb.DuckDBPyConnection, target: str, columns: Mapping[str, str]) -> None:
    body = ", ".join(f"{quote_identifier(name, what='column')} {kind}" for name, kind in columns.items())
    run_sql(connection, f"CREATE TABLE {target} ({body})")


def _insert(
    connection: duckdb.DuckDBPyConnection,
    target: str,
    columns: list[str],
    *,
    partition_key: str | None = None,
    key_per_row: bool = False,
) -> None:
    """Insert the registered frame's ``columns`` with their partition: ``partition_key`` for every
    row, or with ``key_per_row`` each row's key from the frame's ``PARTITION_ROWS``; neither: none."""
    names = [quote_identifier(c, what="column") for c in columns]
    if not key_per_row and partition_key is None:
        run_sql(
            connection,
            f"INSERT INTO {target} ({', '.join(names)}) SELECT {', '.join(names)} FROM {INCOMING}",
        )
        return
    key = quote_identifier(PARTITION_ROWS, what="column") if key_per_row else "?"
    run_sql(
        connection,
        f"INSERT INTO {target} ({', '.join([PARTITION_COLUMN, *names])}) "
        f"SELECT {', '.join([key, *names])} FROM {INCOMING}",
        [] if key_per_row else [partition_key],
    )


def _evolve(
    connection: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    target: str,
    stored: Mapping[str, str],
    incoming: Mapping[str, str],
) -> None:
    """Make the existing table (``stored`` columns) accept the incoming ones (``Warehouse.replace_partition_tables``)."""
    lowered = {name.lower(): (name, kind) for name, kind in stored.items()}
    for column, new in incoming.items():
        quoted = quote_identifier(column, what="column")
        if column.lower() not in lowered:
            run_sql(connection, f"ALTER TABLE {target} ADD COLUMN {quoted} {new}")
            continue
        name, old = lowered[column.lower()]
        if old == new or _compatible(old, new) or _all_null(connection, target, quoted, incoming=True):
            continue
        if _all_null(connection, target, quoted, incoming=False):
            run_sql(connection, f"ALTER TABLE {target} ALTER COLUMN {quoted} TYPE {new}")
        elif {old, new} <= INTEGER_TYPES | FLOAT_TYPES:
            run_sql(connection, f"ALTER TABLE {target} ALTER COLUMN {quoted} TYPE DOUBLE")
        else:
            raise ValueError(
                f"{schema}.{table}.{name}: the table stores {old} values but the new rows are {new}; "
                "write a separate table or convert the column"
            )


def _compatible(old: str, new: str) -> bool:
    """New values insert into the stored type without loss."""
    if old == "DOUBLE" and new in INTEGER_TYPES | FLOAT_TYPES:
        return True
    if old == "BIGINT" and new in {"TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT", "UINTEGER"}:
        return True
    return TEMPORAL_TYPE.fullmatch(old) is not None and TEMPORAL_TYPE.fullmatch(new) is not None


def _all_null(connection: duckdb.DuckDBPyConnection, target: str, quoted: str, *, incoming: bool) -> bool:
    source = INCOMING if incoming else target
    return int(run_sql(connection, f"SELECT count({quoted}) FROM {source}")[0][0]) == 0


def select_rows(
    connection: duckdb.DuckDBPyConnection,
    target: str,
    columns: Mapping[str, str],
    keys: Collection[str] | None,
    *,
    arrow_text: Collection[str] = (),
) -> pd.DataFrame:
    """The table's ``columns`` (rows of ``keys`` only, unless None) in (partition, insertion) order;
    the text columns of ``arrow_text`` as ``ARROW_TEXT`` (resources/arrow_memory.py)."""
    names = column_list(columns)
    others = [c for c in columns if c != PARTITION_COLUMN]
    if keys is None:
        order = f"{PARTITION_COLUMN}, rowid" if PARTITION_COLUMN in columns else "rowid"
        frame = connection.execute(f"SELECT {names} FROM {target} ORDER BY {order}").df()
    elif len(set(keys)) == 1 and others:  # one partition: its key added here, not read per row
        (key,) = set(keys)
        # In insertion order without a sort: DuckDB keeps a scan's order (preserve_insertion_order,
        # on by default), and a sort would hold a 1e7-row partition twice while it is read.
        sql = f"SELECT {column_list(others)} FROM {target} WHERE {PARTITION_COLUMN} = ?"
        if all(columns[c] in ARROW_READ_TYPES for c in others):
            table = connection.sql(sql, params=[key]).to_arrow_table()
            frame = frame_from_arrow(table, arrow_text=arrow_text)
        else:
            frame = connection.execute(sql, [key]).df()
        if PARTITION_COLUMN in columns:
            frame.insert(list(columns).index(PARTITION_COLUMN), PARTITION_COLUMN, key)
    else:
        sql = (
            f"SELECT {names} FROM {target} WHERE {PARTITION_COLUMN} IN (SELECT unnest(?::VARCHAR[])) "
            f"ORDER BY {PARTITION_COLUMN}, rowid"
        )
        frame = connection.execute(sql, [sorted(set(keys))]).df()
    return as_arrow_text(frame, arrow_text)  # what Arrow read is converted already


def read_query(
    connection: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> pd.DataFrame:
    """A read query's rows as a frame (``?`` or ``$name`` placeholders, bound)."""
    return connection.execute(sql, params).df()


@contextmanager
def values_relation(
    connection: duckdb.DuckDBPyConnection, values: pd.Series | None, params: dict[str, Any]
) -> Iterator[str]:
    """A relation of ``values`` as text (column ``value``) for one query: the frame, registered."""
    if values is None:
        yield ""
        return
    text = values if values.dtype == ARROW_TEXT else values.astype(str).to_numpy()  # Arrow text: no objects
    connection.register(_VALUES, pd.DataFrame({"value": text}))
    try:
        yield f"(SELECT value FROM {_VALUES})"
    finally:
        connection.unregister(_VALUES)


def create_schema(connection: duckdb.DuckDBPyConnection, schema: str) -> None:
    """The schema, unless it exists."""
    run_sql(connection, f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema, what='schema')}")
