"""An inference module folded from a poolformer_hf model: the same function, fewer parameters and memory passes.

`fuse_for_inference(model)` returns a plain, frozen `nn.Module` (not a PreTrainedModel: its weights no longer fit the
config's architecture, so there is nothing to save or train); the model itself is untouched. Per block:

* Token branch, pooling mixer after a one-group GroupNorm N(x) = γ·x̂ + β, x̂ = (x − μ)·ρ per sample: averaging a
  constant gives it back (count_include_pad=False), so β cancels: the branch is r·x + (ls·γ)·(pool(x̂) − x̂), with
  ls·γ one scale. The eager kernel goes further, pool(x̂) − x̂ = ρ·(pool(x) − x): one statistics pass, one pooling,
  one multiply-add, x̂ never made. The traced graph (export, compile) makes x̂ with one normalization op instead, in
  the form the target runtime fuses (`set_normalization_form`): runtimes fuse the scale, subtraction and residual
  around the pooling, but not a separate statistics pass. After a channel LayerNorm x̂ varies per position.
* Norm affines fold into the 1×1 conv (or linear) that reads the norm: W·(γ·x̂ + β) + b = (W·diag γ)·x̂ + (W·β + b)
  (the MLP's fc1, SepConv's first pointwise conv, attention's qkv); a downsampling conv takes γ only (its zero padding
  would not see β), so it folds only bias-free norms.
* LayerScales fold into the conv that ends the branch: ls·(W·a + b) = (diag ls·W)·a + ls·b (the MLP's fc2, SepConv's
  last pointwise conv, attention's output projection); the identity mixer's into its norm's affine.
* StarReLU's scalars s and b fold into the conv after it: both into a 1×1 conv (the MLP's fc2), s into SepConv's
  depthwise conv with b/s left as a shift before its zero padding; relu(x)² then runs in the expansion's buffer.

Everything is written as plain tensor ops and modules, which torch.export, ONNX and OpenVINO keep as they are. In eager
on CPU, the PoolFormer branches call the lean kernels instead (the same math in fewer memory passes); they step aside
whenever torch is compiling or exporting, and for dtypes, devices and autocast they do not handle.

The module returns the output class of the model it was folded from, without `hidden_states`:
`BaseModelOutputWithPoolingAndNoAttention(last_hidden_state, pooler_output)` for `PoolFormerModel`,
`ImageClassifierOutputWithNoAttention(logits)` for the classifier, `BackboneOutput(feature_maps)` for the backbone,
`SemanticSegmenterOutput(logits)` for the Semantic FPN (its backbone folded, its neck and head copied as they are).
Its feature maps are NCHW-contiguous whatever the input's memory format. Pixel values are cast to the module's dtype
(float32 pixels from the image processor feed a bfloat16 module as they are).
"""

import copy
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import (
    BackboneOutput,
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
    SemanticSegmenterOutput,
)

from ..kernels import conv2d, dispatch, kernels_run, mlp_mixing, pointwise_conv, pooling_mixing
from ..kernels.chunked import elementwise, mlp_by_rows, sepconv_by_samples
from ..layers import Attention, ChannelLayerNorm, GroupNorm1, IdentityMixer, Pooling, Scale, SepConv


# --------------------------------------------------------------------------------------------------- folding algebra
def _vector(module: nn.Module, name: str) -> torch.Tensor | None:
    value = getattr(module, name, None)
    return None if value is None else value.detach().clone()


def _scale_of(module: nn.Module) -> torch.Tensor | None:
    return module.scale.detach().clone() if isinstance(module, Scale) else None


@torch.no_grad()
def _fold_affine_into_input(layer: nn.Module, gamma: torch.Tensor | None, beta: torch.Tensor | None) -> None:
    """layer(γ·x̂ + β) = layer'(x̂) for a 1×1 conv or a linear `layer`: W' = W·diag γ, b' = b + W·β."""
    weight = layer.weight.view(layer.weight.shape[0], -1)
    if beta is not None:
        bias = weight @ beta.to(weight.dtype)
        layer.bias = nn.Parameter(bias if layer.bias is None else layer.bias + bias)
    if gamma is not None:
        weight.mul_(gamma.to(weight.dtype))


@torch.no_grad()
def _fold_scale_into_output(layer: nn.Module, scale: torch.Tensor | None) -> None:
    """ls·layer(a) = layer'(a): W' = diag(ls)·W, b' = ls·b."""
    if scale is None:
        return
    layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.ndim - 1))).to(layer.weight.dtype))
    if layer.bias is not None:
        layer.bias.mul_(scale.to(layer.bias.dtype))


class ShiftedSquaredReLU(nn.Module):
    """relu(x)² + shift: what a StarReLU s·relu(x)² + b leaves once its s (and b, before a 1×1 conv) went into the
    next conv (`_fold_star_relu`). In place outside autograd and tracing (the input is the expansion's own buffer)."""

    def __init__(self, shift: float = 0.0):
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
            out = F.relu(x).square()
            return out + self.shift if self.shift else out
        out = x.relu_().square_()
        return out.add_(self.shift) if self.shift else out


def _in_pieces(act: nn.Module) -> bool:
    """Whether the eager kernels may apply `act` to pieces of the map (`kernels.chunked`): an elementwise activation
    run as an unhooked module, outside autograd (the fused module is for inference; under autograd it runs whole)."""
    if torch.is_grad_enabled():
        return False
    if type(act) is ShiftedSquaredReLU:
        return dispatch.untouched(act, "act", ShiftedSquaredReLU) is None
    return elementwise(act)


@torch.no_grad()
def _fold_star_relu(act: nn.Module, next_layer: nn.Conv2d) -> nn.Module:
    """The activation to run instead of `act` once a StarReLU's scalars are folded into the conv after it (exact):
    before a 1×1 conv both go in, s into W and b into the bias, W·(s·h + b) = (s·W)·h + b·W·1; before a depthwise
    conv s goes into W and b/s stays as a shift before its zero padding. `act` itself for any other activation, and
    for s = 0 before a depthwise conv."""
    if type(act).__name__ != "StarReLU" or act.scale.numel() != 1 or act.bias.numel() != 1:
        return act
    scale, shift = float(act.scale), float(act.bias)
    weight = next_layer.weight
    if next_layer.groups == 1 and next_layer.kernel_size == (1, 1):
        bias = weight.flatten(1).sum(1) * shift
        next_layer.bias = nn.Parameter(bias if next_layer.bias is None else next_layer.bias + bias)
        weight.mul_(scale)
        return ShiftedSquaredReLU()
    if scale == 0.0:
        return act
    weight.mul_(scale)
    return ShiftedSquaredReLU(shift / scale)


def _foldable_norm(norm: nn.Module) -> bool:
    return isinstance(norm, (GroupNorm1, ChannelLayerNorm))


# How the per-sample statistics of a one-group GroupNorm are written in the traced graph. Both are (x − μ)/σ over
# (C, H, W); each is the form one runtime fuses into a single normalization op in the map's own layout (measured, see
# the README's Deployment section): ONNX Runtime fuses LayerNormalization; OpenVINO's CPU plugin turns the moments
# pattern into its MVN, while its translation of layer_norm (and of group_norm) reshapes the map and adds layout
# reorders around it.
NORMALIZATION_FORMS = ("layer_norm", "moments")


class Normalize(nn.Module):
    """x̂ of a one-group GroupNorm or a channel LayerNorm, without an affine (folded into the next layer); or, with
    `weight` / `bias`, the affine it keeps. `form` (one of NORMALIZATION_FORMS) is how a one-group norm is traced."""

    def __init__(self, norm: nn.Module, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None):
        super().__init__()
        self.per_position = isinstance(norm, ChannelLayerNorm)
        self.eps = norm.eps
        self.form = "layer_norm"
        self.weight = None if weight is None else nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_position:
            rows = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
            return rows.permute(0, 3, 1, 2)
        if self.form == "moments":
            centered = x - x.mean((1, 2, 3), keepdim=True)
            normed = centered / torch.sqrt(centered.pow(2).mean((1, 2, 3), keepdim=True) + self.eps)
        else:
            normed = F.layer_norm(x, x.shape[1:], eps=self.eps)
        if self.weight is not None:
            normed = normed * self.weight.view(-1, 1, 1)
        return normed if self.bias is None else normed + self.bias.view(-1, 1, 1)


def set_normalization_form(module: nn.Module, form: str) -> nn.Module:
    """Trace every one-group norm of a folded module in `form` (see NORMALIZATION_FORMS); returns `module`."""
    if form not in NORMALIZATION_FORMS:
        raise ValueError(f"form must be one of {NORMALIZATION_FORMS}; got {form!r}")
    for layer in module.modules():
        if isinstance(layer, Normalize):
            layer.form = form
    return module


def _unfolded_norm(norm: nn.Module, weight=None, bias=None) -> nn.Module:
    return Normalize(norm, weight, bias) if _foldable_norm(norm) else copy.deepcopy(norm)


def _channel_scale(scale: torch.Tensor | None) -> nn.Parameter | None:
    return None if scale is None else nn.Parameter(scale.view(1, -1, 1, 1))


# ---------------------------------------------------------------------------------------------------------- branches
class PoolingBranch(nn.Module):
    """r·x + s·(pool(x̂) − x̂), with s = ls·γ folded (β cancels)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        norm = block.norm1
        self.pool_size = block.token_mixer.pool_size
        self.normalize = Normalize(norm)
        self.per_sample = not self.normalize.per_position
        scale = torch.ones(block.mlp.fc1.weight.shape[1], dtype=block.mlp.fc1.weight.dtype)
        for factor in (_vector(norm, "weight"), _scale_of(block.layer_scale1)):
            if factor is not None:
                scale = scale * factor
        self.scale = _channel_scale(scale)
        self.res_scale = _channel_scale(_scale_of(block.res_scale1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_sample and kernels_run(x, self.scale):
            res_scale = None if self.res_scale is None else self.res_scale.view(-1)
            return pooling_mixing(x, SimpleNamespace(weight=None, bias=None, eps=self.normalize.eps), self.pool_size,
                                  self.scale.view(-1), res_scale)
        residual = x if self.res_scale is None else x * self.res_scale
        normed = self.normalize(x)
        return residual + self.scale * (self._pool(normed) - normed)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.pool_size, 1, self.pool_size // 2, count_include_pad=False)


class FoldedSepConv(nn.Module):
    """A SepConv whose convs took the folds (norm affine, StarReLU's scalars, LayerScale). Its 1×1 convs run as GEMMs
    over channels-last rows and its depthwise conv on the channels-last map, as the kernel layer runs an unfolded
    SepConv: the plain `nn.Conv2d` 1×1 takes a slower path on channels-last maps (`scripts/benchmark.py --sections
    family`, fused beside default)."""

    def __init__(self, mixer: SepConv):
        super().__init__()
        self.pwconv1, self.act1, self.dwconv, self.pwconv2 = mixer.pwconv1, mixer.act1, mixer.dwconv, mixer.pwconv2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _in_pieces(self.act1) and kernels_run(x, self.pwconv1.weight):
            return sepconv_by_samples(self.pwconv1, self.act1, self.dwconv, self.pwconv2, x, None)
        return pointwise_conv(self.pwconv2, conv2d(self.dwconv, self.act1(pointwise_conv(self.pwconv1, x))))


class MixerBranch(nn.Module):
    """r·x + mixer(norm(x)) for every other mixer, with the norm's affine and the LayerScale folded into the mixer's
    first and last projections where it has them (SepConv, attention) and into the norm for the identity mixer."""

    def __init__(self, block: nn.Module):
        super().__init__()
        norm, mixer = block.norm1, copy.deepcopy(block.token_mixer)
        gamma, beta, layer_scale = _vector(norm, "weight"), _vector(norm, "bias"), _scale_of(block.layer_scale1)
        projections = {SepConv: ("pwconv1", "pwconv2"), Attention: ("qkv", "proj")}.get(type(mixer))
        if projections and _foldable_norm(norm):
            _fold_affine_into_input(getattr(mixer, projections[0]), gamma, beta)
            _fold_scale_into_output(getattr(mixer, projections[1]), layer_scale)
            self.norm, self.layer_scale = Normalize(norm), None
        elif isinstance(mixer, IdentityMixer) and _foldable_norm(norm) and layer_scale is not None:
            gamma = layer_scale if gamma is None else gamma * layer_scale
            self.norm = Normalize(norm, gamma, None if beta is None else beta * layer_scale)
            self.layer_scale = None
        else:
            self.norm, self.layer_scale = copy.deepcopy(norm), _channel_scale(layer_scale)
        if isinstance(mixer, SepConv):
            mixer.act1 = _fold_star_relu(mixer.act1, mixer.dwconv)
            mixer = FoldedSepConv(mixer)
        self.token_mixer = mixer
        self.res_scale = _channel_scale(_scale_of(block.res_scale1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.token_mixer(self.norm(x))
        if self.layer_scale is not None:
            branch = branch * self.layer_scale
        return (x if self.res_scale is None else x * self.res_scale) + branch


class MlpBranch(nn.Module):
    """r·y + fc2'(σ(fc1'(ŷ))), norm2's affine folded into fc1 and LayerScale 2 into fc2."""

    def __init__(self, block: nn.Module):
        super().__init__()
        norm, mlp = block.norm2, block.mlp
        self.fc1, self.act, self.fc2 = copy.deepcopy(mlp.fc1), copy.deepcopy(mlp.act), copy.deepcopy(mlp.fc2)
        if _foldable_norm(norm):
            _fold_affine_into_input(self.fc1, _vector(norm, "weight"), _vector(norm, "bias"))
            self.norm = Normalize(norm)
        else:
            self.norm = copy.deepcopy(norm)
        self.act = _fold_star_relu(self.act, self.fc2)
        _fold_scale_into_output(self.fc2, _scale_of(block.layer_scale2))
        self.res_scale = _channel_scale(_scale_of(block.res_scale2))
        self.lean = isinstance(norm, GroupNorm1) and type(self.act) is nn.GELU

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.lean and kernels_run(y, self.fc1.weight):
            res_scale = None if self.res_scale is None else self.res_scale.view(-1)
            return mlp_mixing(y, self.norm, self, None, res_scale)
        normed = self.norm(y)
        if _in_pieces(self.act) and kernels_run(y, self.fc1.weight):
            branch = mlp_by_rows(self.fc1, self.act, self.fc2, normed, None)
        else:  # pointwise_conv: a GEMM over channels-last rows in eager, the conv itself under torch.compile / export
            branch = pointwise_conv(self.fc2, self.act(pointwise_conv(self.fc1, normed)))
        return (y if self.res_scale is None else y * self.res_scale) + branch


class FoldedBlock(nn.Module):
    def __init__(self, block: nn.Module):
        super().__init__()
        pooling = isinstance(block.token_mixer, Pooling) and _foldable_norm(block.norm1)
        self.token_branch = PoolingBranch(block) if pooling else MixerBranch(block)
        self.mlp_branch = MlpBranch(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp_branch(self.token_branch(x))


class FoldedDownsample(nn.Module):
    """norm → strided conv, a bias-free norm's γ folded into the conv (zero padding stays zero under a scale)."""

    def __init__(self, downsample: nn.Module):
        super().__init__()
        norm, self.conv = downsample.norm, copy.deepcopy(downsample.conv)
        if _foldable_norm(norm) and norm.bias is None:
            with torch.no_grad():
                self.conv.weight.mul_(norm.weight.view(1, -1, 1, 1))
            self.norm = Normalize(norm)
        else:
            self.norm = copy.deepcopy(norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(self.conv, self.norm(x))


def _fold_stage(stage: nn.Module) -> nn.Sequential:
    downsample = [] if isinstance(stage.downsample, nn.Identity) else [FoldedDownsample(stage.downsample)]
    return nn.Sequential(*downsample, *(FoldedBlock(block) for block in stage.blocks))


# ---------------------------------------------------------------------------------------------------------- models
def _without_dropout(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.modules.dropout._DropoutNd):  # nn.Dropout, and the segmentation head's Dropout2d
            setattr(module, name, nn.Identity())
        else:
            _without_dropout(child)
    return module


class FoldedPoolFormer(nn.Module):
    """The folded body (stem, stages) and what the head it came from adds: the pooled embedding, the classifier, the
    backbone's normalized feature maps, or those through the Semantic FPN's neck and head (copied, not folded).
    Inference only: no dropout, no stochastic depth, frozen weights, and `train()` keeps it in eval mode (the
    head's BatchNorms keep their running statistics)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        from ..modeling_poolformer import PoolFormerBackbone, PoolFormerForImageClassification
        from ..modeling_poolformer_segmentation import PoolFormerForSemanticSegmentation

        segmentation = isinstance(model, PoolFormerForSemanticSegmentation)
        body = model.backbone if segmentation else model
        base = body.base_model
        self.config = model.config
        # The layout the body runs in. ExecuTorch's portable kernels want contiguous maps (see `export`).
        self.memory_format = torch.channels_last
        self.stem = copy.deepcopy(base.stem)
        self.stages = nn.ModuleList(_fold_stage(stage) for stage in base.stages)
        self.norm = copy.deepcopy(base.norm) if base.norm is not None else None
        self.classifier = None
        self.feature_norms = None
        self.neck = self.decode_head = None
        if isinstance(model, PoolFormerForImageClassification):
            self.classifier = _without_dropout(copy.deepcopy(model.classifier))
        elif isinstance(body, PoolFormerBackbone):
            self.out_features = list(body.out_features)
            self.feature_norms = copy.deepcopy(body.hidden_states_norms)
        if segmentation:
            self.neck = copy.deepcopy(model.neck)
            self.decode_head = _without_dropout(copy.deepcopy(model.decode_head))

    def train(self, mode: bool = True) -> "FoldedPoolFormer":
        return super().train(False)

    def features(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """The map after the stem and after every stage, by the backbone's stage names."""
        from ..modeling_poolformer import check_pixel_values

        check_pixel_values(pixel_values, self.config)
        # Cast to the module's precision (fuse_for_inference's `dtype`): a no-op when it is already the input's.
        pixel_values = pixel_values.to(self.stem.conv.weight.dtype).contiguous(memory_format=self.memory_format)
        hidden = self.stem(pixel_values)
        maps = {"stem": hidden}
        for index, stage in enumerate(self.stages, start=1):
            hidden = maps[f"stage{index}"] = stage(hidden)
        return maps

    def pool(self, last: torch.Tensor) -> torch.Tensor:
        if self.config.head_norm_position == "before_pool":
            return self.norm(last).mean((-2, -1))
        return self.norm(last.mean((-2, -1), keepdim=True)).flatten(1)

    def forward(self, pixel_values: torch.Tensor):
        maps = self.features(pixel_values)
        if self.feature_norms is not None:
            feature_maps = tuple(self.feature_norms[name](maps[name]).contiguous() for name in self.out_features)
            if self.decode_head is not None:
                return SemanticSegmenterOutput(logits=self.decode_head(self.neck(feature_maps)))
            return BackboneOutput(feature_maps=feature_maps)
        last = maps[f"stage{len(self.stages)}"]
        pooled = self.pool(last) if self.norm is not None else None
        if self.classifier is not None:
            return ImageClassifierOutputWithNoAttention(logits=self.classifier(pooled))
        return BaseModelOutputWithPoolingAndNoAttention(last_hidden_state=last.contiguous(), pooler_output=pooled)


def fuse_for_inference(model: nn.Module, dtype: torch.dtype | None = None, compile: bool | dict = False) -> nn.Module:
    """A frozen, folded, channels-last `FoldedPoolFormer` built from a poolformer_hf model of any head (base,
    classifier, backbone, semantic segmentation); `model` itself is untouched. See the module docstring for the
    folding and the outputs.

    The folding is done in the model's precision, then the module is cast to `dtype` if given; it casts its input to
    that dtype too. `compile=True` wraps it in `torch.compile`; a dict is passed as the compile's Inductor `options`
    (e.g. `{"freezing": True, "max_autotune": True}`: the fastest measured at batch 1, docs/performance.md). Fold
    again after further training of `model`.
    """
    from ..modeling_poolformer import PoolFormerForImageClassification, PoolFormerModel
    from ..modeling_poolformer_segmentation import PoolFormerForSemanticSegmentation

    # PoolFormerBackbone is a PoolFormerModel; a head of another library on our backbone (UperNet, a detector) is not
    if not isinstance(model, (PoolFormerModel, PoolFormerForImageClassification, PoolFormerForSemanticSegmentation)):
        raise TypeError(
            "fuse_for_inference expects a poolformer_hf model: PoolFormerModel, PoolFormerForImageClassification, "
            f"PoolFormerBackbone or PoolFormerForSemanticSegmentation; got {type(model).__name__}"
        )
    folded = FoldedPoolFormer(model).eval()
    if dtype is not None:
        folded = folded.to(dtype)
    folded = folded.to(memory_format=torch.channels_last).requires_grad_(False)
    if isinstance(compile, dict):
        return torch.compile(folded, dynamic=False, options=compile)
    if compile:
        return torch.compile(folded, dynamic=False)
    return folded
