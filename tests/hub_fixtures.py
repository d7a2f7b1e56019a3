"""Fixtures that point huggingface_hub at a loopback Hub (`poolformer_hf.testing.LoopbackHub`).

Import the fixtures into a test module: `from hub_fixtures import loopback_hub  # noqa: F401`.

huggingface_hub reads HF_ENDPOINT and HF_HOME into `huggingface_hub.constants` when it is imported,
so the fixture patches those constants for the test process as well as setting the variables for
subprocesses (`hub_subprocess_env`). No HF_HUB_DISABLE_XET is needed: the loopback Hub answers
"regular" to every preupload check, so the client never takes the Xet or LFS path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants

from poolformer_hf.testing import LoopbackHub

REPO_ROOT = Path(__file__).resolve().parents[1]


def _hub_variables(hub: LoopbackHub | None, hf_home: Path) -> dict[str, str]:
    variables = {
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    if hub is not None:
        variables.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN=hub.token)
    return variables


@pytest.fixture
def loopback_hub(tmp_path, monkeypatch):
    """A running LoopbackHub that this process's huggingface_hub talks to, with a fresh HF_HOME; stopped after."""
    hub = LoopbackHub().start()
    hf_home = tmp_path / "hf_home"
    for name, value in _hub_variables(hub, hf_home).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    url_template = hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url_template)
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    try:
        yield hub
    finally:
        hub.stop()


def hub_subprocess_env(hub: LoopbackHub | None, hf_home: Path, offline: bool = False) -> dict[str, str]:
    """Environment for a fresh Python that reaches `hub` (None: no endpoint) and cannot import poolformer_hf."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_", "PYTHON"))}
    env.update(_hub_variables(hub, hf_home))
    env["HF_MODULES_CACHE"] = str(hf_home / "modules")  # where trust_remote_code code lands
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def run_python(code: str, cwd: Path, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter; fail the test with its output if it exits non-zero."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def folder_digest(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: equal digests mean a byte-for-byte identical folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def save_tiny_model(folder: Path, num_labels: int = 3, seed: int = 0):
    """Save a tiny poolformer_hf classifier (code files and auto_map included) and an image processor to `folder`.

    The processor is transformers' built-in PoolFormer one, so it loads without remote code. Returns the model.
    """
    import torch
    from transformers import PoolFormerImageProcessor

    from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification

    torch.manual_seed(seed)
    config = PoolFormerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=num_labels)
    model = PoolFormerForImageClassification(config).eval()
    model.save_pretrained(folder)
    PoolFormerImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(folder)
    return model
