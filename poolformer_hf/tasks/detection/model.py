"""transformers' detectors on a PoolFormer backbone, configured through their `backbone_config` only: each detector
reads the backbone's `channels` and the maps its `out_features` pick; nothing in the detector is patched.

RT-DETR takes strides 8/16/32 (stage2…stage4) and needs its `encoder_in_channels` set to their widths; DETR and
Conditional DETR take the last map (stage4).
"""

from dataclasses import dataclass

from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


@dataclass(frozen=True)
class Detector:
    config_class: str
    model_class: str
    processor_class: str
    out_features: tuple[str, ...]
    demo: dict  # sizes for the generated-shapes demo (a few CPU minutes)


DETECTORS = {
    "rt_detr": Detector(
        "RTDetrConfig", "RTDetrForObjectDetection", "RTDetrImageProcessor", ("stage2", "stage3", "stage4"),
        {"d_model": 128, "encoder_hidden_dim": 128, "decoder_in_channels": [128, 128, 128], "encoder_ffn_dim": 256,
         "decoder_ffn_dim": 256, "decoder_layers": 3, "num_queries": 30, "num_denoising": 30},
    ),
    "detr": Detector(
        "DetrConfig", "DetrForObjectDetection", "DetrImageProcessor", ("stage4",),
        {"d_model": 128, "encoder_layers": 2, "decoder_layers": 2, "encoder_ffn_dim": 256, "decoder_ffn_dim": 256,
         "encoder_attention_heads": 4, "decoder_attention_heads": 4, "num_queries": 10},
    ),
    "conditional_detr": Detector(
        "ConditionalDetrConfig", "ConditionalDetrForObjectDetection", "ConditionalDetrImageProcessor", ("stage4",),
        {"d_model": 128, "encoder_layers": 2, "decoder_layers": 2, "encoder_ffn_dim": 256, "decoder_ffn_dim": 256,
         "encoder_attention_heads": 4, "decoder_attention_heads": 4, "num_queries": 10},
    ),
}
# The backbone of the demo (neither --preset nor --model_name_or_path): S12's layout at half width, a third of depth.
DEMO_BACKBONE = {"depths": [1, 1, 2, 1], "hidden_sizes": [32, 64, 160, 256]}


def _detector(name: str) -> Detector:
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; expected one of {list(DETECTORS)}")
    return DETECTORS[name]


def detection_config(detector: str, backbone_config, label_names: list[str], **overrides):
    """The detector's config with `backbone_config` (a PoolFormerConfig) as its backbone."""
    import transformers

    spec = _detector(detector)
    values = {k: v for k, v in backbone_config.to_dict().items() if k not in ("out_indices", "_out_indices")}
    backbone_config = backbone_config.__class__.from_dict({**values, "out_features": list(spec.out_features)})
    id2label = dict(enumerate(label_names))
    kwargs = {"backbone_config": backbone_config, "num_labels": len(label_names), "id2label": id2label,
              "label2id": {name: index for index, name in id2label.items()}}
    channels = [backbone_config.hidden_sizes[backbone_config.stage_names.index(s) - 1] for s in spec.out_features]
    if detector == "rt_detr":
        kwargs["encoder_in_channels"] = channels
    else:
        kwargs["use_timm_backbone"] = False
    return getattr(transformers, spec.config_class)(**{**kwargs, **overrides})


def build_detection_model(detector: str, label_names: list[str], preset: str | None = None,
                          model_name_or_path: str | None = None, **loading):
    """A detector for `label_names`: from a saved detector, or new on a preset backbone (optionally started from a
    PoolFormer checkpoint's weights, e.g. an ImageNet classifier)."""
    import transformers

    from ... import PoolFormerBackbone, PoolFormerConfig

    spec = _detector(detector)
    model_class = getattr(transformers, spec.model_class)
    backbone_state = None
    if model_name_or_path is not None:
        if preset is not None:
            raise ValueError("--preset builds a new model; do not combine it with --model_name_or_path")
        config = transformers.AutoConfig.from_pretrained(model_name_or_path, **loading)
        if spec.model_class in (config.architectures or []):
            return model_class.from_pretrained(model_name_or_path, ignore_mismatched_sizes=True,
                                               num_labels=len(label_names), **loading)
        backbone = PoolFormerBackbone.from_pretrained(model_name_or_path, out_features=list(spec.out_features),
                                                      **loading)
        backbone_config, backbone_state, demo = backbone.config, backbone.state_dict(), False
    else:
        demo = preset is None
        backbone_config = PoolFormerConfig.from_preset(preset or "poolformer_s12", **(DEMO_BACKBONE if demo else {}))
    model = model_class(detection_config(detector, backbone_config, label_names, **(spec.demo if demo else {})))
    if backbone_state is not None:
        backbone_of(model).load_state_dict(backbone_state)
    return model


def backbone_of(model):
    """The PoolFormerBackbone inside a detector, wherever the detector keeps it."""
    from ... import PoolFormerBackbone

    return next(module for module in model.modules() if isinstance(module, PoolFormerBackbone))


def build_detection_processor(detector: str, image_size: int):
    """The detector's own processor, resizing to `image_size`² and normalizing with the ImageNet statistics our
    backbone was trained with (RT-DETR's processor does not normalize by default)."""
    import transformers

    processor_class = getattr(transformers, _detector(detector).processor_class)
    return processor_class(size={"height": image_size, "width": image_size}, do_normalize=True,
                           image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD)
