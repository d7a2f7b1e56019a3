"""Selective activation checkpointing of the plain blocks: torch's alternative to the hand-derived backward passes.

Each `MetaFormerBlock` runs its own (plain) forward under `torch.utils.checkpoint` with a policy that keeps the outputs
of GEMMs and convolutions and recomputes everything else (norms, pooling, activations, scales) in backward. It is
the yardstick the kernels' autograd Functions are measured against (`scripts/benchmark.py`, training section).
"""

from functools import partial
from types import MethodType

import torch
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

# The ops whose outputs cost a GEMM to recompute.
_SAVED = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.convolution.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
}


def _policy(ctx, op, *args, **kwargs):
    return CheckpointPolicy.MUST_SAVE if op in _SAVED else CheckpointPolicy.PREFER_RECOMPUTE


def _checkpointed_block(block, x: torch.Tensor) -> torch.Tensor:
    if not (block.training and torch.is_grad_enabled()):
        return type(block).forward(block, x)
    context = partial(create_selective_checkpoint_contexts, _policy)
    return checkpoint(type(block).forward, block, x, use_reentrant=False, context_fn=context)


def apply_selective_checkpointing(model: torch.nn.Module) -> torch.nn.Module:
    """Give every block of `model` the selectively checkpointed plain forward (the kernel layer's forwards of the
    blocks are replaced; set_kernels(model, ...) undoes it). Returns `model`."""
    from ..modeling_poolformer import MetaFormerBlock

    for module in model.modules():
        if isinstance(module, MetaFormerBlock):
            module.forward = MethodType(_checkpointed_block, module)
    return model
