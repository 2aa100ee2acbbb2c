"""The warehouse interface, and its default backend: one DuckDB file, one schema per study.

``Warehouse`` is what every backend keeps (a plain class, tested without Dagster): writes that
replace a partition or a table in one transaction, reads in (partition, insertion) order, the
warehouse's identity, ``exclusive()`` and ``reading()``. Its own backend is a DuckDB file; a
backend subclass (``resources/postgres_warehouse.py``) replaces ``connect``, ``_transaction``,
``_stored`` and ``_tables``, the module of its SQL (here ``resources/duckdb_tables.py``:
identifiers checked and quoted, values bound, column types that evolve). Import it from
``resources/warehouse.py``, which also picks the backend.

Connections are short (or, inside ``lease_connection()``, one per step, closed when idle:
``resources/warehouse_lease.py``); DuckDB lets one process write at a time, so a connection that meets
another process's file lock waits with backoff (up to ``lock_timeout_s``) and then fails with
``WarehouseLockedError`` -- a write is never dropped. Partitioned tables carry a
``partition_key VARCHAR`` column; ``replace_partition`` deletes and inserts a partition's rows in
one transaction, so a re-run gives identical rows and a crash leaves the old ones.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from resources import duckdb_tables
from resources.arrow_memory import release_arrow_memory
from resources.deferred_writes import held_writes, write_held_first
from resources.duckdb_tables import database_of, is_lock_error, quote_identifier
from resources.partition_writes import delete_partition_rows, write_tables
from resources.warehouse_identity import IDENTITY_QUERY, IDENTITY_SCHEMA, IDENTITY_TABLE, ensure_identity
from resources.warehouse_lease import lease_for, open_waiting
from resources.warehouse_waiting import Backoff, WarehouseError

# Open databases whose identity row is committed: a leased connection writes it once, not per write.
_IDENTIFIED: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()


class Warehouse:
    """One DuckDB file; a schema per study; short connections that wait for the file lock.

    A backend subclass replaces ``connect``, ``_transaction``, ``_stored`` and ``_tables`` (the
    module of its SQL, with the functions of ``resources/duckdb_tables.py``); the rest is shared.

    Parameters
    ----------
    path : str or Path
        The DuckDB file (created on the first write).
    lock_timeout_s : float
        How long a connection waits for another process's lock before ``WarehouseLockedError``.
    initial_backoff_s, max_backoff_s : float
        The wait between attempts doubles from the first to the second (with jitter).
    """

    _tables: Any = duckdb_tables  # the backend's SQL: a module with duckdb_tables' functions
    leases_connections = True  # lease_connection() shares one connection (a backend may say no)

    def __init__(
        self,
        path: str | Path,
        *,
        lock_timeout_s: float = 60.0,
        initial_backoff_s: float = 0.05,
        max_backoff_s: float = 1.0,
    ) -> None:
        self._init_waits(lock_timeout_s, initial_backoff_s, max_backoff_s)
        self.path = Path(path)

    def _init_waits(self, lock_timeout_s: float, initial_backoff_s: float, max_backoff_s: float) -> None:
        self._backoff = Backoff(lock_timeout_s, initial_backoff_s, max_backoff_s)
        self.lock_timeout_s = self._backoff.lock_timeout_s
        self._held: Any = None  # the connection of exclusive() or reading()
        # Inside reading() only (no DDL can happen there): schema -> table -> columns.
        self._catalog: dict[str, dict[str, dict[str, str]]] | None = None

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    def _stored(self) -> bool:
        """Whether there is anything to read (DuckDB: the file exists); reads of nothing are empty."""
        return self.path.exists()

    def exists(self) -> bool:
        """Whether the warehouse is there (DuckDB: its file; PostgreSQL: its first write is)."""
        return self._stored()

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short connection; waits (with backoff) while another process holds the file lock.

        Do not nest: DuckDB refuses a read-only and a read-write connection to one file in one
        process at the same time, and a held connection blocks every other process. Inside
        ``exclusive()`` every call uses the one held connection. Inside ``lease_connection()``
        (``resources/warehouse_lease.py``) it is a cursor of the process's one leased connection,
        in a read-only transaction when ``read_only``.
        """
        if self._held is not None:
            yield self._held
            return
        lease = lease_for(self.path)
        opened = (  # inside lease_connection(): a cursor of the process's one leased connection
            lease.connection(lambda: self._open_file(read_only=False), read_only=read_only)
            if lease is not None
            else closing(self._open_file(read_only=read_only))
        )
        try:
            with opened as connection:
                yield connection
        finally:  # the Arrow tables its reads converted and its inserts registered are freed by now
            release_arrow_memory()

    def _open_file(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        return self._backoff.attempt(
            lambda: open_waiting(self.path, read_only=read_only),
            is_lock_error,
            lambda attempts, error: (
                f"warehouse {self.path}: still locked by another process after {self.lock_timeout_s:g} s "
                f"({attempts} attempts); DuckDB allows one writer at a time. Last error: {error}"
            ),
        )

    @contextmanager
    def exclusive(self) -> Iterator[Warehouse]:
        """A read-modify-write under the file's write lock: one transaction, no writer in between.

        Every read and write made through the yielded warehouse happens in that transaction, so
        two processes that read, compute and write the same table cannot overwrite each other's
        update with a stale one. Keep the work inside short: it blocks every other connection.
        """
        if self._held is not None:
            raise WarehouseError(f"{self!r}: exclusive() does not nest")
        write_held_first(self, None, None)  # everything this thread holds, before the lock
        with self._transaction() as connection, self._holding(connection) as held:
            yield held

    @contextmanager
    def reading(self) -> Iterator[Warehouse]:
        """Several reads on one read-only connection (opening a connection costs ~20 ms).

        Only read through the yielded warehouse; it keeps other processes from writing until the
        block ends, so leave before computing. Inside ``exclusive()`` it is that warehouse.
        """
        if self._held is not None or not self._stored():
            yield self
            return
        with self.connect(read_only=True) as connection, self._holding(connection) as held:
            held._catalog = {}
            yield held

    @contextmanager
    def _holding(self, connection: Any) -> Iterator[Warehouse]:
        held = copy.copy(self)  # same backend and settings, bound to this connection
        held._held, held._catalog = connection, None
        try:
            yield held
        finally:
            held._held = None
            held._catalog = None

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        if self._held is not None:  # already inside exclusive(): its transaction covers this
            yield self._held
            return
        with self.connect() as connection:
            connection.begin()
            database = database_of(connection)
            try:
                if database not in _IDENTIFIED:
                    ensure_identity(connection, self._tables.run_sql)
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
            _IDENTIFIED.add(database)  # committed: the open database has its identity row from now on

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
        """Replace whole tables and one partition of other tables together, in one transaction.

        Inside ``deferring_writes()`` a write of partitions only is held (resources/deferred_writes.py).
        """
        if partition_tables and (not isinstance(partition_key, str) or not partition_key):
            raise ValueError(f"partition_key must be a non-empty string, got {partition_key!r}")
        quote_identifier(schema, what="schema")
        held = held_writes(self) if partition_tables and not whole_tables and self._held is None else None
        if held is not None and partition_tables:
            checked = {t: self._tables.checked_frame(schema, t, f) for t, f in partition_tables.items()}
            held.hold(self, schema, str(partition_key), checked)
            return
        parts = {table: [(str(partition_key), frame)] for table, frame in (partition_tables or {}).items()}
        self.replace_partitions(schema, parts, whole_tables=whole_tables)

    def replace_partitions(
        self,
        schema: str,
        tables: Mapping[str, Sequence[tuple[str, pd.DataFrame]]],
        *,
        whole_tables: Mapping[str, pd.DataFrame] | None = None,
    ) -> None:
        """Replace partitions of several tables (table -> [(partition, frame), ...]) in one transaction.

        The result is that of writing each partition in turn; a table's consecutive frames with the same
        columns and types are written as one (one DELETE, one INSERT). ``whole_tables`` go whole, first.
        """
        quote_identifier(schema, what="schema")
        sql = self._tables
        whole = {t: sql.checked_frame(schema, t, f) for t, f in (whole_tables or {}).items()}
        parts = {t: [(k, sql.checked_frame(schema, t, f)) for k, f in p] for t, p in tables.items()}
        write_held_first(self, schema, [*whole, *parts])
        with self._transaction() as connection:
            write_tables(connection, sql, schema, whole, parts)

    def delete_partition(self, schema: str, table: str, partition_key: str) -> int:
        """Delete one partition's rows; returns how many were deleted (0 if the table is missing)."""
        if not self.table_exists(schema, table):  # which writes its held rows first
            return 0
        with self._transaction() as connection:
            return delete_partition_rows(connection, self._tables, schema, table, partition_key)

    # -- reads --------------------------------------------------------------------------------

    def identity(self) -> str | None:
        """The id this warehouse was given at its first write (None: no file, or never written).

        A deleted warehouse comes back with another id, so a reader that remembers the id can
        tell a rebuilt (or swapped) warehouse from the one it knew.
        """
        if not self._stored() or not self.table_exists(IDENTITY_SCHEMA, IDENTITY_TABLE):
            return None
        with self.connect(read_only=True) as connection:
            rows = self._tables.read_query(connection, IDENTITY_QUERY, [])
        return None if rows.empty else str(rows.iloc[0, 0])

    def table_exists(self, schema: str, table: str) -> bool:
        """Whether ``schema.table`` exists (False when the file does not exist yet)."""
        quote_identifier(schema, what="schema")
        quote_identifier(table, what="table")
        write_held_first(self, schema, [table], in_snapshot=self._held is not None)
        if not self._stored():
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
        columns: Sequence[str] | None = None,
        arrow_text: Collection[str] = (),
    ) -> pd.DataFrame:
        """Rows of ``schema.table`` (optionally of some partitions); an empty frame if it is missing.

        ``columns``: those columns only, in that order (a 1e7-row table's unit ids are gigabytes);
        ``arrow_text``: those text columns as ``string[pyarrow]`` (resources/arrow_memory.py)."""
        keys = duckdb_tables.keys_to_read(partition_key, partition_keys)
        quote_identifier(schema, what="schema")
        quote_identifier(table, what="table")
        write_held_first(self, schema, [table], in_snapshot=self._held is not None)
        if not self._stored():
            return pd.DataFrame()
        with self.connect(read_only=True) as connection:
            stored = self._columns(connection, schema, table)
            if stored is None:
                return pd.DataFrame()
            if keys is not None:
                self._tables.require_partitioned(schema, table, stored)
            target = self._tables.qualified_name(connection, schema, table)
            chosen = duckdb_tables.chosen_columns(schema, table, stored, columns)
            return self._tables.select_rows(connection, target, chosen, keys, arrow_text=arrow_text)

    def _columns(self, connection: Any, schema: str, table: str) -> dict[str, str] | None:
        if self._catalog is None:
            return self._tables.table_columns(connection, schema, table)  # type: ignore[no-any-return]
        if schema.lower() not in self._catalog:
            self._catalog[schema.lower()] = self._tables.schema_tables(connection, schema)
        return self._catalog[schema.lower()].get(table.lower())

    def read_query_on(
        self,
        schema: str,
        table: str,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        values: pd.Series | None = None,
    ) -> pd.DataFrame | None:
        """A read query on one table: ``{table}`` in ``sql`` stands for it, named as the backend names it.

        ``{values}`` stands for a one-column relation (``value``) of ``values`` as text, however many.
        ``params`` are named (``$name``). None when the table does not exist. Valid SQL on both backends.
        """
        write_held_first(self, schema, [table], in_snapshot=self._held is not None)
        if not self._stored():
            return None
        bound = dict(params or {})
        with self.connect(read_only=True) as connection:
            if self._columns(connection, schema, table) is None:
                return None
            target = self._tables.qualified_name(connection, schema, table)
            with self._tables.values_relation(connection, values, bound) as relation:
                query = sql.format(table=target, values=relation)
                return self._tables.read_query(connection, query, bound)  # type: ignore[no-any-return]

    def execute_read(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> pd.DataFrame:
        """Run a read query (on a read-only connection) with bound ``params`` (``?`` placeholders).

        The SQL is in the backend's dialect (DuckDB's or PostgreSQL's); ``?`` placeholders work on both.
        """
        write_held_first(self, None, None, in_snapshot=self._held is not None)
        if not self._stored():
            raise WarehouseError(f"warehouse {self.path} does not exist yet: nothing has been written")
        with self.connect(read_only=True) as connection:
            return self._tables.read_query(connection, sql, params)  # type: ignore[no-any-return]
