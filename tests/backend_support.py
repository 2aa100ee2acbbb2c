"""The warehouse backend for tests that cannot take the per-test database tests/conftest.py gives.

``pytest --warehouse=postgres`` points every pipeline test's warehouse at a fresh PostgreSQL database,
through ``ASSIMILATE_WAREHOUSE_URL`` (tests/conftest.py). Three kinds of test need more:

- ``duckdb_only``: a test about the DuckDB file itself (it blocks, renames or deletes it) runs on
  DuckDB whatever ``--warehouse`` says: the variable is removed for that test and every process it
  starts.
- ``use_another_warehouse``: a test that compares two data folders calls it between them; on
  PostgreSQL the second folder's runs then write to a database of their own (on DuckDB each folder
  has its own file).
- ``module_warehouse``: a module-scoped fixture builds its project inside it, and each test that
  uses the project sets the variable back to the URL it yields (the per-test database is another).

Ask for ``duckdb_only`` with ``@pytest.mark.usefixtures("duckdb_only")`` after importing it into the
test module (``from tests.backend_support import duckdb_only  # noqa: F401``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from resources.postgres_warehouse import PostgresWarehouse
from resources.warehouse import WAREHOUSE_URL_ENV, Warehouse
from tests.postgres_support import fresh_database


def warehouse_of_param(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    """The warehouse a ``params=["duckdb", "postgres"]`` fixture asks for: a file, or a fresh database."""
    if request.param == "duckdb":
        return Warehouse(tmp_path / "warehouse.duckdb", lock_timeout_s=30)
    return PostgresWarehouse(request.getfixturevalue("postgres_warehouse_url"), lock_timeout_s=30)


def on_postgres(request: pytest.FixtureRequest) -> bool:
    """Whether this session's pipeline tests run with the warehouse on PostgreSQL."""
    return request.config.getoption("--warehouse") == "postgres"


@pytest.fixture
def duckdb_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The data folder's DuckDB file for this test, on either ``--warehouse``."""
    monkeypatch.delenv(WAREHOUSE_URL_ENV, raising=False)


def use_another_warehouse(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Give what runs next a warehouse of its own: a new database on PostgreSQL (dropped after the test).

    On DuckDB nothing changes: each data folder has its file. Read what the earlier folder stored
    before calling it: its warehouse is no longer the one ``ASSIMILATE_WAREHOUSE_URL`` names.
    """
    if not on_postgres(request):
        return
    server = request.getfixturevalue("postgres_cluster")
    databases = ExitStack()
    request.addfinalizer(databases.close)
    monkeypatch.setenv(WAREHOUSE_URL_ENV, server.url(databases.enter_context(fresh_database(server))))


@contextmanager
def module_warehouse(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A warehouse for a module-scoped fixture: a database of its own on PostgreSQL (its URL), else None."""
    if not on_postgres(request):
        yield None
        return
    server = request.getfixturevalue("postgres_cluster")
    with fresh_database(server) as name, pytest.MonkeyPatch.context() as patch:
        url = server.url(name)
        patch.setenv(WAREHOUSE_URL_ENV, url)
        yield url


def back_in_module_warehouse(monkeypatch: pytest.MonkeyPatch, url: str | None) -> None:
    """Point a test at its module's database (``module_warehouse``'s URL), not the per-test one."""
    if url is not None:
        monkeypatch.setenv(WAREHOUSE_URL_ENV, url)


def batch(seed: int, n: int = 5) -> pd.DataFrame:
    """A small partition for the warehouse contract tests: ids, a float and a boolean column."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "row_index": np.arange(n, dtype=np.int64),
            "unit_id": [f"u{seed}-{i}" for i in range(n)],
            "x": rng.standard_normal(n),
            "treated": rng.integers(0, 2, n).astype(bool),
        }
    )


def without_key(frame: pd.DataFrame) -> pd.DataFrame:
    """A partition read back, without its partition_key column."""
    return frame.drop(columns="partition_key").reset_index(drop=True)
