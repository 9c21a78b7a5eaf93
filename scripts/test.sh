#!/usr/bin/env bash
# The test suite: starts its own vLLM server on loopback (once), Dagster instances in temporary
# DAGSTER_HOMEs and LadybugDB files in temporary folders. Needs scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
