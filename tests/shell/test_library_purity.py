"""The library stays a library (no Dagster), randomness is explicit, nothing loads executable data.

The guards read the source with ``ast`` (code in docstring examples included), so a name in a
comment or a string does not trip them and an aliased import does not slip through. Each guard is
also run on a small piece of offending code, to show that it would catch it.
"""

import ast
import doctest
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "assimilate"
PACKAGES = ("assimilate", "assets", "checks", "orchestration", "resources", "scripts", "benchmarks")
FORBIDDEN_IMPORTS = {"dagster", "dagster_duckdb", "dagster_pandera", "duckdb", "pickle", "dill", "joblib"}
# The library never runs a program, opens a connection or walks the file system: the shell does.
SIDE_EFFECT_IMPORTS = {
    "subprocess",
    "multiprocessing",
    "socket",
    "http",
    "urllib",
    "requests",
    "shutil",
    "os",
}
RNG_ALLOWED = {"default_rng", "Generator", "SeedSequence", "PCG64", "BitGenerator"}
# Modules whose only purpose is (de)serializing Python objects: loading their data runs code.
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal"}
UNSAFE_CALLS = {
    "yaml.load",
    "yaml.load_all",
    "yaml.unsafe_load",
    "yaml.unsafe_load_all",
    "yaml.full_load",
    "yaml.full_load_all",
    "joblib.load",
    "pandas.read_pickle",
}
UNSAFE_ATTRIBUTES = {"read_pickle", "to_pickle"}  # DataFrame.to_pickle, pd.read_pickle under any alias


def _library_files() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def _project_files() -> list[Path]:
    return [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _trees(source: str) -> list[ast.Module]:
    """The module's tree and one tree per docstring example (``>>>`` code) it holds."""
    tree = ast.parse(source)
    trees = [tree]
    parser = doctest.DocTestParser()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ">>>" in node.value:
            for example in parser.get_examples(node.value):
                try:
                    trees.append(ast.parse(example.source))
                except SyntaxError:
                    continue
    return trees


def _aliases(trees: list[ast.Module]) -> dict[str, str]:
    """Local name -> full module or object name, from every import (``np`` -> ``numpy``)."""
    names = {"np": "numpy", "pd": "pandas"}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        names[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        names[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """``np.random.seed`` -> ``numpy.random.seed`` (None for anything but a chain of names)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def global_rng_uses(source: str) -> list[str]:
    """Every use of ``numpy.random.<name>`` other than the explicit-generator API."""
    trees = _trees(source)
    aliases = _aliases(trees)
    found = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "numpy.random":
                found += [
                    f"from numpy.random import {a.name}" for a in node.names if a.name not in RNG_ALLOWED
                ]
            if isinstance(node, ast.Attribute):
                name = _dotted(node, aliases) or ""
                parts = name.split(".")
                if parts[:2] == ["numpy", "random"] and len(parts) == 3 and parts[2] not in RNG_ALLOWED:
                    found.append(name)
    return found


def unsafe_loads(source: str) -> list[str]:
    """Every import or call that can execute code while loading data (pickle, unsafe YAML ...)."""
    trees = _trees(source)
    aliases = _aliases(trees)
    found = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLING_MODULES]
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[0] in PICKLING_MODULES:
                    found.append(f"from {node.module} import ...")
                found += [
                    f"from {node.module} import {a.name}"
                    for a in node.names
                    if f"{node.module}.{a.name}" in UNSAFE_CALLS or a.name in UNSAFE_ATTRIBUTES
                ]
            elif isinstance(node, ast.Attribute):
                name = _dotted(node, aliases) or ""
                if name in UNSAFE_CALLS or node.attr in UNSAFE_ATTRIBUTES:
                    found.append(name or node.attr)
            elif isinstance(node, ast.Call):
                name = _dotted(node.func, aliases) or ""
                resolved = aliases.get(name, name)  # a function imported by name: load -> yaml.load
                if resolved in UNSAFE_CALLS:
                    found.append(resolved)
                for keyword in node.keywords:
                    if keyword.arg == "Loader":
                        found.append(f"{name or 'call'}(Loader=...)")
                    pickled = not (isinstance(keyword.value, ast.Constant) and not keyword.value.value)
                    if keyword.arg == "allow_pickle" and pickled:
                        found.append(f"{name or 'call'}(allow_pickle=...)")
    return list(dict.fromkeys(found))


def test_library_has_modules() -> None:
    assert len(_library_files()) > 10
    assert len(_project_files()) > 40


def test_library_never_imports_dagster_or_pickle() -> None:
    offenders = {
        str(path.relative_to(LIBRARY)): sorted(_imported_modules(path) & FORBIDDEN_IMPORTS)
        for path in _library_files()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_library_never_runs_a_program_or_touches_the_system() -> None:
    offenders = {
        str(path.relative_to(LIBRARY)): sorted(_imported_modules(path) & SIDE_EFFECT_IMPORTS)
        for path in _library_files()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    ("code", "caught"),
    [
        ("import subprocess\nsubprocess.run(['dot'])", {"subprocess"}),
        ("from shutil import which", {"shutil"}),
        ("import os.path", {"os"}),
        ("from urllib.request import urlopen", {"urllib"}),
        ("import numpy as np  # subprocess in a comment", set()),
    ],
)
def test_the_import_guards_catch_a_planted_violation(tmp_path: Path, code: str, caught: set[str]) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(code, encoding="utf-8")
    assert _imported_modules(planted) & (SIDE_EFFECT_IMPORTS | FORBIDDEN_IMPORTS) == caught


def test_importing_the_library_does_not_import_dagster() -> None:
    code = "import sys, assimilate; print('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import numpy as np\nnp.random.seed(0)", ["numpy.random.seed"]),
        ("import numpy\nx = numpy.random.normal(size=3)", ["numpy.random.normal"]),
        ("import numpy.random as npr\nnpr.shuffle(x)", ["numpy.random.shuffle"]),
        ("from numpy import random\nrandom.rand(3)", ["numpy.random.rand"]),
        ("from numpy.random import randn", ["from numpy.random import randn"]),
        ("f = np.random.permutation", ["numpy.random.permutation"]),
        ('"""Example.\n\n>>> np.random.seed(1)\n"""', ["numpy.random.seed"]),
        ("rng = np.random.default_rng(0)\nrng.normal()", []),
        ("def f(rng: np.random.Generator, s: np.random.SeedSequence) -> None: ...", []),
        ("b = np.random.PCG64(1)\nc: np.random.BitGenerator", []),
        ("# np.random.seed(0) in a comment\ns = 'np.random.rand in a string'", []),
        ("import random\nrandom.random()", []),  # the stdlib module is another name
    ],
)
def test_the_rng_guard_catches_the_global_numpy_rng(code: str, expected: list[str]) -> None:
    assert global_rng_uses(code) == expected


def test_the_project_never_uses_the_global_numpy_rng() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in _project_files()
        if (found := global_rng_uses(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import yaml\nyaml.load(text)", ["yaml.load"]),
        ("import yaml\nyaml.unsafe_load(text)", ["yaml.unsafe_load"]),
        ("import yaml as y\ny.full_load(text)", ["yaml.full_load"]),
        ("from yaml import load\nload(text)", ["from yaml import load", "yaml.load"]),
        ("import yaml\nyaml.safe_load(text, Loader=None)", ["yaml.safe_load(Loader=...)"]),
        ("import pickle", ["import pickle"]),
        ("import dill as d", ["import dill"]),
        ("from shelve import open", ["from shelve import ..."]),
        ("import marshal\nmarshal.loads(b)", ["import marshal"]),
        ("import joblib\njoblib.load(path)", ["joblib.load"]),
        ("import numpy as np\nnp.load(path, allow_pickle=True)", ["numpy.load(allow_pickle=...)"]),
        ("import numpy as np\nnp.load(path, allow_pickle=flag)", ["numpy.load(allow_pickle=...)"]),
        ("import pandas as pd\npd.read_pickle(path)", ["pandas.read_pickle"]),
        ("frame.to_pickle(path)", ["frame.to_pickle"]),
        ("import yaml\nyaml.safe_load(text)", []),
        ("import numpy as np\nnp.load(path)\nnp.load(path, allow_pickle=False)", []),
        ("import pandas as pd\npd.read_parquet(path)", []),
        ('s = "yaml.load( and pickle in a string"', []),
    ],
)
def test_the_loading_guard_catches_code_executing_formats(code: str, expected: list[str]) -> None:
    assert unsafe_loads(code) == expected


# This file (it names the patterns) and the one test that pickles the library's own results.
PICKLE_ROUND_TRIP_EXEMPT = {
    Path(__file__).resolve(),
    (ROOT / "tests" / "lib" / "test_pickle_round_trip.py").resolve(),
}


def test_the_exempt_files_exist() -> None:
    """A moved file would leave its exemption pointing nowhere and its own check failing."""
    assert all(path.is_file() for path in PICKLE_ROUND_TRIP_EXEMPT), PICKLE_ROUND_TRIP_EXEMPT


def test_the_project_never_loads_code_executing_formats() -> None:
    files = [*_project_files(), *sorted((ROOT / "tests").rglob("*.py"))]
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in files
        if path not in PICKLE_ROUND_TRIP_EXEMPT and (found := unsafe_loads(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
