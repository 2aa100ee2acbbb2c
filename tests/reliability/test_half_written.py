"""A batch file written in place is not read until it stops changing (finding L5 of issue 10).

A real writer thread appends rows to the file in the landing folder, flushing each chunk, while the
landing scan (and a whole pipeline tick) looks at the folder; the file is deferred as "still being
written" and admitted whole, once, at the first tick after the writer closed it. Before, the run
read the part written so far (7,410 of 60,000 rows were admitted and moved the posterior).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from resources.landing_files import file_sha256, scan_landing
from tests.pipeline_support import Project
from tests.reliability.corpus import corpus_study, csv, good_frame

ROWS = 4000


@contextmanager
def slow_writer(path: Path, lines: list[str]) -> Iterator[threading.Event]:
    """Writes ``lines`` into ``path`` in place, 20 at a time, until told to finish (then at once)."""
    finish = threading.Event()

    def write() -> None:
        with path.open("w", encoding="utf-8") as handle:
            for start in range(0, len(lines), 20):
                handle.write("".join(line + "\n" for line in lines[start : start + 20]))
                handle.flush()
                if not finish.is_set():
                    time.sleep(0.05)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        while not path.exists() or path.stat().st_size == 0:
            time.sleep(0.01)
        yield finish
    finally:
        finish.set()
        thread.join()


def batch_lines(seed: int) -> list[str]:
    return csv(good_frame(seed, n=ROWS)).decode().splitlines()


def test_the_scan_defers_a_file_that_is_still_being_written(tmp_path: Path) -> None:
    path = tmp_path / "2025-01-02.csv"
    with slow_writer(path, batch_lines(1)) as finish:
        scan = scan_landing(tmp_path, cadence="daily", cursor={}, settle_seconds=2.0)
        assert not finish.is_set(), "the writer finished during the scan: no deferral was tested"
    assert scan.new_or_changed == () and scan.next_cursor == {}
    assert [(name, reason.split(" (")[0]) for name, reason in scan.unmapped] == [
        ("2025-01-02.csv", "still being written")
    ]
    settled = scan_landing(tmp_path, cadence="daily", cursor=scan.next_cursor, settle_seconds=2.0)
    assert [f.path.name for f in settled.new_or_changed] == ["2025-01-02.csv"]
    assert settled.new_or_changed[0].size == path.stat().st_size


def test_a_correction_written_in_place_keeps_the_old_file_until_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "2025-01-02.csv"
    path.write_bytes(csv(good_frame(2)))
    first = scan_landing(tmp_path, cadence="daily", cursor={})
    with slow_writer(path, batch_lines(3)):
        during = scan_landing(tmp_path, cadence="daily", cursor=first.next_cursor, settle_seconds=2.0)
    assert during.new_or_changed == () and during.unchanged == ()
    assert during.next_cursor == first.next_cursor  # still the old content: the next scan sees a change
    after = scan_landing(tmp_path, cadence="daily", cursor=during.next_cursor)
    assert [f.sha256 for f in after.new_or_changed] == [file_sha256(path)]


def test_a_half_written_file_never_reaches_the_warehouse(tmp_path: Path) -> None:
    study = corpus_study()
    project = Project(data=tmp_path / "data", studies=[study], instance=dg.DagsterInstance.ephemeral())
    folder = project.landing(study.name)
    (folder / "2025-01-01.csv").write_bytes(csv(good_frame(4)))
    assert [r.success for r in project.tick()] == [True]
    with slow_writer(folder / "2025-01-02.csv", batch_lines(5)) as finish:
        during = project.tick()
        assert not finish.is_set(), "the writer finished during the tick: no deferral was tested"
    assert during == []
    assert project.warehouse.read_table(study.name, "raw_files", partition_key="2025-01-02").empty
    runs = project.tick()
    assert [r.success for r in runs] == [True]
    files = project.warehouse.read_table(study.name, "raw_files", partition_key="2025-01-02")
    assert files["n_rows"].tolist() == [ROWS]
    audit = project.warehouse.read_table(study.name, "audit_trail")
    assert len(audit) == 2  # the first batch, then the second one whole: never a half of it
