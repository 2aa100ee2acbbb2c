"""Dagster's CLI on one batch against the in-process runner on the same file (issue 17: within 3x).

    .venv/bin/python -m benchmarks.cli            # a 1e5-row batch, 3 repeats, and where the CLI's time goes
    .venv/bin/python -m benchmarks.cli --smoke    # a 2,000-row batch, 1 repeat, no profile (seconds)

Each repeat of each path gets a fresh folder: a study file (``retention_study()``), its first
month's batch landed (the same file for both paths) and a Dagster home with the project's
dagster.yaml (SQLite):

- reference: the in-process runner, warm (imports done, the code location loaded outside the
  timing): ``run_landed_batches`` = landing-sensor tick + the run of the study's job + its alerts;
- the same with the code location load (``build_definitions`` of the studies folder) timed too;
- ``dagster asset materialize -m orchestration.definitions --select group:<study> --partition <key>``
  in a subprocess, with ``DAGSTER_HOME``, ``ASSIMILATE_DATA_DIR`` and ``ASSIMILATE_STUDIES_DIR`` set
  (README, "From the command line"): wall time of the whole command;
- ``assimilate run`` (the project's command, as ``python -m orchestration.cli run``) in a
  subprocess, the same way.

Where the CLI's time goes (full run only): the subprocess wall time of a bare Python start, of
``import dagster``, of ``import orchestration.definitions`` (the project's imports and the code
location's load of the one study) and the slowest imports under ``python -X importtime``.
Agreement: each path stored the same primary estimate as the runner (relative difference <= 1e-8)
and a posterior equal to the library's re-filter of its stored estimates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import yaml

from assimilate.simulate import simulate_outreach_batch
from benchmarks.memory import stored_primary_estimate
from benchmarks.notebook import relative_difference, retention_study_data
from benchmarks.pipeline import Setup, _print, posterior_agreement, retention_study, row
from orchestration.definitions import build_definitions
from orchestration.instance import PROJECT_ROOT, prepare_dagster_home
from orchestration.runner import run_landed_batches

TARGET_RATIO = 3.0
BATCH_LABEL, PARTITION = "2025-01", "2025-01-01"
TOLERANCE = 1e-8
BIN = Path(sys.executable).parent
LOAD = "python -c 'import orchestration.definitions' (loads the code location)"


@contextmanager
def cli_folder(source: Path) -> Iterator[Setup]:
    """A fresh project folder: studies/ with the study file, data/ with ``source`` landed, home/."""
    study = retention_study()
    with tempfile.TemporaryDirectory(prefix="assimilate-cli-") as folder:
        root = Path(folder)
        (root / "studies").mkdir()
        (root / "studies" / f"{study.name}.yaml").write_text(yaml.safe_dump(retention_study_data()))
        landing = root / "data" / "landing" / study.landing_folder
        landing.mkdir(parents=True)
        (landing / source.name).write_bytes(source.read_bytes())
        home = prepare_dagster_home(root / "home")
        yield Setup(home, root / "data", study, None)  # type: ignore[arg-type]  # no instance here


def environment(setup: Setup) -> dict[str, str]:
    """The deployment's variables, pointed at the fresh folder (docs/DEPLOY.md)."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(setup.home),
        "ASSIMILATE_DATA_DIR": str(setup.data),
        "ASSIMILATE_STUDIES_DIR": str(setup.home.parent / "studies"),
    }


def subprocess_seconds(command: list[str], env: dict[str, str], *, what: str) -> tuple[float, str]:
    """Wall time of one command run from the project's root; its stderr. Raises when it fails."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return seconds, done.stderr


def materialize_command(study_name: str) -> list[str]:
    """Dagster's CLI for one partition of the study's assets, as the README shows it."""
    return [
        str(BIN / "dagster"),
        *("asset", "materialize", "-m", "orchestration.definitions"),
        *("--select", f"group:{study_name}", "--partition", PARTITION),
    ]


def _runner(setup: Setup, *, with_load: bool) -> float:
    instance = dg.DagsterInstance.from_config(str(setup.home))
    try:
        start = time.perf_counter()
        defs = build_definitions(studies_dir=setup.home.parent / "studies", data_dir=setup.data)
        if not with_load:
            start = time.perf_counter()
        results = run_landed_batches(defs, instance, [setup.study])
        seconds = time.perf_counter() - start
    finally:
        instance.dispose()
    if [r.success for r in results] != [True]:
        raise RuntimeError("the in-process runner's run failed")
    return seconds


def _agreement(setup: Setup, estimate: float) -> str:
    gap = relative_difference(stored_primary_estimate(setup.data), estimate)
    posterior = posterior_agreement(setup)
    verdict = "yes" if gap <= TOLERANCE and posterior.startswith("yes") else "NO"
    return f"{verdict} (estimate rel. diff to the runner {gap:.1e}; posterior {posterior})"


def cli_rows(n_rows: int, *, repeats: int = 3, profile: bool = True) -> list[dict[str, Any]]:
    """The runner, Dagster's CLI and ``assimilate run`` on one ``n_rows``-row batch; ratios to the runner."""
    study = retention_study()
    bench = "one batch: CLI vs runner"
    paths: dict[str, Callable[[Setup], float]] = {
        "in-process runner: tick + run (reference)": lambda s: _runner(s, with_load=False),
        "in-process runner: code location load + tick + run": lambda s: _runner(s, with_load=True),
        "dagster asset materialize (subprocess)": lambda s: subprocess_seconds(
            materialize_command(study.name), environment(s), what="dagster asset materialize"
        )[0],
        "assimilate run (subprocess)": lambda s: subprocess_seconds(
            [str(BIN / "python"), "-m", "orchestration.cli", "run", study.name],
            environment(s),
            what="assimilate run",
        )[0],
    }
    times: dict[str, list[float]] = {label: [] for label in paths}
    agreements: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="assimilate-cli-batch-") as folder:
        source = Path(folder) / f"{BATCH_LABEL}.parquet"
        simulate_outreach_batch(n_rows, rng=np.random.default_rng(11)).to_parquet(source, index=False)
        reference = float("nan")
        with cli_folder(source) as setup:  # untimed: the first run in a process pays lazy imports
            _runner(setup, with_load=True)
        for _ in range(repeats):
            for label, path in paths.items():  # interleaved: each path gets the same share of the machine
                with cli_folder(source) as setup:
                    times[label].append(path(setup))
                    if label.endswith("(reference)"):
                        reference = stored_primary_estimate(setup.data)
                    agreements[label] = _agreement(setup, reference)
        base = statistics.median(times["in-process runner: tick + run (reference)"])
        profiled = profile_rows(source, base, n_rows) if profile else []
    rows = [
        row(bench, label, n_rows, spent, statistics.median(spent) / base, agreements[label])
        for label, spent in times.items()
    ]
    rows[0]["agreement"] = "reference"
    rows.append(
        row(bench, f"{TARGET_RATIO:g}x the runner (target)", n_rows, [TARGET_RATIO * base], TARGET_RATIO, "-")
    )
    return rows + profiled


def profile_rows(source: Path, base: float, n_rows: int) -> list[dict[str, Any]]:
    """Where a CLI command's time goes before its run: Python, dagster's import, the project's load."""
    bench = "one batch: CLI start-up"
    python = str(BIN / "python")
    steps = {
        "python -c pass": [python, "-c", "pass"],
        "python -c 'import dagster'": [python, "-c", "import dagster"],
        LOAD: [python, "-c", "import orchestration.definitions"],
    }
    rows = []
    with cli_folder(source) as setup:
        env = environment(setup)
        for label, command in steps.items():
            seconds = statistics.median(subprocess_seconds(command, env, what=label)[0] for _ in range(2))
            rows.append(row(bench, label, n_rows, [seconds], seconds / base, "-"))
        # A deployment's code location loads every study file: the shipped studies/ folder's.
        shipped = {k: v for k, v in env.items() if k != "ASSIMILATE_STUDIES_DIR"}
        count = len(list((PROJECT_ROOT / "studies").glob("*.yaml")))
        label = f"the same, every study of studies/ ({count} files)"
        seconds, _ = subprocess_seconds(steps[LOAD], shipped, what=label)
        rows.append(row(bench, label, n_rows, [seconds], seconds / base, "-"))
        _, trace = subprocess_seconds(
            [python, "-X", "importtime", "-c", "import orchestration.definitions"], env, what="importtime"
        )
    for name, seconds in slowest_imports(trace):
        rows.append(
            row(bench + " (imports)", f"import {name} (cumulative)", n_rows, [seconds], seconds / base, "-")
        )
    return rows


def slowest_imports(trace: str, *, top: int = 8) -> list[tuple[str, float]]:
    """Packages by the cumulative time of their imports, from a ``-X importtime`` trace.

    A package's time is the cumulative time of each import of it made from another package (its
    own subimports, and what they import, are inside it), summed.
    """
    entries = []
    for line in trace.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # not a trace line, or the header
        name = parts[2].rstrip()
        entries.append((len(name) - len(name.lstrip(" ")), name.strip().split(".")[0], int(parts[1]) / 1e6))
    totals: dict[str, float] = {}
    stack: list[tuple[int, str]] = []
    # The trace lists a module after its subimports, each level indented two spaces more: read
    # backwards, a module comes before its subimports and its parent is the last shallower one.
    for depth, package, seconds in reversed(entries):
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if not stack or stack[-1][1] != package:
            totals[package] = totals.get(package, 0.0) + seconds
        stack.append((depth, package))
    return sorted(totals.items(), key=lambda item: -item[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, 1 repeat, no profile")
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    rows = cli_rows(2_000, repeats=1, profile=False) if args.smoke else cli_rows(args.rows)
    _print(rows, set())


if __name__ == "__main__":
    main()
