"""The segmentation model a run trains: Semantic FPN (ours) or transformers' UperNet, on a PoolFormer backbone built
from a preset or initialised from a checkpoint (a classifier's ImageNet weights, or a saved segmentation model)."""

import logging

logger = logging.getLogger(__name__)

HEADS = ("semantic_fpn", "upernet")
STAGES = ["stage1", "stage2", "stage3", "stage4"]
# Used only when neither --model_name_or_path nor --preset is given: S12's layout at half its width and a third of
# its depth, and both heads at a quarter of the paper's widths, so the generated-shapes demo trains in minutes on two
# CPU cores.
DEMO_BACKBONE = {"depths": [1, 1, 2, 1], "hidden_sizes": [32, 64, 160, 256]}
DEMO_HEAD = {"fpn_hidden_size": 64, "decode_head_hidden_size": 32}
DEMO_UPERNET = {"hidden_size": 128, "auxiliary_channels": 64}


def build_segmentation_model(head: str, label_names: list[str], preset: str | None = None,
                             model_name_or_path: str | None = None, **loading):
    """A `head` model for `label_names`. A checkpoint of the same kind is fine-tuned as it is (a new classifier when
    the label count differs); any other PoolFormer checkpoint (e.g. an ImageNet classifier) gives the backbone."""
    from transformers import UperNetConfig, UperNetForSemanticSegmentation

    from ... import PoolFormerBackbone, PoolFormerConfig, PoolFormerForSemanticSegmentation

    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; expected one of {list(HEADS)}")
    id2label = dict(enumerate(label_names))
    labels = {"num_labels": len(label_names), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    model_class = PoolFormerForSemanticSegmentation if head == "semantic_fpn" else UperNetForSemanticSegmentation
    backbone_state = None
    if model_name_or_path is not None:
        if preset is not None:
            raise ValueError("--preset builds a new model; do not combine it with --model_name_or_path")
        config = _checkpoint_config(model_name_or_path, **loading)
        if model_class.__name__ in (config.architectures or []):
            return model_class.from_pretrained(model_name_or_path, ignore_mismatched_sizes=True, **labels, **loading)
        backbone = PoolFormerBackbone.from_pretrained(model_name_or_path, out_features=STAGES, **loading)
        backbone_config, backbone_state = backbone.config, backbone.state_dict()
        demo = False
    else:
        demo = preset is None
        backbone_config = PoolFormerConfig.from_preset(
            preset or "poolformer_s12", out_features=STAGES, **(DEMO_BACKBONE if demo else {})
        )
    if head == "semantic_fpn":
        config = PoolFormerConfig.from_dict({**backbone_config.to_dict(), **labels, **(DEMO_HEAD if demo else {})})
        model = PoolFormerForSemanticSegmentation(config)
    else:
        config = UperNetConfig(
            backbone_config=backbone_config, auxiliary_in_channels=backbone_config.hidden_sizes[2], **labels,
            **(DEMO_UPERNET if demo else {}),
        )
        model = UperNetForSemanticSegmentation(config)
    if backbone_state is not None:
        model.backbone.load_state_dict(backbone_state)
        logger.info("backbone initialised from %s", model_name_or_path)
    return model


def _checkpoint_config(path: str, **loading):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path, **loading)
