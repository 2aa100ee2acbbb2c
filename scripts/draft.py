"""Ask a language model to draft an estimand card, a causal graph or a memo for a study.

    .venv/bin/python -m scripts.draft estimand_card --study retention_outreach --brief "..."
    .venv/bin/python -m scripts.draft causal_graph --study retention_outreach --brief "..." --out g.yaml
    .venv/bin/python -m scripts.draft memo --study retention_outreach --brief "..."

The endpoint is any OpenAI-compatible chat server: --base-url and --model, or the environment
variables ASSIMILATE_LLM_BASE_URL and ASSIMILATE_LLM_MODEL; the API key, if the server needs one,
is read from the environment variable named by --api-key-env (default ASSIMILATE_LLM_API_KEY).
A valid draft is written to data/drafts/<study>/<kind>-<UTC time>.yaml (.md for a memo). The
pipeline never reads it: copy what you accept into the study's YAML. Every call is audited in
data/audit/<study>/drafting.jsonl and the warehouse table <study>.drafting_log. The warehouse is the
pipeline's: <data-dir>/warehouse.duckdb, or the PostgreSQL database ASSIMILATE_WAREHOUSE_URL names
when it is set; --warehouse PATH writes to that DuckDB file instead.

Exit codes: 0 a draft was written; 1 the model's answer was rejected (or the call failed);
2 no language model configured, or a bad argument or study.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from orchestration.instance import PROJECT_ROOT, pipeline_data_dir
from resources.drafting import DEFAULT_API_KEY_ENV, DRAFT_KINDS, LlmNotConfiguredError, LlmSettings, draft
from resources.drafting_log import DraftingLog
from resources.drafting_schema import DraftError
from resources.study import STUDY_NAME_PATTERN, StudyConfigError, load_study
from scripts.warehouse_option import script_warehouse

STUDIES_DIR = PROJECT_ROOT / "studies"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.draft",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=DRAFT_KINDS)
    parser.add_argument("--study", required=True, help="the study's name (studies/<name>.yaml)")
    parser.add_argument("--brief", required=True, help="what the draft should say, in a few sentences")
    parser.add_argument("--out", type=Path, help="write the draft here (never overwritten)")
    parser.add_argument("--base-url", help="the endpoint, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--model", help="the model name the endpoint serves")
    parser.add_argument("--api-key-env", default=DEFAULT_API_KEY_ENV, help="NAME of the API-key variable")
    parser.add_argument("--timeout", type=float, help="seconds to wait for the answer (default 60)")
    parser.add_argument("--studies-dir", type=Path, default=STUDIES_DIR)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="holds drafts/, audit/ (default: the pipeline's, $ASSIMILATE_DATA_DIR or data/)",
    )
    parser.add_argument(
        "--warehouse", type=Path, help="a DuckDB file (default: the pipeline's warehouse for --data-dir)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.data_dir = args.data_dir or pipeline_data_dir()
    try:
        settings = LlmSettings.resolve(
            base_url=args.base_url, model=args.model, api_key_env=args.api_key_env, timeout_s=args.timeout
        )
    except LlmNotConfiguredError as error:
        print(f"draft: {error}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"draft: language model settings: {error}", file=sys.stderr)
        return 2
    if re.fullmatch(STUDY_NAME_PATTERN, args.study) is None:
        print(f"draft: --study must be a study name matching ^{STUDY_NAME_PATTERN}$", file=sys.stderr)
        return 2
    if args.out is not None and args.out.resolve().is_relative_to(args.studies_dir.resolve()):
        # A file there would be loaded as a study: a draft must never become one by accident.
        print(f"draft: --out must not be inside the studies folder {args.studies_dir}", file=sys.stderr)
        return 2
    try:
        study = load_study(args.studies_dir / f"{args.study}.yaml")
    except StudyConfigError as error:
        print(f"draft: {error}", file=sys.stderr)
        return 2
    try:
        warehouse = script_warehouse(args.data_dir, args.warehouse)
    except ValueError as error:
        print(f"draft: {error}", file=sys.stderr)
        return 2
    log = DraftingLog(args.data_dir / "audit", warehouse)
    try:
        path = draft(
            args.kind,
            study=study,
            brief=args.brief,
            settings=settings,
            drafts_dir=args.data_dir / "drafts",
            log=log,
            out=args.out,
        )
    except DraftError as error:
        print(f"draft: rejected ({error.outcome}): {error}", file=sys.stderr)
        return 1
    except (ValueError, FileExistsError) as error:
        print(f"draft: {error}", file=sys.stderr)
        return 2
    print(f"draft: {args.kind} draft written to {path} (the pipeline never reads it)", file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
