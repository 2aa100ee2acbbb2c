"""Raw rows are stored column by column, typed only where every cell comes back exactly as delivered."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pa_parquet
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resources import raw_records
from resources.arrow_memory import ArrowParts
from resources.raw_columns import (
    columns_from_table,
    delivered_columns,
    load_raw,
    raw_rows_table,
    records_frame,
    stored_names,
    text_frame,
)
from resources.warehouse import open_warehouse

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
number_like = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "007", "-0", "+1", "1.50", "1e3", " 2", "nan", "NaN", "1_000", "0x1", ".5", "5."]),
)
cells = st.one_of(texts, number_like)
names = st.lists(texts, min_size=1, max_size=5, unique=True)
PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def columns_of(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[list[str], list[list[str]]]]:
    return names.flatmap(
        lambda cols: st.tuples(
            st.just(cols),
            st.lists(st.lists(strategy, min_size=len(cols), max_size=len(cols)), min_size=1, max_size=6),
        )
    )


@PROFILE
@given(st.one_of(columns_of(cells), columns_of(number_like)))
def test_every_cell_comes_back_as_delivered_through_types_and_storage(
    case: tuple[list[str], list[list[str]]],
) -> None:
    columns, values = case
    delivered = pd.DataFrame(values, columns=columns, dtype=object)
    raw = delivered_columns(delivered)
    pd.testing.assert_frame_equal(text_frame(raw), delivered)
    stored = columns_from_table(raw_rows_table(raw), columns, stored_names(raw))
    pd.testing.assert_frame_equal(stored, raw)


def test_canonical_numbers_are_typed_and_anything_else_keeps_its_text() -> None:
    raw = delivered_columns(
        pd.DataFrame(
            {
                "count": ["0", "-12", "7"],
                "price": ["0.1", "", "-3.25e-07"],
                "id": ["007", "8", "9"],
                "padded": ["1.50", "2.0", "3.0"],
                "signed": ["+1", "2", "3"],
                "word": ["nan", "1.0", "2.0"],
            },
            dtype=object,
        )
    )
    assert stored_names(raw) == ["c0_int", "c1_double", "c2_text", "c3_text", "c4_text", "c5_text"]
    assert raw["count"].tolist() == [0, -12, 7]
    np.testing.assert_array_equal(raw["price"], [0.1, np.nan, -3.25e-07])


def test_a_typed_double_is_the_correctly_rounded_value_of_its_text() -> None:
    text = ["-0.11691341642839587", "0.05893535902297446", "0.37299983596970493"]
    raw = delivered_columns(pd.DataFrame({"x": text}, dtype=object))
    assert raw["x"].tolist() == [float(t) for t in text]


def test_batches_stored_as_json_records_before_the_columnar_layout_still_read() -> None:
    records = pd.Series([json.dumps({"a": "1", "b": "x"}), json.dumps({"a": "2", "b": "y"})])
    expected = pd.DataFrame({"a": ["1", "2"], "b": ["x", "y"]}, dtype=str)
    pd.testing.assert_frame_equal(records_frame(records), expected)


@pytest.mark.parametrize(
    "content",
    [
        b"id,x,y\nu1,0.1,7\nu2,,8\nu3,2.5,9\nu4,1e3,10\nu5,0.25,11\n",  # x: double, then text in chunk 2
        b"\xef\xbb\xbfid,x,\nu1,1,\nu2,2,\nu3,3,\nu4,4,\n",  # a byte-order mark; a trailing delimiter
        b"id,x\nu1,1\nu2,2\nu3,3,extra\nu4,4\n",  # a row beyond the header: the whole-file reader
        b"id,id\nu1,1\nu2,2\n",  # duplicate names: refused by the whole-file reader's rule
        b"id,x\n",  # no rows
    ],
)
def test_a_large_csv_read_in_typed_chunks_equals_the_whole_file_read(
    content: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "2025-01-01.csv"
    path.write_bytes(content)

    def read() -> pd.DataFrame | str:
        try:
            return raw_records.read_batch_file(path, batch="2025-01-01")
        except raw_records.BatchFileError as error:
            return str(error)

    whole = read()
    monkeypatch.setattr(raw_records, "CHUNKED_BYTES", 0)
    monkeypatch.setattr(raw_records, "CHUNK_ROWS", 2)
    chunked = read()
    if isinstance(whole, str):
        assert chunked == whole
    else:
        assert isinstance(chunked, pd.DataFrame)
        pd.testing.assert_frame_equal(chunked, whole)


def test_a_warehouse_holds_json_records_and_columns_side_by_side_and_reads_both(tmp_path: Path) -> None:
    store = open_warehouse(tmp_path / "warehouse.duckdb")
    study = SimpleNamespace(name="study")
    old_rows = pd.DataFrame({"row_index": [1, 0], "record_json": ['{"a": "2"}', '{"a": "1"}']})
    old_files = pd.DataFrame({"file_name": ["old.csv"], "columns_json": ['["a"]']})
    store.replace_partition_tables("study", "2025-01-01", {"raw_files": old_files, "raw_rows": old_rows})
    new = delivered_columns(pd.DataFrame({"a": ["3", "4"], "b": ["x", "007"]}, dtype=object))
    new_files = pd.DataFrame(
        {
            "file_name": ["new.csv"],
            "columns_json": ['["a", "b"]'],
            "stored_columns_json": [json.dumps(stored_names(new))],
        }
    )
    store.replace_partition_tables(
        "study", "2025-02-01", {"raw_files": new_files, "raw_rows": raw_rows_table(new)}
    )
    old = load_raw(store, study, "2025-01-01")  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(old, pd.DataFrame({"a": ["1", "2"]}, dtype=str))
    pd.testing.assert_frame_equal(load_raw(store, study, "2025-02-01"), new)  # type: ignore[arg-type]
    assert load_raw(store, study, "2025-03-01").empty  # type: ignore[arg-type]


@pytest.mark.parametrize("index", [None, pd.Index(np.arange(3000) * 7, name="k")], ids=["range", "stored"])
def test_a_parquet_file_with_an_id_column_reads_as_the_whole_table_converts(
    tmp_path: Path, index: Any
) -> None:
    """Ids are converted apart, without sharing equal strings; the frame is the whole table's."""
    rng = np.random.default_rng(3)
    n = 3000
    frame = pd.DataFrame(
        {
            "account_id": [f"acct-{i:06d}" for i in range(n)],
            "tickets": rng.integers(0, 9, n),
            "region": rng.choice(["EU", "APAC", None], n),
            "usage": rng.standard_normal(n),
            "code": [f"c{i}" if i % 2 else None for i in range(n)],  # half distinct, with nulls
        },
        index=index,
    )
    path = tmp_path / "batch.parquet"
    frame.to_parquet(path)
    read = raw_records.read_batch_file(path, batch="b")
    table = pa_parquet.read_table(path)
    expected = raw_records._parquet_columns(table.to_pandas()).reset_index(drop=True)
    pd.testing.assert_frame_equal(read, raw_records.delivered_columns(expected))
    parts = ArrowParts.of(table)
    assert [how for _, how in parts.tables] == ["shared", "apart"]
    assert parts.tables[1][0].column_names == ["account_id"]  # "code": half distinct, not more
    regions = read["region"][read["region"] == "EU"]
    assert regions.iloc[0] is regions.iloc[1]  # equal strings still share one object outside the ids
