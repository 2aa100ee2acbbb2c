"""The library stays a library: no Dagster, no file reading at import, no global RNG."""

import ast
import subprocess
import sys
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent.parent / "assimilate"
FORBIDDEN_IMPORTS = {"dagster", "dagster_duckdb", "dagster_pandera", "duckdb", "pickle", "dill", "joblib"}


def _library_files() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_library_has_modules() -> None:
    assert len(_library_files()) > 10


def test_library_never_imports_dagster_or_pickle() -> None:
    offenders = {
        str(path.relative_to(LIBRARY)): sorted(_imported_modules(path) & FORBIDDEN_IMPORTS)
        for path in _library_files()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_library_never_uses_the_global_numpy_rng() -> None:
    global_calls = (
        "np.random.seed(",
        "np.random.rand(",
        "np.random.randn(",
        "np.random.normal(",
        "np.random.choice(",
        "np.random.uniform(",
        "np.random.binomial(",
    )
    offenders = [
        str(path.relative_to(LIBRARY))
        for path in _library_files()
        if any(call in path.read_text(encoding="utf-8") for call in global_calls)
    ]
    assert offenders == []


def test_importing_the_library_does_not_import_dagster() -> None:
    code = "import sys, assimilate; print('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_project_never_loads_code_executing_formats() -> None:
    root = LIBRARY.parent
    files = [
        p
        for folder in (
            "assimilate",
            "assets",
            "checks",
            "resources",
            "orchestration",
            "scripts",
            "benchmarks",
        )
        for p in (root / folder).rglob("*.py")
    ]
    assert files
    offenders = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        names = _imported_modules(path)
        if names & {"pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"} or "yaml.load(" in text:
            offenders.append(str(path.relative_to(root)))
    assert offenders == []
