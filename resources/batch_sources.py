"""A batch read from the study's source: its landing folder, a partitioned Parquet dataset, or a SQL query.

Every source gives the same ``LandedFile`` (``resources/raw_records.py``): a readable description,
a SHA-256 of the content, its size, its rows, or why the source cannot be read (never a
crash). ``read_batch`` returns None when the partition has no data (no file, no dataset file, a
query without rows): the partition is missing, or withdrawn when it was read before.

* Parquet dataset: the files matching the study's ``path`` with ``{batch}`` replaced by the
  partition key (hidden files left out, so a writer lands a file by renaming it), read in sorted
  order of their names relative to the partition's folder, rows concatenated and read as one landed
  Parquet file holding them would be (``read_batch_file``). Its SHA-256 is over
  the sorted ``name NUL file-sha256 LF`` lines, so the same files give the same hash wherever the
  dataset lives, and a partition copied to another is seen as delivered twice.
* SQL: the query runs with ``$batch`` bound to the partition key (a parameter, never formatted into
  the text) against the warehouse or the database whose URL the named environment variable holds.
  The rows are read as one landed Parquet file holding them would be (NULL is missing); they are
  sorted by every column as text (NULL as ""), and hashed over the columns and those texts, so the
  hash does not depend on the order the database returns them in.

The sensors' side: ``resources/batch_source_scan.py``.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from resources.batch_source_config import BATCH_PLACEHOLDER, DatabaseUrl, ParquetDatasetSource, SqlSource
from resources.landing import LandingResource
from resources.raw_records import BatchFileError, LandedFile, read_batch_file, read_landed_file
from resources.study import StudyConfig
from resources.warehouse import PostgresWarehouse, Warehouse, WarehouseResource

_MAGIC = set("*?[")


class SourceError(ValueError):
    """A source that cannot be read now (its message names the batch and never holds a secret)."""


def read_batch(
    study: StudyConfig, batch: str, landing: LandingResource, warehouse: WarehouseResource
) -> LandedFile | None:
    """The batch ``batch`` of ``study`` from its source, read once; None when it has no data."""
    source = study.source
    if isinstance(source, ParquetDatasetSource):
        return read_dataset(source, Path(landing.root), batch)
    if isinstance(source, SqlSource):
        return read_query(source, warehouse, batch)
    path = landing.find_file(study, batch)
    return None if path is None else read_landed_file(path, batch=batch)


# --- Parquet dataset -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetPartition:
    """The files of one partition of a dataset, and the folder their names are relative to."""

    folder: Path
    files: tuple[Path, ...]
    shown: str  # the folder as written in descriptions (relative to the landing root when under it)

    def names(self) -> list[str]:
        return [path.relative_to(self.folder).as_posix() for path in self.files]


def dataset_partition(source: ParquetDatasetSource, root: Path, batch: str) -> DatasetPartition:
    """The files matching the source's pattern for ``batch`` (sorted by relative name)."""
    pattern = source.path.replace(BATCH_PLACEHOLDER, glob.escape(batch))
    relative = not pattern.startswith("/")
    root = root.resolve()
    parts = Path(pattern).parts
    fixed = 0  # the leading folders without a wildcard: the partition's folder
    while fixed < len(parts) - 1 and not _MAGIC & set(parts[fixed]):
        fixed += 1
    folder = (root if relative else Path("/")).joinpath(*parts[:fixed])
    shown = Path(*parts[:fixed]).as_posix() if fixed else "."
    rest = "/".join(parts[fixed:])
    files = []
    for path in folder.glob(rest) if folder.is_dir() else ():
        name = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in name.split("/")) or not path.is_file():
            continue  # hidden: still being written (a writer renames it when done)
        if relative and not path.resolve().is_relative_to(root):
            continue  # a symlink out of the landing root is never read
        files.append(path)
    files.sort(key=lambda path: path.relative_to(folder).as_posix())
    return DatasetPartition(folder, tuple(files), shown)


def read_dataset(source: ParquetDatasetSource, root: Path, batch: str) -> LandedFile | None:
    """Every file of the partition, read once: hashed, parsed, rows concatenated (None: no file)."""
    partition = dataset_partition(source, root, batch)
    if not partition.files:
        return None
    count = len(partition.files)
    description = f"{partition.shown}/ ({count} file{'s' * (count != 1)})"
    digest, size, frames, error = hashlib.sha256(), 0, [], ""
    for name, path in zip(partition.names(), partition.files, strict=True):
        try:
            content = path.read_bytes()
        except OSError as problem:
            return unreadable(description, f"batch {batch}: file {name}: cannot be read: {problem}")
        digest.update(f"{name}\0{hashlib.sha256(content).hexdigest()}\n".encode())
        size += len(content)
        if not error:
            try:
                frames.append(pd.read_parquet(io.BytesIO(content)))
            except (OSError, ValueError) as problem:  # pyarrow's errors are OSError or ValueError
                error = f"batch {batch}: file {name}: cannot be read as Parquet: {problem}"
    error = error or _column_mismatch(batch, partition.names(), frames)
    if error:
        return LandedFile(description, digest.hexdigest(), size, pd.DataFrame(), error)
    rows = pd.concat([frame[list(frames[0].columns)] for frame in frames], ignore_index=True)
    return _as_one_parquet_file(description, digest.hexdigest(), size, rows, batch)


def _as_one_parquet_file(
    description: str, sha256: str, size: int, rows: pd.DataFrame, batch: str
) -> LandedFile:
    """The rows read as one landed Parquet file holding them is read (read_batch_file's Parquet rules)."""
    buffer = io.BytesIO()
    try:
        rows.to_parquet(buffer, index=False)
        raw = read_batch_file(Path(f"{batch}.parquet"), batch=batch, content=buffer.getvalue())
    except BatchFileError as problem:  # its message names the stand-in file: name the source instead
        error = str(problem).replace(f"file {batch}.parquet", description)
        return LandedFile(description, sha256, size, pd.DataFrame(), error)
    except (ValueError, TypeError) as problem:  # pyarrow: a column it cannot write
        return LandedFile(
            description, sha256, size, pd.DataFrame(), f"batch {batch}: {description}: {problem}"
        )
    return LandedFile(description, sha256, size, raw)


def _column_mismatch(batch: str, names: list[str], frames: list[pd.DataFrame]) -> str:
    for frame, name in zip(frames, names, strict=True):
        if frame.columns.duplicated().any():
            duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            return f"batch {batch}: file {name}: duplicate column names {duplicated}"
        if set(frame.columns) != set(frames[0].columns):
            return (
                f"batch {batch}: file {name} has columns {sorted(map(str, frame.columns))}, but file "
                f"{names[0]} has {sorted(map(str, frames[0].columns))}: every file of a partition needs "
                "the same columns"
            )
    return ""


def unreadable(description: str, error: str) -> LandedFile:
    """A source that cannot be read: its error, and a hash of it (so a changed error is a change)."""
    return LandedFile(description, hashlib.sha256(error.encode()).hexdigest(), 0, pd.DataFrame(), error)


# --- SQL -----------------------------------------------------------------------------------------


def read_query(
    source: SqlSource,
    warehouse: WarehouseResource,
    batch: str,
    *,
    parse: bool = True,
    lock_timeout_s: float | None = None,
) -> LandedFile | None:
    """The query's rows for ``batch`` in canonical order (None: no rows; an error: it failed).

    ``parse=False``: the hash and size only (the sensor's scan), no rows. ``lock_timeout_s``: how
    long to wait for a DuckDB file another process writes (default: the warehouse resource's).
    """
    description = f"sql query, batch {batch}"
    try:
        frame, text = query_rows(source, warehouse, batch, lock_timeout_s=lock_timeout_s)
    except SourceError as problem:
        return unreadable(description, str(problem))
    if frame.empty:
        return None
    payload = json.dumps(
        {"columns": list(text.columns), "rows": text.to_numpy().tolist()},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    if not parse:
        return LandedFile(description, hashlib.sha256(payload).hexdigest(), len(payload), pd.DataFrame())
    return _as_one_parquet_file(description, hashlib.sha256(payload).hexdigest(), len(payload), frame, batch)


def query_rows(
    source: SqlSource, warehouse: WarehouseResource, batch: str, *, lock_timeout_s: float | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The query's result for ``batch`` (``$batch`` bound), its rows sorted by every column as text;
    and that text (what the hash is taken over), in the same order.

    Raises
    ------
    SourceError
        The database cannot be reached or the query fails (naming the batch; no URL in it).
    """
    timeout = warehouse.lock_timeout_s if lock_timeout_s is None else lock_timeout_s
    database, secret = _database(source, warehouse, batch, timeout)
    try:
        frame = database.execute_read(source.query, {"batch": batch})
    except Exception as problem:  # any driver's error: a failed query is a verdict, not a crash
        message = str(problem).strip().replace(secret, "***") if secret else str(problem).strip()
        raise SourceError(
            f"batch {batch}: the sql query failed: {type(problem).__name__}: {message}"
        ) from None
    frame.columns = [str(c) for c in frame.columns]
    if frame.columns.duplicated().any():
        duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise SourceError(f"batch {batch}: the sql query returns duplicate column names {duplicated}")
    # Object columns (text, decimals, dates from PostgreSQL) as text, NULL kept missing: Parquet can
    # write them whatever the driver returned, and they would be read back as text anyway.
    for name in [n for n in frame.columns if frame[n].dtype.kind == "O"]:
        frame[name] = frame[name].map(lambda value: None if pd.isna(value) else str(value))
    text = _text(frame).sort_values(list(frame.columns), kind="mergesort")
    return frame.loc[text.index].reset_index(drop=True), text.reset_index(drop=True)


def _text(frame: pd.DataFrame) -> pd.DataFrame:
    """Every value as text, a missing one as "" (the canonical order's and the hash's view)."""
    return frame.astype(object).where(frame.notna(), "").astype(str)


def _database(
    source: SqlSource, warehouse: WarehouseResource, batch: str, timeout: float
) -> tuple[Warehouse, str]:
    """The database the query runs on, and the secret its errors must not show ("" for the warehouse)."""
    if not isinstance(source.database, DatabaseUrl):
        return warehouse.open(lock_timeout_s=timeout), ""
    name = source.database.url_env
    url = os.environ.get(name, "").strip()
    if not url:
        raise SourceError(
            f"batch {batch}: source.database.url_env: the environment variable {name} is not set"
        )
    if url.startswith("duckdb:///"):
        path = url.removeprefix("duckdb://")
        if not Path(path).is_file():
            raise SourceError(f"batch {batch}: the DuckDB database in {name} does not exist")
        return Warehouse(path, lock_timeout_s=timeout), url
    if url.startswith(("postgresql://", "postgres://")):
        try:
            return PostgresWarehouse(url, lock_timeout_s=timeout), url
        except ValueError:
            raise SourceError(f"batch {batch}: the URL in {name} is not a usable PostgreSQL URL") from None
    raise SourceError(
        f"batch {batch}: the URL in {name} must start with duckdb:/// (a DuckDB file) or postgresql://"
    )


def no_data(study: StudyConfig, batch: str) -> str:
    """Why a partition of a study with a ``source`` has nothing to materialize."""
    source = study.source
    where = (
        f"no file matches {source.path}"
        if isinstance(source, ParquetDatasetSource)
        else "its query returns no rows"
    )
    return (
        f"study {study.name}, batch {batch}: {where} for this partition, so there is nothing to materialize "
        "(the landing sensor runs the batch once its source has data)"
    )
