"""The sensors' side of a study's batch source: which partitions have data now, and each one's hash.

``scan_source`` reads what ``resources/batch_sources.py`` reads, without parsing the rows: a Parquet
dataset's files are hashed (one glob per partition), a SQL source's query runs once per partition
whose period has started (docs/DEPLOY.md, "Batch sources", says what a tick costs). A partition
whose source cannot be read now is set aside with the reason, never taken as "no data" (that would
withdraw its batch).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from resources.batch_source_config import ParquetDatasetSource, SqlSource
from resources.batch_sources import dataset_partition, read_query, unreadable
from resources.landing import LandingResource
from resources.landing_files import LandedFile as ScannedFile
from resources.landing_files import LandingScan
from resources.raw_records import LandedFile
from resources.study import StudyConfig
from resources.warehouse import WarehouseResource

# A sensor tick waits at most this long for a DuckDB file a run is writing (then: next tick).
SCAN_LOCK_TIMEOUT_S = 5.0
FAILURES_BEFORE_PAUSE = 3


@dataclass(frozen=True)
class SourceScan:
    """What a source holds now: partition -> (description, sha256, size); partitions it could not read."""

    available: dict[str, tuple[str, str, int]]
    unread: dict[str, str]  # partition -> why (a failing query): neither run nor withdrawn


def scan_source(
    study: StudyConfig,
    landing: LandingResource,
    warehouse: WarehouseResource,
    keys: list[str],
    today: date | None = None,
) -> SourceScan:
    """Each partition in ``keys`` (up to ``today``) that has data in the study's source, with its hash.

    A Parquet dataset costs a glob and a hash of every file per partition; a SQL source one query
    per partition whose period has started (docs/DEPLOY.md, "Batch sources").
    """
    source = study.source
    today = today or datetime.now(UTC).date()
    available: dict[str, tuple[str, str, int]] = {}
    unread: dict[str, str] = {}
    failed = 0  # queries failed in a row: the database is likely away, the rest wait for the next tick
    for key in sorted(k for k in keys if k <= today.isoformat()):
        if failed >= FAILURES_BEFORE_PAUSE:
            unread[key] = f"batch {key}: not queried at this tick ({failed} queries in a row failed)"
            continue
        if isinstance(source, ParquetDatasetSource):
            landed = read_dataset_hash(source, Path(landing.root), key)
        else:
            assert isinstance(source, SqlSource)
            landed = read_query(source, warehouse, key, parse=False, lock_timeout_s=SCAN_LOCK_TIMEOUT_S)
        failed = failed + 1 if landed is not None and landed.error and isinstance(source, SqlSource) else 0
        if landed is not None and landed.error:  # never read as "no data": that would withdraw it
            unread[key] = landed.error
            continue
        if landed is not None:
            available[key] = (landed.file_name, landed.sha256, landed.size_bytes)
    return SourceScan(available, unread)


def read_dataset_hash(source: ParquetDatasetSource, root: Path, batch: str) -> LandedFile | None:
    """A partition's description, hash and size without parsing its files (None: no file)."""
    partition = dataset_partition(source, root, batch)
    if not partition.files:
        return None
    digest, size = hashlib.sha256(), 0
    for name, path in zip(partition.names(), partition.files, strict=True):
        try:
            content = path.read_bytes()
        except OSError as problem:  # removed during the scan: unread now, the next tick looks again
            return unreadable(partition.shown, f"batch {batch}: file {name}: cannot be read: {problem}")
        digest.update(f"{name}\0{hashlib.sha256(content).hexdigest()}\n".encode())
        size += len(content)
    count = len(partition.files)
    return LandedFile(
        f"{partition.shown}/ ({count} file{'s' * (count != 1)})", digest.hexdigest(), size, pd.DataFrame()
    )


def latest_in_source(study: StudyConfig, landing_root: Path, keys: Sequence[str]) -> str | None:
    """The newest partition in ``keys`` with data (a dataset: a file; SQL: every period up to now)."""
    source = study.source
    if isinstance(source, ParquetDatasetSource):
        return max((k for k in keys if dataset_partition(source, landing_root, k).files), default=None)
    return max((k for k in keys if k <= datetime.now(UTC).date().isoformat()), default=None)


def scan_as_landing(
    study: StudyConfig, landing: LandingResource, warehouse: WarehouseResource, keys: Collection[str]
) -> tuple[LandingScan, dict[str, str]]:
    """``scan_source`` in the landing sensor's words: a scan (every partition new: the instance
    decides what changed) and the partitions that could not be read now, with why."""
    scanned = scan_source(study, landing, warehouse, sorted(keys))
    found = tuple(
        ScannedFile(partition_key=key, path=Path(name), sha256=sha256, size=size)
        for key, (name, sha256, size) in sorted(scanned.available.items())
    )
    cursor = {key: sha256 for key, (_, sha256, _) in scanned.available.items()}
    return LandingScan(found, (), (), cursor), scanned.unread


def landed_in_source(study: StudyConfig, landing_root: Path, keys: Sequence[str]) -> dict[str, str] | None:
    """A Parquet dataset's partitions with a file (key -> its folder), for the freshness sensor.

    None for a SQL source: telling a late batch there costs a query per period, so it is not watched.
    """
    source = study.source
    if not isinstance(source, ParquetDatasetSource):
        return None
    partitions = {key: dataset_partition(source, landing_root, key) for key in keys}
    return {key: f"{p.shown}/" for key, p in partitions.items() if p.files}
