"""The simulation runner: one table from every study, a failed promise fails the run."""

from __future__ import annotations

import pytest

from simulations import run as runner
from simulations.table import COLUMNS, frame, row


def test_the_runner_prints_one_table_and_exits_zero_when_promises_hold(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert runner.main(["--fast", "--only", "peeking"]) == 0
    out = capsys.readouterr().out
    assert "always-valid" in out or "always_valid" in out


def test_a_broken_promise_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = frame([row("fake", "s", "coverage", 0.5, target="in [0.93, 0.97]", passed=False)])
    monkeypatch.setattr(runner, "run_all", lambda names, fast: (broken, {"fake": 0.0}))
    assert runner.main(["--fast"]) == 1


def test_the_markdown_page_has_every_column_and_marks_failures() -> None:
    table = frame(
        [
            row("a", "s", "q", 0.95, target="in [0.93, 0.97]", mc_error=0.005, passed=True),
            row("a", "s", "p", 0.5, passed=False),
            row("a", "s", "r", 0.1),
        ]
    )
    page = runner.markdown(table, {"a": 1.0}, fast=True)
    assert all(column in page for column in COLUMNS)
    assert "| NO " in page and "| yes " in page
