"""``assimilate``: the common jobs in one command, where the Dagster CLI is clumsy for them.

    assimilate studies                 every study file: loads or why not, cadence, design, batches
    assimilate run [STUDY ...]         run what landed (a history as one run per range), with a progress bar
    assimilate posterior STUDY         the stored posterior path, its exclusions and the always-valid interval

The folders are the pipeline's (``ASSIMILATE_STUDIES_DIR``, ``ASSIMILATE_DATA_DIR``, else ``studies/``
and ``data/``); ``run`` uses the Dagster instance under ``DAGSTER_HOME`` (default: the data folder's
``dagster_home``), so its runs show in the UI (scripts/ui.sh) like the daemon's. ``python -m
orchestration.cli`` is the same command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from assimilate.stored_steps import PATH_COLUMNS
from orchestration.instance import pipeline_data_dir, pipeline_studies_dir, prepare_dagster_home
from orchestration.study_folder import scan_study_folder
from resources.landing_files import partition_key_for_file
from resources.warehouse import WarehouseResource


def studies_table(studies_dir: Path, data_dir: Path) -> pd.DataFrame:
    """One row per study file: whether it loads (else its first error), and what it runs."""
    folder = scan_study_folder(studies_dir)
    warehouse = WarehouseResource.for_data_dir(data_dir).open()  # or ASSIMILATE_WAREHOUSE_URL's database
    store = warehouse if warehouse.exists() else None
    rows = []
    for study in folder.studies:
        landing = data_dir / "landing" / study.landing_folder
        names = [p.name for p in landing.iterdir() if p.is_file()] if landing.is_dir() else []
        landed = [n for n in names if partition_key_for_file(n, study.cadence) is not None]
        steps = store.read_table(study.name, "posterior_steps") if store is not None else pd.DataFrame()
        rows.append(
            {
                "study": study.name,
                "status": "loads",
                "cadence": study.cadence,
                "design": study.design.kind,
                "estimand": study.estimand,
                "primary_estimator": study.primary_estimator,
                "landed_batches": len(landed),
                "in_posterior": int((~steps["excluded"]).sum()) if "excluded" in steps else 0,
            }
        )
    for broken in folder.broken:
        lines = [line.replace(str(broken.path), broken.path.name) for line in broken.error.splitlines()]
        more = f" (and {len(lines) - 1} more problems)" if len(lines) > 1 else ""
        rows.append({"study": broken.path.name, "status": f"does not load: {lines[0]}{more}"})
    return pd.DataFrame(rows)


def posterior_text(data_dir: Path, study: str) -> str:
    """The stored posterior of ``study`` as text: its path, exclusions and the last always-valid interval."""
    warehouse = WarehouseResource.for_data_dir(data_dir).open()
    if not warehouse.exists():
        return f"no warehouse yet ({warehouse!r}): nothing has run yet"
    steps = warehouse.read_table(study, "posterior_steps")
    if steps.empty:
        return f"{study}: no batch has reached the posterior yet"
    shown = steps[
        [c for c in (*PATH_COLUMNS, "always_valid_lower", "always_valid_upper") if c in steps.columns]
    ]
    lines = [
        f"{study}: posterior after each batch",
        shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
    ]
    excluded = steps[steps["excluded"]] if "excluded" in steps else steps.iloc[0:0]
    lines.append(f"excluded batches: {len(excluded)}")
    lines += [f"  {row.batch}: {row.exclusion_reason}" for row in excluded.itertuples(index=False)]
    last = steps.iloc[-1]
    lines.append(
        f"always-valid 95% interval after {last['batch']}: "
        f"[{last['always_valid_lower']:.4g}, {last['always_valid_upper']:.4g}] (what the memo decides on)"
    )
    return "\n".join(lines)


def run_landed(data_dir: Path, studies_dir: Path, names: Sequence[str], *, backfill: bool) -> int:
    """Run what landed for the named studies (all when none), on the instance under DAGSTER_HOME."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(data_dir / "dagster_home"))
    import dagster as dg
    from tqdm import tqdm

    from orchestration.definitions import build_definitions
    from orchestration.runner import run_landed_batches

    folder = scan_study_folder(studies_dir)
    unknown = sorted(set(names) - {s.name for s in folder.studies})
    if unknown:
        print(f"unknown or broken studies: {', '.join(unknown)} (see: assimilate studies)", file=sys.stderr)
        return 2
    studies = [s for s in folder.studies if not names or s.name in names]
    defs = build_definitions(studies=studies, data_dir=data_dir)
    runs = run_landed_batches(
        defs,
        dg.DagsterInstance.get(),
        studies,
        progress=lambda total: tqdm(total=total, desc="materializing", unit="run", file=sys.stderr),
        backfill=backfill,
    )
    failed = sum(not r.success for r in runs)
    print(f"runs finished: {len(runs)}, failed: {failed}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="assimilate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir", type=Path, help="the pipeline's data folder (default: ASSIMILATE_DATA_DIR or data/)"
    )
    parser.add_argument(
        "--studies-dir", type=Path, help="the studies folder (default: ASSIMILATE_STUDIES_DIR or studies/)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("studies", help="every study file: loads or why not, and what it runs")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    running = commands.add_parser("run", help="run what landed, with a progress bar")
    running.add_argument("study", nargs="*", help="study names (default: every study that loads)")
    running.add_argument(
        "--run-per-batch", action="store_true", help="one run per batch instead of one per range"
    )
    showing = commands.add_parser("posterior", help="the stored posterior of one study")
    showing.add_argument("study")
    args = parser.parse_args(argv)
    data_dir = (args.data_dir or pipeline_data_dir()).resolve()
    studies_dir = (args.studies_dir or pipeline_studies_dir()).resolve()
    if args.command == "studies":
        table = studies_table(studies_dir, data_dir)
        if args.json:
            for record in table.to_dict(orient="records"):
                print(json.dumps({k: v for k, v in record.items() if v == v}, default=str))
        else:
            print(
                table.fillna("").to_string(index=False)
                if not table.empty
                else f"no study files in {studies_dir}"
            )
        return 0
    if args.command == "run":
        return run_landed(data_dir, studies_dir, args.study, backfill=not args.run_per_batch)
    print(posterior_text(data_dir, args.study))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
