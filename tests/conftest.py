"""Every test gets its layer as a marker, from the folder it lives in, so one layer runs alone.

    pytest -m library                       # tests/lib: the pure library, no Dagster
    pytest -m "not pipeline and not slow"   # the quick loop: library and shell units
    pytest -m reliability                   # tests/reliability: corpus, SIGKILL, the real daemon
    pytest -m postgres                      # every test that starts a PostgreSQL server

``tests/lib`` (``library``) imports no shell package and no Dagster; ``tests/shell`` (``shell``) does,
but runs no pipeline; ``tests/pipeline`` (``pipeline``) runs Dagster jobs (a ``Project``,
``execute_in_process``, ``materialize``, a webserver or daemon); ``tests/reliability`` is
``reliability`` and ``pipeline``. tests/shell/test_architecture.py holds every module to its
folder's rule. Doctests in the library are ``library``, elsewhere ``shell``.

    pytest --warehouse=postgres tests/pipeline/test_pipeline.py tests/reliability/test_idempotency.py

runs pipeline and reliability tests with the warehouse on PostgreSQL (a server the tests start, a
fresh database per test; ``ASSIMILATE_TEST_WAREHOUSE=postgres`` does the same): the tests that
read the warehouse through ``Project.warehouse`` (or ``WarehouseResource.for_data_dir``) run
unchanged on either backend, and so do the processes they start (the variable is inherited: the
daemon of test_daemon, the scripts of test_audit).
tests/backend_support.py has what the others need: ``use_another_warehouse`` for a test that
compares two data folders (test_backfill_and_definitions, test_cli_partition_range,
test_dask_executor, test_runner_range), ``module_warehouse`` for a project built in a module-scoped
fixture (test_pipeline_returning_units, test_security, test_adversarial_corpus), and ``duckdb_only`` for a test about the DuckDB
file itself: it runs on DuckDB whatever ``--warehouse`` says (test_landing_reconcile's blocked and
deleted file).
Still DuckDB-only: test_demo (the demo runs on the embedded default and checks its DuckDB file).
The warehouse contract itself runs on both backends in tests/shell/test_warehouse.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from tests.postgres_support import postgres_cluster, postgres_warehouse_url  # noqa: F401 (fixtures)

SHELL_IMPORT = re.compile(
    r"^\s*(?:from|import)\s+(?:dagster|assets|checks|resources|orchestration|scripts|benchmarks)\b", re.M
)
RUNS_PIPELINE = re.compile(
    r"\bProject\(|execute_in_process|\bmaterialize\(|dagster-daemon|\"dev\"|run_landed_batches|run_demo\("
)
FOLDER_MARKERS = {
    "lib": ("library",),
    "shell": ("shell",),
    "pipeline": ("pipeline",),
    "reliability": ("reliability", "pipeline"),
}


def layer_of_source(source: str) -> str:
    """The folder a test module belongs in, from what it uses: ``lib``, ``shell`` or ``pipeline``."""
    if RUNS_PIPELINE.search(source):
        return "pipeline"
    if SHELL_IMPORT.search(source):
        return "shell"
    return "lib"


@cache
def layer_of(path: Path) -> tuple[str, ...]:
    """The layer markers of a test module (or a module's doctests)."""
    if "tests" not in path.parts:
        return ("library",) if "assimilate" in path.parts else ("shell",)
    folder = path.parts[path.parts.index("tests") + 1]
    return FOLDER_MARKERS.get(folder, ("shell",))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--warehouse",
        choices=("duckdb", "postgres"),
        default=os.environ.get("ASSIMILATE_TEST_WAREHOUSE", "duckdb"),
        help="the warehouse backend of the pipeline and reliability tests (default: duckdb)",
    )


@pytest.fixture(autouse=True)
def _warehouse_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --warehouse=postgres, each pipeline test's warehouse is a fresh PostgreSQL database."""
    if request.config.getoption("--warehouse") != "postgres" or "pipeline" not in layer_of(request.path):
        return
    from resources.warehouse import WAREHOUSE_URL_ENV

    monkeypatch.setenv(WAREHOUSE_URL_ENV, request.getfixturevalue("postgres_warehouse_url"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: starts a PostgreSQL server (given by tests/conftest.py)")


POSTGRES_FIXTURES = {"postgres_cluster", "postgres_warehouse_url", "postgres_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for name in layer_of(Path(str(item.path))):
            item.add_marker(getattr(pytest.mark, name))
        callspec = getattr(item, "callspec", None)
        # A backend parameter; other parameters may be frames or arrays, which `in` would compare.
        params = callspec.params.values() if callspec is not None else ()
        on_postgres = any(isinstance(value, str) and value == "postgres" for value in params)
        if on_postgres or POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


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


@pytest.fixture(scope="module", autouse=True)
def _no_stale_defs_state_storage_in_module() -> Iterator[None]:
    """The same for a module's own fixtures: they are set up before any test's autouse fixture.

    Found: a module-scoped fixture that runs the pipeline (the adversarial corpus, the benchmark's
    work counts) met a dead reference left by an earlier module, in one run of the whole suite in
    two (which one depends on when the garbage collector runs).
    """
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield
