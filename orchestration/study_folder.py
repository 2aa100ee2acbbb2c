"""The studies folder: which files load, which are broken, and what changed since the code loaded.

One broken study file must never stop the others: ``scan_study_folder`` keeps every study that
validates and reports each broken file with its ``file: key: rule`` message, so the code location
serves the good studies while the broken one is alerted and shown (see ``study_file_sensor``).
``load_studies`` is the strict form for callers that want all or nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from resources.guardrails import derive_guardrail_studies
from resources.study import StudyConfig, StudyConfigError, load_study

STUDY_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class StudyFile:
    """One file of the studies folder: its study when it loads, else the reason it does not."""

    path: Path
    sha256: str
    study: StudyConfig | None
    error: str = ""

    @property
    def key(self) -> str:
        """What alerts track a file by: its name without the suffix (a broken file has no study name)."""
        return self.path.stem

    @property
    def broken(self) -> bool:
        """Whether the file failed to load."""
        return self.study is None


@dataclass(frozen=True)
class StudyFolder:
    """Every study file of a folder, sorted by file name."""

    root: Path
    files: tuple[StudyFile, ...]

    @property
    def studies(self) -> list[StudyConfig]:
        """The studies that loaded, sorted by study name."""
        return sorted((f.study for f in self.files if f.study is not None), key=lambda s: s.name)

    @property
    def broken(self) -> list[StudyFile]:
        """The files that did not load."""
        return [f for f in self.files if f.broken]

    def fingerprint(self) -> dict[str, str]:
        """File name -> sha256: what a later scan is compared with to tell what changed."""
        return {f.path.name: f.sha256 for f in self.files}


def scan_study_folder(folder: str | Path) -> StudyFolder:
    """Load every ``*.yaml`` / ``*.yml`` file of ``folder``; a file that fails is kept as broken.

    A study name or landing folder taken by an earlier file (in file-name order) makes the later file
    broken, naming both files, so that adding a copy never takes the original study down.

    Raises
    ------
    StudyConfigError
        When the folder itself does not exist.
    """
    root = Path(folder)
    if not root.is_dir():
        raise StudyConfigError(f"{root}: the studies folder does not exist")
    paths = sorted(p for p in root.iterdir() if p.suffix in STUDY_SUFFIXES and p.is_file())
    files: list[StudyFile] = []
    first_file: dict[str, Path] = {}
    folder_owner: dict[str, Path] = {}
    for path in paths:
        sha256 = _sha256(path)
        try:
            study = load_study(path)
        except StudyConfigError as error:
            files.append(StudyFile(path, sha256, None, str(error)))
            continue
        if study.name in first_file:
            message = f"{path}: name: study {study.name!r} is already defined in {first_file[study.name]}"
            files.append(StudyFile(path, sha256, None, message))
            continue
        if study.landing_folder in folder_owner:
            message = (
                f"{path}: landing_folder: {study.landing_folder!r} is already the landing folder of "
                f"{folder_owner[study.landing_folder]} (each study needs its own)"
            )
            files.append(StudyFile(path, sha256, None, message))
            continue
        derived = [g.name for g in derive_guardrail_studies(study)]  # names the guardrails take
        taken = next((name for name in derived if name in first_file), None)
        if taken is not None:
            message = f"{path}: guardrails: study {taken!r} is already defined in {first_file[taken]}"
            files.append(StudyFile(path, sha256, None, message))
            continue
        first_file |= {name: path for name in (study.name, *derived)}
        folder_owner[study.landing_folder] = path
        files.append(StudyFile(path, sha256, study))
    return StudyFolder(root, tuple(files))


def load_studies(folder: str | Path) -> list[StudyConfig]:
    """Every study in ``folder``, sorted by name; any broken file is an error (all reported together).

    Raises
    ------
    StudyConfigError
        With one ``file: key: rule`` line per problem in every broken file.
    """
    scanned = scan_study_folder(folder)
    if scanned.broken:
        raise StudyConfigError("\n".join(f.error for f in scanned.broken))
    return scanned.studies


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""  # unreadable: load_study reports it
