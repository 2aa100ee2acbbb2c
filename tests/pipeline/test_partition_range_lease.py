"""A step under ``@each_batch`` holds one warehouse connection lease for all its batches (DuckDB)."""
# No `from __future__ import annotations`: Dagster reads the context annotation as a class.

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.partition_range import SINGLE_RUN, each_batch
from resources import warehouse_lease
from resources.warehouse import Warehouse, WarehouseResource
from resources.warehouse_lease import WarehouseLease, lease_for
from tests.backend_support import duckdb_only  # noqa: F401

BATCHES = dg.StaticPartitionsDefinition(["a", "b", "c"])
SEEN: list[tuple[str, WarehouseLease | None, int]] = []


@dg.asset(partitions_def=BATCHES, backfill_policy=SINGLE_RUN)
@each_batch
def rows(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    store = warehouse.get()
    store.replace_partition("s", "rows", context.partition_key, pd.DataFrame({"v": [1.0]}))
    lease = lease_for(store.path)
    SEEN.append((context.partition_key, lease, len(Warehouse(store.path).read_table("s", "rows"))))
    return dg.MaterializeResult()


@pytest.mark.usefixtures("duckdb_only")
def test_a_range_step_and_a_batch_step_each_hold_one_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warehouse_lease, "LEASE_IDLE_S", 30.0)  # one connection however slow the machine
    monkeypatch.setattr(warehouse_lease, "LEASE_MAX_HOLD_S", 60.0)
    resource = WarehouseResource(path=str(tmp_path / "warehouse.duckdb"))
    SEEN.clear()
    range_tags = {"dagster/asset_partition_range_start": "a", "dagster/asset_partition_range_end": "c"}
    assert dg.materialize([rows], resources={"warehouse": resource}, tags=range_tags).success
    assert [(batch, n) for batch, _, n in SEEN] == [("a", 1), ("b", 2), ("c", 3)]
    leases = {id(lease) for _, lease, _ in SEEN}
    assert len(leases) == 1 and SEEN[0][1] is not None and SEEN[0][1].opened == 1
    assert lease_for(tmp_path / "warehouse.duckdb") is None  # the step's end let go
    SEEN.clear()
    assert dg.materialize([rows], resources={"warehouse": resource}, partition_key="b").success
    assert SEEN[0][1] is not None and SEEN[0][1].opened == 1 and SEEN[0][2] == 3
