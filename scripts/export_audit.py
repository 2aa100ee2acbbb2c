"""Export a study's full audit trail as JSON lines: every posterior update, then every drafting call.

    .venv/bin/python -m scripts.export_audit retention_outreach                 # to standard output
    .venv/bin/python -m scripts.export_audit retention_outreach --out audit.jsonl

The warehouse is the pipeline's: ``<data-dir>/warehouse.duckdb`` (``--data-dir``, default the
pipeline's data folder: ``ASSIMILATE_DATA_DIR`` or ``data/``), or the PostgreSQL database ``ASSIMILATE_WAREHOUSE_URL`` names when it is
set; ``--warehouse PATH`` reads that DuckDB file instead.

Each line is one record with a ``record`` field (``posterior_update`` or ``drafting_call``); the
JSON columns stored in the warehouse (config, input file hashes, verdicts, ...) are expanded.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from assets.audit import AUDIT_TABLE
from orchestration.instance import pipeline_data_dir
from resources.duckdb_tables import quote_identifier
from resources.warehouse import Warehouse, WarehouseError
from scripts.warehouse_option import described, script_warehouse

TABLES = {AUDIT_TABLE: "posterior_update", "drafting_log": "drafting_call"}


def audit_records(warehouse: Warehouse, study: str) -> Iterator[dict[str, Any]]:
    """Every stored audit record of ``study``, oldest first within each table."""
    quote_identifier(study, what="study")
    for table, kind in TABLES.items():
        frame = warehouse.read_table(study, table)
        if frame.empty:
            continue
        if "recorded_at" in frame:
            frame = frame.sort_values("recorded_at", kind="stable")
        for row in frame.to_dict("records"):
            yield {"record": kind, **{name: _expanded(name, value) for name, value in row.items()}}


def _expanded(name: str, value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if name.endswith("_json") and isinstance(value, str):
        return json.loads(value)
    return value.item() if hasattr(value, "item") else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("study", help="the study's name (its warehouse schema)")
    parser.add_argument(
        "--data-dir", type=Path, help="the pipeline's data folder (default: $ASSIMILATE_DATA_DIR or data/)"
    )
    parser.add_argument("--warehouse", type=Path, help="a DuckDB file (default: the pipeline's warehouse)")
    parser.add_argument("--out", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    try:
        warehouse = script_warehouse(args.data_dir or pipeline_data_dir(), args.warehouse)
        if not warehouse.exists():
            print(
                f"export_audit: warehouse {described(warehouse)} does not exist: run the pipeline first",
                file=sys.stderr,
            )
            return 2
        lines = [json.dumps(r, sort_keys=True, default=str) for r in audit_records(warehouse, args.study)]
    except (ValueError, WarehouseError) as error:
        print(f"export_audit: {error}", file=sys.stderr)
        return 2
    if not lines:
        print(f"export_audit: no audit records for study {args.study!r}", file=sys.stderr)
        return 1
    text = "\n".join(lines) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"export_audit: {len(lines)} records -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
