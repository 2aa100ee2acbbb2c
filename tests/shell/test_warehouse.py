"""The Warehouse contract on both backends: a DuckDB file and a real PostgreSQL database.

Every test of the contract runs twice through the ``store`` fixture (``duckdb``, ``postgres``; the
second carries the ``postgres`` marker): the same frames in, the same frames (values and dtypes)
out, the same errors. The PostgreSQL server is started by the tests on 127.0.0.1
(tests/postgres_support.py), each test gets a fresh database. What one backend has and the other
has not is tested beside it: tests/shell/test_duckdb_warehouse.py (the file, its lock, one
connection) and tests/shell/test_postgres_warehouse.py (URLs and secrets, the writer lock, the
backend choice from the environment).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from resources.arrow_memory import ARROW_TEXT
from resources.duckdb_tables import quote_identifier
from resources.postgres_warehouse import PostgresWarehouse
from resources.warehouse import Warehouse, WarehouseError, open_warehouse
from tests.backend_support import batch, warehouse_of_param, without_key

SPAWN = mp.get_context("spawn")  # a fresh interpreter: no connection or DuckDB state inherited


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    return warehouse_of_param(request, tmp_path)


def where(store: Warehouse) -> tuple[str, str | None]:
    """What another process needs to open ``store``: ``open_warehouse``'s path and URL."""
    if isinstance(store, PostgresWarehouse):
        return "", store.url
    return str(store.path), None


def reopened(store: Warehouse) -> Warehouse:
    """The same warehouse through a new object: nothing cached in this one can answer."""
    path, url = where(store)
    return open_warehouse(path, url, lock_timeout_s=30)


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
        without_key(back)[["i", "f", "s", "b", "t", "n_int", "n_bool"]],
        frame[["i", "f", "s", "b", "t", "n_int", "n_bool"]],
        check_dtype=False,
    )


def test_replace_partition_is_idempotent_and_keeps_partition_then_frame_order(store: Warehouse) -> None:
    keys = [f"2025-{m:02d}-01" for m in range(1, 9)]
    rng = np.random.default_rng(7)
    for round_ in range(3):
        for key in rng.permutation(keys):
            frame = batch(int(key[5:7]) * 10 + round_, n=4).iloc[::-1].reset_index(drop=True)
            reopened(store).replace_partition("s", "rows", str(key), frame)
    back = reopened(store).read_table("s", "rows")  # a new connection: order does not depend on caches
    assert back["partition_key"].tolist() == sorted(keys * 4)
    for key in keys:
        expected = batch(int(key[5:7]) * 10 + 2, n=4).iloc[::-1].reset_index(drop=True)
        pd.testing.assert_frame_equal(without_key(back[back["partition_key"] == key]), expected)
    store.replace_partition("s", "rows", keys[0], batch(12, n=4).iloc[::-1].reset_index(drop=True))
    store.replace_partition("s", "rows", keys[0], batch(12, n=4).iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(store.read_table("s", "rows"), back)
    # Another frame (another length) for one partition leaves every other partition as it was.
    store.replace_partition("s", "rows", keys[0], batch(11, n=3))
    replaced = store.read_table("s", "rows")
    pd.testing.assert_frame_equal(
        without_key(store.read_table("s", "rows", partition_key=keys[0])), batch(11, 3)
    )
    pd.testing.assert_frame_equal(
        replaced[replaced["partition_key"] != keys[0]].reset_index(drop=True),
        back[back["partition_key"] != keys[0]].reset_index(drop=True),
    )


def test_a_large_partition_reads_back_in_the_order_it_was_written(store: Warehouse) -> None:
    """A partition of several of DuckDB's row groups (122,880 rows each), scanned in parallel and
    read without a sort, between other partitions' rows and after a delete, comes back in order."""
    rows = 300_000 if not isinstance(store, PostgresWarehouse) else 20_000
    order = np.random.default_rng(3).permutation(rows)
    frame = pd.DataFrame({"row": order, "x": order * 0.5, "unit": [f"u{i}" for i in order]})
    store.replace_partition("s", "big", "a", frame.iloc[: rows // 3])
    store.replace_partition("s", "big", "b", frame)
    store.replace_partition("s", "big", "c", frame.iloc[rows // 3 :].reset_index(drop=True))
    store.replace_partition("s", "big", "a", frame.iloc[:10])  # a delete, then rows after b's
    for key, expected in (("b", frame), ("c", frame.iloc[rows // 3 :].reset_index(drop=True))):
        back = reopened(store).read_table("s", "big", partition_key=key)
        pd.testing.assert_frame_equal(without_key(back), expected, check_dtype=False)


def test_read_filters_delete_and_replace_table(store: Warehouse) -> None:
    assert store.read_table("s", "absent").empty
    assert not store.table_exists("s", "rows") and store.identity() is None and not store.exists()
    for key in ("a", "b", "c"):
        store.replace_partition("s", "rows", key, batch(ord(key)))
    assert store.read_table("s", "absent").empty and store.read_table("other", "rows").empty
    assert store.table_exists("s", "rows") and store.table_exists("S", "ROWS")
    two = store.read_table("s", "rows", partition_keys=["c", "a", "zzz"])
    assert sorted(set(two["partition_key"])) == ["a", "c"]
    assert store.read_table("s", "rows", partition_keys=[]).empty
    with pytest.raises(ValueError, match="not both"):
        store.read_table("s", "rows", partition_key="a", partition_keys=["a"])
    with pytest.raises(ValueError, match="collection of strings"):
        store.read_table("s", "rows", partition_keys="a")
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
    assert store.identity() == first == reopened(store).identity()
    other = Warehouse(tmp_path / "other.duckdb")
    other.replace_partition("s", "rows", "a", batch(1))
    assert other.identity() not in (None, first)


def test_a_failed_transaction_leaves_nothing(store: Warehouse) -> None:
    store.replace_partition("s", "second", "other", pd.DataFrame({"v": [0.5]}))
    store.replace_partition_tables("s", "k", {"first": batch(1), "second": pd.DataFrame({"v": [1.0, 2.0]})})
    before = {t: store.read_table("s", t) for t in ("first", "second")}
    assert before["second"]["v"].tolist() == [1.0, 2.0, 0.5]  # partition "k" sorts before "other"
    with pytest.raises(
        ValueError, match=r"s\.second\.v: the table stores DOUBLE values but the new rows are VARCHAR"
    ):
        store.write(
            "s",
            whole_tables={"steps": pd.DataFrame({"n": [1]})},
            partition_key="k",
            partition_tables={"first": batch(9), "second": pd.DataFrame({"v": ["text"]})},
        )
    with pytest.raises(ValueError, match=r"s\.second\.v: the table stores DOUBLE"):
        store.replace_partition_tables("s", "k", {"first": batch(9), "second": pd.DataFrame({"v": ["text"]})})
    for table, frame in before.items():
        pd.testing.assert_frame_equal(store.read_table("s", table), frame)
    assert not store.table_exists("s", "steps")


def test_exclusive_rolls_back_every_write_on_error_and_does_not_nest(store: Warehouse) -> None:
    store.replace_table("s", "counter", pd.DataFrame({"n": [1.0]}))
    store.replace_partition("s", "first", "k", batch(1))
    before = store.read_table("s", "first")

    def failing_update() -> None:
        with store.exclusive() as locked:
            locked.replace_table("s", "counter", pd.DataFrame({"n": [2.0]}))
            locked.replace_partition("s", "first", "k", batch(5))
            locked.replace_partition("s", "rows", "k", pd.DataFrame({"v": [1.0]}))
            assert locked.read_table("s", "counter")["n"].tolist() == [2.0]  # its own write is visible
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_update()
    assert store.read_table("s", "counter")["n"].tolist() == [1.0]
    assert not store.table_exists("s", "rows")
    pd.testing.assert_frame_equal(store.read_table("s", "first"), before)
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
    store.replace_partition("s", "empty", "a", pd.DataFrame())  # e.g. no balance table for this batch
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
    assert not store.exists()  # rejected before anything was written


def test_rejection_message_is_short_for_long_names() -> None:
    with pytest.raises(ValueError) as raised:
        quote_identifier("x" * 10_000, what="table")
    assert len(str(raised.value)) < 200


def test_a_read_of_some_columns_equals_those_columns_of_the_whole_read(store: Warehouse) -> None:
    for key in ("a", "b", "c"):
        store.replace_partition("s", "rows", key, batch(ord(key)))
    some = ["treated", "x"]  # two of the stored columns, in another order
    reads: list[dict[str, Any]] = [{}, {"partition_key": "b"}, {"partition_keys": ["c", "a"]}]
    for read in reads:
        whole = store.read_table("s", "rows", **read)
        for columns in (some, [*some, "partition_key"], ["partition_key"], ["partition_key", *some]):
            part = store.read_table("s", "rows", columns=columns, **read)
            pd.testing.assert_frame_equal(part, whole[columns])
    with pytest.raises(ValueError, match=r"s\.rows has no column\(s\) \['absent'\]"):
        store.read_table("s", "rows", columns=[some[0], "absent"])
    with pytest.raises(ValueError, match="not one string"):
        store.read_table("s", "rows", columns=some[0])
    assert store.read_table("s", "missing", columns=["anything"]).empty


def test_arrow_text_reads_the_named_text_columns_as_arrow_backed_text_and_nothing_else(
    store: Warehouse,
) -> None:
    """resources/arrow_memory.py: the estimation step reads its unit ids so (no Python object per id)."""
    for key in ("a", "b"):
        frame = batch(ord(key)).assign(unit=lambda f, k=key: [f"{k}{i}" for i in range(len(f))], note=None)
        store.replace_partition("s", "rows", key, frame)
    reads: list[dict[str, Any]] = [{}, {"partition_key": "b"}, {"partition_keys": ["b", "a"]}]
    for read in reads:
        plain = store.read_table("s", "rows", **read)
        arrow = store.read_table("s", "rows", arrow_text=["unit", "x", "note", "absent"], **read)
        assert arrow["unit"].dtype == arrow["note"].dtype == ARROW_TEXT, read  # text, and text all NULL
        assert arrow["unit"].tolist() == plain["unit"].tolist() and arrow["note"].isna().all()
        # not text (a number column) or not named: as the plain read gives them
        pd.testing.assert_frame_equal(
            arrow.drop(columns=["unit", "note"]), plain.drop(columns=["unit", "note"])
        )


def test_sql_keywords_work_as_quoted_names_and_values_are_bound(store: Warehouse) -> None:
    hostile_key = '2025\'); DROP TABLE "select"; --'
    frame = pd.DataFrame({"order": [1, 2], "from": ["'; DELETE FROM x; --", "100% ?"]})
    store.replace_partition("select", "table", hostile_key, frame)
    back = store.read_table("select", "table", partition_key=hostile_key)
    pd.testing.assert_frame_equal(without_key(back), frame)
    assert back["partition_key"].tolist() == [hostile_key] * 2


def test_frame_problems_are_named(store: Warehouse) -> None:
    with pytest.raises(ValueError, match="'partition_key' is reserved"):
        store.replace_partition("s", "t", "k", pd.DataFrame({"partition_key": ["x"]}))
    with pytest.raises(ValueError, match="'assimilate_partition_of_row' is reserved"):
        store.replace_partition("s", "t", "k", pd.DataFrame({"assimilate_partition_of_row": ["x"]}))
    with pytest.raises(ValueError, match="differ only in case"):
        store.replace_partition("s", "t", "k", pd.DataFrame([[1, 2]], columns=["Value", "value"]))
    with pytest.raises(ValueError, match="partition_key must be a non-empty string"):
        store.replace_partition("s", "t", "", pd.DataFrame({"v": [1]}))
    with pytest.raises(ValueError, match="must be a pandas DataFrame"):
        store.replace_partition("s", "t", "k", {"v": [1]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot be stored"):
        store.replace_partition("s", "t", "k", pd.DataFrame({"v": [{"nested": 1}]}))
    assert not store.table_exists("s", "t")


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
    with store.reading() as reader:  # nothing written yet: reads are empty, nothing is created
        assert reader.read_table("s", "rows").empty
    assert not store.exists()
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
    with store.exclusive() as locked, locked.reading() as inner:  # inside exclusive: that transaction
        inner.replace_partition("s", "rows", "b", batch(3))
    assert store.read_table("s", "rows")["partition_key"].tolist() == ["a"] * 5 + ["b"] * 5


def _crash_after_delete(path: str, url: str | None) -> None:
    import resources.duckdb_tables
    import resources.postgres_tables

    def die(*args: Any, **kwargs: Any) -> None:
        os._exit(3)  # the process dies between the DELETE and the INSERT

    tables = resources.postgres_tables if url else resources.duckdb_tables
    tables._insert = die  # type: ignore[assignment]
    open_warehouse(path, url).replace_partition("s", "rows", "a", batch(99))


def test_a_crash_between_delete_and_insert_leaves_the_old_rows(store: Warehouse) -> None:
    store.replace_partition("s", "rows", "a", batch(1))
    before = store.read_table("s", "rows")
    process = SPAWN.Process(target=_crash_after_delete, args=where(store))
    process.start()
    process.join(60)
    assert process.exitcode == 3
    pd.testing.assert_frame_equal(store.read_table("s", "rows"), before)
    pd.testing.assert_frame_equal(reopened(store).read_table("s", "rows"), before)


def _write_partitions(path: str, url: str | None, worker: int, n_partitions: int) -> None:
    store = open_warehouse(path, url, lock_timeout_s=60)
    for index in range(n_partitions):
        store.replace_partition("s", "rows", f"w{worker}-p{index}", batch(worker * 100 + index, n=20))


def test_concurrent_writers_never_lose_rows(store: Warehouse) -> None:
    workers = [SPAWN.Process(target=_write_partitions, args=(*where(store), w, 4)) for w in range(3)]
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


def _increment(path: str, url: str | None, times: int) -> None:
    store = open_warehouse(path, url, lock_timeout_s=60)
    for _ in range(times):
        with store.exclusive() as locked:
            count = float(locked.read_table("s", "counter")["n"].iloc[0])
            time.sleep(0.005)  # widen the window in which an unlocked read-modify-write would race
            locked.replace_table("s", "counter", pd.DataFrame({"n": [count + 1]}))


def test_exclusive_read_modify_write_loses_no_update_across_processes(store: Warehouse) -> None:
    store.replace_table("s", "counter", pd.DataFrame({"n": [0.0]}))
    workers = [SPAWN.Process(target=_increment, args=(*where(store), 15)) for _ in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    assert store.read_table("s", "counter")["n"].tolist() == [45.0]


def test_constructor_checks() -> None:
    for make in (
        lambda **kw: Warehouse("w.duckdb", **kw),
        lambda **kw: PostgresWarehouse("postgresql://u@h/db", **kw),
    ):
        with pytest.raises(ValueError, match="lock_timeout_s"):
            make(lock_timeout_s=-1)
        with pytest.raises(ValueError, match="initial_backoff_s"):
            make(initial_backoff_s=2, max_backoff_s=1)


def test_text_with_a_nul_byte_round_trips(store: Warehouse) -> None:
    # PostgreSQL text holds no NUL byte: its backend escapes such values (and ones that look escaped).
    frame = pd.DataFrame({"text": ["u\x00null", "plain", '\x01json:"x"', ""], "n": [1, 2, 3, 4]})
    store.replace_partition("s", "nul", "k", frame)
    pd.testing.assert_frame_equal(without_key(store.read_table("s", "nul")), frame)


def test_a_query_on_one_table_names_it_and_binds_any_number_of_values(store: Warehouse) -> None:
    assert store.read_query_on("Mixed_Case", "t", "SELECT 1 FROM {table}") is None  # no table yet
    frame = pd.DataFrame({"unit": [f"u{i}" for i in range(50_000)], "x": np.arange(50_000.0)})
    store.replace_partition("Mixed_Case", "t", "k", frame)
    wanted = pd.Series([f"u{i}" for i in range(0, 100_000, 2)])  # half of them stored
    found = store.read_query_on(
        "Mixed_Case",
        "t",
        "SELECT count(*) AS n, sum(x) AS total FROM {table} "
        "WHERE partition_key = $key AND unit IN (SELECT value FROM {values} AS wanted)",
        {"key": "k"},
        values=wanted,
    )
    assert found is not None
    assert (int(found["n"].iloc[0]), float(found["total"].iloc[0])) == (
        25_000,
        float(np.arange(0, 50_000, 2).sum()),
    )
