"""The main job: land the example batches, run every partition through Dagster, print the posteriors.

Everything happens on the embedded defaults: a DuckDB warehouse in data/warehouse.duckdb, Dagster's
SQLite storage in data/dagster_home (so ``dagster dev`` shows the same runs afterwards), batch files
in data/landing/<study>/, reports in data/reports/<study>/, alerts in data/alerts.jsonl.
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
        "--keep", action="store_true", help="keep data/ from an earlier run instead of starting fresh"
    )
    args = parser.parse_args()
    if not args.keep and DATA.exists():
        shutil.rmtree(DATA)
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(DATA / "dagster_home"))

    # Imported after DAGSTER_HOME is set: the instance below reads it.
    import dagster as dg

    from orchestration.definitions import STUDIES_DIR, build_definitions
    from orchestration.runner import run_landed_batches
    from orchestration.study_config import load_studies

    landed = land_example_batches(DATA / "landing")
    print(f"Landed {sum(len(v) for v in landed.values())} batch files in data/landing/")
    studies = load_studies(STUDIES_DIR)
    defs = build_definitions(studies=studies, data_dir=DATA)
    instance = dg.DagsterInstance.get()
    runs = run_landed_batches(
        defs, instance, studies, progress=lambda total: tqdm(total=total, desc="materializing", unit="run")
    )
    print(f"{len(runs)} runs finished ({sum(r.success for r in runs)} succeeded)\n")
    print_summary(DATA)


def print_summary(data: Path) -> None:
    from resources.warehouse import Warehouse

    store = Warehouse(data / "warehouse.duckdb")
    pd.set_option("display.width", 160)
    pd.set_option("display.max_columns", 20)
    for study in ("ab_checkout", "retention_outreach"):
        steps = store.read_table(study, "posterior_steps")
        print(f"=== {study}: posterior trajectory")
        columns = [
            "batch",
            "estimate",
            "std_error",
            "excluded",
            "posterior_mean",
            "posterior_sd",
            "ci_lower",
            "ci_upper",
        ]
        print(steps[columns].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        excluded = steps[steps["excluded"]]
        print(f"\nexcluded batches: {len(excluded)}")
        for row in excluded.itertuples(index=False):
            print(f"  {row.batch}: {row.exclusion_reason}")
        print(f"reports: data/reports/{study}/\n")
    alerts = data / "alerts.jsonl"
    n_alerts = len(alerts.read_text().splitlines()) if alerts.exists() else 0
    print(f"alerts written: {n_alerts} (data/alerts.jsonl)")
    print("browse the runs, checks and lineage: bash scripts/ui.sh  (http://127.0.0.1:3000)")


if __name__ == "__main__":
    main()
