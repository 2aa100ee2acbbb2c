"""Partition writes held and written together (resources/deferred_writes.py), on both backends.

What a step over a range of batches relies on: partitions written together read back exactly as
written one by one; a held write is never missed by a later read; what is held is written at the
block's end, also when the block fails, and a type conflict names the batch that caused it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from resources import deferred_writes
from resources.deferred_writes import HeldRowsError, deferring_writes
from resources.partition_writes import partition_groups
from resources.warehouse import Warehouse
from tests.backend_support import warehouse_of_param


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    return warehouse_of_param(request, tmp_path)


def frame(rows: int, seed: int, **extra: object) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {
        "unit": [f"u{seed}_{i}" for i in range(rows)],
        "x": rng.normal(size=rows),
        "n": rng.integers(0, 9, size=rows),
    }
    return pd.DataFrame({**columns, **extra})


def history() -> list[tuple[str, pd.DataFrame]]:
    """Partitions as a range of batches writes them: alike runs, a new column, an empty partition,
    a column all NULL in one batch, and a partition written twice."""
    return [
        ("2025-01", frame(3, 1)),
        ("2025-02", frame(2, 2)),
        ("2025-03", frame(0, 3)),
        ("2025-04", frame(2, 4, note=["a", "b"])),
        ("2025-05", frame(2, 5, note=[None, None])),
        ("2025-06", pd.DataFrame()),  # a withdrawn batch: its rows removed
        ("2025-07", frame(4, 7, note=["c", None, "d", "e"])),
        ("2025-02", frame(1, 8)),  # written again: the later rows replace the earlier
        ("2025-08", frame(2, 9, n=[1.5, 2.5])),  # an integer column widens to DOUBLE
    ]


def test_partitions_written_together_read_back_as_written_one_by_one(store: Warehouse) -> None:
    store.replace_partitions("together", {"t": history()})
    for key, rows in history():
        store.replace_partition("one_by_one", "t", key, rows)
    together = store.read_table("together", "t")
    pd.testing.assert_frame_equal(together, store.read_table("one_by_one", "t"))
    assert sorted(together["partition_key"].unique()) == [
        "2025-01",
        "2025-02",
        "2025-04",
        "2025-05",
        "2025-07",
        "2025-08",
    ]
    assert len(together[together["partition_key"] == "2025-02"]) == 1


def test_frames_that_agree_in_columns_and_kinds_are_one_group() -> None:
    groups = list(partition_groups(history()))
    # 03's text column is empty (another kind than text), 04 adds a column, 05's is all NULL,
    # 06 has no columns, 07 has text again, 02 again has no note column, 08's n is a float.
    assert [keys for keys, _ in groups] == [
        ["2025-01", "2025-02"],
        ["2025-03"],
        ["2025-04"],
        ["2025-05"],
        ["2025-06"],
        ["2025-07"],
        ["2025-02"],
        ["2025-08"],
    ]
    assert groups[0][1]["assimilate_partition_of_row"].tolist() == ["2025-01"] * 3 + ["2025-02"] * 2
    assert "assimilate_partition_of_row" not in groups[1][1].columns  # one partition: as it is
    again = list(partition_groups([("2025-01", frame(1, 1)), ("2025-01", frame(2, 2))]))
    assert [keys for keys, _ in again] == [["2025-01"], ["2025-01"]]  # the later replaces the earlier


def test_a_held_write_is_written_before_a_read_of_its_table(store: Warehouse) -> None:
    with deferring_writes(store) as held:
        assert held is not None
        store.replace_partition_tables("s", "2025-01", {"a": frame(2, 1), "b": frame(3, 2)})
        assert held.holds("s", ["a"]) and held.holds("s", ["b"])
        assert len(store.read_table("s", "a")) == 2  # written first
        assert not held.holds("s", ["a"]) and held.holds("s", ["b"])
        read = store.read_query_on("s", "b", "SELECT count(*) AS n FROM {table}")
        assert read is not None and int(read["n"].iloc[0]) == 3
        assert not held.holds("s", None)


def test_tables_reads_have_needed_are_written_together_the_next_time(
    store: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that reads two of its tables at every batch: from the second batch on, one write a batch."""
    writes: list[list[str]] = []
    replace_partitions = type(store).replace_partitions

    def counted(self: Warehouse, schema: str, tables: dict[str, object], **kwargs: object) -> None:
        writes.append(sorted(tables))
        replace_partitions(self, schema, tables, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(type(store), "replace_partitions", counted)
    with deferring_writes(store) as held:
        assert held is not None
        for i, key in enumerate(["2025-01", "2025-02", "2025-03"], start=1):
            store.replace_partition_tables("s", key, {"a": frame(2, i), "b": frame(1, i), "c": frame(1, i)})
            assert len(store.read_table("s", "a")) == 2 * i
            assert len(store.read_table("s", "b")) == i
        assert held.holds("s", ["c"]) and not held.holds("s", ["a", "b"])
    assert writes == [["a"], ["b"], ["a", "b"], ["a", "b"], ["c"]]
    assert len(store.read_table("s", "c")) == 3


def test_a_read_inside_reading_of_a_held_table_is_refused(store: Warehouse) -> None:
    store.replace_partition("s", "a", "2025-01", frame(1, 1))
    with deferring_writes(store):
        store.replace_partition("s", "a", "2025-02", frame(2, 2))
        with (
            store.reading() as reader,
            pytest.raises(HeldRowsError, match=r"s\.a: rows written in this step are held"),
        ):
            reader.read_table("s", "a")
    assert len(store.read_table("s", "a")) == 3


def write_in_one_block(
    store: Warehouse, batches: dict[str, dict[str, pd.DataFrame]], *, then_fail: bool
) -> None:
    with deferring_writes(store):
        for key, tables in batches.items():
            store.replace_partition_tables("s", key, tables)
        if then_fail:
            raise RuntimeError("the next batch failed")


def test_the_block_end_writes_what_it_holds_also_when_it_fails(store: Warehouse) -> None:
    batches = {f"2025-0{i}": {"a": frame(2, i), "b": frame(1, i)} for i in (1, 2)}
    with pytest.raises(RuntimeError, match="the next batch failed"):
        write_in_one_block(store, batches, then_fail=True)
    assert sorted(store.read_table("s", "a")["partition_key"].unique()) == ["2025-01", "2025-02"]
    assert len(store.read_table("s", "b")) == 2


def test_a_type_conflict_names_its_batch_and_the_batches_before_it_are_written(store: Warehouse) -> None:
    batches = {f"2025-0{i}": {"a": frame(2, i)} for i in (1, 2)}
    batches["2025-03"] = {"a": frame(2, 3).assign(x=["not", "a number"])}
    with pytest.raises(ValueError, match=r"batch 2025-03: s\.a\.x: the table stores DOUBLE"):
        write_in_one_block(store, batches, then_fail=False)
    assert sorted(store.read_table("s", "a")["partition_key"].unique()) == ["2025-01", "2025-02"]


def test_held_rows_past_the_limit_are_written_at_once(
    store: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deferred_writes, "FLUSH_ROWS", 5)
    with deferring_writes(store) as held:
        assert held is not None
        store.replace_partition("s", "a", "2025-01", frame(3, 1))
        assert held.holds("s", ["a"])
        store.replace_partition("s", "a", "2025-02", frame(3, 2))  # 6 rows held: written
        assert not held.holds("s", None)


def test_whole_table_writes_and_exclusive_blocks_write_the_held_rows_first(store: Warehouse) -> None:
    with deferring_writes(store) as held:
        assert held is not None
        store.replace_partition("s", "a", "2025-01", frame(2, 1))
        store.write(
            "s", whole_tables={"c": frame(1, 9)}, partition_key="2025-01", partition_tables={"a": frame(1, 2)}
        )
        assert not held.holds("s", None)
        assert len(store.read_table("s", "a")) == 1  # the later write replaced the held one
        store.replace_partition("s", "a", "2025-02", frame(2, 3))
        with store.exclusive() as locked:
            assert len(locked.read_table("s", "a")) == 3


def test_outside_a_block_writes_are_made_at_once(store: Warehouse) -> None:
    store.replace_partition("s", "a", "2025-01", frame(2, 1))
    assert deferred_writes.held_writes(store) is None
    with store.reading() as reader:
        assert len(reader.read_table("s", "a")) == 2


def test_each_thread_holds_and_writes_its_own(store: Warehouse) -> None:
    """Two steps in one process (a Dask worker's threads): one's end does not take the other's rows."""
    a_held, a_done = threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def step_a() -> None:
        with deferring_writes(store):
            store.replace_partition("s", "a", "2025-01", frame(2, 1))
            a_held.set()
        a_done.set()

    def step_b() -> None:
        with deferring_writes(store) as held:
            assert held is not None
            a_held.wait(10)
            store.replace_partition("s", "b", "2025-01", frame(3, 2))
            a_done.wait(10)
            seen["b still held after a's end"] = held.holds("s", ["b"])
            seen["a's held by b"] = held.holds("s", ["a"])

    threads = [threading.Thread(target=step_a), threading.Thread(target=step_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert seen == {"b still held after a's end": True, "a's held by b": False}
    assert len(store.read_table("s", "a")) == 2 and len(store.read_table("s", "b")) == 3
