"""Convolutions and 1×1 convolutions as the CPU runs them fastest.

* bfloat16/float16 maps on a CPU without native half-precision matmul units (AVX2-only CPUs emulate them, an order of
  magnitude slower than float32): the conv or GEMM computes in float32 and the map stays in half precision.
* A 1×1 conv on a channels-last map is one GEMM over its (pixels, channels) rows, which are a view; F.conv2d may take
  a slower, copying path for 1×1 kernels on CPU.
"""

import torch
import torch.nn.functional as F
from torch import nn


def _cpu_has_half_matmuls() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


CPU_HAS_HALF_MATMULS = _cpu_has_half_matmuls()  # measured once from the CPU's features, not assumed


def matmul_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype convs and GEMMs on `x` compute in: float32 for half-precision maps on a CPU without native kernels
    for them, otherwise x's own dtype."""
    if x.dtype in (torch.bfloat16, torch.float16) and x.device.type == "cpu" and not CPU_HAS_HALF_MATMULS:
        return torch.float32
    return x.dtype


def cast_or_none(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(dtype)


def _conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` computed in `matmul_dtype(x)` and returned in x's dtype."""
    dtype = matmul_dtype(x)
    if dtype == x.dtype:
        return conv._conv_forward(x, conv.weight, conv.bias)
    return conv._conv_forward(x.to(dtype), conv.weight.to(dtype), cast_or_none(conv.bias, dtype)).to(x.dtype)


def conv2d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` on a channels-last copy of x, computed in `matmul_dtype(x)` and returned in x's dtype."""
    return _conv(conv, x.contiguous(memory_format=torch.channels_last))


def pointwise_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 conv as one GEMM over the pixel rows of a channels-last map; the output is channels-last. Compiled and
    exported graphs keep the conv itself (the compiler hands it to oneDNN whole, with its bias)."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return _conv(conv, x)
    dtype = matmul_dtype(x)
    rows = x.permute(0, 2, 3, 1)
    out = F.linear(rows.to(dtype), conv.weight.flatten(1).to(dtype), cast_or_none(conv.bias, dtype))
    return out.permute(0, 3, 1, 2).to(x.dtype)
