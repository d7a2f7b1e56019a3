"""Where a kernel forward runs: call-time checks that the sub-tree it replaces is exactly what it was written for.

A kernel forward computes a layer's sub-modules' math itself instead of calling them, so anything that acts through
those sub-modules would be lost: a hook, a replaced module, a parametrization, a pruning mask, a quantized or sharded
weight, an adapter. Each kernel forward therefore asks this module, at every call, whether the tree under it is still
the one it was written for, and runs the layer's own forward (the plain modules, with the same parameters) when it is
not. The checks read a few attributes per sub-module (their cost per forward: `scripts/benchmark.py --sections
composition`):

* every bypassed sub-module is of the exact class the kernel computes (a parametrized conv is a `ParametrizedConv2d`,
  an FSDP- or PEFT-wrapped module another class), has no forward / pre-forward / backward hooks and no forward of
  its own set on the instance; no global module hooks are registered;
* every weight the kernel reads is a plain tensor or `nn.Parameter` (not a tensor subclass: quantized, DTensor);
* the activation is the exact GELU, the norms one-group GroupNorms, the convs the geometry the GEMM assumes;
* and per call: a CPU input of the weights' dtype, no autocast, no torch.compile / torch.export / jit / fx tracing.

One change is honored rather than stepped around: PEFT's LoRA on a conv. `W + Σ s·B·A` is still a conv, so the kernel
runs with the folded weight (`FoldedConv`), and autograd carries the gradient of that sum to A and B. Where the fold
would differ from PEFT's forward (DoRA and other variants, LoRA dropout while training, a LoRA bias, adapter weights in
another dtype than the base, nested adapters) the plain modules run, and PEFT computes it. Other PEFT methods (LoHa,
LoKr, IA3) wrap the conv in their own classes and so run the plain modules.

`describe(model)` lists what runs where, and why the plain path was chosen.
"""

import sys

import torch
from torch import nn
from torch.nn.modules import module as _module_globals

from ..layers import DropPath, GroupNorm1, Mlp, Pooling, Scale

_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)
KERNEL_FORWARDS: dict = {}  # kernel forward function → the plan that decides it (registered by kernels/__init__.py)


class FoldedConv:
    """A conv's geometry with another weight: what a LoRA-wrapped conv computes, as one conv.

    For a 1×1 conv the adapters stay factors, `weight = base_weight + up @ down` (`up` the B's side by side, `down`
    the A's stacked, each scaled by its s): the PoolFormer block kernel multiplies by the factors (and derives the
    factors' gradients) without forming the sum where that is cheaper; `weight` forms it once, on first use."""

    __slots__ = ("base_weight", "bias", "up", "down", "_weight", "_conv_forward")

    def __init__(self, conv: nn.Conv2d, bias: torch.Tensor | None, weight: torch.Tensor | None = None,
                 up: torch.Tensor | None = None, down: torch.Tensor | None = None):
        self.base_weight, self.bias, self._conv_forward = conv.weight, bias, conv._conv_forward
        self.up, self.down, self._weight = up, down, weight

    @property
    def weight(self) -> torch.Tensor:
        if self._weight is None:
            base = self.base_weight
            self._weight = torch.addmm(base.view(base.shape[0], -1), self.up, self.down).view_as(base)
        return self._weight


def base_weight(conv) -> torch.Tensor:
    """The weight a conv (or a `FoldedConv`) starts from: its dtype is the layer's."""
    return conv.base_weight if type(conv) is FoldedConv else conv.weight


# ------------------------------------------------------------------------------------------------- per call
def _global_hooks() -> bool:
    return bool(_module_globals._global_forward_hooks or _module_globals._global_forward_pre_hooks
                or _module_globals._global_backward_hooks or _module_globals._global_backward_pre_hooks)


def environment(x: torch.Tensor, weight: torch.Tensor) -> str | None:
    """Why no kernel runs on input `x` for a layer whose weights are `weight`, or None when one may."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return "torch.compile / torch.export is tracing (the compiler fuses the plain modules itself)"
    if torch.jit.is_tracing() or torch.fx._symbolic_trace.is_fx_symbolic_tracing():
        return "jit / fx tracing"
    if x.numel() == 0:
        return "the input is empty (a batch of 0: the plain modules give the empty outputs and gradients)"
    if x.device.type != "cpu":
        return f"the input is on {x.device.type} (the kernels are measured on CPU only)"
    if x.dtype != weight.dtype:
        return f"the input is {x.dtype}, the weights {weight.dtype}"
    if torch.is_autocast_enabled("cpu"):
        return "autocast is on"
    if _global_hooks():
        return "global module hooks are registered (torch.nn.modules.module.register_module_*_hook)"
    return None


# ------------------------------------------------------------------------------------------------- the tree
def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks)


def _class_name(module: nn.Module) -> str:
    cls = type(module)
    if cls.__module__.startswith(("torch.nn.", "poolformer_hf.")):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"  # e.g. PEFT's LoHa, LoKr and IA3 layers are all called "Conv2d"


def untouched(module: nn.Module, name: str, cls: type) -> str | None:
    """Why `module` is not a plain `cls` that a kernel may compute itself, or None."""
    if type(module) is not cls:
        return f"{name} is a {_class_name(module)}, not the {cls.__name__} the kernel computes"
    if _hooked(module):
        return f"{name} has hooks"
    forward = module.__dict__.get("forward")
    if forward is not None and getattr(forward, "__func__", None) not in KERNEL_FORWARDS:
        return f"{name} has a forward of its own set on the instance"
    return None


def _plain_tensors(module: nn.Module, name: str, *attributes: str) -> str | None:
    parameters, instance = module._parameters, module.__dict__
    for attribute in attributes:
        # a registered parameter without nn.Module.__getattr__'s slow path (an instance attribute would shadow it)
        tensor = parameters[attribute] if attribute in parameters and attribute not in instance else getattr(
            module, attribute)
        if tensor is not None and type(tensor) not in _PLAIN_TENSORS:
            return f"{name}.{attribute} is a {type(tensor).__name__} (not a plain tensor)"
    return None


def norm(module: nn.Module, name: str) -> str | None:
    reason = untouched(module, name, GroupNorm1) or _plain_tensors(module, name, "weight", "bias")
    if reason is None and module.num_groups != 1:
        return f"{name} has {module.num_groups} groups, not 1"
    return reason


def scale(module: nn.Module, name: str) -> str | None:
    if type(module) is nn.Identity:
        return untouched(module, name, nn.Identity)
    return untouched(module, name, Scale) or _plain_tensors(module, name, "scale")


def drop_path(module: nn.Module, name: str) -> str | None:
    return untouched(module, name, nn.Identity if type(module) is nn.Identity else DropPath)


def gelu(module: nn.Module, name: str) -> str | None:
    reason = untouched(module, name, nn.GELU)
    if reason is None and module.approximate != "none":
        return f"{name} is GELU(approximate={module.approximate!r}), the kernel computes the exact GELU"
    return reason


def star_relu(module: nn.Module, name: str) -> str | None:
    """Why the kernel may not compute `module` itself as StarReLU (s · relu(x)² + b, scalar s ≠ 0 and b), or None."""
    from ..layers import StarReLU

    reason = untouched(module, name, StarReLU) or _plain_tensors(module, name, "scale", "bias")
    if reason is None and (module.scale.numel() != 1 or module.bias.numel() != 1):
        return f"{name}'s scale and bias are not scalars"
    return reason


def _not_pointwise(conv: nn.Conv2d, name: str) -> str | None:
    if (conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.padding != (0, 0) or conv.dilation != (1, 1)
            or conv.groups != 1):
        return f"{name} is not a 1×1 conv of stride 1 (the GEMM computes one)"
    return None


def conv(module: nn.Module, name: str, pointwise: bool = False):
    """The conv a kernel computes in place of `module` (the module itself, or a `FoldedConv` of a LoRA-wrapped one),
    or a string: why it cannot."""
    if type(module) is nn.Conv2d:
        reason = (untouched(module, name, nn.Conv2d) or _plain_tensors(module, name, "weight", "bias")
                  or (_not_pointwise(module, name) if pointwise else None))
        return reason or module
    lora_conv2d = _peft_lora_conv2d()
    if lora_conv2d is not None and type(module) is lora_conv2d:
        return _lora(module, name, pointwise)
    return f"{name} is a {_class_name(module)}, not the Conv2d the kernel computes"


def _peft_lora_conv2d() -> type | None:
    layer = sys.modules.get("peft.tuners.lora.layer")  # only where PEFT is in use: never imported from here
    return getattr(layer, "Conv2d", None)


def _lora(layer: nn.Module, name: str, pointwise: bool):
    """A PEFT LoRA conv as one conv: W + Σ over the active adapters of PEFT's own delta s·B·A, or why not."""
    if _hooked(layer) or "forward" in layer.__dict__:
        return f"{name} (a LoRA layer) has hooks or a forward of its own"
    base = conv(layer.base_layer, f"{name}.base_layer", pointwise)
    if isinstance(base, str) or type(base) is not nn.Conv2d:
        return base if isinstance(base, str) else f"{name}.base_layer is itself adapted"
    if layer.disable_adapters:
        return f"{name}: adapters disabled while merged (PEFT unmerges them in its forward)" if layer.merged else base
    if layer.merged:
        return base
    if base.groups != 1:
        return f"{name}: LoRA on a grouped conv"
    weight = base.weight
    ups, downs, deltas = [], [], []
    for adapter in layer.active_adapters:
        if adapter not in layer.lora_A:
            continue
        where = f"{name} adapter {adapter!r}"
        variants = getattr(layer, "lora_variant", {})  # DoRA and the others (older PEFT: the use_dora flags)
        if adapter in variants or getattr(layer, "use_dora", {}).get(adapter, False):
            return f"{where} is a LoRA variant (DoRA or another), PEFT computes it"
        down, up, dropout = layer.lora_A[adapter], layer.lora_B[adapter], layer.lora_dropout[adapter]
        dropout_class = nn.Identity if type(dropout) is nn.Identity else nn.Dropout
        reason = (untouched(down, f"{where} lora_A", nn.Conv2d) or untouched(up, f"{where} lora_B", nn.Conv2d)
                  or _plain_tensors(down, f"{where} lora_A", "weight")
                  or _plain_tensors(up, f"{where} lora_B", "weight")
                  or untouched(dropout, f"{where} dropout", dropout_class))
        if reason:
            return reason
        if type(dropout) is nn.Dropout and dropout.training and dropout.p > 0:
            return f"{where}: LoRA dropout in training (it drops the adapter's input, not a weight)"
        if up.bias is not None:
            return f"{where} has a LoRA bias"
        if down.weight.dtype != weight.dtype or up.weight.dtype != weight.dtype:
            return f"{where} is {down.weight.dtype}, the base weight {weight.dtype} (PEFT adds it in its own dtype)"
        if pointwise:  # PEFT's delta of a 1×1 conv, s·B·A, kept as its two factors
            rank = down.weight.shape[0]
            ups.append(up.weight.view(-1, rank))
            downs.append(down.weight.view(rank, -1) * layer.scaling[adapter])
        else:
            deltas.append(layer.get_delta_weight(adapter))
    if ups:
        up, down = (ups[0], downs[0]) if len(ups) == 1 else (torch.cat(ups, 1), torch.cat(downs, 0))
        return FoldedConv(base, base.bias, up=up, down=down)
    if deltas:
        return FoldedConv(base, base.bias, weight=sum(deltas, weight))
    return base


def convs(*named):
    """`conv(module, name, pointwise)` of each (module, name, pointwise), or the first reason."""
    resolved = []
    for module, name, pointwise in named:
        result = conv(module, name, pointwise)
        if isinstance(result, str):
            return result
        resolved.append(result)
    return resolved


# ------------------------------------------------------------------------------------------------- per kernel
def poolformer_block(block: nn.Module):
    """(fc1, fc2) for the PoolFormer block kernel, or why the block's own forward runs."""
    parts = block._modules
    mlp = parts["mlp"]
    reason = (norm(parts["norm1"], "norm1") or untouched(parts["token_mixer"], "token_mixer", Pooling)
              or scale(parts["layer_scale1"], "layer_scale1") or scale(parts["res_scale1"], "res_scale1")
              or norm(parts["norm2"], "norm2") or untouched(mlp, "mlp", Mlp) or gelu(mlp._modules["act"], "mlp.act")
              or scale(parts["layer_scale2"], "layer_scale2") or scale(parts["res_scale2"], "res_scale2")
              or drop_path(parts["drop_path"], "drop_path"))
    if reason:
        return reason
    return convs((mlp._modules["fc1"], "mlp.fc1", True), (mlp._modules["fc2"], "mlp.fc2", True))


def mlp(module: nn.Module):
    """(fc1, fc2) for the Mlp kernel (its activation runs as a module), or why not."""
    parts = module._modules
    return convs((parts["fc1"], "fc1", True), (parts["fc2"], "fc2", True))


def sepconv(module: nn.Module):
    """(pwconv1, dwconv, pwconv2) for the SepConv kernel (its activation runs as a module), or why not."""
    parts = module._modules
    return convs((parts["pwconv1"], "pwconv1", True), (parts["dwconv"], "dwconv", False),
                 (parts["pwconv2"], "pwconv2", True))


def patch_conv(module: nn.Module):
    """[conv] for the Stem / Downsample kernel (its norm runs as a module), or why not."""
    return convs((module._modules["conv"], "conv", False))


def describe(model: nn.Module) -> dict[str, str]:
    """What runs where under the default call: for each layer with a kernel forward, "kernel", or "plain: <why>".

    Reads the module tree as it stands; the per-call conditions (the input's device and dtype, autocast, tracing)
    are checked at each call and not known here."""
    if _global_hooks():
        return {name: "plain: global module hooks are registered" for name, module in model.named_modules()
                if getattr(module.__dict__.get("forward"), "__func__", None) in KERNEL_FORWARDS}
    table = {}
    for name, module in model.named_modules():
        forward = getattr(module.__dict__.get("forward"), "__func__", None)
        if forward in KERNEL_FORWARDS:
            result = KERNEL_FORWARDS[forward](module)
            table[name] = f"plain: {result}" if isinstance(result, str) else "kernel"
    return table
