"""Time-window partitions at each study's cadence: from its start date to the batch that is due next.

A study's partitions end one period after its last landed batch (the next expected batch, the one
partition that may show "Missing" because it is due), or at the period containing its
``end_date``, and never beyond the period running now. The definitions are built when the code
location loads, so the cut is read then, from the landing folder and the warehouse:

* the next period's file maps to a partition as soon as it lands, before any reload;
* a file further ahead waits for the next load (``dagster-daemon`` reloads every minute; the UI on
  "Reload definitions"; the in-process runner builds the definitions at each tick);
* a batch the warehouse still holds stays a partition after its file is removed, so the landing
  sensor's run that withdraws it is a run of a valid partition (its next load then drops it).

``study_partitions`` (every period up to now, capped by ``end_date``) is the uncut set, used where
only the order of the periods matters (the posterior's stream).

Example
-------
>>> cut_partitions(study, last_batch="2025-03-01").get_partition_keys()  # doctest: +SKIP
['2025-01-01', '2025-02-01', '2025-03-01', '2025-04-01']
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb

from resources.batch_source_scan import latest_in_source
from resources.cadence import KEY_FORMAT, cron_of, first_key_from, key_of_day, next_key, period_window
from resources.landing_files import partition_key_for_file
from resources.study import StudyConfig
from resources.warehouse import Warehouse, WarehouseError

_log = logging.getLogger("assimilate")


def study_bounds(study: StudyConfig) -> tuple[str, str | None]:
    """The study's first period key (from ``start_date``) and last (from ``end_date``; None: open)."""
    first = first_key_from(study.start_date, study.cadence)
    return first, None if study.end_date is None else key_of_day(study.end_date, study.cadence)


def _definition(study: StudyConfig, end: datetime | None) -> dg.TimeWindowPartitionsDefinition:
    # end_offset=1: the period running now is a partition too, so its file maps as soon as it lands.
    return dg.TimeWindowPartitionsDefinition(
        start=study.start_date.isoformat(),
        fmt=KEY_FORMAT,
        cron_schedule=cron_of(study.cadence),
        end=end,
        end_offset=1,
    )


def _end_of(key: str | None, study: StudyConfig) -> datetime | None:
    return None if key is None else period_window(key, study.cadence)[1]


def study_partitions(study: StudyConfig) -> dg.TimeWindowPartitionsDefinition:
    """Every period from the start date to the one running now, capped by ``end_date``."""
    return _definition(study, _end_of(study_bounds(study)[1], study))


def cut_partitions(study: StudyConfig, last_batch: str | None) -> dg.TimeWindowPartitionsDefinition:
    """The partitions up to one period after ``last_batch`` (None: the first period only)."""
    first, last = study_bounds(study)
    due = first if last_batch is None or last_batch < first else next_key(last_batch, study.cadence)
    return _definition(study, _end_of(min(due, last) if last is not None else due, study))


def last_batches(
    studies: list[StudyConfig], landing_root: Path, warehouse: Path | Warehouse
) -> dict[str, str | None]:
    """Each study's latest batch within its dates: a landed file's, or one the warehouse still holds.

    A warehouse that cannot be read now (locked past a few seconds, or broken) is left out with a
    warning: the landing folder alone then decides, as it does before the first batch is stored.
    ``warehouse`` is a warehouse, or the path of a DuckDB file (read with a 5 s lock timeout).
    """
    latest: dict[str, str | None] = {}
    for study in studies:
        folder = landing_root / study.landing_folder
        names = [p.name for p in folder.iterdir() if not p.name.startswith(".")] if folder.is_dir() else []
        latest[study.name] = _latest(study, [partition_key_for_file(name, study.cadence) for name in names])
        if study.source is not None:  # a Parquet dataset's newest partition; SQL: every period up to now
            keys = study_partitions(study).get_partition_keys()
            latest[study.name] = _latest(study, [latest_in_source(study, landing_root, keys)])
    store = Warehouse(warehouse, lock_timeout_s=5.0) if isinstance(warehouse, Path) else warehouse
    for name, keys in _stored_keys(studies, store).items():
        study = next(s for s in studies if s.name == name)
        latest[name] = _latest(study, [latest[name], *keys])
    return latest


def _latest(study: StudyConfig, keys: list[str | None]) -> str | None:
    first, last = study_bounds(study)
    inside = [k for k in keys if k is not None and k >= first and (last is None or k <= last)]
    return max(inside, default=None)


def _stored_keys(studies: list[StudyConfig], warehouse: Warehouse) -> dict[str, list[str]]:
    try:
        if not warehouse.exists():
            return {}
        with warehouse.reading() as store:
            files = {study.name: store.read_table(study.name, "raw_files") for study in studies}
    except (WarehouseError, duckdb.Error, OSError) as error:
        _log.warning("partitions cut at the landed files only: the warehouse cannot be read now (%s)", error)
        return {}
    return {name: [str(k) for k in frame.get("partition_key", [])] for name, frame in files.items()}
