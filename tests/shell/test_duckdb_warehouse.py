"""What only the DuckDB backend has: a file (created by the first write), its lock, one connection per read.

The contract both backends keep is tested once, on both: tests/shell/test_warehouse.py.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from resources import duckdb_frames
from resources.warehouse import Warehouse, WarehouseError, WarehouseLockedError, WarehouseResource
from tests.backend_support import batch, without_key

SPAWN = mp.get_context("spawn")  # a fresh interpreter: no DuckDB state inherited from this one


@pytest.fixture
def store(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb", lock_timeout_s=30)


def test_reads_and_rejected_writes_create_no_file(store: Warehouse) -> None:
    assert store.read_table("s", "absent").empty and not store.table_exists("s", "absent")
    with pytest.raises(ValueError, match="is not allowed"):
        store.replace_partition("a b", "t", "k", pd.DataFrame({"v": [1]}))
    with store.reading() as reader:
        assert reader.read_table("s", "rows").empty
    assert not store.path.exists()
    with pytest.raises(WarehouseError, match="does not exist yet"):
        store.execute_read("SELECT 1")
    assert not store.path.exists()


def test_schema_named_like_the_file_is_not_ambiguous(tmp_path: Path) -> None:
    store = Warehouse(tmp_path / "warehouse.duckdb")
    store.replace_partition("warehouse", "rows", "k", batch(1))
    store.replace_partition("main", "rows", "k", batch(2))
    pd.testing.assert_frame_equal(without_key(store.read_table("warehouse", "rows")), batch(1))
    pd.testing.assert_frame_equal(without_key(store.read_table("main", "rows")), batch(2))


# Names of Python variables a table lookup could meet: DuckDB tries them for a missing table.
LOOKUP_NAMES = ["connection", "name", "relation", "pd", "duckdb", "re", "PARTITION_COLUMN"]


@pytest.mark.parametrize("table", LOOKUP_NAMES)
def test_a_missing_table_named_like_a_python_variable_is_missing(store: Warehouse, table: str) -> None:
    store.replace_partition("s", "present", "k", pd.DataFrame({"v": [1]}))
    assert not store.table_exists("s", table)
    store.replace_partition("s", table, "k", pd.DataFrame({"v": [1.5]}))  # created, not mistaken for one
    store.replace_partition("s", table, "k2", pd.DataFrame({"v": [2]}))  # found: an integer widens nothing
    assert store.table_exists("s", table)
    assert store.read_table("s", table)["v"].tolist() == [1.5, 2.0]


def test_a_missing_table_leaves_the_write_transaction_usable(store: Warehouse) -> None:
    store.replace_partition("s", "present", "k", pd.DataFrame({"v": [1]}))
    with store.exclusive() as held:  # one transaction: a lookup's error must not abort it
        assert not held.table_exists("s", "absent")
        held.replace_partition("s", "absent", "k", pd.DataFrame({"v": [2]}))
    assert store.read_table("s", "absent")["v"].tolist() == [2]


def test_execute_read_is_read_only_by_duckdbs_own_error(store: Warehouse) -> None:
    store.replace_partition("s", "rows", "a", batch(1))
    with pytest.raises(duckdb.Error, match="read-only"):
        store.execute_read("DELETE FROM s.rows")
    assert len(store.read_table("s", "rows")) == 5


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


def test_reading_uses_one_read_only_connection_for_several_reads(
    store: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
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


def test_lock_errors_of_other_kinds_are_not_retried(tmp_path: Path) -> None:
    (tmp_path / "not_a_db.duckdb").write_text("this is not a DuckDB file")
    store = Warehouse(tmp_path / "not_a_db.duckdb", lock_timeout_s=30)
    started = time.monotonic()
    with pytest.raises(duckdb.Error):
        store.replace_partition("s", "t", "k", pd.DataFrame({"v": [1]}))
    assert time.monotonic() - started < 10


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


def test_one_partition_reads_as_the_general_query_reads_it(store: Warehouse) -> None:
    first = pd.DataFrame({"unit": ["a", None, "c"], "x": [1.5, float("nan"), -2.0], "n": [3, 1, 2]})
    store.replace_partition_tables("s", "2025-01-01", {"rows": first})
    store.replace_partition_tables("s", "2025-02-01", {"rows": first.iloc[::-1]})
    store.replace_partition_tables("s", "2025-01-01", {"rows": first.assign(extra=["p", "q", "r"])})
    store.replace_partition_tables("s", "2025-03-01", {"bare": pd.DataFrame()})  # the key column alone
    for key in ["2025-01-01", "2025-02-01", "2025-04-01"]:
        one = store.read_table("s", "rows", partition_key=key)
        general = store.read_table("s", "rows", partition_keys=[key, "no such batch"])
        pd.testing.assert_frame_equal(one, general)
        assert list(one.columns) == ["partition_key", "unit", "x", "n", "extra"]
    assert store.read_table("s", "rows", partition_key="2025-02-01")["n"].tolist() == [2, 1, 3]
    pd.testing.assert_frame_equal(
        store.read_table("s", "bare", partition_key="2025-03-01"),
        store.read_table("s", "bare", partition_keys=["2025-03-01", "x"]),
    )


ALL_TYPES = [*sorted(duckdb_frames.ARROW_READ_TYPES), "HUGEINT", "DECIMAL(18,3)", "DATE"]


@pytest.mark.parametrize("with_null", [False, True])
def test_every_column_type_reads_one_partition_as_the_general_query_reads_it(
    store: Warehouse, with_null: bool
) -> None:
    columns = {f"c_{t.split('(')[0].lower()}": t for t in ALL_TYPES}
    value = {
        "BOOLEAN": "true",
        "VARCHAR": "'é1'",
        "TIMESTAMP": "'2025-01-02 03:04:05.123456'",
        "DATE": "'2025-01-02'",
    }
    rows = [
        [value.get(t, "7") for t in ALL_TYPES],
        ["NULL" if with_null else value.get(t, "3") for t in ALL_TYPES],
    ]
    with duckdb.connect(str(store.path)) as connection:
        connection.execute("CREATE SCHEMA s")
        declared = ", ".join(f"{name} {t}" for name, t in columns.items())
        connection.execute(f"CREATE TABLE s.rows (partition_key VARCHAR, {declared})")
        for key in ["2025-01-01", "2025-02-01"]:
            for cells in rows:
                connection.execute(f"INSERT INTO s.rows VALUES ('{key}', {', '.join(cells)})")
    one = store.read_table("s", "rows", partition_key="2025-01-01")
    general = store.read_table("s", "rows", partition_keys=["2025-01-01", "no such batch"])
    pd.testing.assert_frame_equal(one, general)
    assert one["c_bigint"].dtype == ("Int64" if with_null else "int64")
    # a column of the types Arrow reads: the same frame as the general read, empty or not
    kept = [c for c, t in columns.items() if t in duckdb_frames.ARROW_READ_TYPES]
    for key in ["2025-02-01", "2025-04-01"]:
        pd.testing.assert_frame_equal(
            store.read_table("s", "rows", partition_key=key, columns=kept),
            store.read_table("s", "rows", partition_keys=[key, "x"], columns=kept),
        )


def _large_frames(n: int) -> dict[str, tuple[pd.DataFrame, str]]:
    """Frames of ``n`` rows, and the reading DuckDB should be given from ``n`` rows (Arrow or pandas)."""
    text = pd.DataFrame(
        {
            "unit": [f"u{i}" for i in range(n)],
            "sometimes": [None if i % 7 == 0 else f"é{i}" for i in range(n)],
            "never": [None] * n,
            "x": [i / 3 for i in range(n)],
            "flag": [i % 2 == 0 for i in range(n)],
            "day": pd.date_range("2025-01-01", periods=n, freq="h"),
        }
    )
    mixed = text.assign(mixed=[i if i % 2 else str(i) for i in range(n)])  # Arrow cannot convert it
    return {"text": (text, "Table"), "mixed": (mixed, "DataFrame")}


@pytest.mark.parametrize("name", ["text", "mixed"])
def test_a_large_frame_with_text_stores_the_same_types_and_values_through_arrow(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_frames, "ARROW_ROWS", 2_000)  # the rule at a size a test writes quickly
    frame, reading = _large_frames(2_000)[name]
    registered: list[str] = []
    register = duckdb_frames._registered_types

    def spying(connection: Any, given: Any) -> dict[str, str]:
        registered.append(type(given).__name__)
        return register(connection, given)

    monkeypatch.setattr(duckdb_frames, "_registered_types", spying)

    def stored(path: Path) -> tuple[list[tuple[Any, ...]], pd.DataFrame]:
        store = Warehouse(path)
        store.replace_partition_tables("s", "2025-01-01", {"rows": frame})
        store.replace_partition_tables("s", "2025-01-01", {"rows": frame})  # the replacing path too
        with duckdb.connect(str(path), read_only=True) as connection:
            types = connection.execute("DESCRIBE s.rows").fetchall()
        return types, store.read_table("s", "rows", partition_key="2025-01-01")

    through_arrow = stored(tmp_path / "arrow.duckdb")
    assert registered[-1] == reading
    monkeypatch.setattr(duckdb_frames, "ARROW_ROWS", len(frame) + 1)
    through_pandas = stored(tmp_path / "pandas.duckdb")
    assert registered[-1] == "DataFrame"
    assert through_arrow[0] == through_pandas[0]
    pd.testing.assert_frame_equal(through_arrow[1], through_pandas[1])
    assert through_arrow[1]["sometimes"].isna().sum() == len(range(0, len(frame), 7))


def test_a_partition_with_an_id_column_reads_as_the_general_query_reads_it(store: Warehouse) -> None:
    """The id column is converted apart (resources/arrow_memory.ArrowParts); the frame is df()'s."""
    n = 3_000
    frame = pd.DataFrame(
        {
            "unit": [f"u{i}" for i in range(n)],
            "region": [["EU", "APAC", None][i % 3] for i in range(n)],
            "visits": pd.array([None if i % 5 == 0 else i for i in range(n)], dtype="Int64"),
            "x": [i / 3 for i in range(n)],
        }
    )
    store.replace_partition_tables("s", "2025-01-01", {"rows": frame})
    one = store.read_table("s", "rows", partition_key="2025-01-01")
    general = store.read_table("s", "rows", partition_keys=["2025-01-01", "no such batch"])
    pd.testing.assert_frame_equal(one, general)
    assert list(one.columns[-4:]) == ["unit", "region", "visits", "x"]
    europe = one["region"][one["region"] == "EU"]
    assert europe.iloc[0] is europe.iloc[1]  # equal strings still share one object outside the ids
