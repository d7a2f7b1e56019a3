"""Turn a foreign checkpoint file (timm, sail-sg v1/v2, transformers) into a folder `from_pretrained` loads.

The folder holds the config of the named preset, the weights as safetensors, the image processor with the preset's
crop_pct, ImageNet-1k label names when the head has 1000 classes, and the code files for `trust_remote_code`. It is
written to a hidden sibling and swapped into place by rename only when complete (`output_folders`): a failure or a
kill leaves no half-written folder, and `overwrite` replaces only an earlier conversion's output.

A classification checkpoint becomes a `PoolFormerForImageClassification`, a headless one a `PoolFormerModel`, and a
dense-prediction backbone (sail-sg/poolformer's mmdet / mmseg checkpoints: a norm after each stage, no final norm) a
`PoolFormerBackbone` returning the stages those norms follow. A detector's or segmentor's neck and heads are left out,
with a logged warning that counts them by part: what a user converting it wants is the backbone.
"""

import logging
import os

import torch

from ..configuration_poolformer import TIMM_HEAD, PoolFormerConfig
from .checkpoint_files import check_floating, load_state_dict_file
from .formats import detect_format, rename_keys, split_backbone
from ..hub.output_folders import check_output_folder, write_staged
from ..presets import PRESET_NAMES

logger = logging.getLogger(__name__)

_CLASSIFIER_WEIGHTS = ("classifier.weight", "classifier.fc2.weight")
_OUTPUT_NORMS = "hidden_states_norms."


def _num_labels(renamed: dict) -> int:
    for key in _CLASSIFIER_WEIGHTS:
        if key in renamed:
            shape = tuple(renamed[key].shape)
            if len(shape) < 2 or shape[0] < 1:
                raise ValueError(f"The checkpoint's classifier weight {key} has shape {shape}; expected "
                                 "(num_labels, features) with at least one label")
            return shape[0]
    return 0


def _output_norm_stages(renamed: dict, stage_names: list[str]) -> list[str]:
    """The stages whose output a dense-prediction backbone normalizes, in stage order; none for other checkpoints.

    (RetinaNet's sail-sg backbone has no norm after the first stage, whose features its FPN does not use.)"""
    return [stage for stage in stage_names if any(key.startswith(f"{_OUTPUT_NORMS}{stage}.") for key in renamed)]


def _note_left_out(checkpoint: str, backbone: dict, left_out: dict[str, int]) -> None:
    parts = ", ".join(f"{part} ({count})" for part, count in sorted(left_out.items()))
    logger.warning(
        "%s is a detector's or segmentor's checkpoint (mmdet / mmseg): converting its backbone (%d tensors) and "
        "leaving out the %d tensors of its other parts: %s",
        os.path.basename(checkpoint), len(backbone), sum(left_out.values()), parts,
    )


def build_converted_model(checkpoint: str, variant: str, max_bytes: int | None = None):
    """The classifier, base model (a checkpoint without head) or backbone (a dense-prediction checkpoint) of
    `variant`, holding the checkpoint's weights.

    Raises a ValueError that names the problem: an unknown variant, a file that is not a state dict or would run code,
    a checkpoint of another model, or weights whose shapes do not fit the variant.
    """
    from ..modeling_poolformer import PoolFormerBackbone, PoolFormerForImageClassification, PoolFormerModel
    from .formats import convert_state_dict

    if variant not in PRESET_NAMES:
        raise ValueError(f"Unknown variant {variant!r}; expected one of: {', '.join(PRESET_NAMES)}")
    state_dict, left_out = split_backbone(load_state_dict_file(checkpoint, max_bytes=max_bytes))
    if left_out:
        _note_left_out(checkpoint, state_dict, left_out)
    source_format = detect_format(state_dict)
    check_floating(state_dict, checkpoint)
    renamed = rename_keys(state_dict, source_format)
    num_labels = _num_labels(renamed)
    overrides = {"num_labels": num_labels} if num_labels else {}
    if num_labels == 1000:
        from ..data.labels import imagenet_id2label

        id2label = imagenet_id2label()
        overrides.update(id2label=id2label, label2id={name: index for index, name in id2label.items()})
    if source_format == "timm":
        overrides.update(TIMM_HEAD)
    normalized = _output_norm_stages(renamed, PoolFormerConfig.from_preset(variant).stage_names)
    if normalized:
        overrides.update(out_features=normalized, backbone_norm=True)
    config = PoolFormerConfig.from_preset(variant, **overrides)
    model_class = (
        PoolFormerForImageClassification if num_labels else PoolFormerBackbone if normalized else PoolFormerModel
    )
    with torch.device("meta"):  # every tensor comes from the checkpoint: skip the random init
        model = model_class(config)
    model.load_state_dict(convert_state_dict(state_dict, model, source_format), strict=True, assign=True)
    # Buffers/parameters that stayed on meta would mean the checkpoint did not fill the model.
    leftovers = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if leftovers:
        raise ValueError(f"The checkpoint left {len(leftovers)} tensor(s) unset, e.g. {leftovers[:3]}")
    return model.eval(), source_format


def convert_checkpoint(
    checkpoint: str, variant: str, output_dir: str, overwrite: bool = False, max_bytes: int | None = None
) -> str:
    """Convert `checkpoint` for preset `variant` into `output_dir`; returns the detected source format.

    Every refusal (a bad file, a target `--overwrite` may not replace) is a ValueError raised before anything is
    written. A failed write (full or read-only disk) is an OSError naming the output; either way the previous output,
    if any, is left whole.
    """
    from ..image_processing_poolformer import PoolFormerImageProcessor

    output_dir = check_output_folder(output_dir, overwrite, inputs=(checkpoint,))
    if not os.path.isfile(checkpoint):
        raise ValueError(f"No checkpoint file at {checkpoint}")
    model, source_format = build_converted_model(checkpoint, variant, max_bytes=max_bytes)

    def fill(staging: str) -> None:
        model.save_pretrained(staging)
        PoolFormerImageProcessor(crop_pct=model.config.crop_pct).save_pretrained(staging)

    write_staged(output_dir, fill, checkpoint=os.path.basename(checkpoint), variant=variant,
                 source_format=source_format)
    return source_format
