"""torchvision's RetinaNet and Mask R-CNN on a PoolFormer backbone, with the necks of the PoolFormer paper's COCO
setups (sail-sg/poolformer's detection configs, mmdetection 2.19).

pixel images → torchvision's transform (resize to `min_size`/`max_size`, ImageNet normalization, padding to a
multiple of 32) → PoolFormerBackbone (the stages the neck reads, each through its own GroupNorm, as the paper's
`fork_feat` backbone) → FPN, 256 channels, 5 levels → the detector's heads.

- RetinaNet: the FPN reads stage2–stage4 (strides 8–32; mmdetection's `start_level=1`) and adds P6 by a stride-2
  3×3 conv on stage4's map and P7 by another on P6 (`add_extra_convs="on_input"`). Its head is torchvision's, which is
  mmdetection's `RetinaHead`: 4 conv-ReLU layers of 256 per branch, 9 anchors (3 scales × 3 ratios, 32…512 px).
- Mask R-CNN: the FPN reads all four stages and adds a max-pooled fifth level. torchvision's heads are mmdetection's
  too: RPN with one 3×3 conv and 3 anchors per level, box head of two 1024-wide FC layers over 7×7 RoIAlign, mask head
  of four 3×3 convs, a 2× deconvolution and a 1×1 classifier.

With 80 classes these count, for S12 / S24 / S36, 21.65M / 31.13M / 40.60M parameters (RetinaNet) and 31.57M /
41.05M / 50.52M (Mask R-CNN): the paper's 21.7 / 31.1 / 40.6 and 31.6 / 41.0 / 50.5 within 0.3%
(tests/test_detection_torchvision.py). The one difference in the heads: torchvision's box regressor also has outputs
for the background class (4 × 1024 weights more than mmdetection's).

A detector is described by a `DetectorConfig` (JSON: what rebuilds it) and saved with `saved_detectors`; the detector
a training run starts from (a checkpoint's backbone, a preset, a saved detector) is `torchvision_training`'s.
"""

from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields

from torch import nn
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD



@dataclass(frozen=True)
class TorchvisionDetector:
    model_class: str  # in torchvision.models.detection
    out_features: tuple[str, ...]  # the backbone stages the FPN reads
    extra_levels: str  # "p6p7": P6 = conv(stage4's map), P7 = conv(relu(P6)); "maxpool": P6 = maxpool(P5)
    background_class: bool  # R-CNN heads classify 1…K with 0 the background; RetinaNet's sigmoids take 0…K-1
    masks: bool  # instance masks (trained on the annotations' segmentations, evaluated as segm AP)
    learning_rate: float  # the paper's AdamW recipe (sail-sg/poolformer detection configs)
    weight_decay: float
    options: dict  # torchvision constructor keywords: mmdetection's test settings where torchvision's differ
    demo: dict  # DetectorConfig fields for the demo's model (neither --preset nor --model_name_or_path)
    # Command-line defaults (data size, training arguments) of the generated-shapes demo (no --train_annotation_file),
    # sized for a few CPU minutes; COCO-format data keeps the paper's recipe.
    demo_run: dict = field(default_factory=dict)


TORCHVISION_DETECTORS = {
    "retinanet": TorchvisionDetector(
        "RetinaNet", ("stage2", "stage3", "stage4"), "p6p7", background_class=False, masks=False,
        learning_rate=1e-4, weight_decay=1e-4, options={"detections_per_img": 100}, demo={"fpn_channels": 128},
    ),
    "mask_rcnn": TorchvisionDetector(
        "MaskRCNN", ("stage1", "stage2", "stage3", "stage4"), "maxpool", background_class=True, masks=True,
        learning_rate=2e-4, weight_decay=1e-4, options={},
        # A scene holds at most 3 objects: a few hundred proposals and 32 sampled RoIs an image are plenty, and a
        # 64-wide mask head (a quarter of the convolution cost of a 128-wide one) for three shape classes.
        demo={"fpn_channels": 128, "mask_head_channels": 64,
              "options": {"rpn_pre_nms_top_n_train": 500, "rpn_post_nms_top_n_train": 200,
                          "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 100,
                          "rpn_batch_size_per_image": 64, "box_batch_size_per_image": 32}},
        # A step costs several of RetinaNet's (RoI sampling, box and mask heads and their RoIAlign backward): 128
        # scenes, 192 steps of 8, keep the demo to a few CPU minutes (docs/dense.md has the measured figures).
        demo_run={"generated_train_size": 128},
    ),
}
# The width of Faster / Mask R-CNN's box head (torchvision's TwoMLPHead default; mmdetection's Shared2FCBBoxHead).
BOX_HEAD_WIDTH = 1024
# The paper's input scale (mmdetection's (1333, 800): the short side to 800, the long side at most 1333).
COCO_MIN_SIZE, COCO_MAX_SIZE = 800, 1333


def torchvision_detector(name: str) -> TorchvisionDetector:
    if name not in TORCHVISION_DETECTORS:
        raise ValueError(f"unknown torchvision detector {name!r}; expected one of {list(TORCHVISION_DETECTORS)}")
    return TORCHVISION_DETECTORS[name]


@dataclass
class DetectorConfig:
    """Everything that rebuilds a torchvision detector on our backbone (saved as detector_config.json)."""

    detector: str  # a key of TORCHVISION_DETECTORS
    label_names: list[str]
    backbone: dict  # a PoolFormerConfig's to_dict(); its out_features are set from the detector
    fpn_channels: int = 256
    mask_head_channels: int = 256  # Mask R-CNN's mask head convs and deconvolution (the paper's 256)
    min_size: int = COCO_MIN_SIZE
    max_size: int = COCO_MAX_SIZE
    options: dict = field(default_factory=dict)  # more torchvision keywords (score_thresh, nms_thresh, …)

    def __post_init__(self):
        torchvision_detector(self.detector)
        if not self.label_names:
            raise ValueError("a detector needs at least one label name")
        for name in ("fpn_channels", "mask_head_channels", "min_size", "max_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, values: dict, source: str = "detector config") -> "DetectorConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{source}: unknown fields {unknown}; expected some of {sorted(known)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as error:
            # A config is data: a builder we do not have is refused, never looked up elsewhere or loaded as code.
            raise ValueError(f"{source}: {error}") from None

    def to_dict(self) -> dict:
        return asdict(self)

    def backbone_config(self):
        from ... import PoolFormerConfig

        config = PoolFormerConfig.from_dict(self.backbone)
        config.out_features = list(torchvision_detector(self.detector).out_features)
        return config


class PoolFormerFPN(nn.Module):
    """The backbone torchvision's detectors take: PoolFormerBackbone's maps (named "0", "1", … as torchvision's
    RoI poolers expect) through an FPN, `out_channels` wide."""

    def __init__(self, body: nn.Module, out_channels: int, extra_levels: str):
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7

        super().__init__()
        self.body = body
        if extra_levels == "p6p7":
            extra = LastLevelP6P7(body.channels[-1], out_channels)
            # From the last stage's map (mmdetection's "on_input"), also when its width equals the FPN's, where
            # torchvision would start from P5 instead.
            extra.use_P5 = False
        elif extra_levels == "maxpool":
            extra = LastLevelMaxPool()
        else:
            raise ValueError(f"extra_levels must be 'p6p7' or 'maxpool', got {extra_levels!r}")
        self.fpn = FeaturePyramidNetwork(list(body.channels), out_channels, extra_blocks=extra)
        self.out_channels = out_channels

    def forward(self, images):
        maps = self.body(images).feature_maps
        return self.fpn(OrderedDict((str(index), feature) for index, feature in enumerate(maps)))


def build_torchvision_detector(config: DetectorConfig, backbone_state: dict | None = None) -> nn.Module:
    """The torchvision detector `config` describes, its backbone started from `backbone_state` where given (the
    weights of a PoolFormerBackbone with the same config) and random otherwise. The config rides along as the
    model's `detector_config`, which `save_detector` writes."""
    import torchvision.models.detection as detection

    from ... import PoolFormerBackbone

    spec = torchvision_detector(config.detector)
    body = PoolFormerBackbone(config.backbone_config())
    if backbone_state is not None:
        body.load_state_dict(backbone_state)
    num_classes = len(config.label_names) + spec.background_class
    heads = {"num_classes": num_classes}
    if spec.masks:
        # torchvision's own defaults, written out to set the mask head's width (torchvision fixes it at 256); given
        # a mask predictor, torchvision wants the box predictor too and num_classes left out.
        width = config.mask_head_channels
        heads = {"box_predictor": detection.faster_rcnn.FastRCNNPredictor(BOX_HEAD_WIDTH, num_classes),
                 "mask_head": detection.mask_rcnn.MaskRCNNHeads(config.fpn_channels, [width] * 4, 1),
                 "mask_predictor": detection.mask_rcnn.MaskRCNNPredictor(width, width, num_classes)}
    model = getattr(detection, spec.model_class)(
        PoolFormerFPN(body, config.fpn_channels, spec.extra_levels),
        min_size=config.min_size, max_size=config.max_size,
        image_mean=list(IMAGENET_DEFAULT_MEAN), image_std=list(IMAGENET_DEFAULT_STD),
        **heads, **{**spec.options, **config.options},
    )
    model.detector_config = config
    return model


def input_sizes(image_size: int | None) -> dict:
    """min_size / max_size for `--image_size` (the short side; the long side capped at the paper's 1333:800 ratio),
    the paper's 800 / 1333 without it."""
    if image_size is None:
        return {"min_size": COCO_MIN_SIZE, "max_size": COCO_MAX_SIZE}
    return {"min_size": image_size, "max_size": round(image_size * COCO_MAX_SIZE / COCO_MIN_SIZE)}


def backbone_dict(config) -> dict:
    """A backbone config as saved in a DetectorConfig: without the classifier's labels, which it does not use."""
    return {k: v for k, v in config.to_dict().items() if k not in ("id2label", "label2id")}
