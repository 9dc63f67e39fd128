#!/usr/bin/env bash
# Set up the environment and run the offline end-to-end demo.
# Usage: scripts/demo.sh [clipbranches demo args...]   (e.g. --no-app)
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh
exec .venv/bin/clipbranches demo "$@"
