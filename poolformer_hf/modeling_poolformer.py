"""PoolFormer / MetaFormer models for transformers.

One path through every model: pixel_values → stem → [downsample → blocks] × stages → (norm, pool) → head.
`PoolFormerModel` owns that path; the classification and backbone classes only add what is theirs.

On CPU, where this package is imported, the forwards of `MetaFormerBlock`, `Mlp`, `SepConv`, `Stem` and `Downsample`
are replaced per instance by `poolformer_hf/kernels/` (the same math; `kernels/dispatch.py` decides at each call, and
`poolformer_hf.kernels.describe(model)` says what runs where and why); this file is what runs everywhere else.
"""

import os
import shutil
import tempfile

import torch
from torch import nn
from transformers import initialization as init
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter
from transformers.backbone_utils import BackboneMixin, filter_output_hidden_states
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BackboneOutput,
    BaseModelOutputWithNoAttention,
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
)
from transformers.modeling_utils import PreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_poolformer import PoolFormerConfig
from .files import follow_umask, remove_abandoned_saves, save_staging_prefix
from .layers import TOKEN_MIXERS, DropPath, Mlp, MlpHead, RandomMixing, Scale, make_norm, make_scale


class MetaFormerBlock(GradientCheckpointingLayer):
    """Y = r1·X + drop(ls1 · TokenMixer(Norm1(X)));  Z = r2·Y + drop(ls2 · MLP(Norm2(Y))).

    ls (LayerScale) and r (ResScale) are learned per-channel scales, identity where the config turns them off.
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res_scale1(x) + self.drop_path(self.layer_scale1(self.token_mixer(self.norm1(x))))
        return self.res_scale2(x) + self.drop_path(self.layer_scale2(self.mlp(self.norm2(x))))


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
        return self.norm(self.conv(x))


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
        return self.conv(self.norm(x))


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


# Checkpoint names of transformers' built-in PoolFormer (the `sail/poolformer_*` repos) and of timm's MetaFormer Hub
# folders (`timm/<preset>.<tag>`), renamed to ours on the way in by transformers' `key_mapping` (each rule renames the
# part of a key it matches; the rules chain). None of them matches a name of ours except a bare `stem.`/`stages.`/
# `norm.`, whose prefix transformers takes off again when the model has none.
FOREIGN_KEY_MAPPING = {
    # transformers: encoder.patch_embeddings.{i}.projection, encoder.block.{i}.{j}.{before_norm,after_norm,output}
    r"encoder\.patch_embeddings\.0\.projection\.": "stem.conv.",
    r"encoder\.patch_embeddings\.(\d+)\.projection\.": r"stages.\1.downsample.conv.",
    r"encoder\.block\.(\d+)\.": r"stages.\1.blocks.",
    r"\.before_norm\.": ".norm1.",
    r"\.after_norm\.": ".norm2.",
    r"\.output\.conv(\d)\.": r".mlp.fc\1.",
    r"\.layer_scale_(\d)$": r".layer_scale\1.scale",
    r"^norm\.": "poolformer.norm.",
    # timm: stem, stages, head.norm, head.fc (linear) or head.fc.{fc1,norm,fc2} (MLP head)
    r"^stem\.": "poolformer.stem.",
    r"^stages\.": "poolformer.stages.",
    r"^head\.norm\.": "poolformer.norm.",
    r"^head\.fc\.(fc1|fc2|norm)\.": r"classifier.\1.",
    r"^head\.fc\.": "classifier.",
}


class LinearToPointwiseConv(ConversionOps):
    """A linear layer's (out, in) weight as the (out, in, 1, 1) weight of the 1×1 conv our model has in its place.

    timm keeps the MLPs of CAFormer's attention stages as `nn.Linear`; every other weight passes through unchanged
    (our own checkpoints' 1×1 convs, and any shape this cannot make fit, which the loader then reports)."""

    @torch.no_grad()
    def convert(self, input_dict, source_patterns, target_patterns, **kwargs):
        (tensors,) = input_dict.values()
        tensor = tensors[0] if isinstance(tensors, list) else tensors
        try:
            target = kwargs["model"].get_parameter(kwargs["full_layer_name"]).shape
        except (AttributeError, KeyError, TypeError):  # not a parameter of this model: the loader reports the key
            target = tensor.shape
        if tensor.ndim == 2 and len(target) == 4 and target[2:] == (1, 1) and tensor.shape == target[:2]:
            tensor = tensor.reshape(target)
        return {target_patterns[0]: tensor}

    @property
    def reverse_op(self) -> ConversionOps:
        return _KeepAsIs()


class _KeepAsIs(ConversionOps):
    """Saving writes our 1×1 conv weights as they are."""

    def convert(self, input_dict, source_patterns, target_patterns, **kwargs):
        (tensors,) = input_dict.values()
        return {target_patterns[0]: tensors[0] if isinstance(tensors, list) else tensors}

    @property
    def reverse_op(self) -> ConversionOps:
        return LinearToPointwiseConv()


# `from_pretrained` reshapes timm's linear MLP weights by this (the renames are `FOREIGN_KEY_MAPPING`'s); the names
# stay, so a save writes what it would without it.
register_checkpoint_conversion_mapping(
    PoolFormerConfig.model_type,
    [WeightConverter(f"mlp.{fc}.weight", f"mlp.{fc}.weight", [LinearToPointwiseConv()]) for fc in ("fc1", "fc2")],
    overwrite=True,
)


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

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`; folders and Hub repos of transformers' built-in PoolFormer
        (`sail/poolformer_*`) and timm's MetaFormer Hub folders load too: their config is translated by
        `PoolFormerConfig.from_dict`, their weight names by `FOREIGN_KEY_MAPPING`, the linear MLPs of timm's CAFormer
        by `LinearToPointwiseConv`, and the model saves in our names."""
        kwargs.setdefault("key_mapping", FOREIGN_KEY_MAPPING)
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model._weight_conversions = None  # save in our names, not back in the checkpoint's
        return loaded

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, atomic, with every head in `auto_map`, not only the one saved.

        The config is checked first (`check_saveable`): one that cannot be written (an attribute JSON cannot hold, an
        invalid architecture) raises naming it before any folder or file is made, a Hub push included. Over an
        earlier save, the files are written to a temporary folder beside `save_directory` and renamed into it, so a
        save that fails (a full disk) leaves the earlier save loading as before; a new or empty folder, which holds
        nothing to keep, is written in place (conversions and exports save into a staging folder of their own). The
        files get the umask's modes, as the config does (safetensors would write the weights 0600).
        transformers would write only the saved class into `auto_map`; then `AutoModel.from_pretrained(folder,
        trust_remote_code=True)` on a saved classifier (as the feature-extraction pipeline does) would find no entry
        and fall back, by config class name, to transformers' own PoolFormerModel with random weights.
        """
        heads = (PoolFormerModel, PoolFormerForImageClassification, PoolFormerBackbone)
        self.config.auto_map = {
            **(getattr(self.config, "auto_map", None) or {}),
            **{head._auto_class: f"{head.__module__.rsplit('.', 1)[-1]}.{head.__name__}" for head in heads
               if head._auto_class is not None},
        }
        self.config.check_saveable()
        if os.path.lexists(save_directory) and not os.path.isdir(save_directory):  # transformers only logs it
            raise NotADirectoryError(f"save_directory {save_directory} is a file, not a folder: name a folder")
        if kwargs.get("push_to_hub") or not (os.path.isdir(save_directory) and os.listdir(save_directory)):
            # A Hub commit is atomic on its own; a new or empty folder holds no earlier save to keep.
            saved = super().save_pretrained(save_directory, *args, **kwargs)
            if not kwargs.get("push_to_hub"):
                follow_umask(save_directory)  # everything in it is this save's (safetensors writes 0600)
            return saved
        save_directory = os.path.abspath(save_directory)
        parent = os.path.dirname(save_directory)
        os.makedirs(parent, exist_ok=True)
        remove_abandoned_saves(parent, os.path.basename(save_directory))  # left by saves killed here before
        staging = tempfile.mkdtemp(prefix=save_staging_prefix(os.path.basename(save_directory)), dir=parent)
        try:
            super().save_pretrained(staging, *args, **kwargs)
            follow_umask(staging)
            os.makedirs(save_directory, exist_ok=True)
            written = set(os.listdir(staging))
            for name in os.listdir(save_directory):  # weights of an earlier save that this one does not replace
                if name not in written and _is_weights_file(name):
                    os.remove(os.path.join(save_directory, name))
            for name in sorted(written, key=lambda name: name == "config.json"):  # config last: it says "complete"
                os.replace(os.path.join(staging, name), os.path.join(save_directory, name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _is_weights_file(name: str) -> bool:
    return name.startswith("model") and (name.endswith(".safetensors") or name.endswith(".safetensors.index.json"))


class PoolFormerModel(PoolFormerPreTrainedModel):
    """The MetaFormer body plus the final norm and global average pool.

    Returns `last_hidden_state` (batch, C4, H/32, W/32), `pooler_output` (batch, C4: the final norm and the global
    average pool, in the order `config.head_norm_position` says) and, when asked, `hidden_states`: each stage's
    output, as transformers' PoolFormer returns them.
    """

    _can_record_outputs = {"hidden_states": OutputRecorder(MetaFormerStage, capture_initial_hidden_state=False)}
    # A classifier's or backbone's folder loads into the base model without a report of the heads it leaves out.
    _keys_to_ignore_on_load_unexpected = [r"classifier\.", r"hidden_states_norms\."]

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

    @merge_with_config_defaults
    @capture_outputs(tie_last_hidden_states=False)
    def encode(self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> BaseModelOutputWithNoAttention:
        """The body alone: stem, then every stage; `hidden_states` as the class's `_can_record_outputs` records."""
        check_pixel_values(pixel_values, self.config)
        hidden = self.stem(pixel_values)
        for stage in self.stages:
            hidden = stage(hidden)
        return BaseModelOutputWithNoAttention(last_hidden_state=hidden)

    def pool(self, last_hidden_state: torch.Tensor) -> torch.Tensor:
        """The image embedding: the final norm and global average pooling, in the order the config says."""
        if self.config.head_norm_position == "before_pool":
            return self.norm(last_hidden_state).mean((-2, -1))
        return self.norm(last_hidden_state.mean((-2, -1), keepdim=True)).flatten(1)

    @can_return_tuple
    def forward(
        self, pixel_values: torch.Tensor | None = None, **kwargs: Unpack[TransformersKwargs]
    ) -> BaseModelOutputWithPoolingAndNoAttention:
        outputs = self.encode(pixel_values, return_dict=True, **kwargs)  # the caller's return_dict is applied above
        last = outputs.last_hidden_state
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=last,
            pooler_output=self.pool(last) if self.norm is not None else None,
            hidden_states=outputs.hidden_states,
        )


class PoolFormerForImageClassification(PoolFormerPreTrainedModel):
    """PoolFormerModel plus a classifier on the pooled embedding (linear, or the MLP head of ConvFormer/CAFormer).

    `labels` give a loss by `config.problem_type`: cross-entropy for single-label, BCE-with-logits for multi-label,
    MSE for regression (inferred from the labels' dtype and num_labels when unset, as transformers does).
    """

    accepts_loss_kwargs = False

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

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutputWithNoAttention:
        outputs = self.poolformer(pixel_values, return_dict=True, **kwargs)
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = self.loss_function(labels, logits, self.config) if labels is not None else None
        return ImageClassifierOutputWithNoAttention(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


class PoolFormerBackbone(BackboneMixin, PoolFormerModel):
    """Multi-scale feature maps (strides 4, 8, 16, 32) for detection and segmentation heads such as UperNet.

    `config.out_features` / `out_indices` pick from `stage_names` = ["stem", "stage1", …, "stage4"]; each returned map
    goes through its own norm when `config.backbone_norm` is set, as in the papers' dense-prediction setups.
    `hidden_states` are the stem output and each stage's output, one per stage name (as transformers' backbones do).
    """

    has_attentions = False
    _can_record_outputs = {"hidden_states": OutputRecorder(MetaFormerStage, capture_initial_hidden_state=True)}
    _keys_to_ignore_on_load_unexpected = [r"classifier\.", r"(^|\.)norm\.(weight|bias)$"]

    def __init__(self, config: PoolFormerConfig):
        super().__init__(config, add_pooling_layer=False)
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

    @can_return_tuple
    @filter_output_hidden_states
    def forward(self, pixel_values: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> BackboneOutput:
        hidden_states = self.encode(pixel_values, return_dict=True, **kwargs).hidden_states
        feature_maps = tuple(
            self.hidden_states_norms[stage](hidden)
            for stage, hidden in zip(self.stage_names, hidden_states)
            if stage in self.out_features
        )
        return BackboneOutput(feature_maps=feature_maps, hidden_states=hidden_states)


__all__ = [
    "PoolFormerPreTrainedModel",
    "PoolFormerModel",
    "PoolFormerForImageClassification",
    "PoolFormerBackbone",
]
