"""The DuckDB warehouse: one file, one schema per study, partitions replaced atomically.

``Warehouse`` is a plain class (tested without Dagster); ``WarehouseResource`` at the bottom wraps
it for the assets; the SQL it runs inside its transactions is in ``resources/duckdb_tables.py``
(identifiers checked and quoted, values bound, column types that evolve). Connections are short; DuckDB lets one process
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
import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd

from resources.duckdb_tables import (
    PARTITION_COLUMN,
    checked_frame,
    qualified_name,
    quote_identifier,
    replace_partition_rows,
    replace_whole,
    require_partitioned,
    run_sql,
    schema_tables,
    table_columns,
)

# Written at a warehouse file's first write; a study may not take this schema's name.
IDENTITY_SCHEMA = "assimilate_meta"
IDENTITY_TABLE = "identity"


class WarehouseError(RuntimeError):
    """The warehouse file cannot be used right now."""


class WarehouseLockedError(WarehouseError, TimeoutError):
    """Another process kept the DuckDB file locked for longer than the lock timeout."""


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
        whole = {table: checked_frame(schema, table, frame) for table, frame in (whole_tables or {}).items()}
        parts = {
            table: checked_frame(schema, table, frame) for table, frame in (partition_tables or {}).items()
        }
        with self._transaction() as connection:
            run_sql(connection, f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema, what='schema')}")
            for table, frame in whole.items():
                replace_whole(connection, schema, table, frame)
            stored = schema_tables(connection, schema) if parts else {}
            for table, frame in parts.items():
                columns = stored.get(table.lower())
                replace_partition_rows(connection, schema, table, str(partition_key), frame, columns)

    def delete_partition(self, schema: str, table: str, partition_key: str) -> int:
        """Delete one partition's rows; returns how many were deleted (0 if the table is missing)."""
        if not self.table_exists(schema, table):
            return 0
        with self._transaction() as connection:
            columns = table_columns(connection, schema, table) or {}
            require_partitioned(schema, table, columns)
            target = qualified_name(connection, schema, table)
            rows = run_sql(connection, f"DELETE FROM {target} WHERE {PARTITION_COLUMN} = ?", [partition_key])
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
            target = qualified_name(connection, schema, table)
            if keys is None:
                order = f"{PARTITION_COLUMN}, rowid" if PARTITION_COLUMN in columns else "rowid"
                return connection.execute(f"SELECT * FROM {target} ORDER BY {order}").df()
            require_partitioned(schema, table, columns)
            sql = (
                f"SELECT * FROM {target} WHERE {PARTITION_COLUMN} IN (SELECT unnest(?::VARCHAR[])) "
                f"ORDER BY {PARTITION_COLUMN}, rowid"
            )
            return connection.execute(sql, [sorted(set(keys))]).df()

    def _columns(
        self, connection: duckdb.DuckDBPyConnection, schema: str, table: str
    ) -> dict[str, str] | None:
        if self._catalog is None:
            return table_columns(connection, schema, table)
        if schema.lower() not in self._catalog:
            self._catalog[schema.lower()] = schema_tables(connection, schema)
        return self._catalog[schema.lower()].get(table.lower())

    def execute_read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> pd.DataFrame:
        """Run a read query (on a read-only connection) with bound ``params``."""
        if not self.path.exists():
            raise WarehouseError(f"warehouse {self.path} does not exist yet: nothing has been written")
        with self.connect(read_only=True) as connection:
            return connection.execute(sql, params).df()


def _ensure_identity(connection: duckdb.DuckDBPyConnection) -> None:
    table = f"{IDENTITY_SCHEMA}.{IDENTITY_TABLE}"
    run_sql(connection, f"CREATE SCHEMA IF NOT EXISTS {IDENTITY_SCHEMA}")
    run_sql(connection, f"CREATE TABLE IF NOT EXISTS {table} (warehouse_id VARCHAR, created_at TIMESTAMPTZ)")
    run_sql(
        connection,
        f"INSERT INTO {table} SELECT ?, now() WHERE NOT EXISTS (SELECT 1 FROM {table})",
        [uuid.uuid4().hex],
    )


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The DuckDB warehouse for the assets: ``get()`` returns a ``Warehouse``."""

    path: str = "data/warehouse.duckdb"
    lock_timeout_s: float = 60.0

    def get(self) -> Warehouse:
        """The warehouse, after creating the folder of its file."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return Warehouse(self.path, lock_timeout_s=self.lock_timeout_s)
