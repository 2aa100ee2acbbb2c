"""The main job: land the example batches, run every partition through Dagster, print the posteriors.

Everything happens on the embedded defaults, in the demo's own folder ``demo_data/`` (``--data-dir``
puts it elsewhere): a DuckDB warehouse ``warehouse.duckdb``, Dagster's SQLite storage in
``dagster_home`` (so ``ASSIMILATE_DATA_DIR=demo_data bash scripts/ui.sh`` shows the same runs
afterwards), batch files in ``landing/<study>/``, reports in ``reports/<study>/``, alerts in
``alerts.jsonl``. Every example study in studies/ is summarized: its posterior trajectory, the
batches kept out with the failing check, and its report files.

The demo never touches the pipeline's data folder (``data/`` or ``$ASSIMILATE_DATA_DIR``), and
starting fresh removes only what an earlier demo run wrote: its folder is marked, a folder without
the mark is refused, and any file a person put there stays.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm import tqdm

from assimilate.stored_steps import PATH_COLUMNS
from orchestration.instance import PROJECT_ROOT, pipeline_data_dir, prepare_dagster_home
from scripts.example_batches import EXAMPLE_BATCHES, land_example_batches

if TYPE_CHECKING:
    from resources.warehouse import Warehouse

DEMO_DATA = PROJECT_ROOT / "demo_data"
EXAMPLE_STUDIES = PROJECT_ROOT / "studies"
EXAMPLE_STUDY_NAMES = tuple(EXAMPLE_BATCHES)
REPORT_FILES = (
    "fan_chart.png",
    "trajectory.csv",
    "summary.txt",
    "memo.md",
    "memo.html",
    "causal_dag.png",
    "sensitivity_contour.png",
    "forest_plot.png",
    "event_study.png",
)
DEMO_MARKER = ".assimilate-demo"  # only a folder the demo made is ever cleaned
# What a demo run writes inside its folder; starting fresh removes these and nothing else.
DEMO_OUTPUTS = (
    *(f"landing/{name}" for name in EXAMPLE_STUDY_NAMES),
    *(f"reports/{name}" for name in EXAMPLE_STUDY_NAMES),
    "warehouse.duckdb",
    "warehouse.duckdb.wal",
    "dagster_home",
    "alerts.jsonl",
    "alerts.deliveries.jsonl",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo folder's earlier run instead of starting fresh",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEMO_DATA,
        help="the demo's own folder for landing files, warehouse, reports (default: demo_data/)",
    )
    args = parser.parse_args()
    data: Path = args.data_dir.resolve()
    claim_demo_folder(data, fresh=not args.keep)
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(data / "dagster_home"))

    # Imported after DAGSTER_HOME is set: the instance below reads it.
    import dagster as dg

    from orchestration.definitions import build_definitions
    from orchestration.runner import run_landed_batches
    from orchestration.study_folder import load_studies

    landed = land_example_batches(data / "landing")
    print(f"Landed {sum(len(v) for v in landed.values())} batch files in {shown(data / 'landing')}/")
    studies = [s for s in load_studies(EXAMPLE_STUDIES) if s.name in EXAMPLE_STUDY_NAMES]
    defs = build_definitions(studies=studies, data_dir=data)
    instance = dg.DagsterInstance.get()
    # Each study's history landed at once: a backfill runs it in one run over its batches.
    runs = run_landed_batches(
        defs,
        instance,
        studies,
        progress=lambda total: tqdm(total=total, desc="materializing", unit="run"),
        backfill=True,
    )
    print(f"{len(runs)} runs finished ({sum(r.success for r in runs)} succeeded)\n")
    print_summary(data, [study.name for study in studies])


def claim_demo_folder(data: Path, *, fresh: bool) -> None:
    """Make ``data`` the demo's folder; with ``fresh``, remove what an earlier demo run wrote there.

    Refused: the pipeline's data folder (a team's landing files and history live there), a folder
    inside it or holding it, and a non-empty folder the demo did not make.
    """
    pipeline = pipeline_data_dir()
    if data.is_relative_to(pipeline) or pipeline.is_relative_to(data):
        raise SystemExit(
            f"{data} overlaps the pipeline's data folder ({pipeline}): the demo never runs there; "
            "give it a folder of its own with --data-dir"
        )
    if data.exists() and any(data.iterdir()) and not (data / DEMO_MARKER).exists():
        raise SystemExit(f"{data} is not empty and was not made by the demo: not using it")
    if fresh:
        for name in DEMO_OUTPUTS:
            path = data / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    data.mkdir(parents=True, exist_ok=True)
    (data / DEMO_MARKER).touch()


def shown(path: Path) -> str:
    """A path relative to the working folder when it lies under it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_summary(data: Path, study_names: list[str]) -> None:
    from resources.warehouse import WarehouseResource

    store = WarehouseResource.for_data_dir(
        data
    ).open()  # the pipeline's: DuckDB, or PostgreSQL when configured
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 20)
    for study in study_names:
        steps = store.read_table(study, "posterior_steps")
        print(f"=== {study}: posterior trajectory")
        if steps.empty:
            print(f"no batch has reached the posterior yet (landing folder: {shown(data / 'landing')}/)\n")
            continue
        print(steps[PATH_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        excluded = steps[steps["excluded"]]
        print(f"\nexcluded batches: {len(excluded)}")
        for row in excluded.itertuples(index=False):
            print(f"  {row.batch}: {row.exclusion_reason}")
        print(returning_units_line(store, study))
        last = steps.iloc[-1]
        print(
            f"always-valid 95% interval after {last['batch']}: "
            f"[{last['always_valid_lower']:.4f}, {last['always_valid_upper']:.4f}] (what the memo decides on)"
        )
        folder = data / "reports" / study
        reports = [folder / name for name in REPORT_FILES if (folder / name).is_file()]
        print(f"reports ({len(reports)} in {shown(folder)}/):")
        for path in reports:
            print(f"  {shown(path)}")
        print()
    alerts = data / "alerts.jsonl"
    n_alerts = len(alerts.read_text().splitlines()) if alerts.exists() else 0
    print(f"alerts written: {n_alerts} ({shown(alerts)})")
    print(
        f"browse the runs, checks and lineage: ASSIMILATE_DATA_DIR={shown(data)} bash scripts/ui.sh"
        "  (http://127.0.0.1:3000)"
    )


def returning_units_line(store: Warehouse, study: str) -> str:
    """The share of each batch's units seen in an earlier batch, from the stored influence values."""
    from assimilate.admission import unit_batches
    from assimilate.filters import shared_unit_covariance
    from checks.returning_units import INFLUENCE_TABLE

    influence = store.read_table(study, INFLUENCE_TABLE)
    labels = sorted(set(influence["partition_key"])) if not influence.empty else []
    if influence.empty and not store.read_table(study, "batch_effects").empty:
        return "returning units: none (no per-unit values: an N-of-1 study has one subject)"
    if len(labels) < 2:
        return "returning units: fewer than two estimated batches"
    shared = shared_unit_covariance(unit_batches(influence, labels), labels=labels)
    share, correlation = shared.returning_share[1:], shared.correlation_with_previous[1:]
    fused = not store.read_table(study, "posterior_error_correlation").empty
    how = (
        "the posterior fuses the batches with this correlation"
        if fused
        else "the posterior treats the batches as independent"
    )
    return (
        f"returning units: {np.mean(share):.0%} of each batch's units were seen in an earlier batch "
        f"(batches after the first); correlation with the previous batch {np.mean(correlation):.2f} on average; {how}"
    )


if __name__ == "__main__":
    main()
