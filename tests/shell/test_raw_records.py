"""Raw rows are stored as JSON text exactly as per-row ``json.dumps`` writes it, and read back as sent."""

from __future__ import annotations

import json

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resources.raw_records import raw_rows_table, records_frame

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
names = st.lists(texts, min_size=1, max_size=5, unique=True)
PROFILE = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def per_row_json(raw: pd.DataFrame) -> list[str]:
    return [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in raw.to_dict(orient="records")]


@PROFILE
@given(
    names.flatmap(
        lambda cols: st.tuples(
            st.just(cols), st.lists(st.lists(texts, min_size=len(cols), max_size=len(cols)), max_size=6)
        )
    )
)
def test_records_are_byte_identical_to_per_row_json_dumps_and_round_trip(
    case: tuple[list[str], list[list[str]]],
) -> None:
    columns, values = case
    raw = (
        pd.DataFrame(values, columns=columns, dtype=str)
        if values
        else pd.DataFrame(columns=columns, dtype=str)
    )
    table = raw_rows_table(raw)
    assert table["record_json"].tolist() == per_row_json(raw)
    assert table["row_index"].tolist() == list(range(len(raw)))
    if len(raw):
        pd.testing.assert_frame_equal(records_frame(table["record_json"]), raw[sorted(columns)])


def test_hostile_names_and_values_keep_their_text() -> None:
    raw = pd.DataFrame(
        {
            'quote"col': ['a"b', "\\"],
            "pct%s": ["%d", "100%"],
            "ünï ✓": ["\n\t\x01", "\x7f\u2028"],
            "": ["", " "],
        }
    )
    table = raw_rows_table(raw)
    assert table["record_json"].tolist() == per_row_json(raw)
    pd.testing.assert_frame_equal(records_frame(table["record_json"]), raw[sorted(raw.columns)])
