"""PostgreSQL tables from pandas frames: the same rules as ``resources/duckdb_tables.py``.

What ``resources/postgres_warehouse.py`` runs inside its transactions, function for function the
DuckDB module's (the warehouse calls either through the same names). Identifiers pass the same
check and are double-quoted; schema and table names are folded to lower case, as DuckDB matches
them without case; every value is a bound parameter. Column types are named as DuckDB names them
(BIGINT, DOUBLE, VARCHAR, TIMESTAMP, ...), so a type conflict reads the same on both backends, and
evolve by the same rules. Each table has a hidden identity column that keeps the insertion order
(PostgreSQL has no ``rowid``); reads leave it out. Values go in and come back as DuckDB converts
them (``resources/postgres_values.py``). DuckDB writes ``?`` placeholders; ``run_sql`` and
``read_query`` take them too (``to_pyformat``), so the warehouse's own SQL serves both backends.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
from psycopg2.extensions import connection as Connection  # noqa: N812
from psycopg2.extras import execute_values

from resources.arrow_memory import as_arrow_text
from resources.duckdb_frames import PARTITION_ROWS, column_list, partitions_filter
from resources.duckdb_frames import checked_frame as _checked_frame
from resources.duckdb_tables import (
    PARTITION_COLUMN,
    quote_identifier,
    require_partitioned,
)
from resources.postgres_values import (
    NUMBER_TYPES,
    OID_TYPES,
    bind_values,
    frame_types,
    read_column,
    typed_frame,
)

__all__ = [
    "checked_frame",
    "create_schema",
    "qualified_name",
    "read_query",
    "replace_partition_rows",
    "replace_whole",
    "require_partitioned",
    "run_sql",
    "schema_tables",
    "select_rows",
    "table_columns",
    "tables_columns",
    "values_relation",
]

ROW_COLUMN = "_assimilate_row"  # the hidden insertion order
_DDL = {"FLOAT": "REAL", "DOUBLE": "DOUBLE PRECISION", "BLOB": "BYTEA"}
_CATALOG = {
    "smallint": "SMALLINT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "real": "FLOAT",
    "double precision": "DOUBLE",
    "text": "VARCHAR",
    "character varying": "VARCHAR",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "time without time zone": "TIME",
    "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
    "interval": "INTERVAL",
    "bytea": "BLOB",
}
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|(\?)|(%)|\$([A-Za-z_]\w*)")


def run_sql(
    connection: Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None
) -> list[Any]:
    """Execute (``?`` placeholders, as on DuckDB) and fetch everything a statement returns."""
    with connection.cursor() as cursor:
        cursor.execute(to_pyformat(sql), _params(params))
        return cursor.fetchall() if cursor.description is not None else [(cursor.rowcount,)]


def to_pyformat(sql: str) -> str:
    """DuckDB's ``?`` and ``$name`` placeholders as psycopg2's ``%s`` and ``%(name)s``.

    Quoted strings, quoted identifiers and comments are left alone; a literal ``%`` is doubled.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "%s"
        if match.group(2):
            return "%%"
        if match.group(3):
            return f"%({match.group(3)})s"
        return match.group(0).replace("%", "%%")

    return _PLACEHOLDER.sub(replace, sql)


def _params(params: Sequence[Any] | Mapping[str, Any] | None) -> Sequence[Any] | Mapping[str, Any]:
    if params is None:
        return []
    return dict(params) if isinstance(params, Mapping) else list(params)


def checked_frame(schema: str, table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """DuckDB's frame checks, and the hidden order column's name is reserved too."""
    checked = _checked_frame(schema, table, frame)
    if ROW_COLUMN in {str(c).lower() for c in checked.columns}:
        raise ValueError(f"{schema}.{table}: column {ROW_COLUMN!r} is reserved for the row order")
    return checked


def qualified_name(connection: Connection, schema: str, table: str) -> str:
    """schema.table, quoted and in lower case (the connection's database is the catalog)."""
    quote_identifier(schema, what="schema")
    quote_identifier(table, what="table")
    return f'"{schema.lower()}"."{table.lower()}"'


def table_columns(connection: Connection, schema: str, table: str) -> dict[str, str] | None:
    """Column name -> type of an existing table, None if it does not exist."""
    return schema_tables(connection, schema).get(table.lower())


def tables_columns(connection: Connection, schema: str, tables: Collection[str]) -> dict[str, dict[str, str]]:
    """The existing ones of ``tables``: lower-case name -> column name -> type (one catalog query)."""
    stored = schema_tables(connection, schema)
    return {table.lower(): stored[table.lower()] for table in tables if table.lower() in stored}


def schema_tables(connection: Connection, schema: str) -> dict[str, dict[str, str]]:
    """Every table of a schema: lower-case name -> column name -> type (one catalog query)."""
    rows = run_sql(
        connection,
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = lower(?) AND c.relkind IN ('r', 'p', 'v') AND a.attnum > 0 "
        "AND NOT a.attisdropped AND a.attname <> ? ORDER BY c.relname, a.attnum",
        [schema, ROW_COLUMN],
    )
    tables: dict[str, dict[str, str]] = {}
    for table, column, kind in rows:
        tables.setdefault(str(table).lower(), {})[str(column)] = _logical(str(kind))
    return tables


def _logical(kind: str) -> str:
    if kind in _CATALOG:
        return _CATALOG[kind]
    decimal = re.fullmatch(r"numeric\((\d+),(\d+)\)", kind)
    return f"DECIMAL({decimal[1]},{decimal[2]})" if decimal else kind.upper()


def replace_whole(connection: Connection, schema: str, table: str, frame: pd.DataFrame) -> None:
    """Replace a whole table by ``frame`` (dropped and created again with the frame's columns)."""
    target = qualified_name(connection, schema, table)
    run_sql(connection, f"DROP TABLE IF EXISTS {target}")
    if len(frame.columns):  # a frame without columns leaves no table (reads back the same)
        types = frame_types(frame)
        _create(connection, target, types)
        _insert(connection, target, frame, types, None)


def replace_partition_rows(
    connection: Connection,
    schema: str,
    table: str,
    partition_keys: Sequence[str],
    frame: pd.DataFrame,
    stored: dict[str, str] | None,
) -> None:
    """Replace partitions' rows by ``frame``: one partition's, or several (each row's partition in
    ``PARTITION_ROWS``); ``stored`` is the table's columns (None: no table yet)."""
    target = qualified_name(connection, schema, table)
    if PARTITION_ROWS in frame.columns:
        row_keys = frame[PARTITION_ROWS].tolist()
        frame = frame.drop(columns=[PARTITION_ROWS])
    else:
        row_keys = [partition_keys[0]] * len(frame)
    incoming = frame_types(frame)
    if stored is None:
        _create(connection, target, {PARTITION_COLUMN: "VARCHAR", **incoming})
    else:
        require_partitioned(schema, table, stored)
        run_sql(connection, *partitions_filter(f"DELETE FROM {target}", partition_keys))
        names = _evolve(connection, schema, table, target, stored, incoming, frame)
        frame, incoming = frame.rename(columns=names), {names[c]: k for c, k in incoming.items()}
    if len(frame.columns):
        _insert(connection, target, frame, incoming, row_keys)


def select_rows(
    connection: Connection,
    target: str,
    columns: Mapping[str, str],
    keys: Collection[str] | None,
    *,
    arrow_text: Collection[str] = (),
) -> pd.DataFrame:
    """The table's rows (of ``keys`` only, unless None) in (partition, insertion) order; the text
    columns of ``arrow_text`` as ``ARROW_TEXT`` (resources/arrow_memory.py)."""
    names = column_list(columns)
    order = f"{PARTITION_COLUMN}, {ROW_COLUMN}" if PARTITION_COLUMN in columns else ROW_COLUMN
    if keys is None:
        rows = run_sql(connection, f"SELECT {names} FROM {target} ORDER BY {order}")
    else:
        sql = f"SELECT {names} FROM {target} WHERE {PARTITION_COLUMN} = ANY(?) ORDER BY {order}"
        rows = run_sql(connection, sql, [sorted(set(keys))])
    return as_arrow_text(typed_frame(rows, dict(columns)), arrow_text)


@contextmanager
def values_relation(
    connection: Connection, values: pd.Series | None, params: dict[str, Any]
) -> Iterator[str]:
    """A relation of ``values`` as text (column ``value``) for one query: an array, bound."""
    if values is None:
        yield ""
        return
    params["assimilate_values"] = values.astype(str).tolist()
    yield "(SELECT unnest($assimilate_values::VARCHAR[]) AS value)"


def read_query(connection: Connection, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> pd.DataFrame:
    """A query's rows as a frame, typed from the result's column types as ``select_rows`` types them."""
    with connection.cursor() as cursor:
        cursor.execute(to_pyformat(sql), _params(params))
        if cursor.description is None:
            return pd.DataFrame()
        names = [d.name for d in cursor.description]
        kinds = [OID_TYPES.get(d.type_code, "") for d in cursor.description]
        rows = cursor.fetchall()
    columns = [read_column(kind, [row[i] for row in rows]) for i, kind in enumerate(kinds)]
    return pd.DataFrame(dict(zip(range(len(names)), columns, strict=True))).set_axis(names, axis=1)


def _ddl(kind: str) -> str:
    return _DDL.get(kind, kind)


def _create(connection: Connection, target: str, columns: Mapping[str, str]) -> None:
    body = ", ".join(
        f"{quote_identifier(name, what='column')} {_ddl(kind)}" for name, kind in columns.items()
    )
    order = f"{ROW_COLUMN} BIGINT GENERATED ALWAYS AS IDENTITY"
    run_sql(connection, f"CREATE TABLE {target} ({body}{', ' if body else ''}{order})")


def _insert(
    connection: Connection,
    target: str,
    frame: pd.DataFrame,
    types: Mapping[str, str],
    row_keys: list[str] | None,
) -> None:
    """Insert the frame's rows (with each row's partition key, unless ``row_keys`` is None)."""
    if not len(frame):
        return
    columns = [bind_values(frame[name], types[str(name)]) for name in frame.columns]
    names = [quote_identifier(c, what="column") for c in frame.columns]
    if row_keys is not None:
        columns.insert(0, row_keys)
        names.insert(0, PARTITION_COLUMN)
    with connection.cursor() as cursor:
        # One statement per 1,000 rows; the identity column numbers them in this order.
        execute_values(
            cursor,
            f"INSERT INTO {target} ({', '.join(names)}) VALUES %s",
            list(zip(*columns, strict=True)),
            page_size=1000,
        )


def _evolve(
    connection: Connection,
    schema: str,
    table: str,
    target: str,
    stored: Mapping[str, str],
    incoming: Mapping[str, str],
    frame: pd.DataFrame,
) -> dict[str, str]:
    """DuckDB's rules (``duckdb_tables._evolve``); returns incoming column -> the stored column's name."""
    lowered = {name.lower(): (name, kind) for name, kind in stored.items()}
    names = {}
    for column, new in incoming.items():
        if column.lower() not in lowered:
            quoted = quote_identifier(column, what="column")
            run_sql(connection, f"ALTER TABLE {target} ADD COLUMN {quoted} {_ddl(new)}")
            names[column] = column
            continue
        name, old = lowered[column.lower()]
        names[column] = name
        quoted = quote_identifier(name, what="column")
        if old == new or _compatible(old, new) or not frame[column].notna().any():
            continue
        if int(run_sql(connection, f"SELECT count({quoted}) FROM {target}")[0][0]) == 0:
            run_sql(connection, f"ALTER TABLE {target} ALTER COLUMN {quoted} TYPE {_ddl(new)} USING NULL")
        elif {old, new} <= NUMBER_TYPES:
            run_sql(
                connection,
                f"ALTER TABLE {target} ALTER COLUMN {quoted} TYPE DOUBLE PRECISION USING {quoted}::float8",
            )
        else:
            raise ValueError(
                f"{schema}.{table}.{name}: the table stores {old} values but the new rows are {new}; "
                "write a separate table or convert the column"
            )
    return names


def _compatible(old: str, new: str) -> bool:
    """New values insert into the stored type without loss."""
    if old == "DOUBLE" and new in NUMBER_TYPES:
        return True
    if old == "BIGINT" and new in {"SMALLINT", "INTEGER"}:
        return True
    if old == "INTEGER" and new == "SMALLINT":
        return True
    return old.startswith("TIMESTAMP") and new.startswith("TIMESTAMP")


def create_schema(connection: Connection, schema: str) -> None:
    """The schema (in lower case), unless it exists."""
    quote_identifier(schema, what="schema")
    run_sql(connection, f'CREATE SCHEMA IF NOT EXISTS "{schema.lower()}"')
