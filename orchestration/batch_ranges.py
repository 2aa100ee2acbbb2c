"""Requests for consecutive batches grouped into runs over their ranges (a backfill in few runs).

Every asset of a study has a single-run backfill policy, so one run over a range of partitions runs
each asset once over the range and records each batch as its own run would
(assets/partition_range.py). These pure helpers turn the landing sensor's requests (one per batch)
into such runs and keep the sensor's reconciliation informed of them.

Example
-------
>>> keys = ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"]
>>> wanted = [dg.RunRequest(run_key=k, partition_key=k) for k in (keys[0], keys[1], keys[3])]
>>> [[r.partition_key for r in group] for group in batch_ranges(wanted, keys)]
[['2025-01-01', '2025-02-01'], ['2025-04-01']]
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace

import dagster as dg

from assets.partition_range import RANGE_END_TAG
from orchestration.instance_records import RULES_TAG
from orchestration.sensors import LandingCursor
from resources.study import StudyConfig

RANGE_START_TAG = "dagster/asset_partition_range_start"


def batch_ranges(
    requests: Sequence[dg.RunRequest], partition_keys: Sequence[str], *, max_batches: int | None = None
) -> list[list[dg.RunRequest]]:
    """The requests grouped into runs over ranges of consecutive partitions, in partition order.

    A range never spans a partition that is not requested (a run over it would materialize a batch
    that matches its file, or has none), nor holds more than ``max_batches``. A withdrawal or a
    retry runs alone: a withdrawal is told by its run's tag, and a batch whose run failed is
    isolated so that the batches around it land.
    """
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1 or None, got {max_batches!r}")
    position = {key: i for i, key in enumerate(partition_keys)}
    groups: list[list[dg.RunRequest]] = []
    for request in sorted(requests, key=lambda r: position[str(r.partition_key)]):
        last = groups[-1] if groups else None
        if (
            last is not None
            and not _alone(request)
            and not _alone(last[-1])
            and position[str(request.partition_key)] == position[str(last[-1].partition_key)] + 1
            and (max_batches is None or len(last) < max_batches)
        ):
            last.append(request)
        else:
            groups.append([request])
    return groups


def _alone(request: dg.RunRequest) -> bool:
    return (
        request.tags.get("assimilate/withdrawn") == "true"
        or request.tags.get("assimilate/attempt", "1") != "1"
    )


def range_request(study: StudyConfig, group: Sequence[dg.RunRequest]) -> dg.RunRequest:
    """One run over the group's batches (a group of one stays its own request).

    Its run key is a digest of the batches' keys: the same requests give the same key, so the
    once-per-key rule still drops what already ran.
    """
    if len(group) == 1:
        return group[0]
    first, last = str(group[0].partition_key), str(group[-1].partition_key)
    digest = hashlib.sha256("\n".join(str(r.run_key) for r in group).encode()).hexdigest()[:16]
    tags = {
        RANGE_START_TAG: first,
        RANGE_END_TAG: last,
        RULES_TAG: group[0].tags.get(RULES_TAG, ""),
        "assimilate/attempt": "1",
        "assimilate/batches": str(len(group)),
    }
    return dg.RunRequest(run_key=f"{study.name}:{first}...{last}:{digest}", tags=tags)


def launched_as(cursor: str | None, launched: dict[str, str]) -> str | None:
    """The sensor's cursor with each partition's pending attempt pointing at the run that holds it.

    The sensor judges a pending partition by the status of its attempt's run key; a range run
    carries one key for all its batches, so without this they would wait as "lost" (10 minutes)
    before being confirmed or retried.
    """
    if cursor is None or not launched:
        return cursor
    read = LandingCursor.read(cursor)
    attempts = {
        partition: replace(attempt, run_key=launched[partition]) if partition in launched else attempt
        for partition, attempt in read.state.attempts.items()
    }
    return replace(read, state=replace(read.state, attempts=attempts)).write()
