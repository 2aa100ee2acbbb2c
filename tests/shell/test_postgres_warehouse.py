"""What only the PostgreSQL backend has: URLs and secrets, the writer lock, the choice from the environment.

The contract both backends keep (the same frames in, the same frames out) is tested once, on both:
tests/shell/test_warehouse.py. The PostgreSQL server is started by the tests on 127.0.0.1
(tests/postgres_support.py), each test gets a fresh database.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from resources.postgres_tables import to_pyformat
from resources.postgres_warehouse import PostgresWarehouse, checked_url, redacted
from resources.warehouse import (
    WAREHOUSE_URL_ENV,
    Warehouse,
    WarehouseError,
    WarehouseLockedError,
    WarehouseResource,
)
from tests.backend_support import batch, without_key


def test_a_writer_waits_for_another_and_times_out_with_nothing_written(postgres_warehouse_url: str) -> None:
    holder = PostgresWarehouse(postgres_warehouse_url)
    holder.replace_partition("s", "rows", "k", batch(1))
    holder.replace_table("s", "t", pd.DataFrame({"v": [1.0]}))
    impatient = PostgresWarehouse(postgres_warehouse_url, lock_timeout_s=0.3)
    with holder.exclusive() as locked:
        locked.replace_partition("s", "rows", "k", batch(2))
        started = time.monotonic()
        with pytest.raises(
            WarehouseLockedError, match=r"held the warehouse \(or the table\) for longer than 0\.3 s"
        ):
            impatient.replace_partition("s", "rows", "other", batch(3))
        assert 0.25 < time.monotonic() - started < 10
        # A reader does not wait for a partition's writer: it sees the last commit.
        pd.testing.assert_frame_equal(without_key(impatient.read_table("s", "rows")), batch(1))
        locked.replace_table("s", "t", pd.DataFrame({"v": [2.0]}))
        with pytest.raises(WarehouseLockedError):  # a table replaced whole: locked until the commit
            impatient.read_table("s", "t")
    assert set(impatient.read_table("s", "rows")["partition_key"]) == {"k"}
    impatient.replace_partition("s", "rows", "other", batch(3))  # the caller's retry
    assert (
        impatient.read_table("s", "t")["v"].tolist() == [2.0] and len(impatient.read_table("s", "rows")) == 10
    )


def test_urls_are_checked_and_the_password_never_shown(
    postgres_warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = postgres_warehouse_url.split(":")[2].split("@")[0]
    store = PostgresWarehouse(postgres_warehouse_url)
    assert password not in repr(store) and "***" in repr(store)
    assert redacted("postgresql://u@h/db") == "postgresql://u@h/db"
    assert checked_url("postgresql+psycopg2://u@h:5/db") == "postgresql://u@h:5/db"
    with pytest.raises(ValueError, match="the scheme must be one of"):
        PostgresWarehouse("mysql://u:secret@h/db")
    with pytest.raises(ValueError, match="names no database") as raised:
        PostgresWarehouse("postgresql://u:secret@h:5432/")
    assert "secret" not in str(raised.value)
    # A wrong password: a clear error at once, without the password, never a retry for a minute.
    wrong = postgres_warehouse_url.replace(password, "not-the-password")
    started = time.monotonic()
    with pytest.raises(WarehouseError, match="cannot connect") as raised:
        PostgresWarehouse(wrong, lock_timeout_s=30).read_table("s", "t")
    assert time.monotonic() - started < 10 and "not-the-password" not in str(raised.value)
    # The password from libpq's environment rather than the URL.
    monkeypatch.setenv("PGPASSWORD", password)
    bare = PostgresWarehouse(postgres_warehouse_url.replace(f":{password}@", "@"))
    bare.replace_table("s", "t", pd.DataFrame({"v": [1]}))
    assert bare.read_table("s", "t")["v"].tolist() == [1]


def test_a_server_that_is_down_is_waited_for_then_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    store = PostgresWarehouse(f"postgresql://u:pw@127.0.0.1:{port}/db", lock_timeout_s=0.5)
    with pytest.raises(WarehouseLockedError, match=r"refused connections for 0\.5 s") as raised:
        store.identity()
    assert "pw" not in str(raised.value).replace("postgresql", "")


def test_the_pipeline_picks_the_backend_from_the_environment(
    tmp_path: Path, postgres_warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(WAREHOUSE_URL_ENV, raising=False)
    resource = WarehouseResource.for_data_dir(tmp_path)
    assert type(resource.get()) is Warehouse and resource.get().path == tmp_path / "warehouse.duckdb"
    monkeypatch.setenv(WAREHOUSE_URL_ENV, postgres_warehouse_url)
    resource = WarehouseResource.for_data_dir(tmp_path)
    store = resource.get()
    assert isinstance(store, PostgresWarehouse) and store.url == postgres_warehouse_url
    assert resource.open(lock_timeout_s=5).lock_timeout_s == 5
    assert not (tmp_path / "warehouse.duckdb").exists()
    # The resource holds the variable, not its value: the UI shows the name, never the password.
    assert isinstance(resource.url, dg.EnvVar) and resource.url.env_var_name == WAREHOUSE_URL_ENV
    monkeypatch.setenv(WAREHOUSE_URL_ENV, "mysql://u:secret@h/db")
    with pytest.raises(ValueError, match=f"^{WAREHOUSE_URL_ENV}: .*the scheme must be one of") as raised:
        WarehouseResource.for_data_dir(tmp_path)
    assert "secret" not in str(raised.value)


def test_placeholders_translate_outside_quotes_only() -> None:
    assert to_pyformat("SELECT ? , '?', \"a\" FROM t WHERE x LIKE '%a' AND y = $name -- what?") == (
        "SELECT %s , '?', \"a\" FROM t WHERE x LIKE '%%a' AND y = %(name)s -- what?"
    )
