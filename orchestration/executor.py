"""Where a run's steps execute: in the run's own process (the default), or on a Dask cluster.

The embedded default runs every step of a run in that run's process: a study's steps are a chain,
so a process per step buys nothing on one machine. A team that outgrows one machine points the
pipeline at a ``dask.distributed`` scheduler with ``ASSIMILATE_DASK_SCHEDULER=tcp://host:8786``:
every step is then submitted to the scheduler and runs on whichever worker is free, on any machine
that has the project and its study files, reaches the Dagster instance's storage (PostgreSQL in a
team deployment) and the warehouse (PostgreSQL: ``ASSIMILATE_WAREHOUSE_URL``). Concurrent runs of
one study are safe: each batch's steps write their own partition, and the posterior update fuses
under the warehouse's lock whatever the other runs stored (assets/posterior_state.py). The
deployment guide (docs/DEPLOY.md) lists the processes to run.
"""

from __future__ import annotations

import os
import re

import dagster as dg

DASK_SCHEDULER_ENV = "ASSIMILATE_DASK_SCHEDULER"
# A scheduler address as dask.distributed writes it: protocol, host and port.
_ADDRESS = re.compile(r"(?:tcp|tls)://[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}")


def dask_scheduler_address() -> str | None:
    """The Dask scheduler ``ASSIMILATE_DASK_SCHEDULER`` names, or None (steps run in the run's process).

    Raises
    ------
    ValueError
        When the variable is set but is not an address like ``tcp://10.0.0.5:8786``.
    """
    address = os.environ.get(DASK_SCHEDULER_ENV, "").strip()
    if not address:
        return None
    if not _ADDRESS.fullmatch(address):
        raise ValueError(
            f"{DASK_SCHEDULER_ENV}={address!r} is not a Dask scheduler address "
            "(expected tcp://host:port or tls://host:port, e.g. tcp://127.0.0.1:8786)"
        )
    return address


def pipeline_executor() -> dg.ExecutorDefinition:
    """The executor of every job: the Dask cluster's when a scheduler is configured, else in process."""
    address = dask_scheduler_address()
    if address is None:
        return dg.in_process_executor
    from orchestration.dask_cluster import dask_cluster_executor

    return dask_cluster_executor.configured({"address": address}, name="dask_cluster_at_scheduler")
