"""Semantic FPN on a PoolFormer / MetaFormer backbone: the paper's ADE20K segmentation model.

pixel_values → PoolFormerBackbone (stage1…stage4, each through its own norm) → FPN neck (1×1 lateral convs, top-down
nearest-upsampled sum, 3×3 output convs) → semantic head (per level: 3×3 conv-BN-ReLU, ×2 bilinear upsampling until
stride 4; the levels summed) → dropout → 1×1 classifier: logits at 1/4 of the input resolution.
This is mmsegmentation's `FPN` + `FPNHead` as the PoolFormer paper configures them (256 FPN channels, 128 head
channels, dropout 0.1). The file travels with `trust_remote_code` (relative imports only).
"""

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.modeling_outputs import SemanticSegmenterOutput

from .configuration_poolformer import PoolFormerConfig
from .modeling_poolformer import PoolFormerBackbone, PoolFormerPreTrainedModel

# Head settings, read from the config with these defaults (the paper's values); any of them can be passed to
# `PoolFormerConfig(...)` or `from_pretrained(...)` and is saved in config.json.
SEMANTIC_FPN_DEFAULTS = {
    "fpn_hidden_size": 256,  # channels of the FPN levels
    "decode_head_hidden_size": 128,  # channels of the semantic head's convs
    "classifier_dropout": 0.1,  # Dropout2d before the 1×1 classifier
    "semantic_loss_ignore_index": 255,  # label value that no loss is computed for (transformers' convention)
}


def semantic_fpn_setting(config: PoolFormerConfig, name: str):
    """A Semantic FPN setting of `config`: its own value when it has one, else the paper's default."""
    return getattr(config, name, SEMANTIC_FPN_DEFAULTS[name])


def feature_strides(config: PoolFormerConfig) -> list[int]:
    """Stride of each backbone output (config.out_features) relative to the input."""
    strides = [math.prod(config.strides[: index]) for index in range(1, len(config.strides) + 1)]
    stage_strides = dict(zip(config.stage_names, [strides[0]] + strides))
    return [stage_strides[stage] for stage in config.out_features]


def with_every_stage(config: PoolFormerConfig) -> PoolFormerConfig:
    """`config`, or a copy of it that reads every stage: Semantic FPN needs stage1…stage4 whatever the backbone's
    default `out_features` (a classifier's config, `from_preset`, `AutoModelForSemanticSegmentation.from_config`),
    so the model sets them itself; the caller's config is left as it was."""
    wanted = config.stage_names[1:]
    if list(config.out_features) == wanted:
        return config
    config = copy.deepcopy(config)
    config.out_features = wanted
    return config


def check_segmentation_config(config: PoolFormerConfig) -> None:
    """Raise a ValueError naming the field when the config cannot build a Semantic FPN."""
    if config.num_labels < 1:
        raise ValueError(f"num_labels must be at least 1 for segmentation, got {config.num_labels}")
    for name in ("fpn_hidden_size", "decode_head_hidden_size"):
        value = semantic_fpn_setting(config, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0.0 <= semantic_fpn_setting(config, "classifier_dropout") < 1.0:
        raise ValueError(
            f"classifier_dropout must be in [0, 1), got {semantic_fpn_setting(config, 'classifier_dropout')}"
        )


class FeaturePyramidNeck(nn.Module):
    """FPN: every level to `hidden_size` channels by a 1×1 conv, coarser levels added top-down (nearest
    upsampling), then a 3×3 conv per level."""

    def __init__(self, in_channels: list[int], hidden_size: int):
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(channels, hidden_size, 1) for channels in in_channels)
        self.output_convs = nn.ModuleList(
            nn.Conv2d(hidden_size, hidden_size, 3, padding=1) for _ in in_channels
        )

    def forward(self, feature_maps: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        laterals = [conv(feature) for conv, feature in zip(self.lateral_convs, feature_maps)]
        for level in range(len(laterals) - 1, 0, -1):
            finer = laterals[level - 1]
            laterals[level - 1] = finer + F.interpolate(laterals[level], size=finer.shape[-2:], mode="nearest")
        return [conv(lateral) for conv, lateral in zip(self.output_convs, laterals)]


class ConvBatchNormReLU(nn.Sequential):
    """3×3 conv (no bias: the BatchNorm after it has one), BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Upsample2x(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class SemanticFPNHead(nn.Module):
    """Per FPN level, conv-BN-ReLU blocks each followed by ×2 upsampling until the finest level's stride (one block
    at the finest level); the levels are summed, dropped out and classified by a 1×1 conv."""

    def __init__(self, strides: list[int], in_channels: int, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.scale_heads = nn.ModuleList()
        for stride in strides:
            upsamplings = int(round(math.log2(stride / strides[0])))
            layers = []
            for index in range(max(1, upsamplings)):
                layers.append(ConvBatchNormReLU(in_channels if index == 0 else hidden_size, hidden_size))
                if upsamplings:
                    layers.append(Upsample2x())
            self.scale_heads.append(nn.Sequential(*layers))
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(hidden_size, num_labels, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        summed = self.scale_heads[0](levels[0])
        for head, level in zip(self.scale_heads[1:], levels[1:]):
            # Odd map sizes make ×2 upsampling miss the finest level's size by a pixel: resize to it exactly.
            summed = summed + F.interpolate(head(level), size=summed.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.dropout(summed))


def semantic_segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Pixel-wise cross-entropy of `logits` (batch, classes, h, w) upsampled bilinearly to `labels` (batch, H, W),
    skipping pixels labelled `ignore_index`. A batch without any labelled pixel gives 0 (not NaN) with gradients."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 3 or labels.is_floating_point():
        raise ValueError(
            "labels must be an integer tensor of shape (batch, height, width) holding class ids, got "
            f"{type(labels).__name__} {tuple(getattr(labels, 'shape', ()))} {getattr(labels, 'dtype', '')}"
        )
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels hold {labels.shape[0]} maps but the batch has {logits.shape[0]} images")
    labels = labels.long()
    valid = labels != ignore_index
    if valid.any() and (labels[valid].min() < 0 or labels[valid].max() >= logits.shape[1]):
        raise ValueError(
            f"labels must be class ids in [0, {logits.shape[1] - 1}] or the ignore index {ignore_index}, got values "
            f"from {labels[valid].min().item()} to {labels[valid].max().item()}"
        )
    upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    if not valid.any():
        return upsampled.sum() * 0.0
    return F.cross_entropy(upsampled, labels, ignore_index=ignore_index)


class PoolFormerForSemanticSegmentation(PoolFormerPreTrainedModel):
    """Semantic FPN (Kirillov et al. 2019) on a PoolFormer / MetaFormer backbone, as in the PoolFormer paper.

    Reads every stage (stage1…stage4): its config's `out_features` are set to them, whatever they were. Returns
    `logits` of shape (batch, num_labels, H/4, W/4); with `labels` (batch, H, W) also the cross-entropy `loss` of the
    logits upsampled to the labels' size, pixels labelled `config.semantic_loss_ignore_index` (255) left out. The
    image processor's `post_process_semantic_segmentation` turns logits into label maps at any size.
    """

    def __init__(self, config: PoolFormerConfig):
        config = with_every_stage(config)
        check_segmentation_config(config)
        super().__init__(config)
        self.backbone = PoolFormerBackbone(config)
        fpn_hidden_size = semantic_fpn_setting(config, "fpn_hidden_size")
        self.neck = FeaturePyramidNeck(self.backbone.channels, fpn_hidden_size)
        self.decode_head = SemanticFPNHead(
            feature_strides(config),
            fpn_hidden_size,
            semantic_fpn_setting(config, "decode_head_hidden_size"),
            config.num_labels,
            semantic_fpn_setting(config, "classifier_dropout"),
        )
        self.post_init()

    def _init_weights(self, module):
        """The backbone as the classifier's; the head's convs keep PyTorch's default (Kaiming-uniform weights with
        a = √5, uniform biases, scaled by fan-in). The backbone's rule (truncated normal, std 0.02) on the head makes
        a model trained from scratch predict the majority class for hundreds of steps and learn far slower, and so
        does mmsegmentation's head init (Xavier / Kaiming fan-out / N(0, 0.01)); see the README's segmentation
        section for the measurements."""
        super()._init_weights(module)
        # transformers initialises leaf modules only, so a conv is placed by the part of the model it sits in.
        if isinstance(module, nn.Conv2d) and not any(module is conv for conv in self.backbone.modules()):
            # nn.Conv2d.reset_parameters, through transformers' initialisers (they leave loaded weights alone).
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight[0].numel())
                init.uniform_(module.bias, -bound, bound)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | SemanticSegmenterOutput:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.backbone(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.decode_head(self.neck(outputs.feature_maps))
        loss = None
        if labels is not None:
            ignore_index = semantic_fpn_setting(self.config, "semantic_loss_ignore_index")
            loss = semantic_segmentation_loss(logits, labels, ignore_index)
        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


__all__ = ["PoolFormerForSemanticSegmentation"]
