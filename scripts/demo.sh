#!/usr/bin/env bash
# Sets up the machine if needed, then runs the demo end to end on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MPLBACKEND=Agg
.venv/bin/python -m scripts.demo "$@"
