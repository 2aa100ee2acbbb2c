"""A real PostgreSQL server for the tests: the Debian package's binaries, data in a temporary folder.

The server listens on 127.0.0.1 only and runs as the package's ``postgres`` system user when the
tests run as root (initdb refuses root). Clients connect as a non-superuser role with a password
(scram-sha-256). ``running_postgres()`` starts one and stops and removes it at the end;
``fresh_database`` gives a test its own empty database owned by that role.

The fixtures at the bottom are imported by tests/conftest.py: ``postgres_cluster`` (one server per
session, started only when a test asks for it) and ``postgres_warehouse_url`` (a fresh database per
test, as a ``postgresql://`` URL with its password).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

ENV_VARS = (
    "ASSIMILATE_DAGSTER_PG_HOST",
    "ASSIMILATE_DAGSTER_PG_PORT",
    "ASSIMILATE_DAGSTER_PG_DB",
    "ASSIMILATE_DAGSTER_PG_USER",
    "ASSIMILATE_DAGSTER_PG_PASSWORD",
)


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    db_name: str
    user: str
    password: str
    superuser_password: str = ""

    def env(self) -> dict[str, str]:
        values = (self.host, str(self.port), self.db_name, self.user, self.password)
        return dict(zip(ENV_VARS, values, strict=True))

    def connect(self) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.host, port=self.port, dbname=self.db_name, user=self.user, password=self.password
        )

    def admin(self) -> psycopg2.extensions.connection:
        """A superuser connection in autocommit (CREATE/DROP DATABASE run outside transactions)."""
        connection = psycopg2.connect(
            host=self.host,
            port=self.port,
            dbname="postgres",
            user="postgres",
            password=self.superuser_password,
        )
        connection.autocommit = True
        return connection

    def url(self, db_name: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{db_name}"


def _server_binaries() -> Path:
    """The newest installed server's bin folder; skip (fail in CI) if there is none."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name)
    )
    if found:
        return Path(found[-1]).parent
    message = "PostgreSQL server binaries not found (Debian package postgresql; scripts/setup.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_postgres(db_name: str = "dagster", user: str = "assimilate") -> Iterator[PostgresServer]:
    """A PostgreSQL server in a temporary folder on 127.0.0.1, stopped and removed at the end.

    ``db_name`` is created, owned by ``user``: a role with a password, no superuser, no CREATEDB.
    """
    bin_dir = _server_binaries()
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root: use the package's system user
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, but the Debian package's 'postgres' user does not exist")
        as_user = ["runuser", "-u", "postgres", "--"]
    # Not pytest's tmp_path: its parent folders are private to the user running the tests.
    base = Path(tempfile.mkdtemp(prefix="assimilate-pg-"))
    data, log, pwfile = base / "data", base / "server.log", base / "superuser-password"
    superuser_password = secrets.token_urlsafe(24)
    pwfile.write_text(superuser_password + "\n")
    pwfile.chmod(0o600)
    if owner is not None:
        for path in (base, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def run(*command: str | Path) -> None:
        done = subprocess.run(
            [*as_user, *map(str, command)], cwd=base, capture_output=True, text=True, timeout=60
        )
        server_log = log.read_text() if log.exists() else ""
        assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}{done.stderr}{server_log}"

    port = _free_port()
    try:
        run(
            bin_dir / "initdb", "-D", data, "-U", "postgres", f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        run(bin_dir / "pg_ctl", "start", "-D", data, "-l", log, "-w", "-t", "30", "-o", options)
        server = PostgresServer(
            host="127.0.0.1",
            port=port,
            db_name=db_name,
            user=user,
            password=secrets.token_urlsafe(24),
            superuser_password=superuser_password,
        )
        admin = server.admin()
        with admin.cursor() as cursor:
            cursor.execute(
                f"CREATE ROLE {server.user} LOGIN NOSUPERUSER NOCREATEDB PASSWORD %s", (server.password,)
            )
            cursor.execute(f"CREATE DATABASE {server.db_name} OWNER {server.user}")
        admin.close()
        yield server
    finally:
        if (data / "postmaster.pid").exists():  # started, even if start-up failed half-way
            run(bin_dir / "pg_ctl", "stop", "-D", data, "-m", "fast", "-w", "-t", "30")
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """A new empty database owned by the server's role, dropped at the end: yields its name."""
    name = f"warehouse_{secrets.token_hex(6)}"
    admin = server.admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name} OWNER {server.user}")
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session's warehouse tests (started on first use)."""
    with running_postgres(db_name="assimilate") as server:
        yield server


@pytest.fixture
def postgres_warehouse_url(postgres_cluster: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of its own for one test, as a ``postgresql://`` URL."""
    with fresh_database(postgres_cluster) as name:
        yield postgres_cluster.url(name)
