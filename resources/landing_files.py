"""The landing-folder diff: which batch files are new or changed since the sensor's cursor.

No Dagster context: the landing sensor calls ``scan_landing`` with its JSON cursor (file name ->
sha256) and turns ``new_or_changed`` into run requests keyed by ``run_key``.

A file is named after the date its period starts, in the form of the study's cadence; its Dagster
partition key is that date (``resources/cadence.py``; README, "Batch files and cadences"):

==========  ==========================  =============================================
cadence     file name                   partition key
==========  ==========================  =============================================
daily       ``2025-03-14.csv``          ``2025-03-14``
weekly      ``2025-03-09.parquet``      ``2025-03-09`` -- the Sunday the week starts
monthly     ``2025-03.csv``             ``2025-03-01``
yearly      ``2025.csv``                ``2025-01-01``
cron        ``2025-01-06.csv``          ``2025-01-06`` -- a day the cron starts a period
==========  ==========================  =============================================

A name that maps to no period is unmapped with a reason naming the expected names around its date.
Suffixes ``.csv`` and ``.parquet`` (any case). Hidden files (``.name``) are ignored, so a writer
can land a file atomically by writing ``.2025-03.csv.tmp`` and renaming it. A file written in place
is read once its size and modification time held for ``SETTLE_SECONDS`` (until then it is "still
being written" and the next scan looks again).

Example
-------
>>> partition_key_for_file("2025-03.csv", "monthly")
'2025-03-01'
>>> scan = scan_landing(folder, cadence="monthly", cursor={}, valid_keys=None)  # doctest: +SKIP
>>> [f.partition_key for f in scan.new_or_changed]  # doctest: +SKIP
['2025-01-01', '2025-02-01']
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from resources.cadence import SUFFIXES, check_cadence, key_for_stem

Cadence = str  # daily, weekly, monthly, yearly or a cron expression (resources/cadence.py)
SETTLE_SECONDS = 1.0  # a file nobody wrote to for this long is taken as complete


@dataclass(frozen=True)
class LandedFile:
    """A batch file that maps to one partition."""

    partition_key: str
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class LandingScan:
    """Result of one scan of a landing folder.

    Attributes
    ----------
    new_or_changed : tuple of LandedFile
        Files whose content hash differs from the cursor's (or that the cursor does not know).
    unchanged : tuple of LandedFile
        Files whose hash equals the cursor's.
    unmapped : tuple of (name, reason)
        Entries left untouched, with the reason (name pattern, outside the partitions, a path
        leaving the folder, two files for one partition, ...).
    next_cursor : dict
        File name -> sha256 of every mapped file; store it as the sensor's cursor.
    waiting : tuple of str
        The unmapped names that a later scan may read without anyone acting: still being written,
        or a period of the study that is not (yet) among the loaded partitions. The others need a
        person (a name to fix, a file to remove).
    """

    new_or_changed: tuple[LandedFile, ...]
    unchanged: tuple[LandedFile, ...]
    unmapped: tuple[tuple[str, str], ...]
    next_cursor: dict[str, str] = field(default_factory=dict)
    waiting: tuple[str, ...] = ()

    @property
    def misnamed(self) -> dict[str, str]:
        """Unmapped name -> reason, for the names no later scan reads until someone acts."""
        return {name: reason for name, reason in self.unmapped if name not in self.waiting}


@functools.lru_cache(maxsize=1 << 16)
def _mapping(name: str, cadence: Cadence) -> tuple[str | None, str]:
    """The partition key of a file name, or None with the reason (naming the expected names).

    Cached: a pure function of its arguments, asked for every file of a folder at every batch.
    """
    suffix = next((s for s in SUFFIXES if name.lower().endswith(s)), None)
    if suffix is None:
        return None, f"not a batch file: the suffix must be one of {', '.join(SUFFIXES)}"
    return key_for_stem(name[: -len(suffix)], cadence, name[-len(suffix) :])


def partition_key_for_file(name: str, cadence: Cadence) -> str | None:
    """The Dagster partition key a batch file name maps to, or None if the name does not match.

    Parameters
    ----------
    name : str
        A file name (no folder), e.g. ``"2025-03.csv"``.
    cadence : str
        The study's cadence (see the module docstring for the name forms).
    """
    return _mapping(name, check_cadence(cadence))[0]


def file_sha256(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's content, read in chunks (constant memory)."""
    return _hash_and_size(Path(path), chunk_size)[0]


def _hash_and_size(path: Path, chunk_size: int = 1 << 20) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def run_key(study: str, partition_key: str, sha256: str) -> str:
    """Deterministic Dagster run key: one run per study, partition and file content."""
    return f"{study}:{partition_key}:{sha256}"


def scan_landing(
    folder: str | Path,
    *,
    cadence: Cadence,
    cursor: Mapping[str, str],
    valid_keys: Collection[str] | None = None,
    bounds: tuple[str, str | None] | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> LandingScan:
    """Compare a landing folder with the cursor: new or changed, unchanged and unmapped files.

    Parameters
    ----------
    folder : str or Path
        The study's landing folder.
    cadence : str
        How file names map to partition keys.
    cursor : mapping of str to str
        File name -> sha256 from the previous scan (``{}`` on the first).
    valid_keys : collection of str, optional
        The study's partition keys; a file mapping elsewhere is unmapped. None accepts any key.
    bounds : (str, str or None), optional
        The study's first and last period keys (start_date, end_date): a file outside them is
        unmapped for good; one inside them but not in ``valid_keys`` is waiting (the partitions end
        after the last landed batch and grow when the code location reloads).
    settle_seconds : float
        A file is read only when its size and modification time stayed the same for this long
        (the scan waits at most this long once); one written meanwhile is unmapped with the
        reason "still being written" and looked at again by the next scan.

    Notes
    -----
    A path must resolve inside the folder: a symlink pointing outside, or a name containing
    ``..``, is unmapped with the reason. Two files mapping to one partition (``2025-03.csv`` and
    ``2025-03.parquet``) are both unmapped, naming each other, until one is removed.
    """
    checked = check_cadence(cadence)
    for name, sha256 in cursor.items():
        if not isinstance(name, str) or not isinstance(sha256, str):
            raise ValueError("cursor must map file names (str) to sha256 hex digests (str)")
    root = Path(folder).resolve()
    if not root.is_dir():
        raise ValueError(f"landing folder {folder} does not exist or is not a folder")
    valid = None if valid_keys is None else set(valid_keys)
    unmapped: list[tuple[str, str]] = []
    waiting: list[str] = []
    candidates: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name.startswith("."):
            continue
        reason = _unsafe(entry, root)
        key, mismatch = (None, "") if reason else _mapping(name, checked)
        reason = reason or mismatch
        if key is not None and valid is not None and key not in valid:
            key, reason, later = None, *_outside(key, bounds)
            if later:
                waiting.append(name)
        if key is None:
            unmapped.append((name, reason))
        else:
            candidates.setdefault(key, []).append(entry)
    new: list[LandedFile] = []
    unchanged: list[LandedFile] = []
    next_cursor: dict[str, str] = {}
    for key in sorted(candidates):
        paths = candidates[key]
        if len(paths) > 1:
            names = " and ".join(p.name for p in paths)
            unmapped += [(p.name, f"{names} both map to partition {key}: remove one") for p in paths]
            del candidates[key]
    settled = _settled([paths[0] for paths in candidates.values()], settle_seconds)
    for key in sorted(candidates):
        path = candidates[key][0]
        seen = settled.get(path)
        try:
            sha256, size = _hash_and_size(path)
            written = seen is None or _stat(path) != seen
        except OSError:  # removed or replaced during the scan: the next scan looks again
            written = True
        if written:  # still being written: the next scan looks again
            unmapped.append(
                (path.name, f"still being written (changed within {settle_seconds:g} s): deferred")
            )
            waiting.append(path.name)
            if path.name in cursor:
                next_cursor[path.name] = cursor[path.name]
            continue
        landed = LandedFile(partition_key=key, path=path, sha256=sha256, size=size)
        (unchanged if cursor.get(path.name) == sha256 else new).append(landed)
        next_cursor[path.name] = sha256
    return LandingScan(
        tuple(new), tuple(unchanged), tuple(sorted(unmapped)), next_cursor, tuple(sorted(waiting))
    )


def _outside(key: str, bounds: tuple[str, str | None] | None) -> tuple[str, bool]:
    """Why a period is not a partition, and whether it may become one without anyone acting."""
    if bounds is None:
        return (
            f"partition {key} is not one of the study's partitions (before its start date, or a period not begun yet)",
            True,
        )
    first, last = bounds
    if key < first:
        return f"partition {key} is before the study's start_date (its first batch is {first})", False
    if last is not None and key > last:
        return f"partition {key} is after the study's end_date (its last batch is {last})", False
    return (
        f"partition {key} is not among the study's partitions yet (a period not begun, or more than one "
        "period after the last landed batch): read once the code location reloads",
        True,
    )


def _stat(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


def _settled(paths: list[Path], settle_seconds: float) -> dict[Path, tuple[int, int]]:
    """The files whose size and mtime held for ``settle_seconds``, with that (size, mtime).

    A file written in place is otherwise read half-written (finding L5). Files last modified
    longer ago count as watched; for the others the scan waits once, until the newest is
    ``settle_seconds`` old (at most that long), and looks again.
    """
    seen: dict[Path, tuple[int, int]] = {}
    for path in paths:
        try:
            seen[path] = _stat(path)
        except OSError:  # removed during the scan
            continue
    now = time.time_ns()
    fresh = [path for path, (_, mtime) in seen.items() if now - mtime < settle_seconds * 1e9]
    if fresh:
        newest = max(seen[path][1] for path in fresh)
        time.sleep(min(settle_seconds, max(0.0, (newest - now) / 1e9 + settle_seconds)))
        for path in fresh:
            try:
                if _stat(path) == seen[path]:
                    continue
            except OSError:
                pass
            del seen[path]
    return seen


def _unsafe(entry: Path, root: Path) -> str:
    """Why an entry may not be read as a batch file ('' when it may)."""
    if ".." in entry.name:
        return "name contains '..'"
    resolved = entry.resolve()
    if not resolved.is_relative_to(root):
        return "resolves outside the landing folder (symlink)"
    if not resolved.is_file():
        return "not a regular file"
    return ""
