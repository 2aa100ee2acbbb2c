"""Where report files (tables, plots, memos) are written: one folder per study."""

from __future__ import annotations

from pathlib import Path

import dagster as dg


class ReportsResource(dg.ConfigurableResource):  # type: ignore[misc]
    """Root folder of the reports (default ``data/reports``)."""

    root: str = "data/reports"

    def folder(self, study_name: str) -> Path:
        folder = Path(self.root) / study_name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def write_bytes(self, study_name: str, name: str, content: bytes) -> Path:
        """Write atomically (temp file, then rename) so a reader never sees half a file."""
        path = self.folder(study_name) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_bytes(content)
        temporary.replace(path)
        return path

    def write_text(self, study_name: str, name: str, text: str) -> Path:
        return self.write_bytes(study_name, name, text.encode("utf-8"))
