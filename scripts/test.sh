#!/usr/bin/env bash
# The test suite: starts its own vLLM server on loopback (once), Dagster instances in temporary
# DAGSTER_HOMEs and LadybugDB files in temporary folders. Needs scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Two workers (pytest-xdist), each taking whole test files, longest first (conftest.py): most
# tests keep one core busy (a night process importing, a training step), so two CPU cores run
# two files at once. The workers share one vLLM server. `-n 0` runs in this one process.
exec .venv/bin/python -m pytest -p no:cacheprovider -n "${YOYO_TEST_WORKERS:-2}" --dist loadfile "$@"
