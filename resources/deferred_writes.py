"""A step's partition writes over a range of batches, held and written together: one write per table.

A step over a range of batches (assets/partition_range.py) replaces each batch's partition of a
dozen tables. Written batch by batch, each table costs a frame's registration, a DELETE and an
INSERT per batch, whatever the batch's size (about 90 ms of a 1e3-row daily batch's 270 ms went to
them); held and written together, a table costs them once per range (docs/DECISIONS.md 51). Inside ``with deferring_writes(store):`` every
``Warehouse`` of the same database used by this thread (a step runs in one) holds its partition
writes (``replace_partition_tables``) instead of making them, and writes what it holds:

* before a read of a table it holds rows for (that table's rows, and those of the schema's other
  tables a read or write has needed before, in one transaction: a step that reads two of its own
  tables at every batch pays one commit a batch, not two), so a read never misses a write made
  before it; such a read inside ``reading()`` is refused (``HeldRowsError``): its
  snapshot would be older than the write, so the read goes outside the block;
* before any other write to such a table, any read of arbitrary SQL (``execute_read``) and any
  ``exclusive()`` block (everything it holds);
* when it holds more than ``FLUSH_ROWS`` rows (a range of large batches is not kept in memory);
* at the block's end, also when the step fails: the batches before the failure stay written, as a
  step that wrote each batch leaves them.

Held partitions of one table are written in one transaction by ``Warehouse.replace_partitions``:
consecutive frames with the same columns and types as one frame, one DELETE and one INSERT. When
that write fails (a type change the table cannot take), the held batches are written one by one in
their order, each batch's tables in one transaction, so the error names the batch that caused it
and the batches before it are written. A frame handed over must not be changed afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from resources.duckdb_warehouse import Warehouse

# Held rows (all tables) beyond which they are written at once, so a range of large batches is not
# held in memory: 2e5 rows are ten batches of 1e4 rows in intake (a raw and a typed row for each),
# tens of MB, and a write that size costs its rows far more than its statements.
FLUSH_ROWS = 200_000

_Held = tuple[int, str, str, str, pd.DataFrame]  # order made, schema, table, partition, frame

# database -> the writes held for it, per thread: two steps in one process (a Dask worker's
# threads) each write their own before they report, whatever the other does.
_DEFERRALS = threading.local()


class HeldRowsError(RuntimeError):
    """A read inside ``reading()`` of a table whose newest rows are held, not yet written."""


class HeldWrites:
    """The partition writes held for one database, by table, in the order they were made."""

    def __init__(self) -> None:
        # (schema, table) in lower case -> its held partitions: (order made, schema, table, partition, frame)
        self._held: dict[tuple[str, str], list[_Held]] = {}
        self._made = 0
        self._rows = 0
        # schema (lower case) -> the tables a read or a write has needed written: the next time one
        # is needed, all of them are written in one transaction (a step that reads two of its own
        # tables at every batch pays one commit a batch, not two)
        self._needed: dict[str, set[str]] = {}

    def hold(
        self, store: Warehouse, schema: str, partition_key: str, checked: Mapping[str, pd.DataFrame]
    ) -> None:
        """Hold one partition of some tables (``checked``: their frames, checked by the writer)."""
        name = schema.lower()
        again = [
            t for t in checked if any(e[3] == partition_key for e in self._held.get((name, t.lower()), []))
        ]
        if again:  # the earlier rows first: a later write replaces them as it would have
            self.write(store, schema, again)
        for table, frame in checked.items():
            self._held.setdefault((name, table.lower()), []).append(
                (self._made, schema, table, partition_key, frame)
            )
            self._made += 1
            self._rows += len(frame)
        if self._rows > FLUSH_ROWS:
            self.write(store)

    def holds(self, schema: str | None, tables: list[str] | None) -> bool:
        """Whether rows of ``schema``'s ``tables`` are held (of any table when None)."""
        return bool(self._chosen(schema, tables))

    def write(self, store: Warehouse, schema: str | None = None, tables: list[str] | None = None) -> None:
        """Write the held rows (of ``schema``'s ``tables`` only, when given), each schema in one transaction.

        Given tables are remembered as needed; the schema's other needed tables are written with them.
        """
        if schema is not None and tables is not None:
            needed = self._needed.setdefault(schema.lower(), set())
            needed.update(t.lower() for t in tables)
            tables = sorted(needed)
        taken: list[_Held] = []
        for key in self._chosen(schema, tables):
            taken += self._held.pop(key)
        self._rows -= sum(len(entry[4]) for entry in taken)
        taken.sort(key=lambda entry: entry[0])
        for name in dict.fromkeys(entry[1].lower() for entry in taken):
            _write_together(store, [entry[1:] for entry in taken if entry[1].lower() == name])

    def _chosen(self, schema: str | None, tables: list[str] | None) -> list[tuple[str, str]]:
        """The held tables among ``schema``'s ``tables`` (every held one of the schema, or of all, for None)."""
        if schema is None:
            return list(self._held)
        if tables is None:
            return [key for key in self._held if key[0] == schema.lower()]
        wanted = dict.fromkeys((schema.lower(), t.lower()) for t in tables)
        return [key for key in wanted if key in self._held]


def _write_together(store: Warehouse, held: list[tuple[str, str, str, pd.DataFrame]]) -> None:
    """Write one schema's held partitions (schema, table, partition, frame; in the order made)."""
    schema = held[0][0]
    tables: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for _, table, partition_key, frame in held:
        tables.setdefault(table, []).append((partition_key, frame))
    try:
        store.replace_partitions(schema, tables)
    except ValueError:  # the batch that caused it, with the batches before it written
        batches: dict[str, dict[str, pd.DataFrame]] = {}
        for _, table, partition_key, frame in held:
            batches.setdefault(partition_key, {})[table] = frame
        for partition_key, frames in batches.items():
            try:
                store.replace_partitions(schema, {t: [(partition_key, f)] for t, f in frames.items()})
            except ValueError as error:
                raise ValueError(f"batch {partition_key}: {error}") from error


def held_writes(store: Any) -> HeldWrites | None:
    """The writes held for ``store``'s database in this thread (None: writes are made at once)."""
    held: dict[str, HeldWrites] | None = getattr(_DEFERRALS, "held", None)
    if not held:  # the common case costs no path resolution
        return None
    return held.get(_database(store))


def write_held_first(
    store: Warehouse, schema: str | None, tables: list[str] | None, *, in_snapshot: bool = False
) -> None:
    """Before a read or write of ``schema``'s ``tables`` (all held rows when ``schema`` is None):
    write their held rows; inside ``reading()`` (``in_snapshot``), refuse to read them."""
    held = held_writes(store)
    if held is None or not held.holds(schema, tables):
        return
    if in_snapshot:
        names = ", ".join(f"{schema}.{table}" for table in tables or ["*"])
        raise HeldRowsError(
            f"{names}: rows written in this step are held until the step writes them "
            "(resources/deferred_writes.py); read the table outside reading()"
        )
    held.write(store, schema, tables)


@contextmanager
def deferring_writes(store: Any) -> Iterator[HeldWrites | None]:
    """Hold the partition writes to ``store``'s database until a read needs them or the block ends.

    Nested blocks on one database share the held writes; the outermost block's end writes them.
    Yields None for anything that is not a warehouse (writes are then made at once).
    """
    if store is None or not hasattr(store, "replace_partitions"):
        yield None
        return
    if not hasattr(_DEFERRALS, "held"):
        _DEFERRALS.held = {}
    key, deferrals = _database(store), _DEFERRALS.held
    outermost = key not in deferrals
    held = deferrals.setdefault(key, HeldWrites())
    try:
        yield held
    finally:
        if outermost:
            try:
                held.write(store)
            finally:
                del deferrals[key]


def _database(store: Any) -> str:
    """DuckDB: the file's resolved path; PostgreSQL: its URL."""
    path = getattr(store, "path", None)
    return str(Path(path).resolve()) if path is not None else str(store.url)
