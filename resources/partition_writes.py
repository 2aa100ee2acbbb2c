"""A write's tables in the caller's transaction, on either backend: whole tables, then partitions.

``Warehouse.write`` and ``Warehouse.replace_partitions`` (resources/duckdb_warehouse.py) run this
inside their transaction with the backend's SQL module (``resources/duckdb_tables.py`` or
``resources/postgres_tables.py``). Several partitions of one table whose frames agree in columns
and types are written as one frame: one DELETE of their partitions and one INSERT, the partition of
each row in a column of the frame (``PARTITION_ROWS``) rather than a bound value.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from resources.duckdb_frames import PARTITION_COLUMN, PARTITION_ROWS


def write_tables(
    connection: Any,
    sql: Any,
    schema: str,
    whole: Mapping[str, pd.DataFrame],
    parts: Mapping[str, Sequence[tuple[str, pd.DataFrame]]],
) -> None:
    """Replace ``whole`` tables, then each table's partitions in ``parts`` in their order (checked frames)."""
    sql.create_schema(connection, schema)
    for table, frame in whole.items():
        sql.replace_whole(connection, schema, table, frame)
    stored = sql.tables_columns(connection, schema, parts) if parts else {}
    for table, frames in parts.items():
        for group, (keys, frame) in enumerate(partition_groups(frames)):
            # After a first group the table may have new columns or types: ask again.
            columns = sql.table_columns(connection, schema, table) if group else stored.get(table.lower())
            sql.replace_partition_rows(connection, schema, table, keys, frame, columns)


def delete_partition_rows(connection: Any, sql: Any, schema: str, table: str, partition_key: str) -> int:
    """Delete one partition's rows of an existing table; how many were deleted."""
    sql.require_partitioned(schema, table, sql.table_columns(connection, schema, table) or {})
    target = sql.qualified_name(connection, schema, table)
    rows = sql.run_sql(connection, f"DELETE FROM {target} WHERE {PARTITION_COLUMN} = ?", [partition_key])
    return int(rows[0][0]) if rows else 0


def partition_groups(frames: Sequence[tuple[str, pd.DataFrame]]) -> Iterator[tuple[list[str], pd.DataFrame]]:
    """Consecutive partitions whose frames agree in columns and types, each run as one frame.

    A run of one is its frame as it is; a longer run is the frames one after the other, with each
    row's partition in ``PARTITION_ROWS``. Frames agree when their columns, dtypes and (for object
    columns) the kinds of their values are the same, so the backend types the run's frame as it
    would type each of them. A partition written again starts a run: its rows replace the earlier.
    """
    run: list[tuple[str, pd.DataFrame]] = []
    run_signature: tuple[tuple[str, str, str], ...] = ()
    run_keys: set[str] = set()
    for key, frame in frames:
        signature = _signature(frame)
        if run and (signature != run_signature or key in run_keys):
            yield _joined(run)
            run, run_keys = [], set()
        run.append((key, frame))
        run_signature = signature
        run_keys.add(key)
    if run:
        yield _joined(run)


def _joined(run: list[tuple[str, pd.DataFrame]]) -> tuple[list[str], pd.DataFrame]:
    keys = [key for key, _ in run]
    if len(run) == 1:
        return keys, run[0][1]
    frames = [frame for _, frame in run]
    joined = pd.concat(frames, ignore_index=True) if len(frames[0].columns) else pd.DataFrame()
    if len(joined.columns):
        lengths = [len(frame) for frame in frames]
        joined.insert(0, PARTITION_ROWS, np.repeat(np.array(keys, dtype=object), lengths))
    return keys, joined


def _signature(frame: pd.DataFrame) -> tuple[tuple[str, str, str], ...]:
    return tuple(
        (
            str(name),
            str(dtype),
            pd.api.types.infer_dtype(frame[name], skipna=True) if dtype == np.dtype(object) else "",
        )
        for name, dtype in frame.dtypes.items()
    )
