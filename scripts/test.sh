#!/usr/bin/env bash
# Set up the development environment and run lint + the whole test suite.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's chromium for the browser tests"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium not found and cannot be installed here: browser tests will skip"
    fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
# two workers (one per core; each file runs whole on one, with its own database and
# Ray cluster): half the wall time of one; CLIPBRANCHES_TEST_WORKERS=0 runs in one
exec .venv/bin/python -m pytest -n "${CLIPBRANCHES_TEST_WORKERS:-2}" --dist loadfile "$@"
