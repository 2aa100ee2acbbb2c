"""Every module keeps to its floor, its size and its layer; each rule also fails on a planted violation.

The floors, from the ground up (docs/ARCHITECTURE.md)::

    assimilate  <-  resources  <-  checks  <-  assets  <-  orchestration  <-  scripts, benchmarks, simulations

A module imports its own floor and the floors below it, never one above; the top row may import
anything, and no floor imports it. Inside the library and inside the shell no two modules import
each other, directly or round a loop, at import time (imports inside functions and under
``TYPE_CHECKING`` run later, so they are not cycles). An asset body (the decorated function's
body, docstring included) is at most 25 lines: read, one library call, write, metadata. Modules stay
under the size their half allows (STYLE.md: ~400 library lines, ~200 Dagster lines; these limits are
the hard ceilings). Tests sit in the folder of what they use (``tests/conftest.py:layer_of_source``).

Each rule is a function over a root folder that returns what breaks it, so the tests at the end run
it on this repository and once on a temporary copy with one violation planted.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

from tests.conftest import layer_of_source

ROOT = Path(__file__).resolve().parents[2]
FLOORS = ("assimilate", "resources", "checks", "assets", "orchestration")
# May import any floor; no floor may import them (nor the tests).
TOP = ("scripts", "benchmarks", "simulations")
LIBRARY = FLOORS[:1]
SHELL = FLOORS[1:]
ASSET_FOLDERS = ("assets", "checks")
# The decorators that make a function an asset or check body: @asset, @dg.multi_asset,
# @asset_check, @multi_asset_check, @graph_asset, the project's @checked_asset and @each_batch.
ASSET_DECORATOR = re.compile(r"(?:^|_)(?:asset|assets|asset_check|asset_checks)$|^each_batch$")
MAX_ASSET_BODY_LINES = 25
MAX_MODULE_LINES = {"library": 500, "shell": 350}
# Modules allowed over their limit, each with the reason it must stay whole. Prefer splitting.
SIZE_EXCEPTIONS: dict[str, str] = {}
# tests/<folder> -> the layers (tests/conftest.py:layer_of_source) its modules may have.
TEST_FOLDERS = {"lib": ("lib",), "shell": ("lib", "shell")}


# --- reading the source --------------------------------------------------------------------------


def python_files(root: Path, folders: tuple[str, ...]) -> Iterator[Path]:
    for folder in folders:
        yield from sorted(p for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts)


@functools.cache
def _parse(source: str) -> ast.Module:
    """Parsed once per distinct source: a temporary copy of the project costs no second parse."""
    return ast.parse(source)


def parse(path: Path) -> ast.Module:
    return _parse(path.read_text(encoding="utf-8"))


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_nodes(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements a module runs when imported: not function bodies, not ``if TYPE_CHECKING:``."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _import_time_nodes(node.orelse if _is_type_checking(node) else node.body + node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _import_time_nodes(block)
        elif isinstance(node, (ast.With, ast.For, ast.While, ast.ClassDef)):
            yield from _import_time_nodes(node.body)


def imports(root: Path, path: Path, *, import_time_only: bool = False) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` for every import of ``path`` (relative imports resolved).

    ``from a.b import c`` gives ``(line, "a.b", "c")``; ``import a.b`` gives ``(line, "a.b", None)``.
    """
    tree = parse(path)
    nodes = _import_time_nodes(tree.body) if import_time_only else ast.walk(tree)
    package = module_name(root, path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str, str | None]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found += [(node.lineno, module, alias.name) for alias in node.names]
    return found


# --- the rules -----------------------------------------------------------------------------------


def _floor(name: str) -> int | None:
    top = name.split(".")[0]
    if top in FLOORS:
        return FLOORS.index(top)
    return len(FLOORS) if top in (*TOP, "tests") else None


def upward_imports(root: Path) -> list[str]:
    """Every import of a module on a higher floor (anywhere in a module, functions included)."""
    found = []
    for path in python_files(root, FLOORS):
        own = FLOORS.index(path.relative_to(root).parts[0])
        for line, module, _ in imports(root, path):
            floor = _floor(module)
            if floor is not None and floor > own:
                where = path.relative_to(root).as_posix()
                found.append(
                    f"{where}:{line} imports {module} ({module.split('.')[0]} is above {FLOORS[own]})"
                )
    return found


def import_graph(root: Path, folders: tuple[str, ...]) -> nx.DiGraph:
    """Module -> module it imports at import time, among the modules under ``folders``."""
    modules = {module_name(root, p): p for p in python_files(root, folders)}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for _, module, imported in imports(root, path, import_time_only=True):
            target = f"{module}.{imported}" if f"{module}.{imported}" in modules else module
            while target and target not in modules:  # import a.b.c where a.b is the module
                target = target.rpartition(".")[0]
            if target and target != name:
                graph.add_edge(name, target)
    return graph


def import_cycles(root: Path, folders: tuple[str, ...]) -> list[str]:
    """One loop per tangle of modules that import each other at import time: ``a -> b -> a``."""
    graph = import_graph(root, folders)
    found = []
    for tangle in nx.strongly_connected_components(graph):
        if len(tangle) > 1:
            loop = [edge[0] for edge in nx.find_cycle(graph.subgraph(tangle))]
            first = loop.index(min(loop))  # the same loop reads the same way every time
            loop = loop[first:] + loop[:first]
            found.append(" -> ".join([*loop, loop[0]]) + f" ({len(tangle)} modules tangled)")
    return sorted(found)


def _decorator_name(node: ast.expr) -> str:
    node = node.func if isinstance(node, ast.Call) else node
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def asset_bodies(root: Path) -> dict[str, int]:
    """``path:line name`` -> body lines (docstring included), for every asset or check body."""
    found = {}
    for path in python_files(root, ASSET_FOLDERS):
        for node in ast.walk(parse(path)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if any(ASSET_DECORATOR.search(_decorator_name(d)) for d in node.decorator_list):
                lines = (node.end_lineno or node.lineno) - node.body[0].lineno + 1
                found[f"{path.relative_to(root).as_posix()}:{node.lineno} {node.name}"] = lines
    return found


def long_asset_bodies(root: Path, *, limit: int = MAX_ASSET_BODY_LINES) -> dict[str, int]:
    """The asset and check bodies longer than ``limit`` lines."""
    return {where: lines for where, lines in asset_bodies(root).items() if lines > limit}


def oversized_modules(
    root: Path, *, limits: dict[str, int] = MAX_MODULE_LINES, exceptions: dict[str, str] = SIZE_EXCEPTIONS
) -> dict[str, int]:
    """Module path -> lines, for every module over its half's limit and not listed as an exception."""
    found = {}
    for half, folders in (("library", LIBRARY), ("shell", SHELL)):
        for path in python_files(root, folders):
            where = path.relative_to(root).as_posix()
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limits[half] and where not in exceptions:
                found[where] = lines
    return found


def misplaced_tests(root: Path) -> dict[str, str]:
    """Test module -> the layer it uses, for a module in ``tests/lib`` or ``tests/shell`` that uses more.

    ``tests/lib`` imports no shell package and no Dagster, nor a test helper that does (anything in
    ``tests`` outside ``tests/lib``); neither folder runs a pipeline.
    """
    found = {}
    for folder, allowed in TEST_FOLDERS.items():
        for path in python_files(root / "tests", (folder,)):
            layer = layer_of_source(path.read_text(encoding="utf-8"))
            helpers = {m for _, m, _ in imports(root, path) if m.split(".")[0] == "tests"}
            if layer == "lib" and any(not m.startswith("tests.lib") for m in helpers):
                layer = "shell"
            if layer not in allowed:
                found[path.relative_to(root).as_posix()] = layer
    return found


def repeated_test_names(root: Path) -> dict[str, list[str]]:
    """Test module file name -> its paths, where two layer folders hold the same name.

    The test folders are not packages, so pytest imports a test module by its file name: a second
    module of the same name fails to collect.
    """
    seen: dict[str, list[str]] = {}
    for path in sorted((root / "tests").rglob("test_*.py")):
        seen.setdefault(path.name, []).append(path.relative_to(root).as_posix())
    return {name: paths for name, paths in seen.items() if len(paths) > 1}


# --- this repository -----------------------------------------------------------------------------


def test_imports_run_one_way() -> None:
    assert upward_imports(ROOT) == []


@pytest.mark.parametrize(("half", "folders"), [("library", LIBRARY), ("shell", SHELL)])
def test_no_import_cycle(half: str, folders: tuple[str, ...]) -> None:
    assert import_cycles(ROOT, folders) == [], f"import cycles in the {half}"


def test_asset_bodies_are_at_most_25_lines() -> None:
    assert long_asset_bodies(ROOT) == {}


def test_modules_stay_under_their_size_limit() -> None:
    assert oversized_modules(ROOT) == {}


def test_size_exceptions_are_real_and_give_a_reason() -> None:
    for where, reason in SIZE_EXCEPTIONS.items():
        assert (ROOT / where).is_file() and len(reason.split()) >= 5, where


def test_tests_sit_in_the_folder_of_their_layer() -> None:
    assert misplaced_tests(ROOT) == {}


def test_test_modules_have_unique_names() -> None:
    assert repeated_test_names(ROOT) == {}


def test_the_name_rule_catches_a_repeated_test_name(tmp_path: Path) -> None:
    for folder in ("lib", "pipeline", "shell"):
        (tmp_path / "tests" / folder).mkdir(parents=True)
    (tmp_path / "tests" / "lib" / "test_same.py").write_text("")
    (tmp_path / "tests" / "pipeline" / "test_same.py").write_text("")
    (tmp_path / "tests" / "shell" / "test_other.py").write_text("")
    assert repeated_test_names(tmp_path) == {
        "test_same.py": ["tests/lib/test_same.py", "tests/pipeline/test_same.py"]
    }


def test_the_rules_see_the_whole_project() -> None:
    assert len(list(python_files(ROOT, LIBRARY))) > 50 and len(list(python_files(ROOT, SHELL))) > 40
    assert import_graph(ROOT, LIBRARY).number_of_edges() > 50
    assert import_graph(ROOT, SHELL).number_of_edges() > 40
    assert len(asset_bodies(ROOT)) >= 5  # raw, covariates, estimation, posterior, report


# --- each rule against a planted violation, in a temporary copy ----------------------------------


def _not_python(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n == "__pycache__" or (Path(folder, n).is_file() and not n.endswith(".py"))}


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The project's Python sources (code and tests) in ``tmp_path``."""
    for folder in (*FLOORS, *TOP, "tests"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=_not_python)
    return tmp_path


def _plant(copy: Path, where: str, code: str) -> None:
    path = copy / where
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(text + "\n" + code + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("where", "code", "expected"),
    [
        ("resources/planted.py", "from checks import results", "resources/planted.py:2 imports checks"),
        (
            "assimilate/planted.py",
            "def f():\n    import resources.study",
            "assimilate/planted.py:3 imports resources.study",
        ),
        (
            "assets/planted.py",
            "from benchmarks.pipeline import row",
            "assets/planted.py:2 imports benchmarks.pipeline",
        ),
        (
            "checks/sub/planted.py",
            "from ...orchestration import jobs",
            "checks/sub/planted.py:2 imports orchestration",
        ),
        ("resources/planted.py", "import tests.pipeline_support", "resources/planted.py:2 imports tests"),
    ],
)
def test_the_layer_rule_catches_an_upward_import(copy: Path, where: str, code: str, expected: str) -> None:
    before = set(upward_imports(copy))
    _plant(copy, where, code)
    added = set(upward_imports(copy)) - before
    assert len(added) == 1 and next(iter(added)).startswith(expected), added


def test_the_layer_rule_allows_the_top_row_and_downward_imports(copy: Path) -> None:
    before = upward_imports(copy)
    _plant(copy, "scripts/planted.py", "import orchestration.jobs\nimport assets.common")
    _plant(copy, "orchestration/planted.py", "import assets.common\nfrom resources import study")
    assert upward_imports(copy) == before


def test_the_cycle_rule_catches_a_planted_cycle(copy: Path) -> None:
    before = set(import_cycles(copy, LIBRARY))
    _plant(copy, "assimilate/planted_a.py", "from assimilate import planted_b")
    _plant(copy, "assimilate/planted_b.py", "from assimilate.planted_a import x")
    added = set(import_cycles(copy, LIBRARY)) - before
    assert added == {
        "assimilate.planted_a -> assimilate.planted_b -> assimilate.planted_a (2 modules tangled)"
    }


def test_the_cycle_rule_ignores_imports_that_run_later(copy: Path) -> None:
    before = import_cycles(copy, SHELL)
    _plant(copy, "resources/planted_a.py", "import resources.planted_b")
    _plant(
        copy,
        "resources/planted_b.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import resources.planted_a\n"
        "def f():\n    from resources import planted_a",
    )
    assert import_cycles(copy, SHELL) == before


def test_the_asset_body_rule_catches_a_long_body(copy: Path) -> None:
    before = long_asset_bodies(copy)
    lines = "\n".join(f"    x{i} = {i}" for i in range(25))
    _plant(copy, "assets/planted.py", f"@dg.asset(key='x')\ndef long_asset():\n    '''Doc.'''\n{lines}")
    _plant(copy, "checks/planted.py", f"@each_batch\ndef short_check():\n{lines}")
    _plant(copy, "assets/planted_helper.py", f"def helper():\n    '''Doc.'''\n{lines}")  # not an asset
    added = {k: v for k, v in long_asset_bodies(copy).items() if k not in before}
    assert added == {"assets/planted.py:3 long_asset": 26}


def test_the_size_rule_catches_a_big_module(copy: Path) -> None:
    before = oversized_modules(copy)
    _plant(copy, "resources/planted.py", "\n".join(f"x{i} = {i}" for i in range(350)))  # 351 lines
    _plant(copy, "assimilate/planted.py", "\n".join(f"x{i} = {i}" for i in range(499)))  # 500 lines: fine
    added = {k: v for k, v in oversized_modules(copy).items() if k not in before}
    assert added == {"resources/planted.py": 351}
    assert "resources/planted.py" not in oversized_modules(copy, exceptions={"resources/planted.py": "why"})


@pytest.mark.parametrize(
    ("where", "code", "layer"),
    [
        ("tests/lib/test_planted.py", "import dagster as dg", "shell"),
        ("tests/lib/test_planted.py", "from tests.pipeline_support import ab_batch", "shell"),
        ("tests/lib/test_planted.py", "def test_x():\n    from resources.study import load_study", "shell"),
        ("tests/shell/test_planted.py", "result = job.execute_" + "in_process()", "pipeline"),
    ],
)
def test_the_test_layer_rule_catches_a_misplaced_test(copy: Path, where: str, code: str, layer: str) -> None:
    before = misplaced_tests(copy)
    _plant(copy, where, code)
    assert {k: v for k, v in misplaced_tests(copy).items() if k not in before} == {where: layer}
