"""The connection lease (resources/warehouse_lease.py): one DuckDB connection per step, let go when idle.

Under ``lease_connection`` every Warehouse of the file in this process shares one read-write
connection; transactions, read-only reads and rollbacks behave as on short connections; the file's
lock is released while the step computes (another process, not a thread: DuckDB locks per process).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from resources import warehouse_lease
from resources.warehouse import PostgresWarehouse, Warehouse, WarehouseError, lease_connection
from resources.warehouse_lease import LEASE_IDLE_S, lease_for
from tests.backend_support import batch, without_key

# Another process opens the file read-write and adds a row; exit 3 when the file is locked.
OTHER_PROCESS = textwrap.dedent(
    """
    import sys, duckdb
    try:
        connection = duckdb.connect(sys.argv[1])
    except duckdb.IOException as error:
        print(error, file=sys.stderr)
        sys.exit(3)
    connection.execute("INSERT INTO s.rows (partition_key, v) VALUES ('other', 7.0)")
    connection.close()
    """
)


def other_process_writes(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, str(path)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every ``duckdb.connect`` of this process from now on, by its read_only flag."""
    calls: list[bool] = []
    connect = duckdb.connect

    def counting(*args: Any, **kwargs: Any) -> duckdb.DuckDBPyConnection:
        calls.append(bool(kwargs.get("read_only")))
        return connect(*args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", counting)
    return calls


def some_work(path: Path) -> None:
    """What a step does over a few batches: writes, reads through other objects, both kinds of block."""
    store = Warehouse(path)
    for i in range(8):
        key = f"2025-{i + 1:02d}"
        store.replace_partition_tables("s", key, {"rows": batch(i), "other": batch(100 + i, n=2)})
        assert len(Warehouse(path).read_table("s", "rows", partition_key=key)) == 5
        with store.reading() as reader:
            assert reader.table_exists("s", "other")
            total = len(reader.read_table("s", "rows"))
        with store.exclusive() as locked:
            summary = pd.DataFrame({"batches": [i + 1], "rows": [total]})
            locked.replace_table("s", "summary", summary)
    store.delete_partition("s", "other", "2025-01")
    assert store.identity() is not None


def stored(path: Path) -> dict[str, pd.DataFrame]:
    store = Warehouse(path)
    return {table: store.read_table("s", table) for table in ("rows", "other", "summary")}


def test_one_connection_for_a_steps_writes_and_reads_and_the_same_tables(
    tmp_path: Path, opened: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warehouse_lease, "LEASE_IDLE_S", 30.0)  # no idle release on a busy machine
    monkeypatch.setattr(warehouse_lease, "LEASE_MAX_HOLD_S", 60.0)
    alone, leased = tmp_path / "alone.duckdb", tmp_path / "leased.duckdb"
    some_work(alone)
    assert len(opened) >= 4 * 8  # each write and read opened its own connection
    opened.clear()
    with lease_connection(Warehouse(leased)) as lease:
        assert lease is not None and lease_for(leased) is lease
        some_work(leased)
        assert lease.opened == 1
    assert opened == [False]  # one read-write connection, for the reads too
    assert lease_for(leased) is None
    duckdb.connect(str(leased)).close()  # the lease's end let go of the file
    expected, got = stored(alone), stored(leased)
    for table in expected:
        pd.testing.assert_frame_equal(got[table], expected[table])


def test_an_idle_lease_lets_another_process_write_and_a_block_in_use_does_not(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    store = Warehouse(path)
    store.replace_partition("s", "rows", "mine", pd.DataFrame({"v": [1.0]}))
    with lease_connection(store) as lease:
        assert lease is not None
        assert store.read_table("s", "rows")["v"].tolist() == [1.0]  # the lease's connection is open
        with store.connect() as connection:  # a block in use: its lock stays
            time.sleep(2 * LEASE_IDLE_S)
            refused = other_process_writes(path)
            assert connection.execute("SELECT count(*) FROM s.rows").fetchall() == [(1,)]
        assert refused.returncode == 3, refused.stderr
        assert "lock" in refused.stderr.lower()
        # Idle: the daemon thread closes it while the lease is still held (soon after LEASE_IDLE_S).
        deadline = time.monotonic() + 30
        while lease.is_open and time.monotonic() < deadline:
            time.sleep(LEASE_IDLE_S / 4)
        assert not lease.is_open
        done = other_process_writes(path)
        assert done.returncode == 0, done.stderr
        assert sorted(store.read_table("s", "rows")["partition_key"]) == ["mine", "other"]  # reopened
        assert lease.opened == 2


# Another process that retries (as a warehouse's backoff does, ~5 attempts a second) until it gets in;
# with "announce" it opens as a warehouse does (open_waiting: it says that it waits), else as a shell.
PATIENT_PROCESS = textwrap.dedent(
    """
    import sys, time, duckdb
    from resources.warehouse_lease import open_waiting
    deadline = time.monotonic() + float(sys.argv[3])
    while True:
        try:
            if sys.argv[2] == "announce":
                connection = open_waiting(sys.argv[1], read_only=False)
            else:
                connection = duckdb.connect(sys.argv[1])
            break
        except duckdb.IOException:
            if time.monotonic() > deadline:
                sys.exit(3)
            time.sleep(0.2)
    connection.execute("INSERT INTO s.rows (partition_key, v) VALUES ('other', 7.0)")
    connection.close()
    """
)


def patient_process(path: Path, how: str, patience_s: float) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", PATIENT_PROCESS, str(path), how, str(patience_s)]
    return subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2])  # the project importable


def write_without_pause(store: Warehouse, other: subprocess.Popen[bytes], seconds: float) -> int:
    """Writes never LEASE_IDLE_S apart until the other process ends (or ``seconds`` pass)."""
    writes, started = 0, time.monotonic()
    while other.poll() is None and time.monotonic() - started < seconds:
        store.replace_partition("s", "rows", "mine", pd.DataFrame({"v": [float(writes)]}))
        writes += 1
    return writes


def test_a_step_using_the_warehouse_without_pause_lets_a_waiting_process_in(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    store = Warehouse(path)
    store.replace_partition("s", "rows", "mine", pd.DataFrame({"v": [1.0]}))
    with lease_connection(store) as lease:
        assert lease is not None and store.table_exists("s", "rows")  # held from here on
        other = patient_process(path, "announce", 30)
        writes = write_without_pause(store, other, 60)
        assert other.wait(60) == 0
        assert writes > 10 and lease.opened >= 2
    assert sorted(store.read_table("s", "rows")["partition_key"]) == ["mine", "other"]
    assert warehouse_lease.waiting_marker(path).exists()


def test_with_no_one_waiting_a_step_holds_on_past_its_hold_time(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    store = Warehouse(path)
    store.replace_partition("s", "rows", "mine", pd.DataFrame({"v": [1.0]}))
    with lease_connection(store) as lease:
        assert lease is not None and store.table_exists("s", "rows")
        # A process that does not say it waits (a DuckDB shell) only gets in when the step pauses.
        other = patient_process(path, "shell", 4 * warehouse_lease.LEASE_MAX_HOLD_S)
        writes = write_without_pause(store, other, 60)
        assert other.wait(60) == 3 and writes > 10
        assert lease.opened == 1  # one connection for the whole time: no checkpoint, no gap
    assert store.read_table("s", "rows")["partition_key"].tolist() == ["mine"]
    assert not warehouse_lease.waiting_marker(path).exists()


def test_read_only_connects_share_the_lease_and_stay_read_only(tmp_path: Path, opened: list[bool]) -> None:
    path = tmp_path / "warehouse.duckdb"
    Warehouse(path).replace_partition("s", "rows", "a", batch(1))
    opened.clear()
    store = Warehouse(path, lock_timeout_s=1.0)
    with lease_connection(store):
        other = Warehouse(str(path.parent / "." / path.name))  # another object, another spelling
        assert other.table_exists("s", "rows") and other.identity() is not None
        pd.testing.assert_frame_equal(without_key(other.read_table("s", "rows")), batch(1))
        with pytest.raises(duckdb.Error, match="read-only"):
            other.execute_read("DELETE FROM s.rows")
        with other.reading() as reader:
            pd.testing.assert_frame_equal(without_key(reader.read_table("s", "rows")), batch(1))
            assert len(store.read_table("s", "rows")) == 5  # a block nested in another
            with pytest.raises(duckdb.Error, match="read-only"):
                reader.replace_partition("s", "rows", "b", batch(2))
        with store.exclusive() as locked:
            assert len(locked.read_table("s", "rows")) == 5
            locked.replace_partition("s", "rows", "b", batch(2))
            assert len(other.read_table("s", "rows")) == 5  # not yet committed: another transaction
        assert other.execute_read("SELECT count(*) AS n FROM s.rows")["n"].tolist() == [10]
    assert opened == [False]


def test_reading_is_one_snapshot_while_another_thread_writes(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    store = Warehouse(path)
    store.replace_partition("s", "rows", "a", batch(1))
    with lease_connection(store), store.reading() as reader:
        before = reader.read_table("s", "rows")
        writer = threading.Thread(target=store.replace_partition, args=("s", "rows", "b", batch(2)))
        writer.start()
        writer.join(60)
        pd.testing.assert_frame_equal(reader.read_table("s", "rows"), before)
        assert len(store.read_table("s", "rows")) == 10  # committed, seen by a new block
    assert len(store.read_table("s", "rows")) == 10


def failing_update(store: Warehouse) -> None:
    with store.exclusive() as locked:
        locked.replace_partition("s", "rows", "a", pd.DataFrame({"v": [9.0]}))
        assert locked.read_table("s", "rows")["v"].tolist() == [9.0]  # its own write is visible
        raise KeyError("the step failed")


def test_errors_roll_back_and_the_lease_keeps_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warehouse_lease, "LEASE_IDLE_S", 30.0)
    monkeypatch.setattr(warehouse_lease, "LEASE_MAX_HOLD_S", 60.0)
    path = tmp_path / "warehouse.duckdb"
    store = Warehouse(path)
    with lease_connection(store) as lease:
        assert lease is not None
        store.replace_partition("s", "rows", "a", pd.DataFrame({"v": [1.0]}))
        with pytest.raises(KeyError, match="the step failed"):
            failing_update(store)
        with pytest.raises(ValueError, match="v"):  # a type change refused inside the write's transaction
            store.replace_partition_tables(
                "s", "b", {"new": pd.DataFrame({"v": [3.0]}), "rows": pd.DataFrame({"v": ["text"]})}
            )
        assert store.read_table("s", "rows")["v"].tolist() == [1.0]
        assert not store.table_exists("s", "new")  # the whole transaction rolled back
        store.replace_partition("s", "rows", "b", pd.DataFrame({"v": [2.0]}))
        assert lease.opened == 1  # the rollbacks left the connection usable

        lease._connection.close()  # type: ignore[union-attr]  # an error that breaks the connection
        with pytest.raises(duckdb.ConnectionException):
            store.read_table("s", "rows")
        assert store.read_table("s", "rows")["v"].tolist() == [1.0, 2.0]  # dropped, then reopened
        assert lease.opened == 2


def test_a_lease_waits_for_another_process_with_the_warehouses_backoff(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    Warehouse(path).replace_partition("s", "rows", "a", pd.DataFrame({"v": [1.0]}))
    impatient = Warehouse(path, lock_timeout_s=0.3, initial_backoff_s=0.05, max_backoff_s=0.1)
    script = textwrap.dedent(
        """
        import sys, time, duckdb
        connection = duckdb.connect(sys.argv[1])
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
        connection.close()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(path), "3"], stdout=subprocess.PIPE, text=True
    ) as other:
        assert other.stdout is not None and other.stdout.readline().strip() == "locked"
        with lease_connection(impatient), pytest.raises(WarehouseError, match="still locked"):
            impatient.read_table("s", "rows")
        with lease_connection(Warehouse(path, lock_timeout_s=60)) as lease:
            assert Warehouse(path).read_table("s", "rows")["v"].tolist() == [1.0]  # waited, then opened
            assert lease is not None and lease.opened == 1
        other.wait(60)


def test_nested_leases_share_one_and_other_warehouses_are_not_leased(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with lease_connection(Warehouse(path)) as outer:
        with lease_connection(Warehouse(path)) as inner:
            assert inner is outer
        assert lease_for(path) is outer  # the inner end leaves the outer's lease
    assert lease_for(path) is None
    with lease_connection(PostgresWarehouse("postgresql://user@localhost/db")) as none:
        assert none is None
    with lease_connection(None) as none:
        assert none is None
