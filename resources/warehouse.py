"""The DuckDB warehouse: one file, one schema per study, partitions replaced atomically.

``Warehouse`` is a plain class (tested without Dagster); ``WarehouseResource`` at the bottom wraps
it for the assets. Every identifier is checked against ``^[A-Za-z_][A-Za-z0-9_]{0,62}$`` and always
double-quoted; every value is a bound parameter. Connections are short; DuckDB lets one process
write at a time, so a connection that meets another process's file lock waits with backoff (up to
``lock_timeout_s``) and then fails with ``WarehouseLockedError`` -- a write is never dropped.

Partitioned tables carry a ``partition_key VARCHAR`` column; ``replace_partition`` deletes and
inserts a partition's rows in one transaction, so a re-run gives identical rows and a crash leaves
the old ones. Rows read back in (partition_key, insertion) order.

Example
-------
>>> store = Warehouse("data/warehouse.duckdb")  # doctest: +SKIP
>>> store.replace_partition("ab_checkout", "batch_effects", "2025-03-01", frame)  # doctest: +SKIP
>>> store.read_table("ab_checkout", "batch_effects", partition_key="2025-03-01")  # doctest: +SKIP
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

IDENTIFIER_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
PARTITION_COLUMN = "partition_key"
# Written at a warehouse file's first write; a study may not take this schema's name.
IDENTITY_SCHEMA = "assimilate_meta"
IDENTITY_TABLE = "identity"
_INCOMING = "__assimilate_incoming"
_INTEGER = {
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
_FLOAT = {"FLOAT", "DOUBLE"}
_TEMPORAL = re.compile(r"TIMESTAMP(_S|_MS|_NS| WITH TIME ZONE)?")
_STORABLE = re.compile(
    r"BOOLEAN|VARCHAR|DATE|TIME|INTERVAL|BLOB|UUID|DECIMAL\(\d+,\d+\)|" + "|".join(_INTEGER | _FLOAT)
)


class WarehouseError(RuntimeError):
    """The warehouse file cannot be used right now."""


class WarehouseLockedError(WarehouseError, TimeoutError):
    """Another process kept the DuckDB file locked for longer than the lock timeout."""


def quote_identifier(name: object, *, what: str = "identifier") -> str:
    """``name`` double-quoted for SQL, after checking it against the safe identifier pattern."""
    if not isinstance(name, str) or re.fullmatch(IDENTIFIER_PATTERN, name) is None:
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        raise ValueError(f"{what} {shown} is not allowed: must match ^{IDENTIFIER_PATTERN}$")
    return f'"{name}"'


def _is_lock_error(error: duckdb.Error) -> bool:
    text = str(error)
    return "Could not set lock" in text or "Conflicting lock" in text


class Warehouse:
    """One DuckDB file; a schema per study; short connections that wait for the file lock.

    Parameters
    ----------
    path : str or Path
        The DuckDB file (created on the first write).
    lock_timeout_s : float
        How long a connection waits for another process's lock before ``WarehouseLockedError``.
    initial_backoff_s, max_backoff_s : float
        The wait between attempts doubles from the first to the second (with jitter).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        lock_timeout_s: float = 60.0,
        initial_backoff_s: float = 0.05,
        max_backoff_s: float = 1.0,
    ) -> None:
        if not lock_timeout_s >= 0:
            raise ValueError(f"lock_timeout_s must be >= 0, got {lock_timeout_s!r}")
        if not 0 < initial_backoff_s <= max_backoff_s:
            raise ValueError("initial_backoff_s must be > 0 and <= max_backoff_s")
        self.path = Path(path)
        self.lock_timeout_s = float(lock_timeout_s)
        self.initial_backoff_s = float(initial_backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self._jitter = random.Random()
        self._held: duckdb.DuckDBPyConnection | None = None
        # Inside reading() only (no DDL can happen there): schema -> table -> columns.
        self._catalog: dict[str, dict[str, dict[str, str]]] | None = None

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short connection; waits (with backoff) while another process holds the file lock.

        Do not nest: DuckDB refuses a read-only and a read-write connection to one file in one
        process at the same time, and a held connection blocks every other process. Inside
        ``exclusive()`` every call uses the one held connection.
        """
        if self._held is not None:
            yield self._held
            return
        deadline = time.monotonic() + self.lock_timeout_s
        delay, attempts = self.initial_backoff_s, 0
        while True:
            attempts += 1
            try:
                connection = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as error:
                if not _is_lock_error(error):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WarehouseLockedError(
                        f"warehouse {self.path}: still locked by another process after "
                        f"{self.lock_timeout_s:g} s ({attempts} attempts); DuckDB allows one writer at a "
                        f"time. Last error: {error}"
                    ) from error
                time.sleep(min(remaining, delay * (0.5 + 0.5 * self._jitter.random())))
                delay = min(2 * delay, self.max_backoff_s)
        try:
            yield connection
        finally:
            connection.close()

    @contextmanager
    def exclusive(self) -> Iterator[Warehouse]:
        """A read-modify-write under the file's write lock: one transaction, no writer in between.

        Every read and write made through the yielded warehouse happens in that transaction, so
        two processes that read, compute and write the same table cannot overwrite each other's
        update with a stale one. Keep the work inside short: it blocks every other connection.
        """
        if self._held is not None:
            raise WarehouseError(f"{self!r}: exclusive() does not nest")
        with self._transaction() as connection, self._holding(connection) as held:
            yield held

    @contextmanager
    def reading(self) -> Iterator[Warehouse]:
        """Several reads on one read-only connection (opening a connection costs ~20 ms).

        Only read through the yielded warehouse; it keeps other processes from writing until the
        block ends, so leave before computing. Inside ``exclusive()`` it is that warehouse.
        """
        if self._held is not None or not self.path.exists():
            yield self
            return
        with self.connect(read_only=True) as connection, self._holding(connection) as held:
            held._catalog = {}
            yield held

    @contextmanager
    def _holding(self, connection: duckdb.DuckDBPyConnection) -> Iterator[Warehouse]:
        held = Warehouse(
            self.path,
            lock_timeout_s=self.lock_timeout_s,
            initial_backoff_s=self.initial_backoff_s,
            max_backoff_s=self.max_backoff_s,
        )
        held._held = connection
        try:
            yield held
        finally:
            held._held = None
            held._catalog = None

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._held is not None:  # already inside exclusive(): its transaction covers this
            yield self._held
            return
        with self.connect() as connection:
            connection.begin()
            try:
                _ensure_identity(connection)
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.commit()

    # -- writes -------------------------------------------------------------------------------

    def replace_partition(self, schema: str, table: str, partition_key: str, frame: pd.DataFrame) -> None:
        """Replace one partition's rows of ``schema.table`` by ``frame`` in one transaction."""
        self.replace_partition_tables(schema, partition_key, {table: frame})

    def replace_partition_tables(
        self, schema: str, partition_key: str, tables: Mapping[str, pd.DataFrame]
    ) -> None:
        """Replace one partition in several tables of a schema, all in one transaction.

        Missing schema/tables are created (columns from the frame plus ``partition_key``). A new
        column is added to an existing table; a column whose stored values are all NULL takes the
        new type; integer and float columns widen to DOUBLE; any other type change is an error.
        """
        self.write(schema, partition_key=partition_key, partition_tables=tables)

    def replace_table(self, schema: str, table: str, frame: pd.DataFrame) -> None:
        """Replace a whole (unpartitioned) table by ``frame`` in one transaction."""
        self.write(schema, whole_tables={table: frame})

    def write(
        self,
        schema: str,
        *,
        whole_tables: Mapping[str, pd.DataFrame] | None = None,
        partition_key: str | None = None,
        partition_tables: Mapping[str, pd.DataFrame] | None = None,
    ) -> None:
        """Replace whole tables and one partition of other tables together, in one transaction."""
        if partition_tables and (not isinstance(partition_key, str) or not partition_key):
            raise ValueError(f"partition_key must be a non-empty string, got {partition_key!r}")
        quote_identifier(schema, what="schema")
        whole = {table: _checked_frame(schema, table, frame) for table, frame in (whole_tables or {}).items()}
        parts = {
            table: _checked_frame(schema, table, frame) for table, frame in (partition_tables or {}).items()
        }
        with self._transaction() as connection:
            _sql(connection, f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema, what='schema')}")
            for table, frame in whole.items():
                _replace_whole(connection, schema, table, frame)
            stored = _schema_tables(connection, schema) if parts else {}
            for table, frame in parts.items():
                columns = stored.get(table.lower())
                _replace_one_partition(connection, schema, table, str(partition_key), frame, columns)

    def delete_partition(self, schema: str, table: str, partition_key: str) -> int:
        """Delete one partition's rows; returns how many were deleted (0 if the table is missing)."""
        if not self.table_exists(schema, table):
            return 0
        with self._transaction() as connection:
            columns = _table_columns(connection, schema, table) or {}
            _require_partitioned(schema, table, columns)
            target = _qualified(connection, schema, table)
            rows = _sql(connection, f"DELETE FROM {target} WHERE {PARTITION_COLUMN} = ?", [partition_key])
        return int(rows[0][0]) if rows else 0

    # -- reads --------------------------------------------------------------------------------

    def identity(self) -> str | None:
        """The id this warehouse file was given at its first write (None: no file, or never written).

        A deleted warehouse comes back with another id, so a reader that remembers the id can
        tell a rebuilt (or swapped) warehouse from the one it knew.
        """
        if not self.path.exists():
            return None
        if self.table_exists(IDENTITY_SCHEMA, IDENTITY_TABLE):
            rows = self.execute_read(f"SELECT warehouse_id FROM {IDENTITY_SCHEMA}.{IDENTITY_TABLE} LIMIT 1")
            return None if rows.empty else str(rows.iloc[0, 0])
        return None

    def table_exists(self, schema: str, table: str) -> bool:
        """Whether ``schema.table`` exists (False when the file does not exist yet)."""
        quote_identifier(schema, what="schema")
        quote_identifier(table, what="table")
        if not self.path.exists():
            return False
        with self.connect(read_only=True) as connection:
            return self._columns(connection, schema, table) is not None

    def read_table(
        self,
        schema: str,
        table: str,
        *,
        partition_key: str | None = None,
        partition_keys: Collection[str] | None = None,
    ) -> pd.DataFrame:
        """Rows of ``schema.table`` (optionally of some partitions); an empty frame if it is missing."""
        if partition_key is not None and partition_keys is not None:
            raise ValueError("give partition_key or partition_keys, not both")
        keys = [partition_key] if partition_key is not None else partition_keys
        if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
            raise ValueError("partition_keys must be a collection of strings")
        quote_identifier(schema, what="schema")
        quote_identifier(table, what="table")
        if not self.path.exists():
            return pd.DataFrame()
        with self.connect(read_only=True) as connection:
            columns = self._columns(connection, schema, table)
            if columns is None:
                return pd.DataFrame()
            target = _qualified(connection, schema, table)
            if keys is None:
                order = f"{PARTITION_COLUMN}, rowid" if PARTITION_COLUMN in columns else "rowid"
                return connection.execute(f"SELECT * FROM {target} ORDER BY {order}").df()
            _require_partitioned(schema, table, columns)
            sql = (
                f"SELECT * FROM {target} WHERE {PARTITION_COLUMN} IN (SELECT unnest(?::VARCHAR[])) "
                f"ORDER BY {PARTITION_COLUMN}, rowid"
            )
            return connection.execute(sql, [sorted(set(keys))]).df()

    def _columns(
        self, connection: duckdb.DuckDBPyConnection, schema: str, table: str
    ) -> dict[str, str] | None:
        if self._catalog is None:
            return _table_columns(connection, schema, table)
        if schema.lower() not in self._catalog:
            self._catalog[schema.lower()] = _schema_tables(connection, schema)
        return self._catalog[schema.lower()].get(table.lower())

    def execute_read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> pd.DataFrame:
        """Run a read query (on a read-only connection) with bound ``params``."""
        if not self.path.exists():
            raise WarehouseError(f"warehouse {self.path} does not exist yet: nothing has been written")
        with self.connect(read_only=True) as connection:
            return connection.execute(sql, params).df()


def _replace_whole(
    connection: duckdb.DuckDBPyConnection, schema: str, table: str, frame: pd.DataFrame
) -> None:
    target = _qualified(connection, schema, table)
    _sql(connection, f"DROP TABLE IF EXISTS {target}")
    if len(frame.columns):  # a frame without columns leaves no table (reads back the same)
        _create(connection, target, _register(connection, frame))
        _insert(connection, target, list(frame.columns), None)
        connection.unregister(_INCOMING)


def _replace_one_partition(
    connection: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    partition_key: str,
    frame: pd.DataFrame,
    stored: dict[str, str] | None,
) -> None:
    target = _qualified(connection, schema, table)
    incoming = _register(connection, frame)
    if stored is None:
        _create(connection, target, {PARTITION_COLUMN: "VARCHAR", **incoming})
    else:
        _require_partitioned(schema, table, stored)
        _sql(connection, f"DELETE FROM {target} WHERE {PARTITION_COLUMN} = ?", [partition_key])
        _evolve(connection, schema, table, target, stored, incoming)
    if len(frame.columns):
        _insert(connection, target, list(frame.columns), partition_key)
        connection.unregister(_INCOMING)


def _ensure_identity(connection: duckdb.DuckDBPyConnection) -> None:
    table = f"{IDENTITY_SCHEMA}.{IDENTITY_TABLE}"
    _sql(connection, f"CREATE SCHEMA IF NOT EXISTS {IDENTITY_SCHEMA}")
    _sql(connection, f"CREATE TABLE IF NOT EXISTS {table} (warehouse_id VARCHAR, created_at TIMESTAMPTZ)")
    _sql(
        connection,
        f"INSERT INTO {table} SELECT ?, now() WHERE NOT EXISTS (SELECT 1 FROM {table})",
        [uuid.uuid4().hex],
    )


def _sql(connection: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> list[Any]:
    """Execute and fetch everything (DuckDB 2 refuses new work while a result is unfinished)."""
    return connection.execute(sql, params).fetchall()


def _checked_frame(schema: str, table: str, frame: pd.DataFrame) -> pd.DataFrame:
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
    if PARTITION_COLUMN in seen:
        raise ValueError(f"{where}: column {PARTITION_COLUMN!r} is reserved for the partition key")
    categories = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    if categories:
        frame = frame.astype(dict.fromkeys(categories, "string"))
    return frame.reset_index(drop=True)


def _qualified(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> str:
    """catalog.schema.table, fully quoted: a schema never collides with the file's catalog name."""
    catalog = str(_sql(connection, "SELECT current_database()")[0][0])
    quoted_catalog = '"' + catalog.replace('"', '""') + '"'
    return (
        f"{quoted_catalog}.{quote_identifier(schema, what='schema')}.{quote_identifier(table, what='table')}"
    )


def _table_columns(connection: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str] | None:
    """Column name -> type of an existing table, None if it does not exist."""
    return _schema_tables(connection, schema).get(table.lower())


def _schema_tables(connection: duckdb.DuckDBPyConnection, schema: str) -> dict[str, dict[str, str]]:
    """Every table of a schema: lower-case name -> column name -> type (one catalog query).

    duckdb_columns() rather than information_schema.columns: the same rows without the view's
    joins. One query per write or reading() block, not one per table: each costs ~1 ms or more.
    """
    rows = _sql(
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


def _require_partitioned(schema: str, table: str, columns: Mapping[str, str]) -> None:
    if PARTITION_COLUMN not in columns:
        raise ValueError(f"{schema}.{table}: not a partitioned table (it has no {PARTITION_COLUMN} column)")


def _register(connection: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> dict[str, str]:
    """Register the frame for SQL and return its column types (an all-NULL column is VARCHAR)."""
    if not len(frame.columns):
        return {}
    connection.register(_INCOMING, frame)
    types = {str(name): str(kind) for name, kind, *_ in _sql(connection, f"DESCRIBE {_INCOMING}")}
    for column, kind in types.items():
        if kind != '"NULL"' and _STORABLE.fullmatch(kind) is None and _TEMPORAL.fullmatch(kind) is None:
            raise ValueError(
                f"column {column!r}: values of type {kind} cannot be stored; store them as text (JSON)"
            )
    return {column: "VARCHAR" if kind == '"NULL"' else kind for column, kind in types.items()}


def _create(connection: duckdb.DuckDBPyConnection, target: str, columns: Mapping[str, str]) -> None:
    body = ", ".join(f"{quote_identifier(name, what='column')} {kind}" for name, kind in columns.items())
    _sql(connection, f"CREATE TABLE {target} ({body})")


def _insert(
    connection: duckdb.DuckDBPyConnection, target: str, columns: list[str], partition_key: str | None
) -> None:
    names = [quote_identifier(c, what="column") for c in columns]
    if partition_key is None:
        _sql(
            connection,
            f"INSERT INTO {target} ({', '.join(names)}) SELECT {', '.join(names)} FROM {_INCOMING}",
        )
        return
    selected = ", ".join(["?", *names])
    _sql(
        connection,
        f"INSERT INTO {target} ({', '.join([PARTITION_COLUMN, *names])}) SELECT {selected} FROM {_INCOMING}",
        [partition_key],
    )


def _evolve(
    connection: duckdb.DuckDBPyConnection,
    schema: str,
    table: str,
    target: str,
    stored: Mapping[str, str],
    incoming: Mapping[str, str],
) -> None:
    """Make the existing table (``stored`` columns) accept the incoming ones (see ``replace_partition_tables``)."""
    lowered = {name.lower(): (name, kind) for name, kind in stored.items()}
    for column, new in incoming.items():
        quoted = quote_identifier(column, what="column")
        if column.lower() not in lowered:
            _sql(connection, f"ALTER TABLE {target} ADD COLUMN {quoted} {new}")
            continue
        name, old = lowered[column.lower()]
        if old == new or _compatible(old, new) or _all_null(connection, target, quoted, incoming=True):
            continue
        if _all_null(connection, target, quoted, incoming=False):
            _sql(connection, f"ALTER TABLE {target} ALTER COLUMN {quoted} TYPE {new}")
        elif {old, new} <= _INTEGER | _FLOAT:
            _sql(connection, f"ALTER TABLE {target} ALTER COLUMN {quoted} TYPE DOUBLE")
        else:
            raise ValueError(
                f"{schema}.{table}.{name}: the table stores {old} values but the new rows are {new}; "
                "write a separate table or convert the column"
            )


def _compatible(old: str, new: str) -> bool:
    """New values insert into the stored type without loss."""
    if old == "DOUBLE" and new in _INTEGER | _FLOAT:
        return True
    if old == "BIGINT" and new in {"TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT", "UINTEGER"}:
        return True
    return _TEMPORAL.fullmatch(old) is not None and _TEMPORAL.fullmatch(new) is not None


def _all_null(connection: duckdb.DuckDBPyConnection, target: str, quoted: str, *, incoming: bool) -> bool:
    source = _INCOMING if incoming else target
    return int(_sql(connection, f"SELECT count({quoted}) FROM {source}")[0][0]) == 0


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The DuckDB warehouse for the assets: ``get()`` returns a ``Warehouse``."""

    path: str = "data/warehouse.duckdb"
    lock_timeout_s: float = 60.0

    def get(self) -> Warehouse:
        """The warehouse, after creating the folder of its file."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return Warehouse(self.path, lock_timeout_s=self.lock_timeout_s)
