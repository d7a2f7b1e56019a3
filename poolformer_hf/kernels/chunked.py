"""The MLP and SepConv of the non-PoolFormer blocks in inference, in cache-sized pieces of the batch.

Both expand the map (the MLP 4×, SepConv 2×) and project it back. Computed whole, the expansion of a batch-32
stage-1 map is 50–100 MB: written to fresh pages on every call (glibc malloc hands allocations above 32 MB straight
to mmap, and returns them on free), then read back from memory. Here it is made and consumed in pieces that stay in
the last-level cache and are recycled by malloc:

* `mlp_by_rows`: the MLP's two 1×1 convs are GEMMs over the channels-last rows, so any block of rows is independent
  (the PoolFormer block kernel in `branches.py` does the same inside its autograd Function).
* `sepconv_by_samples`: the depthwise k×k conv reads neighbouring rows, so SepConv is split by samples instead.

The activation between the convs is applied to each piece. That is the same function only for an elementwise
activation run as an unhooked module of a known class (`elementwise`); any other activation gets the whole map at
once, as the plain module would, so hooks on it fire once per call. At batch 1 and in the narrow late stages one
piece covers the whole map and nothing changes.
"""

import torch
from torch import nn

from .branches import _addmm, _empty_channels_last, _rows, chunk_rows, chunk_samples
from .gemm import cast_or_none, matmul_dtype


def elementwise(act: nn.Module) -> bool:
    """Whether `act` may be applied to pieces of a map: a plain module of an elementwise activation class, without
    hooks or a forward of its own."""
    from ..layers import SquaredReLU, StarReLU
    from .dispatch import untouched

    for cls in (nn.GELU, nn.ReLU, nn.SiLU, nn.Identity, SquaredReLU, StarReLU):
        if type(act) is cls:
            return untouched(act, "act", cls) is None and (cls is not StarReLU or act.scale.numel() == 1)
    return False


def _gemm_weights(conv, dtype, star):
    """(Wᵀ, b) of a 1×1 conv in `dtype`; with `star` = (s, t), of the conv of s·a + t (exact: the conv is linear)."""
    weight = conv.weight.flatten(1).to(dtype)
    bias = cast_or_none(conv.bias, dtype)
    if star is not None:
        scale, shift = star
        if shift != 0.0:
            shifted = weight.sum(1) * shift
            bias = shifted if bias is None else bias + shifted
        weight = weight * scale
    return weight.t(), bias


def mlp_by_rows(fc1, act, fc2, x: torch.Tensor, star: tuple[float, float] | None) -> torch.Tensor:
    """fc2(act(fc1(x))) for 1×1 convs `fc1`, `fc2` on an NCHW map, in row chunks; channels-last out.

    With `star` = (s, b), `act` is a StarReLU computed here as relu(h)² in the chunk's buffer, with s and b folded
    into fc2; otherwise `act` is called on each chunk (`elementwise(act)` must hold) in place of the whole map."""
    n, _, h, w = x.shape
    dtype = matmul_dtype(x)
    rows = _rows(x.contiguous(memory_format=torch.channels_last))
    weight1, bias1 = _gemm_weights(fc1, dtype, None)
    weight2, bias2 = _gemm_weights(fc2, dtype, star)
    hidden_width, out_width = weight1.shape[1], weight2.shape[1]
    out = _empty_channels_last(n, out_width, h, w, x)
    out_rows = _rows(out)
    step = chunk_rows(rows.shape[0], hidden_width, torch.finfo(dtype).bits // 8)
    buffer = x.new_empty((step, hidden_width), dtype=dtype)
    accumulator = None if dtype == x.dtype else x.new_empty((step, out_width), dtype=dtype)
    for start in range(0, rows.shape[0], step):
        stop = min(rows.shape[0], start + step)
        pre = _addmm(bias1, rows[start:stop].to(dtype), weight1, out=buffer[: stop - start])
        hidden = pre.relu_().square_() if star is not None else act(pre)
        target = out_rows[start:stop] if accumulator is None else accumulator[: stop - start]
        _addmm(bias2, hidden, weight2, out=target)
        if accumulator is not None:
            out_rows[start:stop].copy_(target)
    return out


def sepconv_by_samples(pwconv1, act, dwconv, pwconv2, x: torch.Tensor,
                       star: tuple[float, float] | None) -> torch.Tensor:
    """pwconv2(dwconv(act(pwconv1(x)))) in groups of samples; channels-last out.

    With `star` = (s, b), `act` is a StarReLU computed as relu(h)² + b/s in the group's buffer and s folded into the
    depthwise conv's weight (dwconv(s·h + b) = dwconv_{s·W}(h + b/s): the shift goes in before the zero padding, as b
    does); otherwise `act` is called on each group (`elementwise(act)` must hold)."""
    n, _, h, w = x.shape
    dtype = matmul_dtype(x)
    x = x.contiguous(memory_format=torch.channels_last)
    weight1, bias1 = _gemm_weights(pwconv1, dtype, None)
    weight2, bias2 = _gemm_weights(pwconv2, dtype, None)
    hidden_width, out_width = weight1.shape[1], weight2.shape[1]
    dw_weight = dwconv.weight.to(dtype)
    if star is not None:
        dw_weight = dw_weight * star[0]
    dw_weight = dw_weight.contiguous(memory_format=torch.channels_last)
    dw_bias = cast_or_none(dwconv.bias, dtype)
    out = _empty_channels_last(n, out_width, h, w, x)
    per_sample = h * w * hidden_width * (torch.finfo(dtype).bits // 8)
    step = chunk_samples(n, per_sample)  # pieces of the MLP kernels' size
    for start in range(0, n, step):
        stop = min(n, start + step)
        pre = _addmm(bias1, _rows(x[start:stop]).to(dtype), weight1, out=None)
        if star is not None:
            hidden = pre.relu_().square_()
            if star[1] != 0.0:
                hidden.add_(star[1] / star[0])
        else:
            hidden = act(pre)
        hidden = hidden.view(stop - start, h, w, hidden_width).permute(0, 3, 1, 2)  # channels-last NCHW
        mixed = dwconv._conv_forward(hidden, dw_weight, dw_bias)
        mixed_rows = _rows(mixed.contiguous(memory_format=torch.channels_last))
        target = _rows(out[start:stop])
        if dtype == x.dtype:
            _addmm(bias2, mixed_rows, weight2, out=target)
        else:
            target.copy_(_addmm(bias2, mixed_rows, weight2, out=None))
    return out
