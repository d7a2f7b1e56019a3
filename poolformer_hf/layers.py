"""Building blocks of a MetaFormer: norms, activations, scales, token mixers.

Every module works on NCHW feature maps (in either memory format) with plain torch ops: this file and the modeling
file are the model's one form of the math. Faster forwards for some of these layers live in `poolformer_hf.kernels`,
which swaps them in from outside. A token mixer is chosen by name from `TOKEN_MIXERS`; adding one is a class with the
constructor `(config, dim, stage)` plus one registry line.
"""

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------------------- norms
class GroupNorm1(nn.GroupNorm):
    """GroupNorm with one group: normalizes each sample over channels *and* space, as PoolFormer does."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True):
        super().__init__(1, dim, eps=eps)
        if not bias:
            self.bias = None


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW map (each spatial position on its own)."""

    def __init__(self, dim: int, eps: float = 1e-6, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True):
        super().__init__(dim, eps=eps)
        if not bias:
            self.bias = None


NORMS = {"group_norm": GroupNorm1, "layer_norm": ChannelLayerNorm, "batch_norm": BatchNorm}


def make_norm(kind: str, dim: int, eps: float, bias: bool = True) -> nn.Module:
    return NORMS[kind](dim, eps=eps, bias=bias)


# ---------------------------------------------------------------------------------------------------------- activations
class StarReLU(nn.Module):
    """s · relu(x)² + b with learned scalars s and b (MetaFormer Baselines)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.relu(x).square() + self.bias


class SquaredReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


ACTIVATIONS = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "star_relu": StarReLU,
    "squared_relu": SquaredReLU,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


# ---------------------------------------------------------------------------------------------------------- scales
class Scale(nn.Module):
    """A learned per-channel scale: LayerScale on a branch output, ResScale on the residual path."""

    def __init__(self, dim: int, init_value: float):
        super().__init__()
        self.init_value = init_value
        self.scale = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(-1, 1, 1)


def make_scale(dim: int, init_value: float | None) -> nn.Module:
    return nn.Identity() if init_value is None else Scale(dim, init_value)


class DropPath(nn.Module):
    """Stochastic depth: drops a whole residual branch per sample during training."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
        return x * mask.div_(keep_prob)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


# ---------------------------------------------------------------------------------------------------------- token mixers
class Pooling(nn.Module):
    """PoolFormer's mixer: average of each 3×3 neighbourhood, minus the token itself.

    The block adds its input back (Y = Mixer(Norm(X)) + X), so subtracting x here makes the branch contribute only
    the neighbourhood's difference from the token. count_include_pad=False keeps border tokens unbiased: they average
    over the real neighbours only, not over zero padding.
    """

    def __init__(self, config, dim: int, stage: int):
        super().__init__()
        self.pool_size = config.pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, self.pool_size, 1, self.pool_size // 2, count_include_pad=False)
        return pooled - x

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}"


class IdentityMixer(nn.Module):
    """No token mixing at all: the paper's lower bound (IdentityFormer)."""

    def __init__(self, config, dim: int, stage: int):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _fixed_token_count(config, stage: int) -> tuple[int, int]:
    """Feature-map size at `stage` for `config.image_size` inputs (for mixers whose weights depend on it)."""
    return config.stage_resolutions(config.image_size, config.image_size)[stage]


def _check_token_count(mixer: str, expected: tuple[int, int], x: torch.Tensor) -> None:
    if tuple(x.shape[-2:]) != expected:
        raise ValueError(
            f"The {mixer} token mixer was built for {expected[0]}×{expected[1]} feature maps (config.image_size); "
            f"got {x.shape[-2]}×{x.shape[-1]}. Resize the input to config.image_size or set image_size."
        )


class RandomMixing(nn.Module):
    """A frozen random token-mixing matrix (rows softmax-normalized), as in RandFormer."""

    def __init__(self, config, dim: int, stage: int):
        super().__init__()
        self.resolution = _fixed_token_count(config, stage)
        num_tokens = self.resolution[0] * self.resolution[1]
        self.random_matrix = nn.Parameter(torch.rand(num_tokens, num_tokens).softmax(dim=-1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_token_count("random_mixing", self.resolution, x)
        return (x.flatten(2) @ self.random_matrix.T).view_as(x)


class SpatialFC(nn.Module):
    """A learned fully connected layer across tokens, shared by channels (the ablation's "Spatial FC")."""

    def __init__(self, config, dim: int, stage: int):
        super().__init__()
        self.resolution = _fixed_token_count(config, stage)
        num_tokens = self.resolution[0] * self.resolution[1]
        self.token_fc = nn.Linear(num_tokens, num_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_token_count("spatial_fc", self.resolution, x)
        return self.token_fc(x.flatten(2)).view_as(x)


class SepConv(nn.Module):
    """ConvFormer's mixer: pointwise expansion, depthwise k×k conv, pointwise projection (MobileNetV2 style)."""

    def __init__(self, config, dim: int, stage: int):
        super().__init__()
        hidden = int(config.sepconv_expansion_ratio * dim)
        kernel = config.sepconv_kernel_size
        self.pwconv1 = nn.Conv2d(dim, hidden, 1, bias=False)
        self.act1 = make_activation(config.sepconv_act)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False)
        self.pwconv2 = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pwconv2(self.dwconv(self.act1(self.pwconv1(x))))


class Attention(nn.Module):
    """Multi-head self-attention over all tokens of the map (CAFormer), through scaled_dot_product_attention."""

    def __init__(self, config, dim: int, stage: int):
        super().__init__()
        self.head_dim = config.attention_head_dim
        self.num_heads = dim // self.head_dim
        self.qkv = nn.Linear(dim, 3 * dim, bias=config.attention_qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=config.attention_proj_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        length = height * width  # not -1: a batch of 0 leaves -1 undetermined
        tokens = x.permute(0, 2, 3, 1).reshape(batch, length, channels)  # a view of a channels-last map
        qkv = self.qkv(tokens).view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        out = self.proj(attended.transpose(1, 2).reshape(batch, length, channels))
        return out.view(batch, height, width, channels).permute(0, 3, 1, 2)


TOKEN_MIXERS = {
    "pooling": Pooling,
    "identity": IdentityMixer,
    "random_mixing": RandomMixing,
    "spatial_fc": SpatialFC,
    "sepconv": SepConv,
    "attention": Attention,
}


# ---------------------------------------------------------------------------------------------------------- MLPs
class Mlp(nn.Module):
    """The channel MLP σ(X·W1)·W2, as 1×1 convolutions on the NCHW map."""

    def __init__(self, dim: int, hidden: int, act: str, bias: bool):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1, bias=bias)
        self.act = make_activation(act)
        self.fc2 = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MlpHead(nn.Module):
    """ConvFormer/CAFormer classifier: fc1 → activation → LayerNorm → dropout → fc2."""

    def __init__(self, config, dim: int, num_labels: int):
        super().__init__()
        hidden = int(config.head_mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_activation(config.head_hidden_act)
        self.norm = nn.LayerNorm(hidden, eps=config.norm_eps)
        self.dropout = nn.Dropout(config.head_dropout)
        self.fc2 = nn.Linear(hidden, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.norm(self.act(self.fc1(x)))))

