"""The Warehouse contract on both backends: a DuckDB file and a real PostgreSQL database.

Every test of the contract runs twice through the ``store`` fixture (``duckdb``, ``postgres``): the
same frames in, the same frames (values and dtypes) out. The PostgreSQL server is started by the
tests on 127.0.0.1 (tests/postgres_support.py), each test gets a fresh database. The PostgreSQL-only
tests at the end cover what DuckDB has no counterpart for: URLs and secrets, the writer lock
between processes, and the backend choice from the environment.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import time
from pathlib import Path

import dagster as dg
import numpy as np
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
    open_warehouse,
)

SPAWN = mp.get_context("spawn")


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return Warehouse(tmp_path / "warehouse.duckdb", lock_timeout_s=30)
    return PostgresWarehouse(request.getfixturevalue("postgres_warehouse_url"), lock_timeout_s=30)


def batch(seed: int, n: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "row_index": np.arange(n, dtype=np.int64),
            "unit_id": [f"u{seed}-{i}" for i in range(n)],
            "x": rng.standard_normal(n),
            "treated": rng.integers(0, 2, n).astype(bool),
        }
    )


def without_key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="partition_key").reset_index(drop=True)


def test_round_trip_keeps_values_and_dtypes(store: Warehouse) -> None:
    frame = pd.DataFrame(
        {
            "i": np.array([1, -2, 3], dtype=np.int64),
            "i32": np.array([7, 8, 9], dtype=np.int32),
            "f": [0.5, np.nan, -np.inf],
            "s": ["a", "it's; DROP TABLE x; --", "ünïcode 100%?"],
            "b": [True, False, True],
            "t": pd.to_datetime(
                ["2025-01-01 00:00:00.000000", "2025-02-01 12:30:00.123456", "2025-03-01 00:00:00.000000"]
            ),
            "tz": pd.to_datetime(["2025-01-01 10:00", None, "2025-03-01 00:00"]).tz_localize("UTC"),
            "n_int": pd.array([1, None, 3], dtype="Int64"),
            "n_bool": pd.array([True, None, False], dtype="boolean"),
            "note": ["x", None, np.nan],
        }
    )
    store.replace_partition("study", "things", "2025-01-01", frame)
    back = store.read_table("study", "things")
    assert list(back.columns) == ["partition_key", *frame.columns]
    assert back["partition_key"].tolist() == ["2025-01-01"] * 3
    dtypes = {c: str(back[c].dtype) for c in ("i", "i32", "f", "s", "b", "n_int", "n_bool", "note")}
    assert dtypes == {
        "i": "int64",
        "i32": "int32",
        "f": "float64",
        "s": "object",
        "b": "bool",
        "n_int": "Int64",
        "n_bool": "boolean",
        "note": "object",
    }
    assert np.isnan(back["f"][1]) and back["f"][2] == -np.inf
    assert back["s"].tolist() == frame["s"].tolist() and back["note"].tolist() == ["x", None, None]
    assert back["t"].tolist() == frame["t"].tolist()
    assert back["tz"].dt.tz is not None and back["tz"].isna().tolist() == [False, True, False]
    assert back["tz"][0] == pd.Timestamp("2025-01-01 10:00", tz="UTC")
    pd.testing.assert_frame_equal(
        without_key(back)[["i", "f", "s", "b", "n_int", "n_bool"]],
        frame[["i", "f", "s", "b", "n_int", "n_bool"]],
    )


def test_replace_partition_is_idempotent_and_keeps_partition_then_frame_order(store: Warehouse) -> None:
    keys = [f"2025-{m:02d}-01" for m in range(1, 6)]
    rng = np.random.default_rng(7)
    for round_ in range(3):
        for key in rng.permutation(keys):
            frame = batch(int(key[5:7]) * 10 + round_, n=4).iloc[::-1].reset_index(drop=True)
            store.replace_partition("s", "rows", str(key), frame)
    back = store.read_table("s", "rows")
    assert back["partition_key"].tolist() == sorted(keys * 4)
    for key in keys:
        expected = batch(int(key[5:7]) * 10 + 2, n=4).iloc[::-1].reset_index(drop=True)
        pd.testing.assert_frame_equal(without_key(back[back["partition_key"] == key]), expected)
    store.replace_partition("s", "rows", keys[0], batch(12, n=4).iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(store.read_table("s", "rows"), back)


def test_read_filters_delete_and_replace_table(store: Warehouse) -> None:
    assert store.read_table("s", "absent").empty
    assert not store.table_exists("s", "rows") and store.identity() is None and not store.exists()
    for key in ("a", "b", "c"):
        store.replace_partition("s", "rows", key, batch(ord(key)))
    assert store.table_exists("s", "rows") and store.table_exists("S", "ROWS")
    two = store.read_table("s", "rows", partition_keys=["c", "a", "zzz"])
    assert sorted(set(two["partition_key"])) == ["a", "c"]
    assert store.read_table("s", "rows", partition_keys=[]).empty
    assert store.delete_partition("s", "rows", "a") == 5
    assert store.delete_partition("s", "rows", "a") == 0
    assert store.delete_partition("s", "nothing", "a") == 0
    assert set(store.read_table("s", "rows")["partition_key"]) == {"b", "c"}

    steps = pd.DataFrame({"batch": ["2025-03-01", "2025-01-01", "2025-02-01"], "mean": [3.0, 1.0, 2.0]})
    store.replace_table("s", "steps", steps)
    store.replace_table("s", "steps", steps)
    pd.testing.assert_frame_equal(store.read_table("s", "steps"), steps)  # insertion order, no duplicates
    store.replace_table("s", "steps", steps.iloc[:1].assign(extra="x"))
    assert store.read_table("s", "steps").to_dict("list") == {
        "batch": ["2025-03-01"],
        "mean": [3.0],
        "extra": ["x"],
    }
    with pytest.raises(ValueError, match="not a partitioned table"):
        store.read_table("s", "steps", partition_key="a")
    with pytest.raises(ValueError, match="not a partitioned table"):
        store.replace_partition("s", "steps", "a", steps)


def test_identity_is_set_once_and_a_new_warehouse_gets_another(store: Warehouse, tmp_path: Path) -> None:
    store.replace_partition("s", "rows", "a", batch(1))
    first = store.identity()
    assert isinstance(first, str) and len(first) == 32 and store.exists()
    store.replace_table("s", "other", batch(2))
    with store.exclusive() as locked:
        locked.replace_table("s", "other", batch(3))
    assert store.identity() == first
    other = Warehouse(tmp_path / "other.duckdb")
    other.replace_partition("s", "rows", "a", batch(1))
    assert other.identity() not in (None, first)


def test_a_failed_transaction_leaves_nothing(store: Warehouse) -> None:
    store.replace_partition("s", "second", "other", pd.DataFrame({"v": [0.5]}))
    store.replace_partition_tables("s", "k", {"first": batch(1), "second": pd.DataFrame({"v": [1.0, 2.0]})})
    before = {t: store.read_table("s", t) for t in ("first", "second")}
    with pytest.raises(
        ValueError, match=r"s\.second\.v: the table stores DOUBLE values but the new rows are VARCHAR"
    ):
        store.write(
            "s",
            whole_tables={"steps": pd.DataFrame({"n": [1]})},
            partition_key="k",
            partition_tables={"first": batch(9), "second": pd.DataFrame({"v": ["text"]})},
        )
    for table, frame in before.items():
        pd.testing.assert_frame_equal(store.read_table("s", table), frame)
    assert not store.table_exists("s", "steps")

    def failing_update() -> None:
        with store.exclusive() as locked:
            locked.replace_table("s", "counter", pd.DataFrame({"n": [2.0]}))
            locked.replace_partition("s", "first", "k", batch(5))
            assert locked.read_table("s", "counter")["n"].tolist() == [2.0]  # its own write is visible
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_update()
    assert not store.table_exists("s", "counter")
    pd.testing.assert_frame_equal(store.read_table("s", "first"), before["first"])
    with (
        store.exclusive() as locked,
        pytest.raises(WarehouseError, match="does not nest"),
        locked.exclusive(),
    ):
        pass


def test_column_types_evolve_where_no_value_is_lost(store: Warehouse) -> None:
    store.replace_partition("s", "coef", "a", pd.DataFrame(columns=["term", "coefficient"]))  # failed batch
    store.replace_partition("s", "coef", "b", pd.DataFrame({"term": ["x"], "coefficient": [1.5]}))
    assert store.read_table("s", "coef")["coefficient"].dtype == np.float64
    store.replace_partition("s", "v", "a", pd.DataFrame({"value": [None], "n": [1]}))
    store.replace_partition(
        "s", "v", "b", pd.DataFrame({"value": [0.25], "n": [2.5], "note": ["new column"]})
    )
    back = store.read_table("s", "v")
    assert back["value"].tolist()[1] == 0.25 and np.isnan(back["value"][0])
    assert back["n"].tolist() == [1.0, 2.5] and back["n"].dtype == np.float64
    assert back["note"].tolist() == [None, "new column"]
    store.replace_partition("s", "empty", "a", pd.DataFrame())
    store.replace_partition("s", "empty", "b", pd.DataFrame({"smd": [0.1]}))
    assert store.read_table("s", "empty")["smd"].tolist() == [0.1]
    store.replace_partition("s", "cat", "a", pd.DataFrame({"region": pd.Categorical(["EU", "APAC", None])}))
    assert store.read_table("s", "cat")["region"].tolist()[:2] == ["EU", "APAC"]
    store.replace_partition("s", "flag", "a", pd.DataFrame({"ok": [True]}))
    with pytest.raises(
        ValueError, match=r"s\.flag\.ok: the table stores BOOLEAN values but the new rows are DOUBLE"
    ):
        store.replace_partition("s", "flag", "b", pd.DataFrame({"ok": [0.5]}))
    assert store.read_table("s", "flag")["ok"].tolist() == [True]


def test_names_are_checked_and_values_bound(store: Warehouse) -> None:
    with pytest.raises(ValueError, match=r"schema .* is not allowed: must match"):
        store.replace_partition('x"; DROP SCHEMA s; --', "t", "k", pd.DataFrame({"v": [1]}))
    with pytest.raises(ValueError, match=r"s\.t: column .* is not allowed"):
        store.replace_partition("s", "t", "k", pd.DataFrame({"a b": [1]}))
    with pytest.raises(ValueError, match="'partition_key' is reserved"):
        store.replace_partition("s", "t", "k", pd.DataFrame({"partition_key": ["x"]}))
    with pytest.raises(ValueError, match="cannot be stored"):
        store.replace_partition("s", "t", "k", pd.DataFrame({"v": [{"nested": 1}]}))
    hostile_key = '2025\'); DROP TABLE "select"; --'
    frame = pd.DataFrame({"order": [1, 2], "from": ["'; DELETE FROM x; --", "100% ?"]})
    store.replace_partition("select", "table", hostile_key, frame)
    back = store.read_table("select", "table", partition_key=hostile_key)
    pd.testing.assert_frame_equal(without_key(back), frame)


def test_execute_read_binds_question_marks_and_cannot_write(store: Warehouse) -> None:
    store.replace_partition("s", "rows", "a", batch(1))
    store.replace_partition("s", "rows", "b", batch(2))
    counts = store.execute_read(
        "SELECT partition_key, count(*) AS n FROM s.rows WHERE partition_key = ? AND unit_id LIKE '%-%' "
        "GROUP BY partition_key",
        ["b"],
    )
    assert counts.to_dict("list") == {"partition_key": ["b"], "n": [5]}
    with pytest.raises(Exception, match="read-only"):
        store.execute_read("DELETE FROM s.rows")
    assert len(store.read_table("s", "rows")) == 10


def test_reading_sees_every_table_and_is_read_only(store: Warehouse) -> None:
    store.replace_partition("s", "rows", "a", batch(1))
    store.replace_partition("s", "other", "a", batch(2))
    with store.reading() as reader:
        rows = reader.read_table("s", "rows", partition_key="a")
        other = reader.read_table("s", "other")
        assert reader.table_exists("s", "rows") and not reader.table_exists("s", "nothing")
        with pytest.raises(Exception, match="read-only"):
            reader.replace_partition("s", "rows", "b", batch(3))
    pd.testing.assert_frame_equal(without_key(rows), batch(1))
    pd.testing.assert_frame_equal(without_key(other), batch(2))


def _increment(path: str, url: str | None, times: int) -> None:
    store = open_warehouse(path, url)
    for _ in range(times):
        with store.exclusive() as locked:
            count = float(locked.read_table("s", "counter")["n"].iloc[0])
            time.sleep(0.005)  # widen the window in which an unlocked read-modify-write would race
            locked.replace_table("s", "counter", pd.DataFrame({"n": [count + 1]}))


def test_exclusive_read_modify_write_loses_no_update_across_processes(store: Warehouse) -> None:
    if isinstance(store, PostgresWarehouse):
        path, url = "", store.url
    else:
        path, url = str(store.path), None
    store.replace_table("s", "counter", pd.DataFrame({"n": [0.0]}))
    workers = [SPAWN.Process(target=_increment, args=(path, url, 10)) for _ in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    assert store.read_table("s", "counter")["n"].tolist() == [30.0]


# -- PostgreSQL only ---------------------------------------------------------------------------


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
