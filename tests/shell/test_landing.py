"""Landing-folder diff: file names -> Dagster partition keys, new/changed/unchanged/unmapped files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import dagster as dg
import pytest

from resources.landing_files import file_sha256, partition_key_for_file, run_key, scan_landing


@pytest.mark.parametrize(
    ("name", "cadence", "expected"),
    [
        ("2025-03.csv", "monthly", "2025-03-01"),
        ("2025-03.parquet", "monthly", "2025-03-01"),
        ("2025-12.CSV", "monthly", "2025-12-01"),
        ("2025-03-14.csv", "daily", "2025-03-14"),
        ("2024-02-29.parquet", "daily", "2024-02-29"),
        ("2025-03-09.csv", "weekly", "2025-03-09"),  # a Sunday
        ("2025-03-10.csv", "weekly", None),  # a Monday: not a week start
        ("2025-W11.csv", "weekly", None),  # one form only: the Sunday date
        ("2025-03-01.csv", "monthly", None),
        ("2025-03.csv", "daily", None),
        ("2025-13.csv", "monthly", None),
        ("2025-02-30.csv", "daily", None),
        ("2025-03.xlsx", "monthly", None),
        ("2025-03.csv.tmp", "monthly", None),
        ("notes.txt", "monthly", None),
        ("x2025-03.csv", "monthly", None),
        # Finding L4: other scripts' digits (fullwidth, Arabic-Indic) are not a date.
        ("\uff12\uff10\uff12\uff15-01-24.csv", "daily", None),
        ("\u0662\u0660\u0662\u0665-03.csv", "monthly", None),
    ],
)
def test_partition_key_for_file(name: str, cadence: str, expected: str | None) -> None:
    assert partition_key_for_file(name, cadence) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cadence", "partitions"),
    [
        ("daily", dg.DailyPartitionsDefinition(start_date="2025-01-01")),
        ("weekly", dg.WeeklyPartitionsDefinition(start_date="2025-01-01")),
        ("monthly", dg.MonthlyPartitionsDefinition(start_date="2025-01-01")),
    ],
)
def test_file_named_after_a_dagster_key_maps_to_that_key(
    cadence: str, partitions: dg.PartitionsDefinition
) -> None:
    keys = partitions.get_partition_keys()[:10]
    for key in keys:
        name = (key[:7] if cadence == "monthly" else key) + ".csv"
        assert partition_key_for_file(name, cadence) == key  # type: ignore[arg-type]


def test_unknown_cadence_is_an_error() -> None:
    with pytest.raises(ValueError, match="cadence must be one of"):
        partition_key_for_file("2025-03.csv", "hourly")  # type: ignore[arg-type]


def test_file_sha256_streams_and_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    content = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(content)
    assert file_sha256(path, chunk_size=4096) == hashlib.sha256(content).hexdigest()


def test_run_key_is_deterministic_and_distinguishes_its_parts() -> None:
    assert run_key("s", "2025-03-01", "ab") == run_key("s", "2025-03-01", "ab")
    keys = {run_key("s", "2025-03-01", "ab"), run_key("t", "2025-03-01", "ab"), run_key("s", "2025-04-01", "ab"),
            run_key("s", "2025-03-01", "cd")}  # fmt: skip
    assert len(keys) == 4


def _land(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.write_bytes(content)
    return path


def test_new_then_unchanged_then_changed(tmp_path: Path) -> None:
    _land(tmp_path, "2025-01.csv", b"a\n1\n")
    _land(tmp_path, "2025-02.csv", b"a\n2\n")
    first = scan_landing(tmp_path, cadence="monthly", cursor={})
    assert [f.partition_key for f in first.new_or_changed] == ["2025-01-01", "2025-02-01"]
    assert first.new_or_changed[0].sha256 == hashlib.sha256(b"a\n1\n").hexdigest()
    assert first.new_or_changed[0].size == 4
    assert first.new_or_changed[0].path == (tmp_path / "2025-01.csv").resolve()
    assert first.unchanged == () and first.unmapped == ()
    assert first.next_cursor == {f.path.name: f.sha256 for f in first.new_or_changed}

    again = scan_landing(tmp_path, cadence="monthly", cursor=first.next_cursor)
    assert again.new_or_changed == ()
    assert [f.partition_key for f in again.unchanged] == ["2025-01-01", "2025-02-01"]
    assert again.next_cursor == first.next_cursor

    _land(tmp_path, "2025-02.csv", b"a\n2\n")  # the same content landed again
    assert scan_landing(tmp_path, cadence="monthly", cursor=again.next_cursor).new_or_changed == ()

    _land(tmp_path, "2025-02.csv", b"a\n22\n")  # a correction
    changed = scan_landing(tmp_path, cadence="monthly", cursor=again.next_cursor)
    assert [f.partition_key for f in changed.new_or_changed] == ["2025-02-01"]
    assert changed.new_or_changed[0].sha256 != first.new_or_changed[1].sha256
    assert changed.next_cursor["2025-02.csv"] == changed.new_or_changed[0].sha256


def test_unmatched_names_are_unmapped_with_a_reason_and_hidden_files_ignored(tmp_path: Path) -> None:
    _land(tmp_path, "2025-01.csv", b"x")
    _land(tmp_path, "readme.txt", b"x")
    _land(tmp_path, "2025-13.csv", b"x")
    _land(tmp_path, ".2025-02.csv.tmp", b"x")  # a write in progress
    (tmp_path / "2025-03.csv").mkdir()
    scan = scan_landing(tmp_path, cadence="monthly", cursor={})
    assert [f.partition_key for f in scan.new_or_changed] == ["2025-01-01"]
    reasons = dict(scan.unmapped)
    assert set(reasons) == {"readme.txt", "2025-13.csv", "2025-03.csv"}
    assert "suffix" in reasons["readme.txt"]
    assert "not a calendar date" in reasons["2025-13.csv"]
    assert "not a regular file" in reasons["2025-03.csv"]
    assert "readme.txt" not in scan.next_cursor


def test_keys_outside_the_study_partitions_are_unmapped(tmp_path: Path) -> None:
    _land(tmp_path, "2024-12.csv", b"x")
    _land(tmp_path, "2025-01.csv", b"y")
    valid = dg.MonthlyPartitionsDefinition(start_date="2025-01-01").get_partition_keys()
    scan = scan_landing(tmp_path, cadence="monthly", cursor={}, valid_keys=valid)
    assert [f.partition_key for f in scan.new_or_changed] == ["2025-01-01"]
    assert scan.unmapped == (
        (
            "2024-12.csv",
            "partition 2024-12-01 is not one of the study's partitions (before its start date, or a period not begun yet)",
        ),
    )


def test_two_files_for_one_partition_are_both_unmapped_naming_each_other(tmp_path: Path) -> None:
    _land(tmp_path, "2025-03.csv", b"x")
    _land(tmp_path, "2025-03.parquet", b"y")
    _land(tmp_path, "2025-04.csv", b"z")
    scan = scan_landing(tmp_path, cadence="monthly", cursor={})
    assert [f.partition_key for f in scan.new_or_changed] == ["2025-04-01"]
    assert [name for name, _ in scan.unmapped] == ["2025-03.csv", "2025-03.parquet"]
    for _, reason in scan.unmapped:
        assert "2025-03.csv and 2025-03.parquet" in reason and "2025-03-01" in reason
    assert set(scan.next_cursor) == {"2025-04.csv"}


def test_symlink_leaving_the_folder_is_rejected_and_one_inside_is_followed(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    outside = _land(tmp_path, "secret.csv", b"outside")
    (landing / "2025-01.csv").symlink_to(outside)
    (landing / "2025-02.csv").symlink_to(Path("..") / "secret.csv")
    inside = _land(landing, "2025-03.csv", b"inside")
    (landing / "2025-04.csv").symlink_to(inside)
    scan = scan_landing(landing, cadence="monthly", cursor={})
    reasons = dict(scan.unmapped)
    assert "outside the landing folder" in reasons["2025-01.csv"]
    assert "outside the landing folder" in reasons["2025-02.csv"]
    assert [f.partition_key for f in scan.new_or_changed] == ["2025-03-01", "2025-04-01"]
    assert all(f.path.parent == landing.resolve() for f in scan.new_or_changed)


def test_names_with_dot_dot_are_rejected(tmp_path: Path) -> None:
    _land(tmp_path, "2025-01..csv", b"x")
    scan = scan_landing(tmp_path, cadence="monthly", cursor={})
    assert scan.unmapped == (("2025-01..csv", "name contains '..'"),)


def test_a_removed_file_leaves_the_cursor_and_a_relanded_one_is_new(tmp_path: Path) -> None:
    path = _land(tmp_path, "2025-01.csv", b"x")
    first = scan_landing(tmp_path, cadence="monthly", cursor={})
    path.unlink()
    gone = scan_landing(tmp_path, cadence="monthly", cursor=first.next_cursor)
    assert gone.next_cursor == {} and gone.new_or_changed == ()
    _land(tmp_path, "2025-01.csv", b"x")
    assert len(scan_landing(tmp_path, cadence="monthly", cursor=gone.next_cursor).new_or_changed) == 1


def test_weekly_and_daily_folders(tmp_path: Path) -> None:
    _land(tmp_path, "2025-03-09.csv", b"x")
    _land(tmp_path, "2025-03-10.csv", b"y")
    weekly = scan_landing(tmp_path, cadence="weekly", cursor={})
    assert [f.partition_key for f in weekly.new_or_changed] == ["2025-03-09"]
    assert "Monday" in dict(weekly.unmapped)["2025-03-10.csv"]
    daily = scan_landing(tmp_path, cadence="daily", cursor={})
    assert [f.partition_key for f in daily.new_or_changed] == ["2025-03-09", "2025-03-10"]


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        scan_landing(tmp_path / "absent", cadence="monthly", cursor={})
    with pytest.raises(ValueError, match="cursor must map"):
        scan_landing(tmp_path, cadence="monthly", cursor={"2025-01.csv": 5})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="cadence"):
        scan_landing(tmp_path, cadence="hourly", cursor={})  # yearly is a cadence now
