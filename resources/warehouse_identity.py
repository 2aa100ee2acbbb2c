"""The warehouse's identity: an id written at its first write, so a rebuilt warehouse is told apart.

A reader that remembers the id (the landing sensor) can tell a warehouse deleted and written again,
or swapped for another, from the one it knew. Both backends keep it in one row of one table.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

# Written at a warehouse's first write; a study may not take this schema's name.
IDENTITY_SCHEMA = "assimilate_meta"
IDENTITY_TABLE = "identity"
IDENTITY_QUERY = f"SELECT warehouse_id FROM {IDENTITY_SCHEMA}.{IDENTITY_TABLE} LIMIT 1"


def ensure_identity(connection: Any, run_sql: Callable[..., Any]) -> None:
    """Give the warehouse its id, in the caller's transaction, unless it has one."""
    table = f"{IDENTITY_SCHEMA}.{IDENTITY_TABLE}"
    run_sql(connection, f"CREATE SCHEMA IF NOT EXISTS {IDENTITY_SCHEMA}")
    run_sql(connection, f"CREATE TABLE IF NOT EXISTS {table} (warehouse_id VARCHAR, created_at TIMESTAMPTZ)")
    run_sql(
        connection,
        f"INSERT INTO {table} SELECT ?, now() WHERE NOT EXISTS (SELECT 1 FROM {table})",
        [uuid.uuid4().hex],
    )
