"""The project's Dagster home: data/dagster_home, with the top-level dagster.yaml copied in.

Dagster reads only ``$DAGSTER_HOME/dagster.yaml``; keeping the file at the top of the repository
and copying it here keeps one source of instance settings. The ``postgres`` variant copies
dagster.postgres.yaml instead (run and event storage in PostgreSQL, for a team deployment); it is
chosen by ``variant="postgres"`` or by the environment variable ``ASSIMILATE_INSTANCE=postgres``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

INSTANCE_FILES = {"sqlite": "dagster.yaml", "postgres": "dagster.postgres.yaml"}


def prepare_dagster_home(home: Path | None = None, variant: str | None = None) -> Path:
    """Create the Dagster home (default ``data/dagster_home``) with the project's dagster.yaml.

    ``variant`` is ``"sqlite"`` (the default) or ``"postgres"``; when it is not given, the
    environment variable ``ASSIMILATE_INSTANCE`` chooses, if set.
    """
    variant = variant or os.environ.get("ASSIMILATE_INSTANCE") or "sqlite"
    if variant not in INSTANCE_FILES:
        raise ValueError(f"unknown Dagster instance variant {variant!r}: use one of {sorted(INSTANCE_FILES)}")
    target = (home or PROJECT_ROOT / "data" / "dagster_home").resolve()
    target.mkdir(parents=True, exist_ok=True)
    source = PROJECT_ROOT / INSTANCE_FILES[variant]
    destination = target / "dagster.yaml"
    if not destination.exists() or destination.read_bytes() != source.read_bytes():
        shutil.copyfile(source, destination)
    return target
