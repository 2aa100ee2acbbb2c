"""The returning-units check reads every stored influence value only when some unit is in two batches.

Against the check on the full stored table (what it read before), on both warehouse backends:
the same verdict and metadata when no unit returns (it then reads the earlier batches' labels
only), and the full rows whenever a unit is in two batches, earlier ones included, or an earlier
batch was stored without its ``unit_overlap`` answer (by an earlier version).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from assimilate.admission import admitted_units
from checks.returning_units import (
    INFLUENCE_TABLE,
    OVERLAP_TABLE,
    DisjointHistory,
    earlier_influence,
    returning_units_verdict,
    stored_influence,
)
from resources.arrow_memory import ARROW_TEXT
from resources.postgres_warehouse import PostgresWarehouse
from resources.warehouse import Warehouse

STUDY = "Returning_Study"  # a capital letter: PostgreSQL names the table in lower case
BATCHES = ["2025-01-01", "2025-02-01", "2025-03-01"]


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    if request.param == "duckdb":
        return Warehouse(tmp_path / "warehouse.duckdb", lock_timeout_s=30)
    return PostgresWarehouse(request.getfixturevalue("postgres_warehouse_url"), lock_timeout_s=30)


def influence_rows(units: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"row_index": np.arange(len(units)), "unit_id": units, "influence": rng.normal(size=len(units))}
    )


def fresh_units(batch: int, n: int = 50) -> list[str]:
    return [f"u{batch}_{i}" for i in range(n)]


def store_batch(store: Warehouse, batch: str, rows: pd.DataFrame, *, answer: bool = True) -> None:
    """As the estimation step stores a batch: its influence rows with its ``unit_overlap`` answer."""
    with store.reading() as reader:
        overlap = earlier_influence(reader, STUDY, batch, rows["unit_id"]).overlap_row(len(rows))
    tables = {INFLUENCE_TABLE: rows, OVERLAP_TABLE: overlap if answer else pd.DataFrame()}
    store.replace_partition_tables(STUDY, batch, tables)


def store_history(store: Warehouse, units: list[list[str]], order: list[int] | None = None) -> None:
    for i in order or range(len(units)):
        store_batch(store, BATCHES[i], influence_rows(units[i], seed=i))


def both_ways(store: Warehouse, this: pd.DataFrame, batch: str) -> tuple[object, tuple, tuple]:
    """What the check reads now, its verdict and metadata, and those on the full table."""
    with store.reading() as reader:
        read = earlier_influence(reader, STUDY, batch, this["unit_id"]).influence
    full = store.read_table(STUDY, INFLUENCE_TABLE)
    return read, returning_units_verdict(read, this, batch), returning_units_verdict(full, this, batch)


def test_a_history_of_fresh_units_reads_labels_only_and_gives_the_full_tables_verdict(
    store: Warehouse,
) -> None:
    this = influence_rows(fresh_units(9), seed=9)
    read, (verdict, metadata), (expected, expected_metadata) = both_ways(store, this, "2025-01-01")
    assert read == DisjointHistory(())  # nothing stored yet
    assert verdict == expected and metadata == expected_metadata

    store_history(store, [fresh_units(i) for i in range(3)])
    read, (verdict, metadata), (expected, expected_metadata) = both_ways(store, this, "2025-04-01")
    assert read == DisjointHistory(tuple(BATCHES))
    assert verdict == expected and verdict.passed and verdict.value == 0.0
    assert metadata == expected_metadata
    assert (metadata["earlier_batches"], metadata["returning_units"], metadata["units"]) == (3, 0, 50)
    assert metadata["correlation_with_previous"] == 0.0 and metadata["standard_error_ratio"] == 1.0

    # A batch in the middle of the history sees only the batches before it.
    read, (verdict, metadata), (expected, expected_metadata) = both_ways(store, this, "2025-02-15")
    assert read == DisjointHistory(tuple(BATCHES[:2])) and (verdict, metadata) == (
        expected,
        expected_metadata,
    )


def test_a_unit_with_two_rows_in_one_batch_does_not_return(store: Warehouse) -> None:
    history = [fresh_units(i) for i in range(3)]
    history[1][:10] = history[1][10:20]  # ten units of February have two rows each
    store_history(store, history)
    this = influence_rows(fresh_units(9), seed=9)
    read, (verdict, metadata), (expected, expected_metadata) = both_ways(store, this, "2025-04-01")
    assert read == DisjointHistory(tuple(BATCHES))
    assert (verdict, metadata) == (expected, expected_metadata)


def test_the_estimation_steps_arrow_backed_ids_give_the_same_reads_and_verdicts(store: Warehouse) -> None:
    """The step reads its unit ids as Arrow text (resources/arrow_memory.py): nothing else changes."""
    history = [fresh_units(i) for i in range(3)]
    this_units = fresh_units(9)
    this_units[:20] = history[1][:20]  # returning from February
    store_history(store, history)
    this = influence_rows(this_units, seed=9)
    arrow = this.assign(unit_id=this["unit_id"].astype(ARROW_TEXT))
    with store.reading() as reader:
        as_objects = earlier_influence(reader, STUDY, "2025-04-01", this["unit_id"])
        as_arrow = earlier_influence(reader, STUDY, "2025-04-01", arrow["unit_id"])
    assert isinstance(as_arrow.influence, pd.DataFrame) and as_arrow.meets_others
    pd.testing.assert_frame_equal(as_arrow.influence, as_objects.influence)
    verdict, metadata = returning_units_verdict(as_arrow.influence, arrow, "2025-04-01")
    assert (verdict, metadata) == returning_units_verdict(as_objects.influence, this, "2025-04-01")
    assert metadata["returning_units"] == 20


@pytest.mark.parametrize("where", ["this batch", "two earlier batches", "stored late", "no answer"])
def test_a_unit_in_two_batches_reads_every_row(store: Warehouse, where: str) -> None:
    history = [fresh_units(i) for i in range(3)]
    this_units = fresh_units(9)
    if where == "this batch":
        this_units[:20] = history[1][:20]  # returning from February
    elif where != "no answer":
        history[2][:30] = history[0][:30]  # January's units return in March; April's are new
    # "stored late": March, then January (a backfill out of order, or January corrected later)
    store_history(store, history, order=[2, 1, 0] if where == "stored late" else None)
    if where == "no answer":  # February as an earlier version stored it: rows, no answer
        store_batch(store, BATCHES[1], influence_rows(history[1], seed=1), answer=False)
    this = influence_rows(this_units, seed=9)
    read, (verdict, metadata), (expected, expected_metadata) = both_ways(store, this, "2025-04-01")
    assert isinstance(read, pd.DataFrame) and len(read) == 150
    assert verdict == expected and metadata == expected_metadata
    if where == "this batch":
        assert metadata["returning_units"] == 20
    elif where != "no answer":  # the earlier batches' correlation moves the running average's SE
        assert metadata["returning_units"] == 0 and metadata["standard_error_ratio"] != 1.0


def test_a_corrected_batch_that_no_longer_shares_is_read_in_full_until_answered_again(
    store: Warehouse,
) -> None:
    history = [fresh_units(i) for i in range(3)]
    history[2][:30] = history[0][:30]
    store_history(store, history)
    store_batch(store, BATCHES[2], influence_rows(fresh_units(2), seed=2))  # March corrected: fresh
    this = influence_rows(fresh_units(9), seed=9)
    # March now answers no; January's stored answer (no: it was stored first) stands.
    read, (verdict, metadata), (expected, expected_metadata) = both_ways(store, this, "2025-04-01")
    assert read == DisjointHistory(tuple(BATCHES)) and (verdict, metadata) == (expected, expected_metadata)


@pytest.mark.parametrize("where", ["none", "two batches", "no answer"])
def test_the_posterior_reads_the_rows_only_where_a_unit_is_in_two_batches(
    store: Warehouse, where: str
) -> None:
    history = [fresh_units(i) for i in range(3)]
    if where == "two batches":
        history[2][:5] = history[1][:5]
    store_history(store, history)
    if where == "no answer":
        store_batch(store, BATCHES[0], influence_rows(history[0], seed=0), answer=False)
    read = stored_influence(store, STUDY)
    if where == "none":  # the fusion's correlation is the identity either way
        assert read.empty
        observed = pd.DataFrame({"batch": BATCHES, "excluded": [False] * 3})
        assert admitted_units(observed, read).is_disjoint
        assert admitted_units(observed, store.read_table(STUDY, INFLUENCE_TABLE)).is_disjoint
    else:
        pd.testing.assert_frame_equal(read, store.read_table(STUDY, INFLUENCE_TABLE))


@pytest.mark.parametrize("stored", ["an answer without a count", "a batch without influence values"])
def test_the_earlier_batches_are_those_with_influence_values_however_answered(
    store: Warehouse, stored: str
) -> None:
    history = [fresh_units(i) for i in range(3)]
    store_history(store, history)
    if stored == "an answer without a count":  # January as the previous version stored it
        tables = {
            INFLUENCE_TABLE: influence_rows(history[0], seed=0),
            OVERLAP_TABLE: pd.DataFrame({"meets_others": [False]}),
        }
        store.replace_partition_tables(STUDY, BATCHES[0], tables)
    else:  # February's estimator gave no estimate: no influence values, an answer all the same
        store_batch(store, BATCHES[1], influence_rows([], seed=1))
    this = influence_rows(fresh_units(9), seed=9)
    read, (verdict, metadata), (expected, expected_metadata) = both_ways(store, this, "2025-04-01")
    labels = tuple(BATCHES) if stored == "an answer without a count" else (BATCHES[0], BATCHES[2])
    assert read == DisjointHistory(labels)
    assert (verdict, metadata) == (expected, expected_metadata)
    assert stored_influence(store, STUDY).empty
