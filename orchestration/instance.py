"""The project's Dagster home: data/dagster_home, with the top-level dagster.yaml copied in.

Dagster reads only ``$DAGSTER_HOME/dagster.yaml``; keeping the file at the top of the repository
and copying it here keeps one source of instance settings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def prepare_dagster_home(home: Path | None = None) -> Path:
    """Create the Dagster home (default ``data/dagster_home``) with the project's dagster.yaml."""
    target = (home or PROJECT_ROOT / "data" / "dagster_home").resolve()
    target.mkdir(parents=True, exist_ok=True)
    source = PROJECT_ROOT / "dagster.yaml"
    destination = target / "dagster.yaml"
    if not destination.exists() or destination.read_bytes() != source.read_bytes():
        shutil.copyfile(source, destination)
    return target
