#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine: system packages, a virtualenv
# in .venv and the pinned Python dependencies. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# postgresql: server binaries for tests/pipeline/test_postgres_instance.py, which starts its own server.
SYSTEM_PACKAGES=(graphviz chromium postgresql)
missing=()
for package in "${SYSTEM_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.assimilate-install-stamp
wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "setup: installing Python dependencies (pinned by constraints.txt)"
  .venv/bin/python -m pip install -q --upgrade "pip>=24" >/dev/null
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[pipeline,dev]"
  echo "$wanted" > "$stamp"
fi
