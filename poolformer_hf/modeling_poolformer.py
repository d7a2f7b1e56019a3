"""PoolFormer / MetaFormer models for transformers.

One path through every model: pixel_values → stem → [downsample → blocks] × stages → (norm, pool) → head.
`PoolFormerModel` owns that path; the classification and backbone classes only add what is theirs.
"""

import torch
from torch import nn
from transformers import initialization as init
from transformers.backbone_utils import BackboneMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BackboneOutput,
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)
from transformers.modeling_utils import PreTrainedModel

from .configuration_poolformer import PoolFormerConfig
from .conversion import load_foreign_pretrained
from .fused import mlp_mixing, pooling_mixing
from .inference import fuse_for_inference
from .layers import (
    TOKEN_MIXERS,
    DropPath,
    GroupNorm1,
    Mlp,
    MlpHead,
    Pooling,
    RandomMixing,
    Scale,
    conv2d,
    make_norm,
    make_scale,
)


def _scale_of(module: nn.Module) -> torch.Tensor | None:
    return module.scale if isinstance(module, Scale) else None


class MetaFormerBlock(GradientCheckpointingLayer):
    """Y = X·r1 + drop(ls1 · TokenMixer(Norm1(X)));  Z = Y·r2 + drop(ls2 · MLP(Norm2(Y))).

    ls (LayerScale) and r (ResScale) are learned per-channel scales, identity where the config turns them off.
    PoolFormer's branches (one-group GroupNorm with pooling; one-group GroupNorm with a GELU MLP) run through the lean
    kernels of `fused.py`: the same parameters and math, fewer memory passes, and in training only the branch inputs
    are stored (norms, pooling and GELU are recomputed in backward).
    """

    def __init__(self, config: PoolFormerConfig, stage: int, drop_path: float):
        super().__init__()
        dim = config.hidden_sizes[stage]
        norm = config.stage_value("norm_type", stage)
        layer_scale = config.stage_value("layer_scale_init_value", stage)
        res_scale = config.stage_value("res_scale_init_value", stage)

        self.norm1 = make_norm(norm, dim, config.norm_eps, config.norm_bias)
        self.token_mixer = TOKEN_MIXERS[config.stage_value("token_mixers", stage)](config, dim, stage)
        self.layer_scale1 = make_scale(dim, layer_scale)
        self.res_scale1 = make_scale(dim, res_scale)
        self.norm2 = make_norm(norm, dim, config.norm_eps, config.norm_bias)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio), config.stage_value("hidden_act", stage), config.mlp_bias)
        self.layer_scale2 = make_scale(dim, layer_scale)
        self.res_scale2 = make_scale(dim, res_scale)
        # One module, drawn independently on each branch: stochastic depth once per branch, never twice.
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.lean_token_mixing = isinstance(self.norm1, GroupNorm1) and isinstance(self.token_mixer, Pooling)
        self.lean_mlp = isinstance(self.norm2, GroupNorm1) and type(self.mlp.act) is nn.GELU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix_channels(self.mix_tokens(x))

    def mix_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Y = X·r1 + drop(ls1 · TokenMixer(Norm1(X)))."""
        if self.lean_token_mixing and self.lean_kernels_apply(x):
            return pooling_mixing(x, self.norm1, self.token_mixer.pool_size, _scale_of(self.layer_scale1),
                                  _scale_of(self.res_scale1), self.branch_factor(x))
        return self.res_scale1(x) + self.drop_path(self.layer_scale1(self.token_mixer(self.norm1(x))))

    def mix_channels(self, x: torch.Tensor) -> torch.Tensor:
        """Z = Y·r2 + drop(ls2 · MLP(Norm2(Y)))."""
        if self.lean_mlp and self.lean_kernels_apply(x):
            return mlp_mixing(x, self.norm2, self.mlp, _scale_of(self.layer_scale2), _scale_of(self.res_scale2),
                              self.branch_factor(x))
        return self.res_scale2(x) + self.drop_path(self.layer_scale2(self.mlp(self.norm2(x))))

    def lean_kernels_apply(self, x: torch.Tensor) -> bool:
        """Whether the lean kernels run. They call GEMMs with explicit output buffers, which autocast does not cast:
        under autocast, or when the input's dtype differs from the weights', the plain modules (which autocast
        handles) run. So they do for inference under torch.compile, whose generated kernels fuse the modules'
        elementwise ops themselves; compiled training keeps the lean kernels for their smaller saved state."""
        if torch.compiler.is_compiling() and not torch.is_grad_enabled():
            return False
        if x.dtype != self.mlp.fc1.weight.dtype:
            return False
        return x.device.type == "meta" or not torch.is_autocast_enabled(x.device.type)  # meta: no autocast there

    def branch_factor(self, x: torch.Tensor) -> torch.Tensor | None:
        """Stochastic depth as one factor per sample (0 or 1/keep), drawn by `drop_path`; None when inactive."""
        if not (self.training and isinstance(self.drop_path, DropPath)):
            return None
        return self.drop_path(x.new_ones(x.shape[0]))


class Stem(nn.Module):
    """The first patch embedding: a strided conv (7×7, stride 4), then an optional norm."""

    def __init__(self, config: PoolFormerConfig):
        super().__init__()
        dim = config.hidden_sizes[0]
        self.conv = nn.Conv2d(
            config.num_channels, dim, config.patch_sizes[0], config.strides[0], config.padding[0]
        )
        self.norm = (
            make_norm(config.downsample_norm, dim, config.norm_eps, config.norm_bias)
            if config.downsample_norm
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(conv2d(self.conv, x))


class Downsample(nn.Module):
    """Between stages: an optional norm, then a strided conv (3×3, stride 2) to the next width."""

    def __init__(self, config: PoolFormerConfig, stage: int):
        super().__init__()
        in_dim, out_dim = config.hidden_sizes[stage - 1], config.hidden_sizes[stage]
        self.norm = (
            make_norm(config.downsample_norm, in_dim, config.norm_eps, config.norm_bias)
            if config.downsample_norm
            else nn.Identity()
        )
        self.conv = nn.Conv2d(in_dim, out_dim, config.patch_sizes[stage], config.strides[stage], config.padding[stage])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(self.conv, self.norm(x))


class MetaFormerStage(nn.Module):
    def __init__(self, config: PoolFormerConfig, stage: int, drop_paths: list[float]):
        super().__init__()
        self.downsample = Downsample(config, stage) if stage > 0 else nn.Identity()
        self.blocks = nn.ModuleList(MetaFormerBlock(config, stage, rate) for rate in drop_paths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            x = block(x)
        return x


def check_pixel_values(pixel_values: torch.Tensor | None, config: PoolFormerConfig) -> None:
    """Raise a ValueError saying what was expected when `pixel_values` cannot go through the model."""
    if pixel_values is None:
        raise ValueError("pixel_values is required: a float tensor of shape (batch, channels, height, width)")
    if not isinstance(pixel_values, torch.Tensor):
        raise ValueError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}")
    if pixel_values.ndim != 4:
        raise ValueError(
            f"pixel_values must have 4 dimensions (batch, channels, height, width), got shape "
            f"{tuple(pixel_values.shape)}; add a batch dimension with pixel_values.unsqueeze(0) for one image"
        )
    if pixel_values.shape[1] != config.num_channels:
        raise ValueError(
            f"pixel_values must have {config.num_channels} channels (config.num_channels) in dimension 1, got shape "
            f"{tuple(pixel_values.shape)}; channels-last images need pixel_values.permute(0, 3, 1, 2)"
        )
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values must be a floating-point tensor (normalized as the image processor does), got "
            f"{pixel_values.dtype}"
        )
    height, width = pixel_values.shape[-2:]
    if min(min(size) for size in config.stage_resolutions(height, width)) < 1:
        raise ValueError(
            f"pixel_values of {height}×{width} are too small: the {len(config.depths)} strided convs "
            f"(patch_sizes {config.patch_sizes}, strides {config.strides}) leave no pixel; "
            f"expected at least {minimum_input_size(config)}×{minimum_input_size(config)}"
        )


def minimum_input_size(config: PoolFormerConfig) -> int:
    size = 1
    while min(min(s) for s in config.stage_resolutions(size, size)) < 1:
        size += 1
    return size


def _memory_format(tensor: torch.Tensor) -> torch.memory_format:
    if tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


class PoolFormerPreTrainedModel(PreTrainedModel):
    config_class = PoolFormerConfig
    config: PoolFormerConfig
    base_model_prefix = "poolformer"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["MetaFormerBlock"]

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
        elif isinstance(module, Scale):
            init.constant_(module.scale, module.init_value)
        elif isinstance(module, RandomMixing):
            init.copy_(module.random_matrix, torch.rand_like(module.random_matrix).softmax(dim=-1))
        elif type(module).__name__ == "StarReLU":
            init.ones_(module.scale)
            init.zeros_(module.bias)

    # Set on the frozen copies made by `fuse_for_inference`, which can neither train nor be saved.
    is_fused_for_inference = False

    def fuse_for_inference(self, dtype: torch.dtype | None = None, compile: bool = False) -> nn.Module:
        """A frozen inference copy with norms and LayerScales folded into the convs, channels-last weights and,
        with `compile=True`, torch.compile; this model is untouched (see `poolformer_hf.inference`)."""
        return fuse_for_inference(self, dtype=dtype, compile=compile)

    def train(self, mode: bool = True):
        if mode and self.is_fused_for_inference:
            raise RuntimeError(
                "This copy was fused for inference (norms and LayerScales folded into the convs) and cannot be "
                "trained: train the original model and call fuse_for_inference() again"
            )
        return super().train(mode)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, with every head in `auto_map`, not only the one saved.

        transformers would write only the saved class; then `AutoModel.from_pretrained(folder,
        trust_remote_code=True)` on a saved classifier (as the feature-extraction pipeline does) would find no entry
        and fall back, by config class name, to transformers' own PoolFormerModel with random weights. A copy made by
        `fuse_for_inference` refuses: its folded weights do not fit the config's architecture.
        """
        if self.is_fused_for_inference:
            raise RuntimeError(
                "This copy was fused for inference: its folded weights do not fit the config's architecture. Save the "
                "original model instead"
            )
        heads = (PoolFormerModel, PoolFormerForImageClassification, PoolFormerBackbone)
        self.config.auto_map = {
            **(getattr(self.config, "auto_map", None) or {}),
            **{head._auto_class: f"{head.__module__.rsplit('.', 1)[-1]}.{head.__name__}" for head in heads
               if head._auto_class is not None},
        }
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, which also accepts folders and Hub repos of transformers' built-in
        PoolFormer (e.g. the `sail/poolformer_*` checkpoints) and timm's MetaFormer Hub folders (e.g.
        `timm/poolformerv2_s12.sail_in1k`): their keys are renamed on the fly (see `conversion.py`)."""
        foreign = load_foreign_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs)
        if foreign is not None:
            return foreign
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)


class PoolFormerModel(PoolFormerPreTrainedModel):
    """The MetaFormer body plus the final norm and global average pool.

    Returns `last_hidden_state` (batch, C4, H/32, W/32), `pooler_output` (batch, C4: the normalized, globally pooled
    embedding) and, when asked, `hidden_states`: the stem output and each stage's output.
    """

    def __init__(self, config: PoolFormerConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").tolist()
        starts = [sum(config.depths[:stage]) for stage in range(config.num_stages)]
        self.stem = Stem(config)
        self.stages = nn.ModuleList(
            MetaFormerStage(config, stage, rates[start : start + depth])
            for stage, (start, depth) in enumerate(zip(starts, config.depths))
        )
        self.norm = (
            make_norm(config.head_norm_type, config.hidden_sizes[-1], config.norm_eps) if add_pooling_layer else None
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.stem.conv

    def forward_features(self, pixel_values: torch.Tensor, output_hidden_states: bool = False):
        """The body alone: the last feature map and, if asked, (stem output, stage 1 output, …, last stage).

        The body runs channels-last (1×1 convs become GEMMs over pixel rows; norms, pooling and elementwise ops read
        memory in order); the maps come back in the memory format of `pixel_values`.
        """
        check_pixel_values(pixel_values, self.config)
        output_format = _memory_format(pixel_values)
        hidden = self.stem(pixel_values.contiguous(memory_format=torch.channels_last))
        maps = [hidden] if output_hidden_states else []
        for stage in self.stages:
            hidden = stage(hidden)
            if output_hidden_states:
                maps.append(hidden)
        maps = [state.contiguous(memory_format=output_format) for state in (maps or [hidden])]
        return maps[-1], (tuple(maps) if output_hidden_states else None)

    def pool(self, last_hidden_state: torch.Tensor) -> torch.Tensor:
        """The image embedding: the final norm and global average pooling, in the order the config says."""
        if self.config.head_norm_position == "before_pool":
            return self.norm(last_hidden_state).mean((-2, -1))
        return self.norm(last_hidden_state.mean((-2, -1), keepdim=True)).flatten(1)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | BaseModelOutputWithPoolingAndNoAttention:
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        last, hidden_states = self.forward_features(pixel_values, output_hidden_states)
        pooled = self.pool(last) if self.norm is not None else None
        if not return_dict:
            return tuple(v for v in (last, pooled, hidden_states) if v is not None)
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=last, pooler_output=pooled, hidden_states=hidden_states
        )


class PoolFormerForImageClassification(PoolFormerPreTrainedModel):
    """PoolFormerModel plus a classifier on the pooled embedding (linear, or the MLP head of ConvFormer/CAFormer).

    `labels` give a loss by `config.problem_type`: cross-entropy for single-label, BCE-with-logits for multi-label,
    MSE for regression (inferred from the labels' dtype and num_labels when unset, as transformers does).
    """

    def __init__(self, config: PoolFormerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.poolformer = PoolFormerModel(config)
        width = config.hidden_sizes[-1]
        if config.num_labels <= 0:
            self.dropout, self.classifier = nn.Identity(), nn.Identity()
        elif config.head_type == "mlp":
            self.dropout, self.classifier = nn.Identity(), MlpHead(config, width, config.num_labels)
        else:
            self.dropout, self.classifier = nn.Dropout(config.head_dropout), nn.Linear(width, config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.poolformer.get_input_embeddings()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | ImageClassifierOutputWithNoAttention:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.poolformer(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


class PoolFormerBackbone(BackboneMixin, PoolFormerPreTrainedModel):
    """Multi-scale feature maps (strides 4, 8, 16, 32) for detection and segmentation heads such as UperNet.

    `config.out_features` / `out_indices` pick from `stage_names` = ["stem", "stage1", …, "stage4"]; each returned map
    goes through its own norm when `config.backbone_norm` is set, as in the papers' dense-prediction setups.
    """

    has_attentions = False

    def __init__(self, config: PoolFormerConfig):
        super().__init__(config)
        self.poolformer = PoolFormerModel(config, add_pooling_layer=False)
        self.num_features = [config.hidden_sizes[0]] + list(config.hidden_sizes)
        self.hidden_states_norms = nn.ModuleDict(
            {
                stage: make_norm(config.stage_value("norm_type", max(index - 1, 0)), channels, config.norm_eps)
                if config.backbone_norm
                else nn.Identity()
                for stage, index, channels in zip(self.out_features, self.out_indices, self.channels)
            }
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | BackboneOutput:
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        _, hidden_states = self.poolformer.forward_features(pixel_values, output_hidden_states=True)
        feature_maps = tuple(
            self.hidden_states_norms[stage](hidden)
            for stage, hidden in zip(self.stage_names, hidden_states)
            if stage in self.out_features
        )
        hidden_states = hidden_states if output_hidden_states else None
        if not return_dict:
            return (feature_maps,) + ((hidden_states,) if hidden_states is not None else ())
        return BackboneOutput(feature_maps=feature_maps, hidden_states=hidden_states)


__all__ = [
    "PoolFormerPreTrainedModel",
    "PoolFormerModel",
    "PoolFormerForImageClassification",
    "PoolFormerBackbone",
]
