#!/usr/bin/env bash
# Create the project's virtual environment (.venv, or $VENV) if needed and install the project with the given
# extras, showing pip's progress. Sourced by scripts/main.sh and scripts/test.sh; exports the interpreter as PY.
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu installs torch and torchvision from that index first (the
# CPU-only build: pip's default Linux wheel brings about 4 GB of CUDA libraries).
# TRANSFORMERS_VERSION=5.X.Y pins that transformers release, in its own environment .venv-transformers-5.X.Y (unless
# VENV is given), so the suite can run against the oldest release pyproject.toml allows beside the newest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${TRANSFORMERS_VERSION:-}" ]; then
    VENV="${VENV:-$ROOT/.venv-transformers-$TRANSFORMERS_VERSION}"
else
    VENV="${VENV:-$ROOT/.venv}"
fi
EXTRAS="${1:-test}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating virtual environment in $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar on)
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    echo "Installing torch and torchvision from $TORCH_INDEX_URL"
    "${PIP[@]}" --index-url "$TORCH_INDEX_URL" torch torchvision
fi
echo "Installing poolformer_hf[$EXTRAS] into $VENV (the first run downloads torch, up to a few GB; later runs are quick)"
if [ -n "${TRANSFORMERS_VERSION:-}" ]; then
    "${PIP[@]}" -e "$ROOT[$EXTRAS]" "transformers==$TRANSFORMERS_VERSION"
else
    "${PIP[@]}" -e "$ROOT[$EXTRAS]"
fi
export PY
