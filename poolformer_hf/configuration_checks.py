"""Checks of `PoolFormerConfig` values that its type annotations cannot express.

`@strict` checks the types of our own fields as they are set, but not values: NaN passes every `<=` test, a ratio
can round a layer down to 0 channels, a `num_labels` of -1 silently becomes 0 labels. Nor does it check the fields
inherited from transformers' `PreTrainedConfig`: their annotations are strings (`from __future__ import annotations`),
which strict skips, so `return_dict=5` or `problem_type="foo"` would pass. Each check raises a ValueError (a wrong
value) or a TypeError (a wrong type) that names the field and says what is valid. They run where a config is made,
again after `from_dict` has set its keyword overrides, and before a config is saved.

Names: a keyword (or config.json key) that no field has is kept as an attribute, as transformers does, unless its
name is within `TYPO_CUTOFF` of one of this config's own names (`hiden_sizes`, `mlp_ration`): that is a misspelling,
which transformers would keep (the constructor) or drop (`from_pretrained`) while the field silently keeps its
default, so it is refused naming the field meant. `from_preset` refuses every unknown name.
"""

import dataclasses
import difflib
import functools
import json
import math
import typing

import torch
from huggingface_hub.dataclasses import type_validator
from transformers import configuration_utils
from transformers.configuration_utils import PreTrainedConfig


# An initial LayerScale / ResScale above this is inf once the model runs in float16.
LARGEST_INIT_SCALE = float(torch.finfo(torch.float16).max)
# The initial ResScales multiply the residual stream once per branch (two per block) and the norms square it: their
# product over the model must stay under float32's largest square root, or the variances overflow to inf.
LARGEST_STREAM_GROWTH = math.sqrt(float(torch.finfo(torch.float32).max))
# The variance plus a smaller norm_eps is 0 in float32 for a constant feature map: the norm would divide by 0.
SMALLEST_NORM_EPS = float(torch.finfo(torch.float32).tiny)
# More channels than any layer that can be built (a 1×1 conv between two such layers holds 2**40 weights): a width
# beyond it (num_labels, the classifier's, included) is a typo or a runaway ratio, refused here rather than by a
# failed allocation deep in the model.
MAX_CHANNELS = 2**20
# Mixers whose weights depend on the token count at `image_size`.
TOKEN_COUNT_MIXERS = ("random_mixing", "spatial_fc")
# Keyword arguments the config consumes although no field has their name: PreTrainedConfig's, the backbone's, and
# the legacy fields of transformers' PoolFormerConfig that `translate_foreign_fields` turns into ours.
INIT_KEYWORDS = (
    "num_labels", "torch_dtype", "out_features", "out_indices", "name_or_path", "output_attentions",
    "attn_implementation", "experts_implementation", "patch_size", "stride", "num_encoder_blocks", "use_layer_scale",
)  # fmt: skip
# Keys a saved config.json holds that are no field (transformers' bookkeeping, our derived `stage_names`): a config
# reloaded from its own save passes them back to the constructor.
WRITTEN_KEYS = ("model_type", "_name_or_path", "stage_names")
# Settings that heads read from the config beyond its fields, with defaults of their own, and that a user passes as
# keywords: the Semantic FPN head's (`modeling_poolformer_segmentation.SEMANTIC_FPN_DEFAULTS`; a test keeps the two in
# step). Some are close to a field (`fpn_hidden_size` to `hidden_sizes`) and are no misspelling of it.
HEAD_SETTINGS = ("fpn_hidden_size", "decode_head_hidden_size", "classifier_dropout", "semantic_loss_ignore_index")
# difflib's similarity above which an unknown keyword is taken for a misspelt field: it catches `hiden_sizes` (0.96),
# `depth` (0.91), `layer_scale_init` (0.84), but not the other models' names a config may carry, such as
# `num_beams` (0.74 to num_labels), `drop_rate` (0.78 to drop_path_rate, which is not what timm's drop_rate means).
TYPO_CUTOFF = 0.8
# Deeper than any config (ours nest three levels: a backbone config inside UperNet's, its id2label, its lists).
MAX_JSON_DEPTH = 32


def check_values(config) -> None:
    """Every check of this module on a config whose own fields have passed strict typing and the shape checks."""
    check_inherited_field_types(config)
    check_finite(config)
    check_ranges(config)
    check_widths(config)
    check_token_count_mixers(config)
    check_labels(config)
    check_dtype("dtype", config.dtype)


# ---------------------------------------------------------------------------------------------------------- types
@functools.cache
def _inherited_field_types() -> dict[str, object]:
    """PreTrainedConfig's fields whose annotations strict leaves unchecked (strings), evaluated."""
    hints = typing.get_type_hints(PreTrainedConfig, globalns={**vars(configuration_utils), "torch": torch})
    return {
        field.name: hints[field.name]
        for field in dataclasses.fields(PreTrainedConfig)
        if isinstance(field.type, str) and field.name in hints
    }


def check_inherited_field_types(config) -> None:
    for name, expected in _inherited_field_types().items():
        type_validator(name, getattr(config, name), expected)  # a TypeError naming the field and the types


def check_dtype(name: str, value) -> None:
    if isinstance(value, str) and not isinstance(getattr(torch, value, None), torch.dtype):
        raise ValueError(f"{name} must name a torch dtype such as 'float32' or 'bfloat16', got {value!r}")


# ---------------------------------------------------------------------------------------------------------- values
def _non_finite(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_non_finite(item) for item in value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    return False


def check_finite(config) -> None:
    """No field holds NaN or ±inf (a config.json may spell them `NaN` / `Infinity`, which Python's json reads)."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if _non_finite(value):
            raise ValueError(f"{field.name.lstrip('_')} must hold finite numbers, got {value}")


def check_ranges(config) -> None:
    if config.initializer_range <= 0:  # the truncated-normal init divides by it
        raise ValueError(f"initializer_range (a standard deviation) must be > 0, got {config.initializer_range}")
    if not SMALLEST_NORM_EPS <= config.norm_eps < 1:
        raise ValueError(
            f"norm_eps must be in [{SMALLEST_NORM_EPS:.3g}, 1): a small positive constant added to the variance, "
            f"not 0 in float32; got {config.norm_eps}"
        )
    for name in ("layer_scale_init_value", "res_scale_init_value"):
        value = getattr(config, name)
        values = value if isinstance(value, list) else [value]
        if any(v is not None and v > LARGEST_INIT_SCALE for v in values):
            raise ValueError(
                f"{name} must be at most {LARGEST_INIT_SCALE:g} (the largest float16, so the initial scale stays "
                f"finite in half precision), got {value}"
            )
    log_growth = sum(
        2 * depth * math.log10(scale)
        for stage, depth in enumerate(config.depths)
        if (scale := config.stage_value("res_scale_init_value", stage)) is not None
    )
    if log_growth > math.log10(LARGEST_STREAM_GROWTH):
        raise ValueError(
            f"res_scale_init_value {config.res_scale_init_value} multiplies the residual stream by about "
            f"1e{log_growth:.0f} over the {2 * sum(config.depths)} residual branches of depths {config.depths}; the "
            f"product must stay under {LARGEST_STREAM_GROWTH:.2g} so the norms' variances stay finite in float32"
        )
    for stage, (kernel, pad) in enumerate(zip(config.patch_sizes, config.padding)):
        if pad >= kernel:
            raise ValueError(
                f"padding[{stage}] ({pad}) must be smaller than patch_sizes[{stage}] ({kernel}): outputs beyond that "
                f"see only padding"
            )


def _check_width(name: str, ratio, width: int, where: str) -> None:
    channels = int(width * ratio)
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(
            f"{name} ({ratio}) gives {where} int({width} × {ratio}) = {channels:.6g} channels; expected a ratio "
            f"giving 1 to {MAX_CHANNELS} channels, i.e. between {1 / width:.3g} and {MAX_CHANNELS / width:.3g}"
        )


def check_widths(config) -> None:
    """Every layer gets at least one channel and no more than MAX_CHANNELS, including those a ratio sizes."""
    for name in ("num_channels", "hidden_sizes"):
        value = getattr(config, name)
        if max(value if isinstance(value, list) else [value]) > MAX_CHANNELS:
            raise ValueError(f"{name} must be at most {MAX_CHANNELS} channels, got {value}")
    for stage, width in enumerate(config.hidden_sizes):
        _check_width("mlp_ratio", config.mlp_ratio, width, f"the MLP of stage {stage} (hidden_sizes[{stage}])")
        if config.stage_value("token_mixers", stage) == "sepconv":
            _check_width(
                "sepconv_expansion_ratio", config.sepconv_expansion_ratio, width,
                f"the sepconv mixer of stage {stage} (hidden_sizes[{stage}])",
            )  # fmt: skip
    if config.head_type == "mlp":
        _check_width("head_mlp_ratio", config.head_mlp_ratio, config.hidden_sizes[-1], "the MLP head")


def check_token_count_mixers(config) -> None:
    resolutions = config.stage_resolutions(config.image_size, config.image_size)
    for stage, (height, width) in enumerate(resolutions):
        mixer = config.stage_value("token_mixers", stage)
        if mixer in TOKEN_COUNT_MIXERS and min(height, width) < 1:
            raise ValueError(
                f"image_size ({config.image_size}) leaves stage {stage} a {height}×{width} feature map, but its "
                f"{mixer} mixer needs at least 1×1; raise image_size or lower strides {config.strides}"
            )


# ---------------------------------------------------------------------------------------------------------- labels
def check_labels(config) -> None:
    """id2label maps the head's outputs 0 … num_labels-1 to names (JSON gives the keys as strings)."""
    if config.id2label is None:
        return
    keys = []
    for key in config.id2label:
        if isinstance(key, bool) or not (isinstance(key, int) or (isinstance(key, str) and key.isdecimal())):
            raise ValueError(f"id2label keys must be label ids 0, 1, 2, …, got the key {key!r}")
        keys.append(int(key))
    if sorted(keys) != list(range(len(keys))):
        raise ValueError(f"id2label keys must be the label ids 0 … {len(keys) - 1}, got {sorted(keys)}")


def check_init_keywords(config, kwargs: dict) -> None:
    """The keyword arguments PreTrainedConfig consumes without a field: it would turn num_labels=-1 into 0 labels."""
    out_indices = kwargs.get("out_indices")
    if isinstance(out_indices, (list, tuple)):
        count = len(config.stage_names)
        # transformers' own check wraps a negative index modulo the count, then fails with an IndexError on it
        if any(isinstance(i, int) and not -count <= i < count for i in out_indices):
            raise ValueError(f"out_indices must be in [-{count}, {count - 1}] for stage_names, got {out_indices}")
    if "num_labels" in kwargs:
        num_labels = kwargs["num_labels"]
        if isinstance(num_labels, bool) or not isinstance(num_labels, int):
            raise TypeError(f"num_labels must be an int, got {type(num_labels).__name__} ({num_labels!r})")
        if not 0 <= num_labels <= MAX_CHANNELS:
            raise ValueError(
                f"num_labels must be in [0, {MAX_CHANNELS}] (0 for a model without classifier), got {num_labels}"
            )
    check_bool("output_attentions", kwargs.get("output_attentions", False))
    if kwargs.get("torch_dtype") is not None:
        if not isinstance(kwargs["torch_dtype"], (str, torch.dtype)):
            raise TypeError(f"torch_dtype must be a str or a torch.dtype, got {type(kwargs['torch_dtype']).__name__}")
        check_dtype("torch_dtype", kwargs["torch_dtype"])


def check_bool(name: str, value) -> None:
    """A switch is True or False: the string 'false' (truthy) or 1 would pass an `if` and mean something else."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool (True or False), got {type(value).__name__} {value!r}")


# ---------------------------------------------------------------------------------------------------------- names
def _settable_names(config_class) -> set[str]:
    """The public names a keyword may set: fields, the keywords the constructor consumes, writable aliases."""
    fields = {field.name for field in dataclasses.fields(config_class)}
    known = {name for name in fields if not name.startswith("_")} | set(INIT_KEYWORDS)
    return known | {alias for alias, name in config_class.attribute_map.items() if name in fields}  # not read-only


def _own_names(config_class) -> list[str]:
    """What a typo is compared with: this config's own public fields and keywords, not PreTrainedConfig's (whose
    names are close to those of other models' keys, e.g. `is_encoder_decoder` to `tie_encoder_decoder`)."""
    inherited = {field.name for field in dataclasses.fields(PreTrainedConfig)}
    own = {f.name for f in dataclasses.fields(config_class) if f.name not in inherited and not f.name.startswith("_")}
    return sorted(own | set(INIT_KEYWORDS))


def check_keyword_names(config_class, names) -> None:
    """Refuse a name no field has that is a misspelling of one of the config's own (see the module docstring)."""
    known = _settable_names(config_class) | {field.name for field in dataclasses.fields(config_class)}
    for name in sorted(set(names) - known - set(WRITTEN_KEYS) - set(HEAD_SETTINGS)):
        close = difflib.get_close_matches(name, _own_names(config_class), n=1, cutoff=TYPO_CUTOFF)
        if close:
            raise ValueError(f"unknown config field {name!r}: did you mean {close[0]!r}?")


def check_override_names(config_class, overrides: dict) -> None:
    """Refuse a keyword `from_preset` would otherwise keep as a stray attribute while the preset's value stays."""
    known = _settable_names(config_class)
    unknown = sorted(set(overrides) - known)
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of: {', '.join(sorted(known))}"
        raise ValueError(f"from_preset: unknown config field {name!r}{hint}")


# ---------------------------------------------------------------------------------------------------------- loading
def check_config_json(value, path, too_deep: bool = False) -> None:
    """A config.json holds one JSON object, nested no deeper than MAX_JSON_DEPTH (a much deeper one makes Python's
    json parser raise RecursionError: `too_deep`); otherwise an OSError naming the file, as transformers' own for a
    file that is not JSON."""
    if too_deep or _json_depth(value) > MAX_JSON_DEPTH:
        raise OSError(f"{path} nests deeper than {MAX_JSON_DEPTH} levels: not a config (a config.json is one JSON "
                      f"object of fields, a few levels deep)")
    if not isinstance(value, dict):
        raise OSError(f"{path} holds a JSON {_JSON_NAMES.get(type(value), type(value).__name__)}, not an object: a "
                      f"config.json is one JSON object of fields, {{\"model_type\": ..., ...}}")


_JSON_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _json_depth(value) -> int:
    """How deeply `value` nests lists and dicts (0 for a scalar), without recursion; stops past MAX_JSON_DEPTH."""
    depth, level = 0, [value]
    while depth <= MAX_JSON_DEPTH:
        containers = [node for node in level if isinstance(node, (list, dict))]
        if not containers:
            return depth
        depth += 1
        level = [item for node in containers for item in (node.values() if isinstance(node, dict) else node)]
    return depth


# ---------------------------------------------------------------------------------------------------------- saving
def json_text(config, use_diff: bool) -> str:
    """The config as JSON, or a TypeError naming the attributes JSON cannot hold (json.dumps names only a type)."""
    try:
        return config.to_json_string(use_diff=use_diff)
    except TypeError as error:
        items = config.to_diff_dict() if use_diff else config.to_dict()
        bad = [key for key, value in items.items() if not _json_encodable(config, value)]
        raise TypeError(
            f"config attribute(s) {bad} cannot be written to config.json ({error}); store lists, dicts, strings, "
            f"numbers, booleans or None"
        ) from error


def _json_encodable(config, value) -> bool:
    try:
        json.dumps(config._encode_special_floats(value))
    except (TypeError, ValueError):
        return False
    return True
