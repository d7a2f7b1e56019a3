#!/usr/bin/env bash
# The README's test command: set up .venv with the test extras, then run the whole suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh" test
cd "$ROOT"
exec "$PY" -m pytest "$@"
