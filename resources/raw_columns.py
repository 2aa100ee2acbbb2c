"""Delivered columns, typed where the type keeps every cell as delivered, and stored column by column.

A raw batch arrives as text (CSV) or typed columns (Parquet). ``delivered_columns`` gives each
column the narrowest of four kinds that gives back every cell exactly as delivered:

- ``int``: every cell is an int64 written the canonical way (``0``, ``-12``; no ``+``, no leading
  zero, no white space), held as int64;
- ``double``: every cell is what Python's ``repr`` writes for its float (``0.1``, ``-3.25e-07``),
  or blank, held as float64 with blank as NaN;
- ``bool``: a Parquet boolean column without nulls;
- ``text``: anything else, kept as the delivered strings.

So a CSV column written by pandas, R or a database export is stored as numbers, and ``007``,
``1.50``, ``+1`` or ``nan`` keep their text. ``as_text`` writes a typed cell back exactly as it was
delivered (NaN as blank), which is what a quarantined row's record and any "as delivered" view use.

The warehouse table ``raw_rows`` has one column per delivered column and kind, named by position
(``c0_double``, ``c1_text``, ...): header names are arbitrary text (quotes, NUL bytes, names that
differ only in case), while positions are plain identifiers, and a column that is text in one batch
and numbers in another never forces a type change on stored batches. The names, in order, are the
``raw_files`` row's ``columns_json``; the storage names its ``stored_columns_json``. Batches stored
before this layout (one JSON record per row) are read back by ``records_frame``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from resources.study import StudyConfig
from resources.warehouse import Warehouse


def delivered_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """Each text column as int64 or float64 where every cell round-trips; other columns unchanged."""
    typed = {name: _narrowest(raw[name]) for name in raw.columns}
    return pd.DataFrame(typed, index=raw.index, copy=False) if typed else raw  # no consolidated copy


def _narrowest(values: pd.Series) -> pd.Series:
    if values.dtype != object or not len(values):
        return values
    cells = values.to_numpy()
    first = str(cells[0])
    if first and first[0] not in "-0123456789.ie":  # text on its first cell: no scan of the column
        return values
    texts = cells.tolist()
    with contextlib.suppress(ValueError, TypeError, OverflowError):  # int() and float() say no
        integers = cells.astype(np.int64)
        if list(map(str, integers.tolist())) == texts:  # canonical: no sign, space, 0-padding or _
            return pd.Series(integers, index=values.index)
    blank = values.eq("").to_numpy()
    with contextlib.suppress(ValueError, TypeError):
        numbers = np.where(blank, "nan", cells).astype(np.float64)  # Python's float(): exact
        written = numbers[~blank]
        kept = [t for t, b in zip(texts, blank.tolist(), strict=True) if not b] if blank.any() else texts
        if not np.isnan(written).any() and list(map(repr, written.tolist())) == kept:
            return pd.Series(numbers, index=values.index)
    return values


def joined_chunks(parts: Sequence[pd.DataFrame], names: Sequence[str]) -> pd.DataFrame:
    """Typed chunks of one batch as one frame: a column typed alike in every chunk keeps its type,
    any other is text (each chunk's cells given back as delivered)."""
    if not parts:
        return pd.DataFrame(columns=list(names), dtype=object)
    columns = {}
    for name in names:
        pieces = [part[name] for part in parts]
        if len({kind_of(piece) for piece in pieces}) > 1:
            pieces = [as_text(piece) for piece in pieces]
        columns[name] = pd.concat(pieces, ignore_index=True)
    return pd.DataFrame(columns, copy=False)


def _double_text(values: np.ndarray) -> np.ndarray:
    """Each float as ``repr`` writes it, NaN as blank."""
    return np.array(["" if v != v else repr(v) for v in values.tolist()], dtype=object)


def kind_of(values: pd.Series) -> str:
    """The stored kind of a delivered column: ``int``, ``double``, ``bool`` or ``text``."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(values.dtype):
        return "int"
    if pd.api.types.is_float_dtype(values.dtype):
        return "double"
    return "text"


def as_text(values: pd.Series) -> pd.Series:
    """A delivered column's cells as the text they were delivered as (a text column unchanged)."""
    kind = kind_of(values)
    if kind == "text":
        return values
    if kind == "double":
        return pd.Series(_double_text(values.to_numpy(dtype=np.float64)), index=values.index, dtype=object)
    return values.astype(str).astype(object)  # int: canonical digits; bool: True / False as Parquet's


def text_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """The batch with every cell as delivered text."""
    return pd.DataFrame({name: as_text(raw[name]) for name in raw.columns}, index=raw.index)


def stored_names(raw: pd.DataFrame) -> list[str]:
    """The ``raw_rows`` column of each delivered column, by position and kind."""
    return [f"c{position}_{kind_of(raw[name])}" for position, name in enumerate(raw.columns)]


def raw_rows_table(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per delivered row: its index and its cells, one stored column per delivered column."""
    table = {"row_index": np.arange(len(raw), dtype=np.int64)}
    for stored, name in zip(stored_names(raw), raw.columns, strict=True):
        table[stored] = raw[name].to_numpy()
    return pd.DataFrame(table, copy=False)  # the batch's arrays, not a copy of them


def columns_from_table(rows: pd.DataFrame, names: Sequence[str], stored: Sequence[str]) -> pd.DataFrame:
    """The delivered batch from its stored rows (sorted by ``row_index``), named as delivered."""
    order = rows["row_index"].to_numpy() if len(rows) else np.arange(0)
    in_order = bool(np.all(order[1:] > order[:-1]))  # as written: no copy for a sort
    dtypes = {"int": np.int64, "double": np.float64, "bool": bool, "text": object}
    columns = {}
    for name, column in zip(names, stored, strict=True):
        values = rows[column].to_numpy()
        values = values if in_order else values[np.argsort(order, kind="stable")]
        columns[name] = values.astype(dtypes[column.rsplit("_", 1)[1]], copy=False)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)), copy=False)


def records_frame(texts: pd.Series) -> pd.DataFrame:
    """A batch stored before the columnar layout, from its JSON records (all text), in order."""
    records = json.loads("[" + ",".join(texts) + "]")  # one parse: per-row json.loads is 3x slower
    return pd.DataFrame(records, dtype=str)


def load_raw(store: Warehouse, study: StudyConfig, batch: str) -> pd.DataFrame:
    """The raw batch as delivered (typed columns where lossless), rebuilt from the stored rows."""
    files = store.read_table(study.name, "raw_files", partition_key=batch)
    stored_json = (
        files["stored_columns_json"].iloc[0] if "stored_columns_json" in files and len(files) else None
    )
    if stored_json is None or stored_json != stored_json:  # none, or stored by an earlier version
        return _load_records(store, study, batch)
    names, stored = json.loads(files["columns_json"].iloc[0]), json.loads(stored_json)
    return batch_from_rows(store.read_table(study.name, "raw_rows", partition_key=batch), names, stored)


def batch_from_rows(rows: pd.DataFrame, names: Sequence[str], stored: Sequence[str]) -> pd.DataFrame:
    """The delivered batch from its ``raw_rows`` (as stored, or as read back): what ``load_raw`` gives."""
    return columns_from_table(rows, names, stored) if len(rows) else pd.DataFrame(columns=list(names))


def _load_records(store: Warehouse, study: StudyConfig, batch: str) -> pd.DataFrame:
    rows = store.read_table(study.name, "raw_rows", partition_key=batch)
    if rows.empty or "record_json" not in rows:
        return pd.DataFrame()
    return records_frame(rows.sort_values("row_index")["record_json"])
