"""The warehouse a script reads or writes: the pipeline's own, or a DuckDB file named on the command line.

Scripts open the warehouse as the pipeline does (``WarehouseResource.for_data_dir``): the data
folder's ``warehouse.duckdb``, or the PostgreSQL database that ``ASSIMILATE_WAREHOUSE_URL`` names
when it is set. A ``--warehouse PATH`` given on the command line names a DuckDB file and wins over
the variable: the user asked for that file.
"""

from __future__ import annotations

from pathlib import Path

from resources.warehouse import PostgresWarehouse, Warehouse, WarehouseResource


def script_warehouse(data_dir: Path, path: Path | None = None) -> Warehouse:
    """The DuckDB file at ``path`` when one is given, else the pipeline's warehouse for ``data_dir``.

    Nothing is created: a DuckDB file appears on the first write, as in the pipeline.

    Raises
    ------
    ValueError
        When ``ASSIMILATE_WAREHOUSE_URL`` is set (and ``path`` is not) but is not a PostgreSQL URL;
        the message names the variable and never shows its value's password.
    """
    if path is not None:
        return WarehouseResource(path=str(path)).open()
    return WarehouseResource.for_data_dir(data_dir).open()


def described(warehouse: Warehouse) -> str:
    """How a message names the warehouse: the file's path, or the database URL without its password."""
    return repr(warehouse) if isinstance(warehouse, PostgresWarehouse) else str(warehouse.path)
