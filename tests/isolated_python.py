"""Run Python code in a fresh process where `poolformer_hf` cannot be imported (for trust_remote_code tests)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# `python -I` keeps the cwd and PYTHONPATH off sys.path, but the package may still be installed (pip install -e .
# in CI): a None entry in sys.modules makes every `import poolformer_hf` fail, so only code that travels with a
# saved folder or Hub repo (trust_remote_code) can run.
_GUARD = "import sys; sys.modules['poolformer_hf'] = None\n"


def run_isolated(code: str, workdir: Path, timeout: float = 300, env_overrides: dict[str, str] | None = None) -> str:
    """Run `code` with the current interpreter in `workdir`, without the package, and return its stdout.

    By default the process is offline (HF_HUB_OFFLINE=1) and keeps dynamic modules in `workdir / "modules"`;
    `env_overrides` replaces any of that (e.g. an HF_ENDPOINT pointing at the loopback Hub). A failure raises
    AssertionError with the process's output.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update({"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(Path(workdir) / "modules")})
    env.update(env_overrides or {})
    result = subprocess.run(
        [sys.executable, "-I", "-c", _GUARD + code],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, f"isolated process failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return result.stdout
