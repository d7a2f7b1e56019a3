"""The kernel layer: faster CPU forwards for some of the model's layers, swapped in from outside the model.

`modeling_poolformer.py` and `layers.py` hold the model's one form of the math, with plain modules. This package
replaces the `forward` of chosen layer instances, the way transformers' `kernelize` swaps hub kernels into layers:

| layer                                                | kernel forward                                          |
|------------------------------------------------------|---------------------------------------------------------|
| `MetaFormerBlock` with one-group GroupNorms, the      | both branches through `branches.py`: the token branch   |
| pooling mixer and a GELU MLP (PoolFormer v1)          | in one statistics pass, one pooling and one lerp; the   |
|                                                      | MLP in cache-sized row chunks                           |
| `Mlp`, `SepConv` of the other blocks, outside        | 1×1 convs as GEMMs over channels-last rows, in cache-   |
| autograd (in training their plain modules run:       | sized pieces (`chunked.py`); an untouched StarReLU runs |
| the convs' backward is the faster one)               | in place (relu, square), its s and b folded into the    |
|                                                      | next conv                                               |
| `Stem`, `Downsample`                                  | the conv on a channels-last copy, so the body after it |
|                                                      | runs channels-last; in inference the conv's weight is   |
|                                                      | stored channels-last too (no reorder per call)          |

All of them compute bfloat16/float16 maps' GEMMs in float32 on CPUs without half-precision matmul units (`gemm.py`).

A kernel forward runs only where it was measured to win and is exact (`kernels_run`): CPU tensors (CUDA has not been
measured), no torch.compile / torch.export / dynamo ONNX export tracing (`torch.compiler.is_compiling()` or
`is_exporting()`: the compiler fuses the plain modules itself, and an exported program must hold plain ops, not a
Python loop specialised to the example's shape), no jit or fx tracing (the TorchScript ONNX exporter), no
autocast, and inputs of the weights' dtype. Otherwise the layer's own forward runs, with the same parameters.

In training the two PoolFormer branches are autograd Functions that store only the branch input (and the MLP's
pre-activation) and recompute norm, pooling and GELU in backward. Their hand-derived backward passes are kept over
torch's selective activation checkpointing of the plain blocks (`poolformer_hf/tasks/selective_checkpointing.py`)
because the training and memory sections of `scripts/benchmark.py` measure them faster and leaner side by side
(figures in docs/performance.md).

Switches: `set_kernels(model, None)` gives every layer its own forward back; `set_kernels(model, "cpu")` swaps the
kernels in. Models built while `poolformer_hf` is imported get `default_kernels()`: "cpu", or None when the
environment variable POOLFORMER_HF_KERNELS is 0 / off / false / none.
"""

import os
from functools import partial
from types import MethodType, SimpleNamespace

import torch
from torch import nn

from . import dispatch
from .branches import mlp_mixing, pooling_mixing
from .chunked import elementwise, mlp_by_rows, sepconv_by_samples
from .gemm import conv2d, pointwise_conv

ENV_VAR = "POOLFORMER_HF_KERNELS"
KERNEL_SETS = ("cpu",)
_OFF = ("0", "off", "false", "no", "none")


def default_kernels() -> str | None:
    """The kernel set new models get: "cpu" unless POOLFORMER_HF_KERNELS turns it off."""
    value = os.environ.get(ENV_VAR, "cpu").strip().lower()
    if value in _OFF:
        return None
    if value not in KERNEL_SETS:
        raise ValueError(f"{ENV_VAR}={value!r}: expected one of {list(KERNEL_SETS)} or one of {list(_OFF)}")
    return value


def kernels_run(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a kernel forward may run on input `x` for a layer whose weights are `weight` (the per-call conditions
    of `dispatch.environment`; the module tree is checked by each kernel forward)."""
    return dispatch.environment(x, weight) is None


def _scale_of(module: nn.Module) -> torch.Tensor | None:
    return getattr(module, "scale", None) if not isinstance(module, nn.Identity) else None


def _sample_scale(block, x: torch.Tensor) -> torch.Tensor | None:
    """Stochastic depth of one branch as one factor per sample (0 or 1/keep), drawn by the block's own `drop_path`."""
    if not block.training or isinstance(block.drop_path, nn.Identity):
        return None
    return block.drop_path(x.new_ones(x.shape[0]))


# ----------------------------------------------------------------------------------------------- kernel forwards
# Each first asks `dispatch` whether the sub-tree it computes is still the one it was written for (else the layer's
# own forward runs: the class's, so transformers' activation checkpointing and FSDP's hooks still apply).
def _poolformer_block(block, x: torch.Tensor) -> torch.Tensor:
    plan = dispatch.poolformer_block(block)
    if isinstance(plan, str) or not kernels_run(x, dispatch.base_weight(plan[0])):
        return type(block).forward(block, x)
    if block.gradient_checkpointing and block.training and torch.is_grad_enabled():
        return block._gradient_checkpointing_func(partial(_lean_poolformer_block, block, plan), x)
    return _lean_poolformer_block(block, plan, x)


def _lean_poolformer_block(block, plan, x: torch.Tensor) -> torch.Tensor:
    fc1, fc2 = plan
    y = pooling_mixing(x, block.norm1, block.token_mixer.pool_size, _scale_of(block.layer_scale1),
                       _scale_of(block.res_scale1), _sample_scale(block, x))
    return mlp_mixing(y, block.norm2, SimpleNamespace(fc1=fc1, fc2=fc2), _scale_of(block.layer_scale2),
                      _scale_of(block.res_scale2), _sample_scale(block, y))


def _inference_star_relu(act) -> tuple[float, float] | None:
    """(s, b) of a StarReLU the kernel computes itself, in place, outside autograd: relu(x)² in the expansion's own
    buffer, s and b folded into the next conv (`chunked.py`: the 1×1 conv's weight and bias, or the depthwise conv's
    weight). None where the activation runs as a module: in training, for any other activation, a touched StarReLU,
    or s = 0."""
    if torch.is_grad_enabled() or dispatch.star_relu(act, "act") is not None:
        return None
    scale = float(act.scale)
    return (scale, float(act.bias)) if scale != 0.0 else None


def _records_autograd(x: torch.Tensor, module: nn.Module) -> bool:
    """Whether autograd records this call (training): there the plain modules run the MLP and SepConv, whose convs'
    backward is faster than that of the GEMMs over channels-last rows (a ConvFormer-S18 training step 1.25× faster
    with them, CAFormer-S18 1.21×: docs/performance.md)."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in module.parameters()))


def _mlp(mlp, x: torch.Tensor) -> torch.Tensor:
    plan = dispatch.mlp(mlp)
    if isinstance(plan, str) or _records_autograd(x, mlp) or not kernels_run(x, dispatch.base_weight(plan[0])):
        return type(mlp).forward(mlp, x)
    fc1, fc2 = plan
    act = mlp._modules["act"]
    star = _inference_star_relu(act)
    if star is None and not elementwise(act):  # an activation that must see the whole map, once
        return pointwise_conv(fc2, mlp.act(pointwise_conv(fc1, x)))
    return mlp_by_rows(fc1, act, fc2, x, star)


def _sepconv(mixer, x: torch.Tensor) -> torch.Tensor:
    plan = dispatch.sepconv(mixer)
    if isinstance(plan, str) or _records_autograd(x, mixer) or not kernels_run(x, dispatch.base_weight(plan[0])):
        return type(mixer).forward(mixer, x)
    pwconv1, dwconv, pwconv2 = plan
    act = mixer._modules["act1"]
    star = _inference_star_relu(act)
    if star is None and not elementwise(act):  # an activation that must see the whole map, once
        return pointwise_conv(pwconv2, conv2d(dwconv, mixer.act1(pointwise_conv(pwconv1, x))))
    return sepconv_by_samples(pwconv1, act, dwconv, pwconv2, x, star)


def _stem(stem, x: torch.Tensor) -> torch.Tensor:
    plan = dispatch.patch_conv(stem)
    if isinstance(plan, str) or not kernels_run(x, dispatch.base_weight(plan[0])):
        return type(stem).forward(stem, x)
    _store_channels_last(plan[0])
    return stem.norm(conv2d(plan[0], x))


def _downsample(downsample, x: torch.Tensor) -> torch.Tensor:
    plan = dispatch.patch_conv(downsample)
    if isinstance(plan, str) or not kernels_run(x, dispatch.base_weight(plan[0])):
        return type(downsample).forward(downsample, x)
    _store_channels_last(plan[0])
    return conv2d(plan[0], downsample.norm(x))


PLANS = {_poolformer_block: dispatch.poolformer_block, _mlp: dispatch.mlp, _sepconv: dispatch.sepconv,
         _stem: dispatch.patch_conv, _downsample: dispatch.patch_conv}
dispatch.KERNEL_FORWARDS.update(PLANS)
describe = dispatch.describe


def _store_channels_last(conv) -> None:
    """In inference, keep the weight of a conv that runs on channels-last maps channels-last too: oneDNN otherwise
    copies and reorders it on every call (S12 at batch 1: 28.8 → 25.1 ms per image). Outside autograd only, so no
    training graph sees the swap; the tensor is made in normal mode even under inference_mode, so the model can train
    afterwards; `set_kernels(model, None)` stores it contiguous again. Only a module's own parameter (not a folded
    adapter weight, nor a view into a buffer that someone else manages, such as FSDP's all-gathered parameters)."""
    if not isinstance(conv, nn.Conv2d):
        return
    weight = conv.weight
    if torch.is_grad_enabled() or weight.is_contiguous(memory_format=torch.channels_last):
        return
    if type(weight) is not nn.Parameter or weight._base is not None:
        return
    with torch.inference_mode(False):
        weight.data = weight.data.contiguous(memory_format=torch.channels_last)


def _store_contiguous(module: nn.Module) -> None:
    from ..modeling_poolformer import Downsample, Stem

    if isinstance(module, (Stem, Downsample)) and not module.conv.weight.is_contiguous():
        with torch.no_grad():
            module.conv.weight.data = module.conv.weight.data.contiguous()


def _is_poolformer_block(block) -> bool:
    from ..layers import GroupNorm1, Pooling

    return (isinstance(block.norm1, GroupNorm1) and isinstance(block.token_mixer, Pooling)
            and isinstance(block.norm2, GroupNorm1) and type(block.mlp.act) is nn.GELU)


def _kernel_forward(module: nn.Module):
    """The kernel forward for `module`, or None when it has none."""
    from ..layers import Mlp, SepConv
    from ..modeling_poolformer import Downsample, MetaFormerBlock, Stem

    if isinstance(module, MetaFormerBlock):
        return _poolformer_block if _is_poolformer_block(module) else None
    if isinstance(module, Mlp):
        return _mlp
    if isinstance(module, SepConv):
        return _sepconv
    if isinstance(module, Stem):
        return _stem
    if isinstance(module, Downsample):
        return _downsample
    return None


def set_kernels(model: nn.Module, kernels: str | None = "cpu") -> nn.Module:
    """Swap the kernel forwards into `model`'s layers ("cpu"), or give every layer its own forward back (None).

    Returns `model`. An `Mlp` inside a block that runs the PoolFormer kernels is covered by the block's kernel.
    """
    if kernels is not None and kernels not in KERNEL_SETS:
        raise ValueError(f"kernels must be one of {list(KERNEL_SETS)} or None, got {kernels!r}")
    for module in model.modules():
        if getattr(module.__dict__.get("forward"), "__func__", None) in dispatch.KERNEL_FORWARDS:
            del module.__dict__["forward"]  # the layer's own forward again (a forward someone else set stays)
        _store_contiguous(module)  # the plain convs return the layout of their input again
    if kernels is not None:
        for module in model.modules():
            forward = _kernel_forward(module)
            if forward is not None:
                module.forward = MethodType(forward, module)
    model.__dict__["poolformer_kernels"] = kernels
    return model


def kernels_of(model: nn.Module) -> str | None:
    """The kernel set last given to `model` by `set_kernels` (None: the plain forwards)."""
    return model.__dict__.get("poolformer_kernels")


def install_on_new_models(model_class: type) -> None:
    """Make every model of `model_class` built from now on get `default_kernels()` at the end of its `post_init`."""
    original = model_class.post_init
    if getattr(original, "installs_kernels", False):
        return

    def post_init(self):
        original(self)
        kernels = default_kernels()
        if kernels is not None:
            set_kernels(self, kernels)

    post_init.installs_kernels = True
    post_init.__doc__ = original.__doc__
    model_class.post_init = post_init


__all__ = [
    "ENV_VAR", "default_kernels", "describe", "install_on_new_models", "kernels_of", "kernels_run", "set_kernels",
]
