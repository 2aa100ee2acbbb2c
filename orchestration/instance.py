"""Where the pipeline keeps its data, and its Dagster home (``<data>/dagster_home``, dagster.yaml copied in).

The pipeline's data folder holds every study's landing files, the warehouse, reports and alerts. It
is ``data/`` in the project by default and ``$ASSIMILATE_DATA_DIR`` when that is set; the studies
folder is ``studies/`` or ``$ASSIMILATE_STUDIES_DIR``. The demo never uses either (it has its own).

Dagster reads only ``$DAGSTER_HOME/dagster.yaml``; keeping the file at the top of the repository
and copying it here keeps one source of instance settings. The ``postgres`` variant appends the
storage block of dagster.postgres.yaml (run and event storage in PostgreSQL, for a team
deployment); it is chosen by ``variant="postgres"`` or by ``ASSIMILATE_INSTANCE=postgres``.
"""

from __future__ import annotations

import os
from pathlib import Path

from resources.project import PROJECT_ROOT

DATA_DIR_ENV = "ASSIMILATE_DATA_DIR"
STUDIES_DIR_ENV = "ASSIMILATE_STUDIES_DIR"
STORAGE_FILES = {"sqlite": None, "postgres": "dagster.postgres.yaml"}  # None: SQLite under DAGSTER_HOME


def pipeline_data_dir() -> Path:
    """The pipeline's data folder: ``$ASSIMILATE_DATA_DIR`` if set, else ``data/`` in the project."""
    return Path(os.environ.get(DATA_DIR_ENV) or PROJECT_ROOT / "data").resolve()


def pipeline_studies_dir() -> Path:
    """The studies folder: ``$ASSIMILATE_STUDIES_DIR`` if set, else ``studies/`` in the project."""
    return Path(os.environ.get(STUDIES_DIR_ENV) or PROJECT_ROOT / "studies").resolve()


def prepare_dagster_home(home: Path | None = None, variant: str | None = None) -> Path:
    """Create the Dagster home (default ``<pipeline data folder>/dagster_home``) with dagster.yaml.

    ``variant`` is ``"sqlite"`` (the default) or ``"postgres"``; when it is not given, the
    environment variable ``ASSIMILATE_INSTANCE`` chooses, if set.
    """
    variant = variant or os.environ.get("ASSIMILATE_INSTANCE") or "sqlite"
    if variant not in STORAGE_FILES:
        raise ValueError(f"unknown Dagster instance variant {variant!r}: use one of {sorted(STORAGE_FILES)}")
    target = (home or pipeline_data_dir() / "dagster_home").resolve()
    target.mkdir(parents=True, exist_ok=True)
    content = (PROJECT_ROOT / "dagster.yaml").read_bytes()
    storage = STORAGE_FILES[variant]
    if storage is not None:
        content += b"\n" + (PROJECT_ROOT / storage).read_bytes()
    destination = target / "dagster.yaml"
    if not destination.exists() or destination.read_bytes() != content:
        destination.write_bytes(content)
    return target
