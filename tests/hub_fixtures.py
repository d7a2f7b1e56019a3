"""Fixtures that point huggingface_hub at a loopback Hub (`fixtures.LoopbackHub`).

Import the fixtures into a test module: `from hub_fixtures import loopback_hub  # noqa: F401`.

huggingface_hub reads HF_ENDPOINT and HF_HOME into `huggingface_hub.constants` when it is imported,
so the fixture patches those constants for the test process as well as setting the variables for
subprocesses (which inherit the environment). No HF_HUB_DISABLE_XET is needed: the loopback Hub answers
"regular" to every preupload check, so the client never takes the Xet or LFS path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from huggingface_hub import constants

from fixtures import LoopbackHub

REPO_ROOT = Path(__file__).resolve().parents[1]


def fresh_cache_env(hf_home: Path, offline: bool = False) -> dict[str, str]:
    """Variables giving a (sub)process its own empty Hugging Face cache under `hf_home`."""
    return {
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_MODULES_CACHE": str(hf_home / "modules"),  # where trust_remote_code code lands
        "HF_HUB_OFFLINE": "1" if offline else "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }


@pytest.fixture
def loopback_hub(tmp_path, monkeypatch):
    """A running LoopbackHub that this process's huggingface_hub talks to, with a fresh HF_HOME; stopped after."""
    hub = LoopbackHub().start()
    hf_home = tmp_path / "hf_home"
    variables = {**fresh_cache_env(hf_home), "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token}
    for name, value in variables.items():  # for subprocesses
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    url_template = hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url_template)
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # transformers keeps one HfApi, made with the endpoint of the first Hub call (any earlier test's): a fresh one here
    import transformers.utils.hub as transformers_hub

    monkeypatch.setattr(transformers_hub, "_hf_api", None, raising=False)
    try:
        yield hub
    finally:
        hub.stop()


def folder_digest(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: equal digests mean a byte-for-byte identical folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def save_tiny_model(folder: Path, num_labels: int = 3, seed: int = 0):
    """Save a tiny classifier and its image processor (code files and auto_map included); returns the model."""
    import torch
    from conftest import tiny_config

    from poolformer_hf import PoolFormerForImageClassification
    from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor

    torch.manual_seed(seed)
    model = PoolFormerForImageClassification(tiny_config(num_labels=num_labels)).eval()
    model.save_pretrained(folder)
    crop = {"height": 64, "width": 64}
    processor = PoolFormerImageProcessor(crop_pct=0.9, size={"shortest_edge": 64}, crop_size=crop)
    processor.save_pretrained(folder)
    return model
