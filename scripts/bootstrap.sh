#!/usr/bin/env bash
# Create the project's virtual environment (.venv, or $VENV) if needed and install the project with the given
# extras. Sourced by scripts/main.sh and scripts/test.sh; prints the interpreter path as PY.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
EXTRAS="${1:-test}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating virtual environment in $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
echo "Installing poolformer_hf[$EXTRAS] into $VENV (first run downloads/installs torch; later runs are quick)"
"$PY" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$EXTRAS]"
export PY
