"""Raw batches stored as text records: one JSON object per delivered row, and back.

No Dagster here. A raw batch is kept exactly as delivered (every value as text); a record's JSON
text is what ``json.dumps(record, ensure_ascii=False, sort_keys=True)`` gives, byte for byte, but
built column-wise: calling ``json.dumps`` per row costs about a second per 1e5 rows.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd


def raw_rows_table(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per delivered row: its index and the record as JSON text (sorted keys)."""
    names = sorted(str(name) for name in raw.columns)
    if not len(raw) or not names:
        records = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in raw.to_dict(orient="records")]
        return pd.DataFrame({"row_index": np.arange(len(raw), dtype=np.int64), "record_json": records})
    fields = ", ".join(json.dumps(name, ensure_ascii=False).replace("%", "%%") + ': "%s"' for name in names)
    columns = [_json_string_bodies(raw[name]) for name in names]
    return pd.DataFrame(
        {
            "row_index": np.arange(len(raw), dtype=np.int64),
            "record_json": [f"{{{fields}}}" % values for values in zip(*columns, strict=True)],
        }
    )


# json.dumps(ensure_ascii=False) escapes only these; any other text is its own JSON string body.
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _json_string_bodies(values: pd.Series) -> list[str]:
    """Each text value as the inside of its JSON string literal."""
    bodies = [str(value) for value in values.tolist()]
    if _NEEDS_ESCAPE.search("".join(bodies)) is None:  # the usual case: one scan of the column
        return bodies
    return [
        json.dumps(body, ensure_ascii=False)[1:-1] if _NEEDS_ESCAPE.search(body) else body for body in bodies
    ]


def records_frame(texts: pd.Series) -> pd.DataFrame:
    """The raw batch rebuilt from its stored JSON records (all text), in the given order."""
    records = json.loads("[" + ",".join(texts) + "]")  # one parse: per-row json.loads is 3x slower
    return pd.DataFrame(records, dtype=str)
