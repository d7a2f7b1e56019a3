"""Foreign checkpoint formats: detection and key-renaming tables.

transformers' built-in PoolFormer and timm's MetaFormer are renamed by the one table `from_pretrained` loads them with,
`modeling_poolformer.FOREIGN_KEY_MAPPING` (every rule applied in turn, as transformers' `key_mapping` applies it); a key
that does not come out as one of ours is an error. Each sail-sg release is a table of (pattern, replacement) rules here;
the first rule whose pattern matches the start of a key renames it, and a key no rule matches is an error (it belongs
to another model). Our own names are those of
`PoolFormerForImageClassification`: `poolformer.stem…`, `poolformer.stages.{i}.blocks.{j}…`, `poolformer.norm…`,
`classifier…`, and a backbone's per-stage output norms `hidden_states_norms.{stage name}…`. The only tensor change any
format needs is a reshape of linear weights (out, in) to 1×1-conv weights (out, in, 1, 1), which `fit_to_model` does
wherever the element counts agree.

A detector's or segmentor's checkpoint (mmdet / mmseg, as sail-sg/poolformer's detection and segmentation folders save
them) keeps its backbone under `backbone.`; `split_backbone` takes that part out and counts what it leaves.
"""

import re
from collections.abc import Callable

import torch

from ..modeling_poolformer import FOREIGN_KEY_MAPPING


Rule = tuple[str, str | Callable[[re.Match], str]]

# sail-sg/poolformer v1 release: network = [stage0, downsample1, stage1, downsample2, stage2, downsample3, stage3].
# Its dense-prediction backbone (`fork_feat=True`) has no final norm or head but a norm after each stage, named by the
# stage's index in `network` (norm0, norm2, norm4, norm6): our backbone's norms of stage1 … stage4.
SAIL_V1_RULES: list[Rule] = [
    (r"patch_embed\.proj\.", "poolformer.stem.conv."),
    (r"norm([0246])\.", lambda m: f"hidden_states_norms.stage{int(m[1]) // 2 + 1}."),
    (r"network\.(\d+)\.proj\.", lambda m: f"poolformer.stages.{(int(m[1]) + 1) // 2}.downsample.conv."),
    (r"network\.(\d+)\.(\d+)\.layer_scale_(\d)$",
     lambda m: f"poolformer.stages.{int(m[1]) // 2}.blocks.{m[2]}.layer_scale{m[3]}.scale"),
    (r"network\.(\d+)\.(\d+)\.", lambda m: f"poolformer.stages.{int(m[1]) // 2}.blocks.{m[2]}."),
    (r"norm\.", "poolformer.norm."),
    (r"head\.", "classifier."),
]

# sail-sg/metaformer release (v2 models): downsample_layers[0] is the stem, whose norm comes after its conv.
SAIL_V2_RULES: list[Rule] = [
    (r"downsample_layers\.0\.conv\.", "poolformer.stem.conv."),
    (r"downsample_layers\.0\.post_norm\.", "poolformer.stem.norm."),
    (r"downsample_layers\.(\d+)\.pre_norm\.", r"poolformer.stages.\1.downsample.norm."),
    (r"downsample_layers\.(\d+)\.conv\.", r"poolformer.stages.\1.downsample.conv."),
    (r"stages\.(\d+)\.(\d+)\.", r"poolformer.stages.\1.blocks.\2."),
    (r"norm\.", "poolformer.norm."),
    (r"head\.(fc1|fc2|norm)\.", r"classifier.\1."),
    (r"head\.", "classifier."),
]

OURS_RULES: list[Rule] = [(r"(poolformer\.|classifier\.|hidden_states_norms\.)", r"\1")]

# The formats `from_pretrained` reads directly, renamed by its table.
HUB_FORMATS = ("transformers", "timm")
_KEY_MAPPING = [(re.compile(pattern), replacement) for pattern, replacement in FOREIGN_KEY_MAPPING.items()]
_OUR_PREFIXES = ("poolformer.", "classifier.")

FORMATS: dict[str, list[Rule]] = {
    "poolformer_hf": OURS_RULES,
    "sail_v1": SAIL_V1_RULES,
    "sail_v2": SAIL_V2_RULES,
}

# A key that only one format has, checked in order; transformers' is the one its table renames to our stem conv.
_SIGNATURES = [
    ("poolformer_hf", lambda key: key == "poolformer.stem.conv.weight"),
    ("timm", lambda key: key == "stem.conv.weight"),
    ("transformers", lambda key: apply_key_mapping(key) == "poolformer.stem.conv.weight"),
    ("sail_v1", lambda key: key == "patch_embed.proj.weight"),
    ("sail_v2", lambda key: key == "downsample_layers.0.conv.weight"),
]


def detect_format(state_dict: dict) -> str:
    """Name the checkpoint format from its keys, or raise a ValueError saying it is none we know."""
    for name, signature in _SIGNATURES:
        if any(signature(key) for key in state_dict):
            return name
    sample = ", ".join(list(state_dict)[:5])
    raise ValueError(
        "The checkpoint is not a PoolFormer/MetaFormer state dict in any known format (poolformer_hf, transformers, "
        f"timm, sail-sg v1, sail-sg v2): none of its keys is a stem conv weight. First keys: {sample}"
    )


def apply_key_mapping(key: str) -> str:
    """`key` renamed by `FOREIGN_KEY_MAPPING` as `from_pretrained(key_mapping=...)` renames it: each rule in turn, its
    first match replaced."""
    for pattern, replacement in _KEY_MAPPING:
        key = pattern.sub(replacement, key, count=1)
    return key


def rename_keys(state_dict: dict, source_format: str) -> dict:
    """Our names for every tensor of a `source_format` state dict; a key no rule knows is a ValueError."""
    if source_format not in FORMATS and source_format not in HUB_FORMATS:
        known = ", ".join(sorted([*FORMATS, *HUB_FORMATS]))
        raise ValueError(f"unknown checkpoint format {source_format!r}; expected one of {known}")
    rules = [(re.compile(pattern), replacement) for pattern, replacement in FORMATS.get(source_format, [])]
    renamed, unknown = {}, []
    for key, tensor in state_dict.items():
        if source_format in HUB_FORMATS:
            new = apply_key_mapping(key)
            if new.startswith(_OUR_PREFIXES):
                renamed[new] = tensor
            else:
                unknown.append(key)
            continue
        for pattern, replacement in rules:
            match = pattern.match(key)
            if match:
                new = match.expand(replacement) if isinstance(replacement, str) else replacement(match)
                renamed[new + key[match.end():]] = tensor
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"{len(unknown)} key(s) of this {source_format} checkpoint belong to no PoolFormer/MetaFormer layer, "
            f"e.g. {unknown[:5]}: the file is of another model"
        )
    return renamed


def fit_to_model(state_dict: dict, model: torch.nn.Module, ignore_mismatched_sizes: bool = False) -> dict:
    """Reshape linear weights into 1×1-conv weights where the model has convs, and check every shape.

    A tensor whose shape the model cannot take raises a ValueError naming it (or is dropped with
    `ignore_mismatched_sizes`); keys the model lacks are returned untouched for the loader to report.
    """
    expected = {name: tensor.shape for name, tensor in model.state_dict().items()}
    fitted, mismatched = {}, []
    for key, tensor in state_dict.items():
        target = expected.get(key)
        if target is not None and tensor.shape != target:
            if tensor.numel() == target.numel() and tensor.ndim == 2 and len(target) == 4:
                tensor = tensor.reshape(target)
            else:
                mismatched.append(f"{key}: checkpoint {tuple(tensor.shape)} vs model {tuple(target)}")
                continue
        fitted[key] = tensor
    if mismatched and not ignore_mismatched_sizes:
        raise ValueError(
            f"{len(mismatched)} tensor(s) of the checkpoint do not fit this config (wrong variant?): "
            + "; ".join(mismatched[:5])
        )
    return fitted


# mmdet / mmseg save the whole detector or segmentor: the backbone under this prefix, beside the neck and the heads
# (`neck.`, `decode_head.`, `auxiliary_head.`, `rpn_head.`, `roi_head.`, `bbox_head.`, ...).
DENSE_BACKBONE_PREFIX = "backbone."


def split_backbone(state_dict: dict) -> tuple[dict, dict[str, int]]:
    """The backbone of a detector's or segmentor's state dict (its prefix removed), and how many tensors each other
    part (`neck.`, `roi_head.`, ...) holds, which this converter leaves out; a state dict with no `backbone.` key comes
    back whole, with nothing left out."""
    if not any(key.startswith(DENSE_BACKBONE_PREFIX) for key in state_dict):
        return state_dict, {}
    backbone, left_out = {}, {}
    for key, tensor in state_dict.items():
        if key.startswith(DENSE_BACKBONE_PREFIX):
            backbone[key.removeprefix(DENSE_BACKBONE_PREFIX)] = tensor
        else:
            part = key.split(".", 1)[0] + "."
            left_out[part] = left_out.get(part, 0) + 1
    return backbone, left_out


# Reading and identifying checkpoint files (safetensors, PyTorch zip, legacy pickle) lives in its own module.
from .checkpoint_files import load_state_dict_file  # noqa: E402,F401  (re-exported: convert.py and tests use it)


def convert_state_dict(state_dict: dict, model: torch.nn.Module, source_format: str | None = None) -> dict:
    """A state dict of any known format, renamed and reshaped for `model`, checked to fill it exactly.

    Missing or surplus tensors raise a ValueError naming them (e.g. a checkpoint of another variant).
    """
    source_format = source_format or detect_format(state_dict)
    renamed = rename_keys(state_dict, source_format)
    prefix = getattr(model, "base_model_prefix", "") + "."
    if not any(key.startswith(prefix) for key in model.state_dict()):
        # A base model or backbone (PoolFormerModel, PoolFormerBackbone) is the body itself: its names lack the prefix.
        # A backbone's output norms keep theirs; a classifier left over is reported below as unexpected.
        renamed = {key.removeprefix(prefix): value for key, value in renamed.items()}
    fitted = fit_to_model(renamed, model)
    expected = set(model.state_dict())
    missing, surplus = sorted(expected - set(fitted)), sorted(set(fitted) - expected)
    if missing or surplus:
        raise ValueError(
            f"The {source_format} checkpoint does not match this config (wrong variant?): "
            f"{len(missing)} tensor(s) missing, e.g. {missing[:3]}; {len(surplus)} unexpected, e.g. {surplus[:3]}"
        )
    return fitted
