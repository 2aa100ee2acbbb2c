"""The project's root folder: where dagster.yaml, the studies and the code live."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
