"""Arrow tables into pandas within bounds: freed memory given back, ids converted apart.

pyarrow allocates through its own pool (mimalloc here), which keeps the pages of freed buffers for
reuse and returns them only when its heap is active again. After a large conversion (a Parquet
file read into pandas, a warehouse read through Arrow, a frame registered as an Arrow table for
an insert) nothing in the step allocates through Arrow for a while, so the freed pages stay
resident: reading a 1e7-row Parquet batch left the process 3.55 GiB larger for a 1.9 GiB frame,
and 1.46 GiB larger once the pool had released them. Releasing costs about a microsecond.

pyarrow also shares equal strings of a text column as one Python object, through a table of the
strings seen. For a column of distinct ids that table shares nothing and costs most: converting
1e7 ids peaked at 2.05 GB above the table with it and 0.82 without, for the same column.
:class:`ArrowParts` converts such columns apart, without it.

A reader that needs ids only to match, count and store them (the estimation step) asks for them as
pandas' Arrow-backed text (``ARROW_TEXT``): no Python object per value. 1e7 ids are 0.65 GB as
objects and about 0.17 GB in Arrow's buffers.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

# A text column is converted without sharing equal strings when more than half of its first
# DISTINCT_SAMPLE values are distinct. At 100,000 the count cost a 1e5-row landed batch 89 ms over
# its reads, at 10,000 it costs 4 ms; ids and categories are told apart as well.
DISTINCT_SAMPLE = 10_000
ARROW_TEXT = pd.StringDtype("pyarrow")
Conversion = Literal["shared", "apart", "arrow"]  # equal strings one object; an object each; Arrow text


def release_arrow_memory() -> None:
    """Return the pages Arrow's default pool holds for freed buffers to the system."""
    pa.default_memory_pool().release_unused()


@dataclass(frozen=True)
class ArrowParts:
    """A table in parts, each converted with or without sharing equal strings (module docstring).

    Equal strings become one Python object, except in a text column whose first values are mostly
    distinct (an id); the text columns named in ``arrow_text`` stay in Arrow (``ARROW_TEXT``). When
    the caller keeps no reference to the whole table, each part's buffers are freed as it is
    converted.
    """

    tables: list[tuple[pa.Table, Conversion]]
    order: list[str]  # the file's column names

    @classmethod
    def of(cls, table: pa.Table, *, arrow_text: Collection[str] = ()) -> ArrowParts:
        kept = {
            i
            for i in range(table.num_columns)
            if _is_text(table.column(i)) and table.column_names[i] in arrow_text
        }
        distinct = {
            i for i in range(table.num_columns) if i not in kept and _mostly_distinct(table.column(i))
        }
        if (not distinct and not kept) or len(set(table.column_names)) < table.num_columns:
            return cls([(table, "shared")], table.column_names)
        rest = [i for i in range(table.num_columns) if i not in distinct | kept]
        parts: list[tuple[list[int], Conversion]] = [
            (rest, "shared"),
            (sorted(distinct), "apart"),
            (sorted(kept), "arrow"),
        ]
        return cls([(table.select(columns), how) for columns, how in parts if columns], table.column_names)

    def to_pandas(self) -> pd.DataFrame:
        """``table.to_pandas()`` (in parts, each on a RangeIndex: a stored pandas index is dropped),
        but for the ``arrow_text`` columns.

        The parts are used up (``self_destruct``).
        """
        if len(self.tables) == 1 and self.tables[0][1] == "shared":
            return self.tables[0][0].to_pandas(split_blocks=True, self_destruct=True)
        columns: dict[str, pd.Series] = {}
        for table, how in self.tables:
            if how == "arrow":
                columns |= {str(name): _arrow_text(table.column(name)) for name in table.column_names}
                continue
            part = table.to_pandas(split_blocks=True, self_destruct=True, deduplicate_objects=how == "shared")
            part.index = pd.RangeIndex(len(part))
            columns |= {str(name): part[name] for name in part.columns}
        return pd.DataFrame({name: columns[name] for name in self.order if name in columns}, copy=False)


def as_arrow_text(frame: pd.DataFrame, columns: Collection[str]) -> pd.DataFrame:
    """``frame`` with each of ``columns`` that holds text (and missing values) as ``ARROW_TEXT``.

    For a frame read without Arrow; a column of other values (numbers) is left as it is.
    """
    for column in columns:
        values = frame[column] if column in frame.columns else None
        if (
            values is not None
            and values.dtype == object
            and pd.api.types.infer_dtype(values) in ("string", "empty")
        ):
            frame[column] = values.astype(ARROW_TEXT)
    return frame


def _arrow_text(column: pa.ChunkedArray) -> pd.Series:
    # A copy: the column's buffers would keep alive the whole batches they came in (DuckDB's record
    # batches hold every column read: 1.9 GiB held for a 1e7-row read of 1.1 when copied).
    chunks = column.cast(pa.large_string()).chunks
    copied = pa.chunked_array([pa.concat_arrays(chunks)] if chunks else [], pa.large_string())
    return pd.Series(pd.arrays.ArrowStringArray(copied), copy=False)


def _is_text(column: pa.ChunkedArray) -> bool:
    kind = column.type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _mostly_distinct(column: pa.ChunkedArray) -> bool:
    """Text whose first ``DISTINCT_SAMPLE`` values are more than half distinct."""
    kind = column.type
    if not (_is_text(column) or pa.types.is_string_view(kind)):
        return False
    sample = column.slice(0, DISTINCT_SAMPLE)
    return len(sample) > 0 and pc.count_distinct(sample).as_py() > len(sample) // 2
