"""Shared fixtures: tiny configs and O(1) random weights.

Parity tests use `randomize_` rather than the init: with the paper's 1e-5 layer scale every block is nearly the
identity, so a wrong mixer or a misplaced scale would hide under it.
"""

import math
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import tempfile  # noqa: E402

# Shard indexes that the streaming tests make go to a folder of this run, not the user's cache (subprocesses too).
os.environ.setdefault("POOLFORMER_HF_SHARD_INDEX_CACHE", tempfile.mkdtemp(prefix="poolformer-shard-index-"))

import poolformer_hf  # noqa: E402  (registers the Auto classes)
from poolformer_hf import PoolFormerConfig  # noqa: E402


def tiny_config(**overrides) -> PoolFormerConfig:
    values = {"depths": [1, 1, 2, 1], "hidden_sizes": [8, 16, 32, 32], "num_labels": 3}
    return PoolFormerConfig(**{**values, **overrides})


@torch.no_grad()
def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every parameter with O(1)-scale random values that keep activations O(1) through deep stacks.

    Matrices get N(0, 1/fan_in); per-channel vectors (norm weights, layer/res scales) get U(0.5, 1.5); biases and
    other vectors N(0, 0.2²). Frozen mixing matrices stay as they are.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim >= 2:
            fan_in = param[0].numel()
            values = torch.randn(param.shape, generator=generator) / math.sqrt(fan_in)
        elif name.endswith(("scale", "weight")) and "bias" not in name:
            values = torch.rand(param.shape, generator=generator) + 0.5
        else:
            values = torch.randn(param.shape, generator=generator) * 0.2
        param.copy_(values)
    return model


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture
def config():
    return tiny_config()

