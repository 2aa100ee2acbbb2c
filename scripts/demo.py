"""The main job: land the example batches, run every partition through Dagster, print the posteriors.

Everything happens on the embedded defaults: a DuckDB warehouse in data/warehouse.duckdb, Dagster's
SQLite storage in data/dagster_home (so ``dagster dev`` shows the same runs afterwards), batch files
in data/landing/<study>/, reports in data/reports/<study>/, alerts in data/alerts.jsonl
(``--data-dir`` puts the whole folder elsewhere). Every study in studies/ is summarized: its
posterior trajectory, the batches kept out with the failing check, and its report files.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from assimilate.simulate import simulate_ab_stream, simulate_outreach_batch, simulate_outreach_stream
from orchestration.instance import PROJECT_ROOT, prepare_dagster_home

DATA = PROJECT_ROOT / "data"
BAD_OUTREACH_MONTH = 7  # the 7th batch is assigned by a health rule: no overlap, kept out
REPORT_FILES = ("fan_chart.png", "trajectory.csv", "summary.txt", "memo.md", "memo.html", "causal_dag.png")
TRAJECTORY_COLUMNS = [
    "batch",
    "estimate",
    "std_error",
    "excluded",
    "posterior_mean",
    "posterior_sd",
    "ci_lower",
    "ci_upper",
]
DEMO_MARKER = ".assimilate-demo"  # only a folder the demo made is ever wiped


def land_example_batches(landing: Path) -> dict[str, list[Path]]:
    """Write the two example streams as monthly files (CSV for the A/B test, Parquet for outreach)."""
    ab = simulate_ab_stream(rng=np.random.default_rng(20250101))
    outreach = simulate_outreach_stream(rng=np.random.default_rng(20250102), n_per_batch=2000)
    written: dict[str, list[Path]] = {"ab_checkout": [], "retention_outreach": []}
    (landing / "ab_checkout").mkdir(parents=True, exist_ok=True)
    (landing / "retention_outreach").mkdir(parents=True, exist_ok=True)
    for label, batch in zip(ab.labels, ab.batches, strict=True):
        path = landing / "ab_checkout" / f"{label}.csv"
        batch.to_csv(path, index=False)
        written["ab_checkout"].append(path)
    for month, (label, batch) in enumerate(zip(outreach.labels, outreach.batches, strict=True), start=1):
        if month == BAD_OUTREACH_MONTH:
            batch = simulate_outreach_batch(2000, rng=np.random.default_rng(99), assignment="health_rule")
        path = landing / "retention_outreach" / f"{label}.parquet"
        batch.to_parquet(path, index=False)
        written["retention_outreach"].append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the data folder from an earlier run instead of starting fresh",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DATA,
        help="where landing files, warehouse, reports go (default: data/)",
    )
    args = parser.parse_args()
    data: Path = args.data_dir.resolve()
    if not args.keep:
        start_fresh(data)
    data.mkdir(parents=True, exist_ok=True)
    (data / DEMO_MARKER).touch()
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(data / "dagster_home"))

    # Imported after DAGSTER_HOME is set: the instance below reads it.
    import dagster as dg

    from orchestration.definitions import STUDIES_DIR, build_definitions
    from orchestration.runner import run_landed_batches
    from orchestration.study_config import load_studies

    landed = land_example_batches(data / "landing")
    print(f"Landed {sum(len(v) for v in landed.values())} batch files in {shown(data / 'landing')}/")
    studies = load_studies(STUDIES_DIR)
    defs = build_definitions(studies=studies, data_dir=data)
    instance = dg.DagsterInstance.get()
    runs = run_landed_batches(
        defs, instance, studies, progress=lambda total: tqdm(total=total, desc="materializing", unit="run")
    )
    print(f"{len(runs)} runs finished ({sum(r.success for r in runs)} succeeded)\n")
    print_summary(data, [study.name for study in studies])


def start_fresh(data: Path) -> None:
    """Remove an earlier demo run's folder; never a folder the demo did not make."""
    if not data.exists():
        return
    if data != DATA.resolve() and any(data.iterdir()) and not (data / DEMO_MARKER).exists():
        raise SystemExit(f"{data} is not empty and was not made by the demo: not deleting it (use --keep)")
    shutil.rmtree(data)


def shown(path: Path) -> str:
    """A path relative to the working folder when it lies under it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_summary(data: Path, study_names: list[str]) -> None:
    from resources.warehouse import Warehouse

    store = Warehouse(data / "warehouse.duckdb")
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 20)
    for study in study_names:
        steps = store.read_table(study, "posterior_steps")
        print(f"=== {study}: posterior trajectory")
        if steps.empty:
            print(f"no batch has reached the posterior yet (landing folder: {shown(data / 'landing')}/)\n")
            continue
        print(steps[TRAJECTORY_COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        excluded = steps[steps["excluded"]]
        print(f"\nexcluded batches: {len(excluded)}")
        for row in excluded.itertuples(index=False):
            print(f"  {row.batch}: {row.exclusion_reason}")
        folder = data / "reports" / study
        reports = [folder / name for name in REPORT_FILES if (folder / name).is_file()]
        print(f"reports ({len(reports)} in {shown(folder)}/):")
        for path in reports:
            print(f"  {shown(path)}")
        print()
    alerts = data / "alerts.jsonl"
    n_alerts = len(alerts.read_text().splitlines()) if alerts.exists() else 0
    print(f"alerts written: {n_alerts} ({shown(alerts)})")
    print("browse the runs, checks and lineage: bash scripts/ui.sh  (http://127.0.0.1:3000)")


if __name__ == "__main__":
    main()
