"""One DuckDB connection per step, let go while the step computes: the warehouse's connection lease.

Opening a DuckDB connection and closing it (which checkpoints) costs ~25 ms; a step that reads and
writes a batch's tables a few times over a range of batches pays it several times a batch. Inside
``with lease_connection(store):`` every ``Warehouse`` of that DuckDB file in this process (not only
``store``: a body calls ``warehouse.get()`` many times, and a batch source opens its own) takes its
connections from one read-write connection, opened on first use:

* each ``connect()`` block gets a cursor of it (DuckDB: a connection of its own to the same open
  database, microseconds to make), so transactions stay exactly as they were: ``write()`` and
  ``exclusive()`` are one transaction each, a rollback ends only its block's, and blocks of other
  threads or nested blocks do not share one;
* a read-only block (``execute_read``, ``table_exists``, ``reading()``) runs in a ``READ ONLY``
  transaction: one snapshot for the block, and a write in it fails as on a read-only connection.
  Under the lease every connect to the file goes through it: DuckDB refuses a read-only and a
  read-write connection to one file in one process at the same time;
* the connection is closed (releasing the file's lock, which the daemon's sensors and other runs
  wait for) ``LEASE_IDLE_S`` after its last block ends, by a small daemon thread, so it is not held
  while the step computes; never while a block uses it. The next block reopens it (through the
  warehouse's backoff). An error that breaks it (its probe fails) drops it the same way;
* a step that uses the warehouse without pause (fast batches) lets go of it too while another
  process waits for the file: a connection open for ``LEASE_MAX_HOLD_S`` is closed when no block
  uses it, and reopened ``LEASE_GAP_S`` later at the earliest, so the process retrying with
  backoff gets in (a run waits up to 60 s). A process waits through :func:`open_waiting`, which
  touches a marker file beside the warehouse (``<file>.waiting``) at each attempt the lock refuses;
  a lease whose marker was touched in the last ``WAITER_RECENT_S`` lets go, any other holds on
  (closing and reopening costs a checkpoint and the gap: ~8% of a backfill with no one waiting).
  A process that opens the file without :func:`open_waiting` (a DuckDB shell) gets in when the
  step pauses or ends;

PostgreSQL connections are not leased (``lease_connection`` is a no-op there): a session setting
(a read-only snapshot) would have to be undone before every later write, and PostgreSQL's
connections hold no lock that other processes wait for.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from resources.duckdb_tables import is_lock_error, note_cursor

# How long an unused leased connection stays open: longer than the gap between a step's reads and
# writes of one batch, far shorter than the backoff (up to 60 s) other processes wait for the lock.
LEASE_IDLE_S = 0.2
# A connection in use without pause is let go after this long, for at least LEASE_GAP_S: another
# process retrying about once a second finds the file free with probability ~GAP / (HOLD + GAP) per
# attempt (9%; a run's 60 s of attempts all fail about once in 300 to 700), for ~10% of the step's
# time at most, and only while it uses the warehouse without pause.
LEASE_MAX_HOLD_S = 1.0
LEASE_GAP_S = 0.1
# A waiter touches the marker at each refused attempt, at most its backoff's longest wait apart (1 s
# by default); a touch this recent means someone still waits (or gave up in the last minute).
WAITER_RECENT_S = 60.0
WAITING_SUFFIX = ".waiting"
# DuckDB's buffer pool may grow to 80% of the machine's memory: it kept a copy of what a step wrote
# until the connection closed (0.9 GiB for a 1e7-row batch's estimation tables) beside the frames,
# which live in Python. Past the limit it drops written blocks and spills to its temporary folder.
DUCKDB_MEMORY_LIMIT = "256MB"

_LEASES: dict[str, WarehouseLease] = {}  # resolved file path -> its lease in this process
_REGISTRY = threading.Lock()


def _key(path: str | Path) -> str:
    return str(Path(path).resolve())


class WarehouseLease:
    """The leased connection of one DuckDB file in this process (see the module's docstring).

    ``opened`` counts the connections it opened (1 when every block found it open).
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self.opened = 0
        self._holders = 1  # nested lease_connection blocks on this file
        self._changed = threading.Condition()
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._users = 0  # connect() blocks using it now (any thread, nested ones too)
        self._last_used = 0.0
        self._opened_at = 0.0
        self._reopen_at = 0.0  # after a connection was let go for its hold's end
        self._broken = False
        self._ended = False
        threading.Thread(target=self._release_when_idle, name="warehouse-lease", daemon=True).start()

    @property
    def is_open(self) -> bool:
        """Whether the leased connection is open now (this process holds the file's lock)."""
        with self._changed:
            return self._connection is not None

    @contextmanager
    def connection(
        self, open_connection: Callable[[], duckdb.DuckDBPyConnection], *, read_only: bool
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of the leased connection for one ``connect()`` block (opened by ``open_connection``)."""
        base = self._take(open_connection)
        failed = False
        try:
            cursor = base.cursor()
            note_cursor(cursor, base)
            try:
                if read_only:
                    cursor.execute("BEGIN TRANSACTION READ ONLY")
                yield cursor
            finally:
                cursor.close()  # ends what the block left open: a read-only or a failed transaction
        except BaseException:
            failed = True
            raise
        finally:
            self._give_back(base, failed)

    def _take(self, open_connection: Callable[[], duckdb.DuckDBPyConnection]) -> duckdb.DuckDBPyConnection:
        with self._changed:
            if self._broken and self._users == 0:
                self._close()
            while self._connection is None and time.monotonic() < self._reopen_at:
                self._changed.wait(self._reopen_at - time.monotonic())  # another process's turn
            if self._connection is None:
                self._connection = open_connection()  # waits for another process's lock, with backoff
                self._opened_at = time.monotonic()
                self.opened += 1
            self._users += 1
            return self._connection

    def _give_back(self, base: duckdb.DuckDBPyConnection, failed: bool) -> None:
        broken = failed and not _alive(base)  # a failed statement leaves it usable; a fatal error does not
        with self._changed:
            self._users -= 1
            self._last_used = time.monotonic()
            self._broken = self._broken or (broken and base is self._connection)
            if self._users == 0 and (self._broken or self._ended):
                self._close()
            elif self._users == 0 and self._last_used - self._opened_at >= LEASE_MAX_HOLD_S:
                if _someone_waits(self.key):
                    self._close()
                    self._reopen_at = self._last_used + LEASE_GAP_S
                else:  # no one waits: hold on for another LEASE_MAX_HOLD_S, then look again
                    self._opened_at = self._last_used
            self._changed.notify_all()

    def _close(self) -> None:
        connection, self._connection, self._broken = self._connection, None, False
        if connection is not None:
            with contextlib.suppress(duckdb.Error):  # a broken database: closing it is all that was wanted
                connection.close()  # checkpoints and lets go of the file's lock

    def _release_when_idle(self) -> None:
        with self._changed:
            while not self._ended:
                if self._connection is None or self._users:
                    self._changed.wait()
                    continue
                idle = time.monotonic() - self._last_used
                if idle < LEASE_IDLE_S:
                    self._changed.wait(LEASE_IDLE_S - idle)
                    continue
                self._close()

    def _end(self) -> None:
        with self._changed:
            self._ended = True
            if self._users == 0:
                self._close()  # else the last block's end closes it
            self._changed.notify_all()


def waiting_marker(path: str | Path) -> Path:
    """The file a process waiting for ``path``'s lock touches (its modification time is the message)."""
    path = Path(path).resolve()  # the holder's lease names the file by its resolved path
    return path.with_name(path.name + WAITING_SUFFIX)


def open_waiting(path: str | Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect``; when another process holds the file's lock, say so to its lease, then raise."""
    try:
        return duckdb.connect(str(path), read_only=read_only, config={"memory_limit": DUCKDB_MEMORY_LIMIT})
    except duckdb.IOException as error:
        if is_lock_error(error):
            with contextlib.suppress(OSError):  # a read-only folder: in when the holder's step pauses
                waiting_marker(path).touch()
        raise


def _someone_waits(path: str | Path) -> bool:
    try:
        return time.time() - waiting_marker(path).stat().st_mtime < WAITER_RECENT_S
    except OSError:  # no marker: no one has waited
        return False


def _alive(connection: duckdb.DuckDBPyConnection) -> bool:
    try:
        probe = connection.cursor()
        try:
            probe.execute("SELECT 1").fetchall()
        finally:
            probe.close()
    except Exception:
        return False
    return True


def lease_for(path: str | Path) -> WarehouseLease | None:
    """The lease of this DuckDB file in this process, or None (connections are then short)."""
    if not _LEASES:  # the common case costs no path resolution
        return None
    return _LEASES.get(_key(path))


@contextmanager
def lease_connection(warehouse: Any) -> Iterator[WarehouseLease | None]:
    """Share one read-write connection to ``warehouse``'s DuckDB file, released when idle.

    Every ``Warehouse`` of that file in this process uses it until the block ends; nested blocks on
    one file share one lease. Yields the lease, or None for a warehouse whose connections are not
    leased (PostgreSQL, or anything that is not a DuckDB ``Warehouse``).

    Example
    -------
    >>> with lease_connection(resource.get()):  # doctest: +SKIP
    ...     for batch in batches:
    ...         body(batch)
    """
    path = getattr(warehouse, "path", None)
    if path is None or not getattr(warehouse, "leases_connections", False):
        yield None
        return
    key = _key(path)
    with _REGISTRY:
        lease = _LEASES.get(key)
        if lease is None:
            lease = _LEASES[key] = WarehouseLease(key)
        else:
            lease._holders += 1
    try:
        yield lease
    finally:
        with _REGISTRY:
            lease._holders -= 1
            if lease._holders == 0:
                del _LEASES[key]
                lease._end()
