"""Run Python code in a fresh process where `poolformer_hf` cannot be imported (for trust_remote_code tests)."""

import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]

# The package may be installed (pip install -e . in CI), so removing the worktree from sys.path is not enough:
# a None entry in sys.modules makes every `import poolformer_hf` fail, so only code that travels with a saved
# folder (trust_remote_code) can run.
_GUARD = f"""
import pathlib, sys
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != pathlib.Path({str(ROOT)!r})]
sys.modules["poolformer_hf"] = None
"""


def run_isolated(code: str, workdir: Path, timeout: float = 300) -> str:
    """Run `code` with the current interpreter in `workdir`, offline, without the worktree on the path.

    Dynamic modules go to `workdir / "modules"`. Returns stdout; raises AssertionError with stderr on failure.
    """
    env = {
        **os.environ,
        "PYTHONPATH": "",
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(workdir / "modules"),
    }
    result = subprocess.run(
        [sys.executable, "-c", _GUARD + code],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"isolated process failed:\n{result.stderr[-4000:]}"
    return result.stdout
