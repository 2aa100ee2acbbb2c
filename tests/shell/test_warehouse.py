"""DuckDB warehouse on a real file: round trips, idempotent partitions, hostile names, file locks."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from resources.duckdb_tables import quote_identifier
from resources.warehouse import Warehouse, WarehouseError, WarehouseLockedError, WarehouseResource

SPAWN = mp.get_context("spawn")  # a fresh interpreter: no DuckDB state inherited from this one


@pytest.fixture
def store(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", lock_timeout_s=30)


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


def test_round_trip_keeps_values_and_types(store: Warehouse) -> None:
    frame = pd.DataFrame(
        {
            "i": np.array([1, -2, 3], dtype=np.int64),
            "f": [0.5, np.nan, -np.inf],
            "s": ["a", "it's; DROP TABLE x; --", "ünïcode"],
            "b": [True, False, True],
            "t": pd.to_datetime(["2025-01-01 00:00", "2025-02-01 12:30", "2025-03-01 00:00"]),
        }
    )
    store.replace_partition("study", "things", "2025-01-01", frame)
    back = store.read_table("study", "things")
    assert list(back.columns) == ["partition_key", "i", "f", "s", "b", "t"]
    assert back["partition_key"].tolist() == ["2025-01-01"] * 3
    pd.testing.assert_frame_equal(without_key(back), frame, check_dtype=False)
    assert back["i"].dtype == np.int64 and back["b"].dtype == bool
    assert np.isnan(back["f"][1]) and back["f"][2] == -np.inf


def test_replace_partition_is_idempotent_and_leaves_other_partitions(store: Warehouse) -> None:
    store.replace_partition("s", "rows", "2025-01-01", batch(1))
    store.replace_partition("s", "rows", "2025-02-01", batch(2))
    before = store.read_table("s", "rows")
    store.replace_partition("s", "rows", "2025-01-01", batch(1))
    store.replace_partition("s", "rows", "2025-01-01", batch(1))
    after = store.read_table("s", "rows")
    assert len(after) == 10
    pd.testing.assert_frame_equal(after, before)
    store.replace_partition("s", "rows", "2025-01-01", batch(11, n=3))
    replaced = store.read_table("s", "rows")
    pd.testing.assert_frame_equal(
        without_key(store.read_table("s", "rows", partition_key="2025-01-01")), batch(11, 3)
    )
    pd.testing.assert_frame_equal(
        replaced[replaced["partition_key"] == "2025-02-01"].reset_index(drop=True),
        before[before["partition_key"] == "2025-02-01"].reset_index(drop=True),
    )


def test_rows_read_back_in_partition_then_frame_order_after_many_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    keys = [f"2025-{m:02d}-01" for m in range(1, 9)]
    rng = np.random.default_rng(7)
    for round_ in range(3):
        for key in rng.permutation(keys):
            frame = batch(int(key[5:7]) * 10 + round_, n=4).iloc[::-1].reset_index(drop=True)
            Warehouse(path).replace_partition("s", "rows", str(key), frame)
    back = Warehouse(path).read_table("s", "rows")  # a new connection: order does not depend on caches
    assert back["partition_key"].tolist() == sorted(keys * 4)
    for key in keys:
        expected = batch(int(key[5:7]) * 10 + 2, n=4).iloc[::-1].reset_index(drop=True)
        pd.testing.assert_frame_equal(without_key(back[back["partition_key"] == key]), expected)


def test_read_table_filters_and_missing_tables(store: Warehouse) -> None:
    assert store.read_table("s", "absent").empty  # no file yet
    assert not store.path.exists()
    for month in (1, 2, 3):
        store.replace_partition("s", "rows", f"2025-0{month}-01", batch(month))
    assert store.read_table("s", "absent").empty
    assert store.read_table("other", "rows").empty
    two = store.read_table("s", "rows", partition_keys=["2025-03-01", "2025-01-01", "2030-01-01"])
    assert sorted(set(two["partition_key"])) == ["2025-01-01", "2025-03-01"]
    assert store.read_table("s", "rows", partition_keys=[]).empty
    with pytest.raises(ValueError, match="not both"):
        store.read_table("s", "rows", partition_key="2025-01-01", partition_keys=["2025-01-01"])
    with pytest.raises(ValueError, match="collection of strings"):
        store.read_table("s", "rows", partition_keys="2025-01-01")


def test_table_exists_delete_partition_and_replace_table(store: Warehouse) -> None:
    assert not store.table_exists("s", "rows")
    store.replace_partition("s", "rows", "a", batch(1))
    store.replace_partition("s", "rows", "b", batch(2))
    assert store.table_exists("s", "rows") and store.table_exists("S", "ROWS")
    assert store.delete_partition("s", "rows", "a") == 5
    assert store.delete_partition("s", "rows", "a") == 0
    assert store.delete_partition("s", "nothing", "a") == 0
    assert set(store.read_table("s", "rows")["partition_key"]) == {"b"}

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


def test_several_tables_of_one_partition_commit_together(store: Warehouse) -> None:
    store.replace_partition("s", "second", "other", pd.DataFrame({"v": [0.5]}))
    store.replace_partition_tables("s", "k", {"first": batch(1), "second": pd.DataFrame({"v": [1.0, 2.0]})})
    before_first = store.read_table("s", "first")
    with pytest.raises(
        ValueError, match=r"s\.second\.v: the table stores DOUBLE values but the new rows are VARCHAR"
    ):
        store.replace_partition_tables("s", "k", {"first": batch(9), "second": pd.DataFrame({"v": ["text"]})})
    pd.testing.assert_frame_equal(store.read_table("s", "first"), before_first)  # rolled back
    assert store.read_table("s", "second")["v"].tolist() == [1.0, 2.0, 0.5]


def _crash_after_delete(path: str) -> None:
    import resources.duckdb_tables as tables

    def die(*args: Any, **kwargs: Any) -> None:
        os._exit(3)  # the process dies between the DELETE and the INSERT

    tables._insert = die
    Warehouse(path).replace_partition("s", "rows", "a", batch(99))


def test_a_crash_between_delete_and_insert_leaves_the_old_rows(store: Warehouse) -> None:
    store.replace_partition("s", "rows", "a", batch(1))
    before = store.read_table("s", "rows")
    process = SPAWN.Process(target=_crash_after_delete, args=(str(store.path),))
    process.start()
    process.join(60)
    assert process.exitcode == 3
    pd.testing.assert_frame_equal(store.read_table("s", "rows"), before)


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
    assert back["n"].tolist() == [1.0, 2.5]
    assert back["note"].tolist()[1] == "new column"
    store.replace_partition("s", "empty", "a", pd.DataFrame())  # e.g. no balance table for this batch
    store.replace_partition("s", "empty", "b", pd.DataFrame({"smd": [0.1]}))
    assert store.read_table("s", "empty")["smd"].tolist() == [0.1]
    categories = pd.DataFrame({"region": pd.Categorical(["EU", "APAC", None])})
    store.replace_partition("s", "cat", "a", categories)
    assert store.read_table("s", "cat")["region"].tolist()[:2] == ["EU", "APAC"]


HOSTILE = [
    'x"; DROP TABLE rows; --',
    "a b",
    "semi;colon",
    "quote'",
    "ünïcode",
    "x" * 10_000,
    "",
    "1starts_with_digit",
    "trailing_newline\n",
    "dot.ted",
    "a" * 64,
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_identifiers_are_rejected_naming_the_identifier(store: Warehouse, name: str) -> None:
    frame = pd.DataFrame({"v": [1]})
    with pytest.raises(ValueError, match=r"schema .* is not allowed: must match"):
        store.replace_partition(name, "t", "k", frame)
    with pytest.raises(ValueError, match=r"table .* is not allowed: must match"):
        store.replace_partition("s", name, "k", frame)
    with pytest.raises(ValueError, match=r"s\.t: column .* is not allowed: must match"):
        store.replace_partition("s", "t", "k", pd.DataFrame({name: [1]}))
    with pytest.raises(ValueError, match="is not allowed"):
        store.read_table("s", name)
    assert not store.path.exists()  # rejected before any connection


def test_rejection_message_is_short_for_long_names() -> None:
    with pytest.raises(ValueError) as raised:
        quote_identifier("x" * 10_000, what="table")
    assert len(str(raised.value)) < 200


def test_sql_keywords_work_as_quoted_names_and_values_are_bound(store: Warehouse) -> None:
    hostile_key = '2025\'); DROP TABLE "select"; --'
    frame = pd.DataFrame({"order": [1, 2], "from": ["'; DELETE FROM x; --", "b"]})
    store.replace_partition("select", "table", hostile_key, frame)
    back = store.read_table("select", "table", partition_key=hostile_key)
    pd.testing.assert_frame_equal(without_key(back), frame)
    assert back["partition_key"].tolist() == [hostile_key] * 2


def test_frame_problems_are_named(store: Warehouse) -> None:
    with pytest.raises(ValueError, match="'partition_key' is reserved"):
        store.replace_partition("s", "t", "k", pd.DataFrame({"partition_key": ["x"]}))
    with pytest.raises(ValueError, match="differ only in case"):
        store.replace_partition("s", "t", "k", pd.DataFrame([[1, 2]], columns=["Value", "value"]))
    with pytest.raises(ValueError, match="partition_key must be a non-empty string"):
        store.replace_partition("s", "t", "", pd.DataFrame({"v": [1]}))
    with pytest.raises(ValueError, match="must be a pandas DataFrame"):
        store.replace_partition("s", "t", "k", {"v": [1]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot be stored"):
        store.replace_partition("s", "t", "k", pd.DataFrame({"v": [{"nested": 1}]}))


def test_schema_named_like_the_file_is_not_ambiguous(tmp_path: Path) -> None:
    store = Warehouse(tmp_path / "warehouse.duckdb")
    store.replace_partition("warehouse", "rows", "k", batch(1))
    store.replace_partition("main", "rows", "k", batch(2))
    pd.testing.assert_frame_equal(without_key(store.read_table("warehouse", "rows")), batch(1))
    pd.testing.assert_frame_equal(without_key(store.read_table("main", "rows")), batch(2))


def test_execute_read_binds_parameters_and_cannot_write(store: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="does not exist yet"):
        store.execute_read("SELECT 1")
    store.replace_partition("s", "rows", "a", batch(1))
    store.replace_partition("s", "rows", "b", batch(2))
    counts = store.execute_read(
        "SELECT partition_key, count(*) AS n FROM s.rows WHERE partition_key = ? GROUP BY 1", ["b"]
    )
    assert counts.to_dict("list") == {"partition_key": ["b"], "n": [5]}
    with pytest.raises(duckdb.Error, match="read-only"):
        store.execute_read("DELETE FROM s.rows")
    assert len(store.read_table("s", "rows")) == 10


def _hold_lock(path: str, locked: Any, released: Any, seconds: float) -> None:
    connection = duckdb.connect(path)
    connection.execute("CREATE SCHEMA IF NOT EXISTS s").fetchall()
    connection.execute("CREATE TABLE IF NOT EXISTS s.rows (partition_key VARCHAR, v DOUBLE)").fetchall()
    locked.set()
    time.sleep(seconds)
    connection.execute("INSERT INTO s.rows VALUES ('holder', 1.0)").fetchall()
    released.set()
    connection.close()


def test_a_write_waits_for_another_process_holding_the_lock(store: Warehouse) -> None:
    locked, released = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=_hold_lock, args=(str(store.path), locked, released, 2.0))
    holder.start()
    assert locked.wait(60)
    store.replace_partition("s", "rows", "writer", pd.DataFrame({"v": [2.0, 3.0]}))
    assert released.is_set()  # the write could only happen after the holder let go
    holder.join(60)
    rows = store.read_table("s", "rows")
    assert rows["partition_key"].tolist() == ["holder", "writer", "writer"]
    assert rows["v"].tolist() == [1.0, 2.0, 3.0]


def test_a_lock_held_past_the_timeout_raises_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    Warehouse(path).replace_partition("s", "rows", "old", pd.DataFrame({"v": [0.0]}))
    impatient = Warehouse(path, lock_timeout_s=0.3, initial_backoff_s=0.05, max_backoff_s=0.1)
    locked, released = SPAWN.Event(), SPAWN.Event()
    holder = SPAWN.Process(target=_hold_lock, args=(str(path), locked, released, 3.0))
    holder.start()
    assert locked.wait(60)
    with pytest.raises(WarehouseLockedError, match=r"still locked by another process after 0\.3 s") as raised:
        impatient.replace_partition("s", "rows", "new", pd.DataFrame({"v": [5.0]}))
    assert str(path) in str(raised.value)
    assert isinstance(raised.value, TimeoutError)
    holder.join(60)
    assert Warehouse(path).read_table("s", "rows")["partition_key"].tolist() == ["holder", "old"]
    impatient.replace_partition("s", "rows", "new", pd.DataFrame({"v": [5.0]}))  # the retry by the caller
    assert Warehouse(path).read_table("s", "rows")["partition_key"].tolist() == ["holder", "new", "old"]


def _write_partitions(path: str, worker: int, n_partitions: int) -> None:
    store = Warehouse(path, lock_timeout_s=60, initial_backoff_s=0.01, max_backoff_s=0.2)
    for index in range(n_partitions):
        store.replace_partition("s", "rows", f"w{worker}-p{index}", batch(worker * 100 + index, n=20))


def test_concurrent_writers_never_lose_rows(store: Warehouse) -> None:
    workers = [SPAWN.Process(target=_write_partitions, args=(str(store.path), w, 4)) for w in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    rows = store.read_table("s", "rows")
    assert len(rows) == 3 * 4 * 20
    for worker in range(3):
        for index in range(4):
            part = without_key(rows[rows["partition_key"] == f"w{worker}-p{index}"])
            pd.testing.assert_frame_equal(part, batch(worker * 100 + index, n=20))


def _increment(path: str, times: int) -> None:
    store = Warehouse(path, lock_timeout_s=60, initial_backoff_s=0.01, max_backoff_s=0.1)
    for _ in range(times):
        with store.exclusive() as locked:
            count = float(locked.read_table("s", "counter")["n"].iloc[0])
            time.sleep(0.005)  # widen the window in which an unlocked read-modify-write would race
            locked.replace_table("s", "counter", pd.DataFrame({"n": [count + 1]}))


def test_exclusive_read_modify_write_loses_no_update_across_processes(store: Warehouse) -> None:
    store.replace_table("s", "counter", pd.DataFrame({"n": [0.0]}))
    workers = [SPAWN.Process(target=_increment, args=(str(store.path), 15)) for _ in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    assert store.read_table("s", "counter")["n"].tolist() == [45.0]


def test_exclusive_rolls_back_every_write_on_error_and_does_not_nest(store: Warehouse) -> None:
    store.replace_table("s", "counter", pd.DataFrame({"n": [1.0]}))

    def failing_update() -> None:
        with store.exclusive() as locked:
            locked.replace_table("s", "counter", pd.DataFrame({"n": [2.0]}))
            locked.replace_partition("s", "rows", "k", pd.DataFrame({"v": [1.0]}))
            assert locked.read_table("s", "counter")["n"].tolist() == [2.0]  # its own write is visible
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_update()
    assert store.read_table("s", "counter")["n"].tolist() == [1.0]
    assert not store.table_exists("s", "rows")
    with (
        store.exclusive() as locked,
        pytest.raises(WarehouseError, match="does not nest"),
        locked.exclusive(),
    ):
        pass


def test_reading_uses_one_read_only_connection_for_several_reads(
    store: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store.reading() as reader:  # no file yet: reads are empty, nothing is created
        assert reader.read_table("s", "rows").empty
    assert not store.path.exists()
    store.replace_partition("s", "rows", "a", batch(1))
    store.replace_partition("s", "other", "a", batch(2))
    opened: list[bool] = []
    connect = duckdb.connect

    def counting(*args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        opened.append(bool(kwargs.get("read_only")))
        return connect(*args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", counting)
    with store.reading() as reader:
        rows = reader.read_table("s", "rows", partition_key="a")
        other = reader.read_table("s", "other")
        assert reader.table_exists("s", "rows")
        with pytest.raises(duckdb.Error, match="read-only"):
            reader.replace_partition("s", "rows", "b", batch(3))
    assert opened == [True]
    pd.testing.assert_frame_equal(without_key(rows), batch(1))
    pd.testing.assert_frame_equal(without_key(other), batch(2))
    with store.exclusive() as locked, locked.reading() as inner:  # inside exclusive: that connection
        inner.replace_partition("s", "rows", "b", batch(3))
    assert store.read_table("s", "rows")["partition_key"].tolist() == ["a"] * 5 + ["b"] * 5


def test_lock_errors_of_other_kinds_are_not_retried(tmp_path: Path) -> None:
    (tmp_path / "not_a_db.duckdb").write_text("this is not a DuckDB file")
    store = Warehouse(tmp_path / "not_a_db.duckdb", lock_timeout_s=30)
    with pytest.raises(duckdb.Error):
        store.replace_partition("s", "t", "k", pd.DataFrame({"v": [1]}))


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="lock_timeout_s"):
        Warehouse("w.duckdb", lock_timeout_s=-1)
    with pytest.raises(ValueError, match="initial_backoff_s"):
        Warehouse("w.duckdb", initial_backoff_s=2, max_backoff_s=1)


def test_resource_creates_the_folder_and_passes_the_timeout(tmp_path: Path) -> None:
    resource = WarehouseResource(
        path=str(tmp_path / "nested" / "data" / "warehouse.duckdb"), lock_timeout_s=5
    )
    store = resource.get()
    assert (tmp_path / "nested" / "data").is_dir()
    assert store.lock_timeout_s == 5
    store.replace_partition("s", "rows", "k", batch(1))
    assert len(resource.get().read_table("s", "rows")) == 5
    assert WarehouseResource().path == "data/warehouse.duckdb"
