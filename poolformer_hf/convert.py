"""Turn a foreign checkpoint file (timm, sail-sg v1/v2, transformers) into a folder `from_pretrained` loads.

The folder holds the config of the named preset, the weights as safetensors, the image processor with the preset's
crop_pct, ImageNet-1k label names when the head has 1000 classes, and the code files for `trust_remote_code`. It is
written to a temporary sibling and renamed into place only when complete: a failure leaves no half-written folder.
"""

import os
import shutil
import tempfile

import torch

from .configuration_poolformer import PoolFormerConfig
from .conversion import detect_format, load_state_dict_file, rename_keys
from .presets import PRESET_NAMES

_CLASSIFIER_WEIGHTS = ("classifier.weight", "classifier.fc2.weight")


def _num_labels(renamed: dict) -> int:
    for key in _CLASSIFIER_WEIGHTS:
        if key in renamed:
            return renamed[key].shape[0]
    return 0


def build_converted_model(checkpoint: str, variant: str):
    """The classifier (or base model when the checkpoint has no head) of `variant`, holding the checkpoint's weights.

    Raises a ValueError that names the problem: an unknown variant, a file that is not a state dict or would run code,
    a checkpoint of another model, or weights whose shapes do not fit the variant.
    """
    from .modeling_poolformer import PoolFormerForImageClassification, PoolFormerModel
    from .conversion import convert_state_dict

    if variant not in PRESET_NAMES:
        raise ValueError(f"Unknown variant {variant!r}; expected one of: {', '.join(PRESET_NAMES)}")
    state_dict = load_state_dict_file(checkpoint)
    source_format = detect_format(state_dict)
    num_labels = _num_labels(rename_keys(state_dict, source_format))
    overrides = {"num_labels": num_labels} if num_labels else {}
    if num_labels == 1000:
        from .labels import imagenet_id2label

        id2label = imagenet_id2label()
        overrides.update(id2label=id2label, label2id={name: index for index, name in id2label.items()})
    config = PoolFormerConfig.from_preset(variant, **overrides)
    model_class = PoolFormerForImageClassification if num_labels else PoolFormerModel
    with torch.device("meta"):  # every tensor comes from the checkpoint: skip the random init
        model = model_class(config)
    model.load_state_dict(convert_state_dict(state_dict, model, source_format), strict=True, assign=True)
    # Buffers/parameters that stayed on meta would mean the checkpoint did not fill the model.
    leftovers = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if leftovers:
        raise ValueError(f"The checkpoint left {len(leftovers)} tensor(s) unset, e.g. {leftovers[:3]}")
    return model.eval(), source_format


def convert_checkpoint(checkpoint: str, variant: str, output_dir: str, overwrite: bool = False) -> str:
    """Convert `checkpoint` for preset `variant` into `output_dir`; returns the detected source format."""
    from .image_processing_poolformer import PoolFormerImageProcessor

    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ValueError(f"{output_dir} exists and is not empty; choose another --output or pass --overwrite")
    if not os.path.isfile(checkpoint):
        raise ValueError(f"No checkpoint file at {checkpoint}")
    model, source_format = build_converted_model(checkpoint, variant)

    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".converting-", dir=parent)
    try:
        model.save_pretrained(staging)
        PoolFormerImageProcessor(crop_pct=model.config.crop_pct).save_pretrained(staging)
        if os.path.exists(output_dir):
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return source_format
