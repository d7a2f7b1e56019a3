"""Lean kernels for the two branches of a PoolFormer block: the modules' math with fewer memory passes and fewer stored tensors.

A PoolFormer block (GroupNorm with one group, pooling mixer) is

    Y = r1·X + d·ls1·(pool(N1(X)) − N1(X)),    Z = r2·Y + d·ls2·fc2(σ(fc1(N2(Y)))),

with N(x) = γ·x̂ + β, x̂ = (x − μ)·ρ per sample, r the ResScale, ls the LayerScale and d the stochastic-depth factor of
each sample (all optional). Norms, pooling and the activation are memory-bound, the two 1×1 convs (GEMMs) do the work;
these kernels spend as few memory passes as possible on the former:

* Token branch. Averaging a constant gives it back (count_include_pad=False), so β cancels and
  pool(x̂) − x̂ = ρ·(pool(x) − x): Y = r1·X + s·(pool(X) − X) with one scale s[n, c] = ls1[c]·γ1[c]·ρ[n]·d[n].
  One statistics pass, one pooling, one lerp; the normalized map is never written.
* MLP branch. The 1×1 convs are GEMMs on the channels-last rows; the hidden activation (4× wider than the block) is
  made, activated and consumed in row chunks that stay in cache, never as one big tensor.
* Training. Each branch is an autograd Function that saves its input (and the MLP's pre-activation, whose recompute
  would be a GEMM) and recomputes norms, pooling and GELU in backward: about 6 block-widths stored per block
  where plain autograd keeps about 13.

Tensors are NCHW-shaped and channels-last in memory, as the model runs them; outputs are channels-last.
"""

import torch
import torch.nn.functional as F

from .gemm import cast_or_none, matmul_dtype


# The MLP's hidden activation (rows × 4C) is made and consumed in chunks of about this many bytes: small enough to
# stay in the last-level cache between the two GEMMs and to be recycled by malloc without fresh page faults, large
# enough that each chunk's GEMMs keep the intra-op threads busy. scripts/benchmark.py measures the effect.
CHUNK_BYTES = 4 << 20


def _rows(x: torch.Tensor) -> torch.Tensor:
    """The (N·H·W, C) matrix of an NCHW map: a view when the map is channels-last, a copy otherwise."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _empty_channels_last(n: int, c: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    # a tensor of its own, not a permuted view: FSDP2 warns of (and autograd restricts) in-place ops on views
    return torch.empty((n, c, h, w), dtype=like.dtype, device=like.device, memory_format=torch.channels_last)


def chunk_rows(rows: int, width: int, element_size: int) -> int:
    return max(1, min(rows, CHUNK_BYTES // (width * element_size)))


def chunk_samples(samples: int, bytes_per_sample: int) -> int:
    """How many samples of `bytes_per_sample` make one piece of about CHUNK_BYTES (at least one)."""
    return max(1, min(samples, CHUNK_BYTES // max(1, bytes_per_sample)))


def _group_norm(x: torch.Tensor, weight, bias, eps: float):
    """GroupNorm with one group: (normalized map, per-sample mean, per-sample 1/std), channels-last in and out.
    (The functional op: its out= variant computes into a temporary and copies.)"""
    n, c, h, w = x.shape
    return torch.ops.aten.native_group_norm(x, weight, bias, n, c, h * w, 1, eps)


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _product(*factors: torch.Tensor | None) -> torch.Tensor | None:
    result = None
    for factor in factors:
        if factor is not None:
            result = factor if result is None else result * factor
    return result


# ---------------------------------------------------------------------------------------------------- token branch
def _token_scale(rstd, gamma, layer_scale, sample_scale, channels):
    """s[n, c] = ls[c]·γ[c]·ρ[n]·d[n] as (N, C, 1, 1), and its per-channel and per-sample factors."""
    per_channel = _product(gamma, layer_scale)
    per_sample = _product(rstd.view(-1), sample_scale)
    ones = per_sample.new_ones(channels) if per_channel is None else per_channel
    scale = (per_sample[:, None] * ones[None, :]).to(rstd.dtype)
    return scale[:, :, None, None], per_channel, per_sample


def _pooling_forward(x, gamma, layer_scale, res_scale, sample_scale, pool_size, eps):
    n, c, h, w = x.shape
    _, mean, rstd = _group_norm(x, None, None, eps)  # only the statistics: the normalized map is never needed
    scale = _token_scale(rstd, gamma, layer_scale, sample_scale, c)[0]
    out = F.avg_pool2d(x, pool_size, 1, pool_size // 2, count_include_pad=False)
    if res_scale is None:
        torch.lerp(x, out, scale, out=out)  # x + s·(pool(x) − x)
    else:
        out.mul_(scale).addcmul_(x, res_scale.view(1, c, 1, 1) - scale)  # r·x + s·(pool(x) − x)
    return out, mean, rstd


class _PoolingMixing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, layer_scale, res_scale, sample_scale, pool_size, eps):
        out, mean, rstd = _pooling_forward(x, gamma, layer_scale, res_scale, sample_scale, pool_size, eps)
        ctx.save_for_backward(x, gamma, beta, layer_scale, res_scale, sample_scale, mean, rstd)
        ctx.pool_size = pool_size
        return out

    @staticmethod
    def backward(ctx, grad):
        x, gamma, beta, layer_scale, res_scale, sample_scale, mean, rstd = ctx.saved_tensors
        n, c, h, w = x.shape
        k = ctx.pool_size
        scale, per_channel, per_sample = _token_scale(rstd, gamma, layer_scale, sample_scale, c)
        # G[n, c] = Σ_hw grad·(pool(x) − x): the gradient of the scale s[n, c].
        work = F.avg_pool2d(x, k, 1, k // 2, count_include_pad=False).sub_(x).mul_(grad)
        acc = _accumulation_dtype(x.dtype)
        grad_scale = work.sum((2, 3), dtype=acc)
        # Through pool(x) − x with s fixed, and the residual path ...
        torch.mul(grad, scale, out=work)
        grad_x = torch.ops.aten.avg_pool2d_backward(work, x, [k, k], [1, 1], [k // 2, k // 2], False, False, None)
        grad_x.sub_(work)
        del work
        if res_scale is None:
            grad_x.add_(grad)
        else:
            grad_x.addcmul_(grad, res_scale.view(1, c, 1, 1))
        # ... and through ρ(x): dρ/dx = −ρ³·(x − μ)/(C·H·W).
        channel_factor = per_channel.to(acc) if per_channel is not None else 1.0
        sample_factor = sample_scale.to(acc) if sample_scale is not None else 1.0
        grad_rho = (grad_scale * channel_factor).sum(1) * sample_factor
        kappa = (grad_rho * rstd.view(-1).to(acc).pow(3) / (c * h * w)).to(x.dtype)
        grad_x.addcmul_(x, -kappa.view(n, 1, 1, 1)).add_((kappa * mean.view(-1)).view(n, 1, 1, 1))

        grad_per_channel = (grad_scale * per_sample.to(acc)[:, None]).sum(0)  # dL/d(ls·γ)
        grad_gamma = _grad_of_factor(ctx, 1, grad_per_channel, layer_scale, gamma)
        grad_beta = torch.zeros_like(beta) if ctx.needs_input_grad[2] else None  # β cancels exactly (see above)
        grad_layer_scale = _grad_of_factor(ctx, 3, grad_per_channel, gamma, layer_scale)
        grad_res_scale = (grad * x).sum((0, 2, 3)) if ctx.needs_input_grad[4] else None
        return grad_x, grad_gamma, grad_beta, grad_layer_scale, grad_res_scale, None, None, None


def _grad_of_factor(ctx, index, grad_product, other, factor):
    """dL/dfactor for a per-channel product factor·other, given dL/d(product)."""
    if not ctx.needs_input_grad[index]:
        return None
    grad = grad_product if other is None else grad_product * other.to(grad_product.dtype)
    return grad.to(factor.dtype)


def pooling_mixing(x, norm, pool_size: int, layer_scale=None, res_scale=None, sample_scale=None) -> torch.Tensor:
    """r·x + d·ls·(pool(norm(x)) − norm(x)) for a one-group GroupNorm `norm`, in one statistics pass, one pooling
    and one lerp. `layer_scale` / `res_scale` are per-channel tensors or None, `sample_scale` the (N,) stochastic-depth
    factors or None. Saves only x (and two numbers per sample) for backward."""
    x = x.contiguous(memory_format=torch.channels_last)
    args = (x, norm.weight, norm.bias, layer_scale, res_scale, sample_scale, pool_size, norm.eps)
    if torch.is_grad_enabled():
        return _PoolingMixing.apply(*args)
    return _pooling_forward(*args[:2], *args[3:])[0]


# ---------------------------------------------------------------------------------------------------- MLP branch
def _transposed(weight, up, down, rows: int, dtype):
    """Wᵀ of a GEMM's (out, in) weight in `dtype`, and its LoRA factors (W + up·down) as (downᵀ, upᵀ) or None.

    The factors are folded into Wᵀ where that costs fewer multiplies (out·in·rank) than applying them to the `rows`
    input rows (rows·rank·(out + in)): at large batches and early stages; at batch 1 in the late, wide stages the
    rank-r product per row is cheaper than forming the sum."""
    if up is None:
        return weight.t().to(dtype), None
    out_features, in_features = weight.shape
    if out_features * in_features <= rows * (out_features + in_features):
        return torch.addmm(weight, up, down).t().to(dtype), None
    return weight.t().to(dtype), (down.t().to(dtype), up.t().to(dtype))


def _low_rank_(out, matrix, factors):
    """out += matrix·downᵀ·upᵀ: the unfolded LoRA term of a GEMM."""
    if factors is not None:
        out.addmm_(torch.mm(matrix, factors[0]), factors[1])
    return out


def _folded(weight, up, down):
    """W + up·down as the (out, in) matrix (W itself without factors)."""
    return weight if up is None else torch.addmm(weight, up, down)


def _mlp_forward(y, gamma, beta, w1, b1, w2, b2, layer_scale, res_scale, sample_scale, eps, up1, down1, up2, down2,
                 keep_hidden):
    n, c, h, w = y.shape
    hidden_width = w1.shape[0]
    rows = n * h * w
    normed, mean, rstd = _group_norm(y, gamma, beta, eps)
    normed_rows = _rows(normed)
    # Inference on half-precision maps may compute in float32 (see layers.matmul_dtype); training keeps the dtype.
    dtype = y.dtype if keep_hidden else matmul_dtype(y)
    fc1, low1 = _transposed(w1.view(hidden_width, c), up1, down1, rows, dtype)
    fc2, low2 = _transposed(w2.view(c, hidden_width), up2, down2, rows, dtype)
    b1, b2 = cast_or_none(b1, dtype), cast_or_none(b2, dtype)
    if layer_scale is not None and sample_scale is None and rows >= hidden_width:
        # ls·(a·W2ᵀ + b2) = a·(ls·W2)ᵀ + ls·b2: on the weight when it is the narrower side (fewer multiplies, and the
        # residual can start the GEMM's accumulator below)
        fc2, b2 = fc2 * layer_scale, (b2 * layer_scale).to(dtype) if b2 is not None else None
        low2 = None if low2 is None else (low2[0], low2[1] * layer_scale)
        layer_scale = None
    y_rows = _rows(y)
    out = _empty_channels_last(n, c, h, w, y)
    out_rows = _rows(out)
    step = chunk_rows(rows, hidden_width, y.element_size())
    # Saved pre-activations are kept as separate chunks: each is small enough for malloc to recycle (no fresh pages).
    hidden, buffer = [], y.new_empty((step, hidden_width), dtype=dtype)
    accumulator = None if dtype == y.dtype else y.new_empty((step, c), dtype=dtype)
    row_scale = None if sample_scale is None else sample_scale.repeat_interleave(h * w)[:, None]
    for start in range(0, rows, step):
        stop = min(rows, start + step)
        normed_chunk = normed_rows[start:stop].to(dtype)
        pre = _addmm(b1, normed_chunk, fc1,
                     out=y.new_empty((stop - start, hidden_width)) if keep_hidden else buffer[: stop - start])
        _low_rank_(pre, normed_chunk, low1)
        if keep_hidden:
            hidden.append(pre)
            act = torch._C._nn.gelu(pre, out=buffer[: stop - start])
        else:
            act = torch._C._nn.gelu_(pre)
        out_chunk, y_chunk = out_rows[start:stop], y_rows[start:stop]
        total = out_chunk if accumulator is None else accumulator[: stop - start]
        if layer_scale is None and row_scale is None:  # the residual starts the GEMM's accumulator: r·y + b2 + a·W2ᵀ
            _low_rank_(torch.addmm(_residual_start(y_chunk, res_scale, b2, out=total), act, fc2, out=total), act, low2)
        else:  # r·y + ls·d·(a·W2ᵀ + b2), the scales on the (narrow) output rather than on the weight
            branch = _low_rank_(_addmm(b2, act, fc2, out=total), act, low2)
            scale = _product(layer_scale, None if row_scale is None else row_scale[start:stop])
            residual = y_chunk if res_scale is None else y_chunk * res_scale
            torch.addcmul(residual, branch, scale, out=total)
        if accumulator is not None:
            out_chunk.copy_(total)
    return out, mean, rstd, hidden


def _residual_start(y, res_scale, bias, out):
    if res_scale is not None:
        return torch.addcmul(bias, y, res_scale, out=out) if bias is not None else torch.mul(y, res_scale, out=out)
    return torch.add(y, bias, out=out) if bias is not None else out.copy_(y)


def _addmm(bias, matrix, weight_t, out):
    if bias is None:
        return torch.mm(matrix, weight_t, out=out)
    return torch.addmm(bias, matrix, weight_t, out=out)


class _MlpMixing(torch.autograd.Function):
    """The MLP branch; fc1 and fc2 may carry LoRA factors (W + up·down, `up`/`down` None otherwise), whose gradients
    are computed as rank-r products, never through the full weight's gradient (which a frozen W does not need)."""

    @staticmethod
    def forward(ctx, y, gamma, beta, w1, b1, w2, b2, layer_scale, res_scale, sample_scale, eps,
                up1=None, down1=None, up2=None, down2=None):
        out, mean, rstd, hidden = _mlp_forward(
            y, gamma, beta, w1, b1, w2, b2, layer_scale, res_scale, sample_scale, eps, up1, down1, up2, down2,
            keep_hidden=True,
        )
        ctx.save_for_backward(y, gamma, beta, w1, b1, w2, b2, layer_scale, res_scale, sample_scale, mean, rstd,
                              up1, down1, up2, down2, *hidden)
        return out

    @staticmethod
    def backward(ctx, grad):
        (y, gamma, beta, w1, b1, w2, b2, layer_scale, res_scale, sample_scale, mean, rstd,
         up1, down1, up2, down2, *hidden) = ctx.saved_tensors
        need = tuple(ctx.needs_input_grad) + (False,) * (15 - len(ctx.needs_input_grad))
        n, c, h, w = y.shape
        hidden_width = w1.shape[0]
        fc1, fc2 = _folded(w1.view(hidden_width, c), up1, down1), _folded(w2.view(c, hidden_width), up2, down2)
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_rows = _rows(grad)
        # Only what some input needs: under LoRA the base weights, biases, norms and scales are frozen.
        need_input = need[0] or need[1] or need[2]  # the gradient through N2(y)
        need_fc2 = need[5] or need[7]  # Σ (grad·d)ᵀ·σ(pre)
        need_sum = need[6] or (need[7] and b2 is not None)
        lora1, lora2 = up1 is not None and (need[11] or need[12]), up2 is not None and (need[13] or need[14])
        if need[3] or lora1:  # recompute N2(y) from the saved statistics: γ·(y − μ)·ρ + β = y·a + b
            a = rstd.view(n, 1) * (gamma.view(1, c) if gamma is not None else y.new_ones(1, c))
            b = -mean.view(n, 1) * a + (beta.view(1, c) if beta is not None else 0)
            normed_rows = _rows(torch.addcmul(b[:, :, None, None], y, a[:, :, None, None]))

        # dL/d(branch) = grad·ls·d; the GEMM back through fc2 takes ls folded into its weight.
        fc2_scaled = fc2 if layer_scale is None else fc2 * layer_scale[:, None]
        up2_scaled = None if not lora2 else up2 if layer_scale is None else up2 * layer_scale[:, None]
        row_scale = None if sample_scale is None else sample_scale.repeat_interleave(h * w)[:, None]
        step = hidden[0].shape[0]
        buffer = y.new_empty((step, hidden_width))  # σ(pre) of a chunk, then its gradient
        grad_fc2_unscaled = y.new_zeros((c, hidden_width)) if need_fc2 else None  # Σ (grad·d)ᵀ·σ(pre)
        grad_fc1 = y.new_zeros((hidden_width, c)) if need[3] else None
        grad_b1 = y.new_zeros(hidden_width) if b1 is not None and need[4] else None
        grad_sum = y.new_zeros(c) if need_sum else None  # Σ grad·d
        grad_up1 = grad_down1 = grad_up2 = grad_down2 = None
        if lora1:
            grad_up1, grad_down1 = torch.zeros_like(up1), torch.zeros_like(down1)
        if lora2:
            grad_up2, grad_down2 = torch.zeros_like(up2), torch.zeros_like(down2)
        if need_input:
            grad_normed = _empty_channels_last(n, c, h, w, y)
            grad_normed_rows = _rows(grad_normed)
        for index, pre in enumerate(hidden):
            start = index * step
            stop = start + pre.shape[0]
            act = torch._C._nn.gelu(pre, out=buffer[: stop - start])
            g = grad_rows[start:stop] if row_scale is None else grad_rows[start:stop] * row_scale[start:stop]
            if need_fc2:
                grad_fc2_unscaled.addmm_(g.t(), act)
            if lora2:  # dL/dW2 = (g·ls)ᵀ·σ: dL/dup2 = ls·gᵀ·(σ·down2ᵀ), dL/ddown2 = (g·ls·up2)ᵀ·σ
                grad_up2.addmm_(g.t(), torch.mm(act, down2.t()))
                grad_down2.addmm_(torch.mm(g, up2_scaled).t(), act)
            if need_sum:
                grad_sum += g.sum(0)
            grad_act = torch.mm(g, fc2_scaled, out=buffer[: stop - start])
            grad_pre = torch.ops.aten.gelu_backward.grad_input(grad_act, pre, grad_input=grad_act)
            if need[3]:
                grad_fc1.addmm_(grad_pre.t(), normed_rows[start:stop])
            if lora1:  # dL/dW1 = grad_preᵀ·N2(y): dL/dup1 = grad_preᵀ·(N2·down1ᵀ), dL/ddown1 = (grad_pre·up1)ᵀ·N2
                grad_up1.addmm_(grad_pre.t(), torch.mm(normed_rows[start:stop], down1.t()))
                grad_down1.addmm_(torch.mm(grad_pre, up1).t(), normed_rows[start:stop])
            if grad_b1 is not None:
                grad_b1 += grad_pre.sum(0)
            if need_input:
                torch.mm(grad_pre, fc1, out=grad_normed_rows[start:stop])
        del buffer
        if lora2 and layer_scale is not None:
            grad_up2.mul_(layer_scale[:, None])

        grad_y = grad_gamma = grad_beta = None
        if need_input:
            grad_y, grad_gamma, grad_beta = torch.ops.aten.native_group_norm_backward(
                grad_normed, y, mean, rstd, gamma, n, c, h * w, 1,
                [True, gamma is not None and need[1], beta is not None and need[2]],
            )
            if not need[0]:
                grad_y = None
            elif res_scale is None:
                grad_y.add_(grad)
            else:
                grad_y.addcmul_(grad, res_scale.view(1, c, 1, 1))
        grad_w1 = grad_fc1.view_as(w1) if need[3] else None
        ls = layer_scale[:, None] if layer_scale is not None else 1.0
        grad_w2 = (grad_fc2_unscaled * ls).view_as(w2) if need[5] else None
        grad_b2 = grad_sum * (layer_scale if layer_scale is not None else 1.0) if need[6] else None
        grad_layer_scale = None
        if need[7]:  # Σ grad·d·branch, with branch = σ(pre)·fc2ᵀ + b2 never stored
            grad_layer_scale = (fc2 * grad_fc2_unscaled).sum(1) + (b2 * grad_sum if b2 is not None else 0)
        grad_res_scale = (grad * y).sum((0, 2, 3)) if need[8] else None
        grads = (grad_y, grad_gamma, grad_beta, grad_w1, grad_b1, grad_w2, grad_b2, grad_layer_scale, grad_res_scale,
                 None, None, grad_up1, grad_down1, grad_up2, grad_down2)
        return grads[: len(ctx.needs_input_grad)]


def _factors(conv):
    """(weight, up, down) of a conv the MLP kernel computes: a LoRA-adapted 1×1 conv (`dispatch.FoldedConv`) keeps
    its factors apart, any other conv has none."""
    up = getattr(conv, "up", None)
    if up is None:
        return conv.weight, None, None
    return conv.base_weight, up, conv.down


def mlp_mixing(y, norm, mlp, layer_scale=None, res_scale=None, sample_scale=None) -> torch.Tensor:
    """r·y + d·ls·fc2(GELU(fc1(norm(y)))) for a one-group GroupNorm `norm` and an `Mlp` of 1×1 convs with GELU
    (either conv may be a LoRA-adapted `dispatch.FoldedConv`).

    The hidden activation is made and consumed in cache-sized row chunks; in training only the pre-activation is
    stored (besides y), and the norm and GELU are recomputed in backward."""
    y = y.contiguous(memory_format=torch.channels_last)
    w1, up1, down1 = _factors(mlp.fc1)
    w2, up2, down2 = _factors(mlp.fc2)
    args = (y, norm.weight, norm.bias, w1, mlp.fc1.bias, w2, mlp.fc2.bias,
            layer_scale, res_scale, sample_scale, norm.eps, up1, down1, up2, down2)
    if torch.is_grad_enabled():
        return _MlpMixing.apply(*args)
    return _mlp_forward(*args, keep_hidden=False)[0]
