"""A step over a range of batches writes each table once, before it reports any materialization.

The batches' partition writes are held (resources/deferred_writes.py) and written together at the
step's end: one ``replace_partitions`` per range, not one write per batch; a step of one batch
writes as it goes; a batch that fails leaves the batches before it written.
"""
# No `from __future__ import annotations`: Dagster reads the context annotation as a class.

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.partition_range import SINGLE_RUN, each_batch
from resources.warehouse import Warehouse, WarehouseResource
from tests.backend_support import duckdb_only  # noqa: F401

BATCHES = dg.StaticPartitionsDefinition(["a", "b", "c", "d"])
FAIL_AT: list[str] = []


@dg.asset(partitions_def=BATCHES, backfill_policy=SINGLE_RUN)
@each_batch
def rows(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    batch = context.partition_key
    tables = {"rows": pd.DataFrame({"v": [1.0, 2.0]}), "notes": pd.DataFrame({"n": [batch]})}
    warehouse.get().replace_partition_tables("s", batch, tables)
    if batch in FAIL_AT:
        raise RuntimeError(f"batch {batch} failed after its write")
    return dg.MaterializeResult(metadata={"batch": batch})


def range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}


def counting_writes(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, list[str]]]:
    """Each ``replace_partitions`` call: table -> the partitions it wrote."""
    calls: list[dict[str, list[str]]] = []
    original = Warehouse.replace_partitions

    def counted(self: Warehouse, schema: str, tables: dict, **kwargs: object) -> None:
        calls.append({table: [key for key, _ in frames] for table, frames in tables.items()})
        original(self, schema, tables, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Warehouse, "replace_partitions", counted)
    return calls


@pytest.mark.usefixtures("duckdb_only")
def test_a_range_step_writes_each_table_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resource = WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))
    calls = counting_writes(monkeypatch)
    FAIL_AT.clear()
    result = dg.materialize([rows], resources={"warehouse": resource}, tags=range_tags("a", "d"))
    assert result.success
    assert calls == [{"rows": ["a", "b", "c", "d"], "notes": ["a", "b", "c", "d"]}]
    store = resource.get()
    assert store.read_table("s", "notes")["n"].tolist() == ["a", "b", "c", "d"]
    assert len(store.read_table("s", "rows")) == 8
    materialized = result.get_asset_materialization_events()
    assert sorted(e.partition for e in materialized) == ["a", "b", "c", "d"]

    calls.clear()
    assert dg.materialize([rows], resources={"warehouse": resource}, partition_key="b").success
    assert calls == [{"rows": ["b"], "notes": ["b"]}]  # one batch: written as it goes


@pytest.mark.usefixtures("duckdb_only")
def test_a_failed_batch_leaves_the_batches_before_it_written(tmp_path: Path) -> None:
    resource = WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))
    FAIL_AT[:] = ["c"]
    try:
        result = dg.materialize(
            [rows], resources={"warehouse": resource}, tags=range_tags("a", "d"), raise_on_error=False
        )
    finally:
        FAIL_AT.clear()
    assert not result.success
    assert not result.get_asset_materialization_events()  # the range reports nothing
    # a and b, and c's write made before it failed, as writing batch by batch would leave them
    assert resource.get().read_table("s", "notes")["n"].tolist() == ["a", "b", "c"]
