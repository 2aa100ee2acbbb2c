"""The landing folder where batch files arrive: one sub-folder per study, never modified by us."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from resources.cadence import expected_name
from resources.landing_files import partition_key_for_file
from resources.study import StudyConfig


class LandingFileError(ValueError):
    """No usable file for a partition."""


class LandingResource(dg.ConfigurableResource):  # type: ignore[misc]
    """Root folder of the landing zone (default ``data/landing``)."""

    root: str = "data/landing"

    def study_folder(self, study: StudyConfig) -> Path:
        """The study's landing folder, resolved; it must stay inside the root."""
        root = Path(self.root).resolve()
        folder = (root / study.landing_folder).resolve()
        if not folder.is_relative_to(root):
            raise LandingFileError(f"study {study.name}: landing folder escapes the landing root")
        return folder

    def find_file(self, study: StudyConfig, partition_key: str) -> Path | None:
        """The one file that maps to ``partition_key``; None when none has landed (or it was removed)."""
        folder = self.study_folder(study)
        if not folder.is_dir():
            return None
        matches = sorted(
            path
            for path in folder.glob("*")
            if path.is_file()
            and partition_key_for_file(path.name, study.cadence) == partition_key
            and path.resolve().is_relative_to(folder)
        )
        if len(matches) > 1:
            names = ", ".join(p.name for p in matches)
            raise LandingFileError(
                f"study {study.name}, batch {partition_key}: several files map to it: {names}"
            )
        return matches[0] if matches else None

    def file_for(self, study: StudyConfig, partition_key: str) -> Path:
        """The one file that maps to ``partition_key`` (an error naming the batch otherwise)."""
        path = self.find_file(study, partition_key)
        if path is None:
            expected = expected_name(partition_key, study.cadence)
            raise LandingFileError(
                f"study {study.name}, batch {partition_key}: no file landed in {study.landing_folder}/ "
                f"(expected {expected} or its .parquet)"
            )
        return path
