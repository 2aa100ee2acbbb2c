"""The warehouse on PostgreSQL: the ``Warehouse`` interface on one database, a schema per study.

Everything but the connection, the transaction and the SQL is ``Warehouse``'s own
(``resources/duckdb_warehouse.py``); the SQL is ``resources/postgres_tables.py``, function for
function DuckDB's. The URL names the database (``postgresql://user@host:5432/warehouse``); the
password is in it or, better, in libpq's ``PGPASSWORD`` (or ``~/.pgpass``), never in a file of
the project: the pipeline reads the URL from ``ASSIMILATE_WAREHOUSE_URL`` only. Repr and error
messages never show the password.

PostgreSQL lets many processes write at once, but the warehouse keeps DuckDB's rule of one writer
at a time: every write transaction first takes one transaction-level advisory lock, so
``exclusive()`` is a read-modify-write no other writer can interleave with, and a first write
creates the identity exactly once. A writer waits for that lock at most ``lock_timeout_s`` (then
``WarehouseLockedError``, nothing written); a connection refused for a moment (server starting,
out of slots) is retried as long. Reads do not wait for writers of partitions: each read-only
connection sees one snapshot (REPEATABLE READ), so a ``reading()`` block reads every table as of
one moment. A table being replaced whole (dropped and created) is locked until its writer commits;
a reader waits for it at most ``lock_timeout_s`` too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.errors
from psycopg2.extensions import connection as Connection  # noqa: N812

from resources import postgres_tables
from resources.duckdb_warehouse import Warehouse
from resources.warehouse_identity import ensure_identity
from resources.warehouse_waiting import WarehouseError, WarehouseLockedError

SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2")
# pg_advisory_xact_lock key of the warehouse's one writer: "assimila" in ASCII.
WRITER_LOCK = 0x617373696D696C61
# Refusals that end by themselves; any other connection error (a wrong password, no such database) does not.
_TRANSIENT = (
    "Connection refused",
    "the database system is starting up",
    "too many clients",
    "timeout expired",
)


def redacted(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def checked_url(url: str) -> str:
    """The libpq URL of a ``postgresql://`` warehouse URL, or a ValueError naming what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("the PostgreSQL warehouse URL is empty")
    parts = urlsplit(url.strip())
    shown = redacted(url.strip())
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"warehouse URL {shown!r}: the scheme must be one of {', '.join(SCHEMES)} "
            "(postgresql://user@host:5432/database)"
        )
    if not parts.path.strip("/"):
        raise ValueError(f"warehouse URL {shown!r} names no database (postgresql://user@host:5432/database)")
    return urlunsplit(parts._replace(scheme="postgresql"))


class PostgresWarehouse(Warehouse):
    """One PostgreSQL database; a schema per study; one writer at a time.

    Parameters
    ----------
    url : str
        ``postgresql://user[:password]@host[:port]/database[?sslmode=...]``; libpq's environment
        (``PGPASSWORD``, ``PGSSLMODE``, ...) fills what the URL leaves out.
    lock_timeout_s : float
        How long a writer waits for another writer, or a connection for a busy server, before
        ``WarehouseLockedError``.
    initial_backoff_s, max_backoff_s : float
        The wait between connection attempts doubles from the first to the second (with jitter).
    """

    _tables = postgres_tables
    # Not leased (resources/warehouse_lease.py): a read-only snapshot is a session setting a later
    # write on the same connection would inherit, and PostgreSQL's connections lock out no process.
    leases_connections = False

    def __init__(
        self,
        url: str,
        *,
        lock_timeout_s: float = 60.0,
        initial_backoff_s: float = 0.05,
        max_backoff_s: float = 1.0,
    ) -> None:
        self._init_waits(lock_timeout_s, initial_backoff_s, max_backoff_s)
        self.url = checked_url(url)

    def __repr__(self) -> str:
        return f"PostgresWarehouse({redacted(self.url)!r})"

    def _stored(self) -> bool:
        return True  # the database is there (or connecting says why not)

    def exists(self) -> bool:
        """Whether the warehouse has been written (its identity is set): an empty database is not one."""
        return self.identity() is not None

    def _open(self) -> Connection:
        # Every lock wait (a writer's for the writer lock, a reader's for a table being replaced
        # whole) ends after lock_timeout_s, as DuckDB's wait for its file lock does; 0 would mean never.
        timeout_ms = max(1, round(self.lock_timeout_s * 1000))
        options = f"-c TimeZone=UTC -c lock_timeout={timeout_ms}"
        return psycopg2.connect(self.url, application_name="assimilate", options=options)

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[Connection]:
        """A short connection (a read-only one reads one snapshot); waits while the server is busy.

        A lost connection, a deadlock or a writer lock held past ``lock_timeout_s`` surface as
        ``WarehouseError`` (``WarehouseLockedError`` for the lock), as DuckDB's lock does.
        """
        if self._held is not None:
            yield self._held
            return
        try:
            connection = self._backoff.attempt(
                self._open,
                lambda error: (
                    isinstance(error, psycopg2.OperationalError)
                    and any(text in str(error) for text in _TRANSIENT)
                ),
                lambda attempts, error: (
                    f"{self!r}: the server refused connections for {self.lock_timeout_s:g} s "
                    f"({attempts} attempts). Last error: {str(error).strip()}"
                ),
            )
        except psycopg2.OperationalError as error:
            raise WarehouseError(f"{self!r}: cannot connect: {str(error).strip()}") from error
        try:
            if read_only:
                connection.set_session(readonly=True, isolation_level="REPEATABLE READ")
            yield connection
        except psycopg2.errors.LockNotAvailable as error:
            raise WarehouseLockedError(
                f"{self!r}: another writer held the warehouse (or the table) for longer than "
                f"{self.lock_timeout_s:g} s; nothing was written"
            ) from error
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
            raise WarehouseError(f"{self!r}: {str(error).strip()}") from error
        finally:
            connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        if self._held is not None:  # already inside exclusive(): its transaction covers this
            yield self._held
            return
        with self.connect() as connection:
            try:
                postgres_tables.run_sql(connection, "SELECT pg_advisory_xact_lock(?)", [WRITER_LOCK])
                ensure_identity(connection, postgres_tables.run_sql)
                yield connection
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
