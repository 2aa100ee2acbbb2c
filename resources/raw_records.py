"""A landed batch file read once, as text exactly as delivered, and stored as JSON records.

``read_landed_file`` reads a file's bytes once: they are hashed and parsed, so what is stored is
what was hashed. Every value stays text (``checks/typed_batch.py`` decides the types); a file that
cannot be read as a table comes back with its hash and the reason, never as a crash. A CSV row is
read field by field under the header's names: a value beyond the header's last column is kept in
the ``EXTRA_FIELDS`` column (its row is quarantined), and an empty one is dropped (a delimiter at
the end of every line is a common export artefact); a NUL byte stays in its value.

The raw rows are stored one JSON object per delivered row (``raw_rows_table``): byte for byte what
``json.dumps(record, ensure_ascii=False, sort_keys=True)`` gives, but built column-wise (calling
``json.dumps`` per row costs about a second per 1e5 rows); ``load_raw`` rebuilds the batch from them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from resources.study import StudyConfig
from resources.warehouse import Warehouse

# The raw column that keeps a row's values beyond the header's last column (a JSON list).
EXTRA_FIELDS = "(extra fields)"


class BatchFileError(ValueError):
    """A landed file that cannot be read as a table at all."""


@dataclass(frozen=True)
class LandedFile:
    """One landed file as read: its name, hash and size, its rows as text, or why it is unreadable.

    ``raw`` is empty when ``error`` says why the bytes are no table.
    """

    file_name: str
    sha256: str
    size_bytes: int
    raw: pd.DataFrame
    error: str = ""

    def files_row(self) -> pd.DataFrame:
        """The file's row of the ``raw_files`` table."""
        return pd.DataFrame(
            [
                {
                    "file_name": self.file_name,
                    "sha256": self.sha256,
                    "size_bytes": self.size_bytes,
                    "n_rows": len(self.raw),
                    "columns_json": json.dumps(list(self.raw.columns), ensure_ascii=False),
                }
            ]
        )

    def metadata(self) -> dict[str, Any]:
        """What a materialization of the file shows."""
        rows = len(self.raw)
        return {
            "file": self.file_name,
            "sha256": self.sha256,
            "rows": rows,
            "columns": len(self.raw.columns),
            "dagster/row_count": rows,
        }


def read_landed_file(path: Path, *, batch: str) -> LandedFile:
    """Read ``path`` once: its SHA-256 and size, and its rows as text (or why it cannot be read)."""
    content = path.read_bytes()  # the one read of the run: what is parsed is what was hashed
    sha256 = hashlib.sha256(content).hexdigest()
    try:
        raw, error = read_batch_file(path, batch=batch, content=content), ""
    except BatchFileError as problem:
        raw, error = pd.DataFrame(), str(problem)
    return LandedFile(path.name, sha256, len(content), raw, error)


def read_batch_file(path: Path, *, batch: str, content: bytes | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet batch file with every value as text, exactly as delivered.

    ``content``: the file's bytes when the caller has read them (then what is parsed is what was
    hashed).
    """
    where = f"batch {batch}: file {path.name}"
    suffix = path.suffix.lower()
    try:
        data = path.read_bytes() if content is None else content
        if suffix == ".csv":
            frame = _read_csv(data.decode("utf-8-sig"), where)
        elif suffix == ".parquet":
            frame = pd.read_parquet(io.BytesIO(data))
            frame = frame.astype(object).where(frame.notna(), "").astype(str)
            frame.columns = [str(c) for c in frame.columns]
        else:
            raise BatchFileError(f"{where}: unsupported format {suffix!r}")
    except UnicodeDecodeError as error:
        raise BatchFileError(f"{where}: not UTF-8 text ({error.reason})") from error
    except BatchFileError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, OSError, ValueError) as error:
        hint = " (a quote opens a field that never closes)" if "EOF inside string" in str(error) else ""
        raise BatchFileError(f"{where}: cannot be read as a table: {error}{hint}") from error
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        raise BatchFileError(f"{where}: duplicate column names {duplicated}")
    return frame.reset_index(drop=True)


_LONG_ROW = re.compile(r"expected \d+ fields, saw (\d+)")


def _read_csv(text: str, where: str) -> pd.DataFrame:
    """Every record's fields under the header's names (the pandas C parser, no field size limit)."""
    stand_in = ""
    if "\x00" in text:  # the C parser ends a value at a NUL byte: parse a stand-in, put NUL back
        stand_in = next(chr(c) for c in range(0xE000, 0xF900) if chr(c) not in text)
        text = text.replace("\x00", stand_in)
    options = {"header": None, "dtype": str, "keep_default_na": False, "na_filter": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        fields = pd.read_csv(io.StringIO(text), on_bad_lines="warn", **options)  # type: ignore[call-overload]
    width = fields.shape[1]  # the header's fields
    skipped = [str(w.message) for w in caught if issubclass(w.category, pd.errors.ParserWarning)]
    longest = [int(n) for message in skipped for n in _LONG_ROW.findall(message)]
    if skipped and not longest:  # never lose the skipped rows silently
        raise BatchFileError(f"{where}: cannot be read as a table: {skipped[0].strip()}")
    if longest:  # rows with more fields than the header: read again, wide enough for every row
        fields = pd.read_csv(io.StringIO(text), names=range(max(longest)), index_col=False, **options)  # type: ignore[call-overload]
    header = [str(name) for name in fields.iloc[0, :width]]
    frame = fields.iloc[1:, :width].set_axis(header, axis=1)
    extra = fields.iloc[1:, width:]
    if extra.ne("").to_numpy().any():
        if EXTRA_FIELDS in header:
            raise BatchFileError(
                f"{where}: rows have more fields than the header, and a column is named {EXTRA_FIELDS!r}"
            )
        frame[EXTRA_FIELDS] = [_extra_json(row) for row in extra.itertuples(index=False)]
    if header and header.count("") == 1 and header[-1] == "" and not frame[""].ne("").any():
        frame = frame.drop(columns=[""])  # the header's own delimiter at the end of its line
    if stand_in:
        frame = frame.apply(lambda column: column.str.replace(stand_in, "\x00", regex=False))
        frame.columns = [name.replace(stand_in, "\x00") for name in frame.columns]
    return frame


def _extra_json(values: tuple[str, ...]) -> str:
    """A row's values beyond the header as a JSON list, up to its last non-empty one ('' if none)."""
    kept = list(values)
    while kept and kept[-1] == "":
        kept.pop()
    return json.dumps(kept, ensure_ascii=False) if kept else ""


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


def load_raw(store: Warehouse, study: StudyConfig, batch: str) -> pd.DataFrame:
    """The raw batch as delivered (all text), rebuilt from the stored rows in their order."""
    rows = store.read_table(study.name, "raw_rows", partition_key=batch)
    if rows.empty:
        return pd.DataFrame()
    return records_frame(rows.sort_values("row_index")["record_json"])
