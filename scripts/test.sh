#!/usr/bin/env bash
# Sets up the machine if needed, then runs lint, type checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MPLBACKEND=Agg
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy (strict, assimilate/)"
.venv/bin/mypy
echo "== pytest"
.venv/bin/python -m pytest "$@"
