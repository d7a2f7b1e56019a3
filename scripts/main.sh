#!/usr/bin/env bash
# The README's main command: set up .venv with the training extras, then train a PoolFormer on scikit-learn's
# handwritten digits (shipped in the scikit-learn wheel, no download), evaluate it, save a Hub-ready folder, reload it
# and classify held-out images. Extra arguments go to scripts/train.py (see `python scripts/train.py --help`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh" train
cd "$ROOT"
exec "$PY" scripts/train.py --output_dir outputs/poolformer-digits --overwrite_output_dir true "$@"
