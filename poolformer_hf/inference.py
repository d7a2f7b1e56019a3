"""One-call inference optimization: fold norms and scales into the convolutions, go channels-last, compile.

`fuse_for_inference(model)` returns a new, frozen module; the original is untouched and stays trainable. In every
block whose norms are per-channel affine maps of a normalized input (GroupNorm with one group, channel LayerNorm):

* Token branch with the pooling mixer: pool(γ·x̂ + β) − (γ·x̂ + β) = γ·(pool(x̂) − x̂), because averaging a constant
  (count_include_pad=False) gives it back. β1 cancels and γ1·ls1 becomes one per-channel scale.
* MLP branch: fc1(γ2·x̂ + β2) = (W1·diag(γ2))·x̂ + (W1·β2 + b1), so norm2's affine folds into fc1; and
  ls2·fc2(a) = (diag(ls2)·W2)·a + ls2·b2, so LayerScale 2 folds into fc2.

The folded block computes the same function with fewer parameters and no per-channel multiplies of its own.
"""

import copy

import torch
from torch import nn

from .layers import ChannelLayerNorm, GroupNorm1, Pooling, Scale

_AFFINE_NORMS = (GroupNorm1, ChannelLayerNorm)


@torch.no_grad()
def _fold_token_branch(block) -> None:
    if not (isinstance(block.token_mixer, Pooling) and isinstance(block.norm1, _AFFINE_NORMS)):
        return
    scale = block.norm1.weight.detach().clone()
    if isinstance(block.layer_scale1, Scale):
        scale *= block.layer_scale1.scale
    block.layer_scale1 = Scale(scale.numel(), 1.0).to(device=scale.device, dtype=scale.dtype)  # the model's dtype
    block.layer_scale1.scale.copy_(scale)
    block.norm1.weight, block.norm1.bias = None, None


@torch.no_grad()
def _fold_mlp_branch(block) -> None:
    if not isinstance(block.norm2, _AFFINE_NORMS):
        return
    norm, fc1, fc2 = block.norm2, block.mlp.fc1, block.mlp.fc2
    weight1 = fc1.weight.flatten(1)
    bias1 = fc1.bias.detach().clone() if fc1.bias is not None else weight1.new_zeros(weight1.shape[0])
    if norm.bias is not None:
        bias1 += weight1 @ norm.bias
    fc1.weight.copy_((weight1 * norm.weight).view_as(fc1.weight))
    fc1.bias = nn.Parameter(bias1)
    norm.weight, norm.bias = None, None
    if isinstance(block.layer_scale2, Scale):
        layer_scale = block.layer_scale2.scale
        fc2.weight.mul_(layer_scale.view(-1, 1, 1, 1))
        if fc2.bias is not None:
            fc2.bias.mul_(layer_scale)
        block.layer_scale2 = nn.Identity()


def fuse_for_inference(model: nn.Module, dtype: torch.dtype | None = None, compile: bool = False) -> nn.Module:
    """A frozen, folded, channels-last copy of a poolformer_hf model for inference; `model` itself is untouched.

    Folds norm affines and LayerScales into the convolutions (see the module docstring), casts to `dtype` if given
    (after folding, in the original precision), puts the conv weights channels-last, and with `compile=True` wraps the
    result in `torch.compile`. The copy gives the same outputs; it cannot be trained or saved: `.train()` and
    `save_pretrained` raise, and its parameters do not require grad. Fuse again after further training.
    """
    from .modeling_poolformer import MetaFormerBlock, PoolFormerPreTrainedModel

    if not isinstance(model, PoolFormerPreTrainedModel):
        raise ValueError(f"fuse_for_inference expects a poolformer_hf model, got {type(model).__name__}")
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, MetaFormerBlock):
            _fold_token_branch(module)
            _fold_mlp_branch(module)
    if dtype is not None:
        fused = fused.to(dtype)
    fused = fused.to(memory_format=torch.channels_last).requires_grad_(False)
    for module in fused.modules():
        if isinstance(module, PoolFormerPreTrainedModel):
            module.is_fused_for_inference = True
    if compile:
        return torch.compile(fused, dynamic=False)
    return fused
