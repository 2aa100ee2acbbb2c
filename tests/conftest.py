"""Every test gets its layer as a marker, from what its module uses, so one layer runs alone.

    pytest -m library                       # the pure library: no Dagster, seconds to a minute
    pytest -m "not pipeline and not slow"   # the quick loop: library and shell units
    pytest -m reliability                   # fault tries: corpus, SIGKILL, the real daemon

``library``: the module imports no shell package and no Dagster. ``shell``: it does, but runs no
pipeline. ``pipeline``: it runs Dagster jobs (a ``Project``, ``execute_in_process``, ``materialize``,
a webserver or daemon). ``reliability``: it lives in tests/reliability (also ``pipeline``).
Doctests in the library are ``library``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

SHELL_IMPORT = re.compile(
    r"^\s*(?:from|import)\s+(?:dagster|assets|checks|resources|orchestration|scripts|benchmarks)\b", re.M
)
RUNS_PIPELINE = re.compile(
    r"\bProject\(|execute_in_process|\bmaterialize\(|dagster-daemon|\"dev\"|run_landed_batches|run_demo\("
)


@cache
def layer_of(path: Path) -> tuple[str, ...]:
    """The layer markers of a test module (or a library module's doctests)."""
    if "tests" not in path.parts:
        return ("library",) if "assimilate" in path.parts else ("shell",)
    source = path.read_text(encoding="utf-8")
    if "reliability" in path.parts:
        return ("reliability", "pipeline")
    if RUNS_PIPELINE.search(source):
        return ("pipeline",)
    if SHELL_IMPORT.search(source):
        return ("shell",)
    return ("library",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in layer_of(Path(str(item.path))):
            item.add_marker(getattr(pytest.mark, name))


@pytest.fixture(autouse=True)
def _no_stale_defs_state_storage() -> Iterator[None]:
    """Each test starts with no Dagster defs-state storage in context.

    A Dagster instance puts its defs-state storage in a context variable and leaves it there until
    the instance is disposed; a test's ephemeral instance that was garbage-collected without that
    leaves a dead reference, and the next ``Definitions`` built before any new instance fails with
    "Attempted to resolve undefined DagsterInstance weakref".
    """
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
