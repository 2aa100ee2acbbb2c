"""The warehouse: one schema per study, partitions replaced atomically; DuckDB unless told otherwise.

``Warehouse`` (``resources/duckdb_warehouse.py``) is the interface and the default backend, one
DuckDB file; ``PostgresWarehouse`` (``resources/postgres_warehouse.py``) keeps the same interface on
a PostgreSQL database. ``open_warehouse`` picks one: a ``postgresql://`` URL, else the file.
``WarehouseResource`` wraps it for the assets; the pipeline gives it the URL from the
``ASSIMILATE_WAREHOUSE_URL`` environment variable when that is set (docs/DEPLOY.md).

Example
-------
>>> store = Warehouse("data/warehouse.duckdb")  # doctest: +SKIP
>>> store.replace_partition("ab_checkout", "batch_effects", "2025-03-01", frame)  # doctest: +SKIP
>>> store.read_table("ab_checkout", "batch_effects", partition_key="2025-03-01")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from resources.duckdb_warehouse import IDENTITY_SCHEMA, IDENTITY_TABLE, Warehouse
from resources.postgres_warehouse import PostgresWarehouse, checked_url
from resources.warehouse_lease import lease_connection
from resources.warehouse_waiting import WarehouseError, WarehouseLockedError

__all__ = [
    "IDENTITY_SCHEMA",
    "IDENTITY_TABLE",
    "WAREHOUSE_URL_ENV",
    "PostgresWarehouse",
    "Warehouse",
    "WarehouseError",
    "WarehouseLockedError",
    "WarehouseResource",
    "lease_connection",
    "open_warehouse",
    "warehouse_of",
]

# postgresql://user@host:port/db (the password in it, or in PGPASSWORD): the warehouse is that database.
WAREHOUSE_URL_ENV = "ASSIMILATE_WAREHOUSE_URL"


def open_warehouse(path: str | Path, url: str | None = None, *, lock_timeout_s: float = 60.0) -> Warehouse:
    """The PostgreSQL warehouse at ``url`` when one is given, else the DuckDB file at ``path``."""
    if url:
        return PostgresWarehouse(url, lock_timeout_s=lock_timeout_s)
    return Warehouse(path, lock_timeout_s=lock_timeout_s)


def warehouse_of(resource: object) -> Warehouse | None:
    """The warehouse a ``WarehouseResource`` names (nothing created), or None for anything else."""
    return resource.open() if isinstance(resource, WarehouseResource) else None


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The warehouse for the assets: ``get()`` returns a ``Warehouse`` (DuckDB unless ``url`` is set).

    ``url`` holds a secret: give it as ``dg.EnvVar(WAREHOUSE_URL_ENV)`` (``for_data_dir`` does), so
    the UI shows the variable's name and never its value.
    """

    path: str = "data/warehouse.duckdb"
    url: str = ""
    lock_timeout_s: float = 60.0

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> WarehouseResource:
        """The data folder's DuckDB file, or the database ``ASSIMILATE_WAREHOUSE_URL`` names.

        Raises
        ------
        ValueError
            When the variable is set but is not a PostgreSQL URL (the message names the variable).
        """
        value = os.environ.get(WAREHOUSE_URL_ENV, "").strip()
        if value:
            try:
                checked_url(value)
            except ValueError as error:
                raise ValueError(f"{WAREHOUSE_URL_ENV}: {error}") from None
        return cls(path=str(data_dir / "warehouse.duckdb"), url=dg.EnvVar(WAREHOUSE_URL_ENV) if value else "")

    def open(self, *, lock_timeout_s: float | None = None) -> Warehouse:
        """The warehouse, nothing created (``lock_timeout_s``: another than the resource's)."""
        url = self.url.get_value() if isinstance(self.url, dg.EnvVar) else self.url
        timeout = self.lock_timeout_s if lock_timeout_s is None else lock_timeout_s
        return open_warehouse(self.path, url, lock_timeout_s=timeout)

    def get(self) -> Warehouse:
        """The warehouse, after creating the folder of its file (DuckDB)."""
        if not self.url:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return self.open()
