"""A landed batch file read once, exactly as delivered: its hash, and its columns.

``read_landed_file`` reads a file's bytes once: they are hashed and parsed, so what is stored is
what was hashed. A CSV is read as text, and each column then takes the narrowest type that gives
back every cell as delivered (``resources/raw_columns.py``); a Parquet file keeps its int, float
and boolean columns, and any other column becomes text. ``checks/typed_batch.py`` decides what the
values mean for the study; a file that cannot be read as a table comes back with its hash and the
reason, never as a crash. A CSV row is read field by field under the header's names: a value
beyond the header's last column is kept in the ``EXTRA_FIELDS`` column (its row is quarantined),
and an empty one is dropped (a delimiter at the end of every line is a common export artefact); a
NUL byte stays in its value.

The columns are stored column by column (``resources/raw_columns.py``), and read back from there.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from resources.arrow_memory import ArrowParts, release_arrow_memory
from resources.raw_columns import as_text, delivered_columns, joined_chunks, stored_names

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
                    "stored_columns_json": json.dumps(stored_names(self.raw)),
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
    sha256, size = hashlib.sha256(content).hexdigest(), len(content)
    try:
        decoded = _decoded(path, batch, content)
        del content  # a 1e7-row Parquet file's bytes need not be held while its table becomes a frame
        raw, error = _delivered(decoded, path, batch), ""
    except BatchFileError as problem:
        raw, error = pd.DataFrame(), str(problem)
    return LandedFile(path.name, sha256, size, raw, error)


def read_batch_file(path: Path, *, batch: str, content: bytes | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet batch file, every cell as delivered (see the module docstring).

    ``content``: the file's bytes when the caller has read them (then what is parsed is what was
    hashed).
    """
    return _delivered(_decoded(path, batch, path.read_bytes() if content is None else content), path, batch)


def _where(path: Path, batch: str) -> str:
    """What an error names: the batch and the file."""
    return f"batch {batch}: file {path.name}"


@contextmanager
def _reading(path: Path, batch: str) -> Iterator[None]:
    """A reader's error as a :class:`BatchFileError` naming the batch and the file."""
    where = _where(path, batch)
    try:
        yield
    except UnicodeDecodeError as error:
        raise BatchFileError(f"{where}: not UTF-8 text ({error.reason})") from error
    except BatchFileError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, OSError, ValueError) as error:
        hint = " (a quote opens a field that never closes)" if "EOF inside string" in str(error) else ""
        raise BatchFileError(f"{where}: cannot be read as a table: {error}{hint}") from error


def _decoded(path: Path, batch: str, content: bytes) -> pd.DataFrame | ArrowParts:
    """A CSV's cells as a frame, or a Parquet file's Arrow table in parts (keeping none of ``content``)."""
    suffix = path.suffix.lower()
    with _reading(path, batch):
        if suffix == ".csv":
            return _read_csv(content, _where(path, batch))
        if suffix == ".parquet":
            return ArrowParts.of(pq.read_table(pa.BufferReader(content)))  # a BytesIO would keep the bytes
        raise BatchFileError(f"{_where(path, batch)}: unsupported format {suffix!r}")


def _delivered(decoded: pd.DataFrame | ArrowParts, path: Path, batch: str) -> pd.DataFrame:
    """The decoded file's columns as delivered; Arrow's buffers are released as they are converted."""
    with _reading(path, batch):
        if isinstance(decoded, ArrowParts):
            converted = decoded.to_pandas()
            release_arrow_memory()  # the decoded file's buffers: gigabytes at 1e7 rows
            frame = _parquet_columns(converted)
        else:
            frame = decoded
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        raise BatchFileError(f"{_where(path, batch)}: duplicate column names {duplicated}")
    return delivered_columns(
        frame if frame.index.equals(pd.RangeIndex(len(frame))) else frame.reset_index(drop=True)
    )


def _parquet_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Int, float64 and null-free boolean columns as they are; every other column as text ("" for null)."""
    columns = {}
    for name in frame.columns:
        values = frame[name]
        if values.dtype == np.float64 or values.dtype == np.bool_:
            columns[str(name)] = values
        elif values.dtype.kind == "i" or (values.dtype.kind == "u" and values.dtype.itemsize < 8):
            columns[str(name)] = values.astype(np.int64)
        else:
            columns[str(name)] = values.astype(object).where(values.notna(), "").astype(str)
    return pd.DataFrame(columns, index=frame.index, copy=False)  # the columns, not a consolidated copy


_LONG_ROW = re.compile(r"expected \d+ fields, saw (\d+)")


# A CSV this large is parsed in chunks of CHUNK_ROWS rows, each typed as it is read, so that a
# 1e7-row file never holds all its cells as Python strings (about 60 bytes each).
CHUNKED_BYTES = 64 * 2**20
CHUNK_ROWS = 500_000


def _read_csv(data: bytes, where: str) -> pd.DataFrame:
    """A CSV's cells; in typed chunks when the file is large and well-formed (the same frame)."""
    text = data.decode("utf-8-sig")  # not UTF-8: an error naming the file
    if len(data) < CHUNKED_BYTES or "\x00" in text:
        return _read_csv_text(text, where)
    del text
    chunked = _read_csv_chunks(data)
    return chunked if chunked is not None else _read_csv_text(data.decode("utf-8-sig"), where)


def _read_csv_chunks(data: bytes) -> pd.DataFrame | None:
    """The chunks typed as they come; None where a row does not fit (the whole-file reader says why)."""
    options = {"header": None, "dtype": str, "keep_default_na": False, "na_filter": False}
    header: list[str] = []
    parts = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        reader = pd.read_csv(  # type: ignore[call-overload]
            io.BytesIO(data), encoding="utf-8-sig", on_bad_lines="warn", chunksize=CHUNK_ROWS, **options
        )
        for chunk in reader:
            if not header:
                header, chunk = [str(name) for name in chunk.iloc[0]], chunk.iloc[1:]
                if len(set(header)) < len(header):
                    return None  # duplicate names: the whole-file reader names them
            parts.append(delivered_columns(chunk.set_axis(header, axis=1).reset_index(drop=True)))
            if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
                return None
    frame = joined_chunks(parts, header)
    if header.count("") == 1 and header[-1] == "" and not as_text(frame[""]).ne("").any():
        frame = frame.drop(columns=[""])  # the header's own delimiter at the end of its line
    return frame


def _read_csv_text(text: str, where: str) -> pd.DataFrame:
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
