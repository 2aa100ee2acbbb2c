#!/usr/bin/env bash
# Starts Dagster's UI on 127.0.0.1:3000 over the pipeline's instance (<data folder>/dagster_home;
# the data folder is data/ or $ASSIMILATE_DATA_DIR, e.g. demo_data for the demo's runs):
# every study's graph, check results and metadata.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DAGSTER_HOME
DAGSTER_HOME="$(.venv/bin/python -c 'from orchestration.instance import prepare_dagster_home; print(prepare_dagster_home())')"
exec .venv/bin/dagster dev -h 127.0.0.1 -p "${PORT:-3000}" -m orchestration.definitions
