"""Back out of poolformer_hf: write a model as a folder of timm's MetaFormer or of transformers' built-in PoolFormer.

The weight names are `FOREIGN_KEY_MAPPING` run backwards, not a second table: the peer model is built on the meta
device, each of its keys is renamed forward by the table `from_pretrained` loads with, and that renaming is inverted
(theirs ← ours) after checking that it is one-to-one onto our model's keys. Where the peer keeps a tensor in another
shape of the same size (the `nn.Linear` MLPs of timm's CAFormer attention stages, our 1×1 convs) it is reshaped.

- timm: `model.safetensors` and the `config.json` that `timm.models.save_for_hf` writes (`architecture`,
  `num_classes`, `label_names`, `pretrained_cfg` with our processor's input size, crop_pct, interpolation, mean and
  std), so `timm.create_model("local-dir:<folder>", pretrained=True)` loads it. timm builds a MetaFormer by name, so
  the model must be one of its families (poolformer_*, poolformerv2_*, convformer_*, caformer_*) as our preset of that
  name has it; only the class count and the input channels may differ. timm's poolformer_* (v1) normalize after
  global pooling, our v1 presets (as the paper and transformers) before it: such a model is refused unless
  `accept_timm_v1_head` takes timm's head (the weights go over, the logits change; `TIMM_HEAD`).
- transformers: `config.json` (model_type `poolformer`), `model.safetensors` and `preprocessor_config.json`, for
  `transformers.PoolFormerForImageClassification.from_pretrained(folder)`. Its PoolFormer is the v1 model only; a
  config it cannot hold is refused, naming each field and the value transformers would need.

The folder is written through `output_folders` as a conversion's is: staged, marked and swapped into place, so a
refusal or a failure leaves nothing half-written, and `overwrite` replaces only an earlier conversion's output.
"""

import dataclasses
import os

import torch
from transformers import PreTrainedConfig

from ..configuration_poolformer import PER_STAGE_FIELDS, TIMM_HEAD, PoolFormerConfig
from ..hub.output_folders import check_output_folder, write_staged
from ..presets import PRESET_NAMES
from .formats import rename_keys
from .to_folder import build_converted_model

PEERS = ("timm", "transformers")

# Fields that do not change what the weights compute: training settings, eval preprocessing, dense-task options.
# (`image_size` sizes only the random-mixing and spatial-FC mixers, which neither peer has.)
_NOT_ARCHITECTURE = ("drop_path_rate", "head_dropout", "initializer_range", "crop_pct", "image_size", "backbone_norm",
                     "_out_features", "_out_indices", "num_channels")
# Initial values: whether the scale exists is architecture; the learned values are in the weights.
_INIT_VALUES = ("layer_scale_init_value", "res_scale_init_value")

# What transformers' PoolFormer builds whatever its config says: the one value each of our fields may hold.
_TRANSFORMERS_FIXED = {
    "token_mixers": "pooling",
    "norm_type": "group_norm",
    "norm_bias": True,
    "norm_eps": 1e-5,  # nn.GroupNorm's default, which it does not pass on
    "downsample_norm": None,
    "res_scale_init_value": None,
    "mlp_bias": True,
    "head_type": "linear",
    "head_norm_type": "group_norm",
    "head_norm_position": "before_pool",
    "head_dropout": 0.0,
}
# Our activations that transformers' ACT2FN computes the same under the same name.
_TRANSFORMERS_ACTIVATIONS = ("gelu", "relu", "silu")
_V1_PRESETS = [name for name in PRESET_NAMES if name.startswith("poolformer_")]
# timm's poolformer_* normalize the pooled vector (timm's MetaFormer head: global pool, then a channel LayerNorm),
# where the paper, transformers and our v1 presets normalize the last feature map before pooling; a timm checkpoint or
# folder converts to this head (`TIMM_HEAD`). (timm's eps is 1e-6, ours `norm_eps`, 1e-5 for v1: a few 1e-6 in the
# logits.)


# ---------------------------------------------------------------------------------------------------- architecture
def architecture(config: PoolFormerConfig) -> dict:
    """The config fields that decide what the weights compute, per-stage fields spelled out stage by stage."""
    inherited = {field.name for field in dataclasses.fields(PreTrainedConfig)}
    values = {}
    for field in dataclasses.fields(PoolFormerConfig):
        name = field.name
        if name in inherited or name in _NOT_ARCHITECTURE:
            continue
        if name in PER_STAGE_FIELDS:
            value = [config.stage_value(name, stage) for stage in range(config.num_stages)]
            values[name] = [v is not None for v in value] if name in _INIT_VALUES else value
        else:
            values[name] = getattr(config, name)
    return values


def differences(config: PoolFormerConfig, reference: PoolFormerConfig, name: str) -> list[str]:
    """`field is ours (name has theirs)` for each architecture field where `config` is not `reference`."""
    ours, theirs = architecture(config), architecture(reference)
    return [f"{field} is {ours[field]!r} ({name} has {theirs[field]!r})"
            for field in ours if ours[field] != theirs[field]]


def preset_of(config: PoolFormerConfig) -> str | None:
    """The preset whose architecture `config` has, or None."""
    return next((name for name in PRESET_NAMES if not differences(config, PoolFormerConfig.from_preset(name), name)),
                None)


# ---------------------------------------------------------------------------------------------------- peer models
def _import_timm():
    try:
        import timm
    except ImportError as error:
        raise ImportError("writing a timm folder needs timm, which is not installed: pip install timm") from error
    return timm


def timm_config(name: str) -> PoolFormerConfig:
    """Our config of what timm's model `name` computes: the preset of that name, with timm's head for v1."""
    return PoolFormerConfig.from_preset(name, **(TIMM_HEAD if name in _V1_PRESETS else {}))


def timm_name(config: PoolFormerConfig, variant: str | None = None, accept_timm_v1_head: bool = False) -> str:
    """The timm model that computes what `config` describes (our preset names are timm's), or a ValueError.

    A v1 PoolFormer with the paper's head (norm before pooling) has no exact timm model: it is refused, naming the
    field, unless `accept_timm_v1_head` takes timm's head for it (every weight goes over; the logits change).
    """
    timm = _import_timm()
    candidates = [variant] if variant else PRESET_NAMES
    name = next((name for name in candidates if not differences(config, timm_config(name), name)), None)
    if name is None:
        paper_head = next((name for name in candidates if name in _V1_PRESETS
                           and not differences(config, PoolFormerConfig.from_preset(name), name)), None)
        if paper_head and not accept_timm_v1_head:
            raise ValueError(
                f"timm's {paper_head} computes another head: it normalizes after global pooling (a channel LayerNorm "
                f"of the pooled vector), this model before it (head_norm_position 'before_pool', as the paper and "
                f"transformers): the weights would go over but the logits would change. Use --to transformers (the "
                f"same logits), or pass --accept_timm_v1_head to take timm's head")
        name = paper_head
    if name is None:
        reference = variant or min(PRESET_NAMES, key=lambda n: len(differences(config, timm_config(n), n)))
        changed = "; ".join(differences(config, timm_config(reference), reference)[:4])
        raise ValueError(f"the model is not timm's {reference}: {changed}" if variant else
                         f"timm builds its MetaFormers by name, and this model is none of them (closest: {reference}, "
                         f"but {changed}): it can only stay in poolformer_hf")
    if not timm.is_model(name):
        raise ValueError(f"timm has no {name}; its MetaFormer families are poolformer_*, poolformerv2_*, "
                         "convformer_* and caformer_*: keep this model in poolformer_hf")
    return name


def transformers_config(config: PoolFormerConfig, num_labels: int, variant: str | None = None):
    """transformers' `PoolFormerConfig` holding ours, or a ValueError naming every field it cannot hold."""
    import transformers

    refused = []
    for name, only in _TRANSFORMERS_FIXED.items():
        values = ([config.stage_value(name, s) for s in range(config.num_stages)] if name in PER_STAGE_FIELDS
                  else [getattr(config, name)])
        if any(value != only for value in values):
            refused.append(f"{name} is {getattr(config, name)!r} (it has only {only!r})")
    activations = {config.stage_value("hidden_act", s) for s in range(config.num_stages)}
    if len(activations) > 1 or not activations <= set(_TRANSFORMERS_ACTIVATIONS):
        refused.append(f"hidden_act is {config.hidden_act!r} (it has one of {list(_TRANSFORMERS_ACTIVATIONS)}, the "
                       "same in every stage)")
    scales = {config.stage_value("layer_scale_init_value", s) for s in range(config.num_stages)}
    if len(scales) > 1:
        refused.append(f"layer_scale_init_value is {config.layer_scale_init_value!r} (it has one value, or none, "
                       "for every stage)")
    if refused:
        what = variant or preset_of(config) or "this model"
        raise ValueError(f"transformers' PoolFormer cannot represent {what}: {'; '.join(refused)}. Only the "
                         f"paper's v1 PoolFormer (our presets {', '.join(_V1_PRESETS)}) goes there; use --to timm "
                         "or stay in poolformer_hf")
    (scale,) = scales
    labels = {"id2label": dict(config.id2label), "label2id": dict(config.label2id)} if num_labels else {}
    return transformers.PoolFormerConfig(
        num_channels=config.num_channels, pool_size=config.pool_size, mlp_ratio=float(config.mlp_ratio),
        depths=list(config.depths), hidden_sizes=list(config.hidden_sizes), patch_sizes=list(config.patch_sizes),
        strides=list(config.strides), padding=list(config.padding), num_encoder_blocks=config.num_stages,
        drop_path_rate=float(config.drop_path_rate), hidden_act=activations.pop(),
        use_layer_scale=scale is not None, layer_scale_init_value=float(scale if scale is not None else 1e-5),
        initializer_range=float(config.initializer_range), num_labels=num_labels, **labels,
    )


def _num_labels(model: torch.nn.Module) -> int:
    """Classes of the model's head; 0 for a base model (the peer then gets no head)."""
    return model.config.num_labels if hasattr(model, "classifier") else 0


def peer_model(model: torch.nn.Module, target: str, variant: str | None = None,
               accept_timm_v1_head: bool = False) -> torch.nn.Module:
    """timm's or transformers' model (`target`) holding the weights of our classifier or base model `model`.

    Raises a ValueError naming what the peer cannot hold (a family it lacks, a field it cannot represent);
    `accept_timm_v1_head` is `timm_name`'s.
    """
    if target not in PEERS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(PEERS)}")
    config, num_labels = model.config, _num_labels(model)
    if target == "timm":
        timm = _import_timm()
        name = timm_name(config, variant, accept_timm_v1_head)
        with torch.device("meta"):  # every tensor comes from `model`
            peer = timm.create_model(name, pretrained=False, num_classes=num_labels, in_chans=config.num_channels)
    else:
        import transformers

        peer_config = transformers_config(config, num_labels, variant)
        with torch.device("meta"):
            peer = transformers.PoolFormerForImageClassification(peer_config)
    peer.load_state_dict(peer_state_dict(model, peer, target), strict=True, assign=True)
    return peer.eval()


def peer_state_dict(model: torch.nn.Module, peer: torch.nn.Module, target: str) -> dict:
    """`model`'s tensors under `peer`'s names and in its shapes: `FOREIGN_KEY_MAPPING`, inverted on `peer`'s keys."""
    expected = peer.state_dict()
    # Our names of the peer's keys, by the loading table: {ours: theirs}.
    theirs_of = rename_keys({key: key for key in expected}, target)
    if len(theirs_of) != len(expected):
        raise ValueError(f"the loading table renames several {target} keys to one of ours; it cannot be inverted")
    ours = dict(model.state_dict())
    prefix = model.base_model_prefix + "."
    if not any(key.startswith(prefix) for key in ours):  # a base model: its keys are the classifier's, unprefixed
        ours = {prefix + key: tensor for key, tensor in ours.items()}
    missing, surplus = sorted(set(theirs_of) - set(ours)), sorted(set(ours) - set(theirs_of))
    if missing or surplus:
        raise ValueError(f"the {target} model and ours do not hold the same tensors: {len(missing)} of its have no "
                         f"weight of ours, e.g. {missing[:3]}; {len(surplus)} of ours have no place there, e.g. "
                         f"{surplus[:3]}")
    converted, mismatched = {}, []
    for key, theirs in theirs_of.items():
        tensor, shape = ours[key], expected[theirs].shape
        if tensor.shape != shape:
            if tensor.numel() != shape.numel():
                mismatched.append(f"{key} {tuple(tensor.shape)} vs {theirs} {tuple(shape)}")
                continue
            tensor = tensor.reshape(shape)  # our 1×1 conv as timm's linear layer
        converted[theirs] = tensor.detach().contiguous()
    if mismatched:
        raise ValueError(f"{len(mismatched)} tensor(s) do not fit the {target} model: {'; '.join(mismatched[:3])}")
    return converted


# ---------------------------------------------------------------------------------------------------- inputs
def load_folder(folder: str) -> torch.nn.Module:
    """The classifier or base model a `from_pretrained` folder holds (ours, or timm's / transformers' own), checked to
    fill every tensor. Our class loads it: no code from the folder runs."""
    from ..modeling_poolformer import PoolFormerForImageClassification, PoolFormerModel

    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise ValueError(f"{folder} has no config.json: it is not a from_pretrained folder")
    config = PoolFormerConfig.from_pretrained(folder)
    architectures = config.architectures or ["PoolFormerForImageClassification"]
    if architectures == ["PoolFormerBackbone"]:
        raise ValueError(f"{folder} holds a PoolFormerBackbone, whose per-stage norms neither timm nor transformers "
                         "has: back out a classifier or base model")
    model_class = PoolFormerModel if architectures == ["PoolFormerModel"] else PoolFormerForImageClassification
    model, info = model_class.from_pretrained(folder, output_loading_info=True)
    unset = info["missing_keys"] or info["mismatched_keys"]
    if unset:
        raise ValueError(f"{folder} does not hold every weight of its config ({len(unset)} unset, e.g. "
                         f"{sorted(unset)[:3]}): it cannot be backed out as it is")
    return model.eval()


def load_processor(folder: str | None, config: PoolFormerConfig):
    """The folder's image processor, or the one a conversion writes for `config` (its crop_pct)."""
    from ..image_processing_poolformer import PoolFormerImageProcessor

    if folder and os.path.isfile(os.path.join(folder, "preprocessor_config.json")):
        return PoolFormerImageProcessor.from_pretrained(folder)
    return PoolFormerImageProcessor(crop_pct=config.crop_pct)


def load_source(source: str, variant: str | None = None, max_bytes: int | None = None):
    """(model, image processor) from a `from_pretrained` folder or, with `variant`, a checkpoint file."""
    if os.path.isdir(source):
        model = load_folder(source)
        return model, load_processor(source, model.config)
    if not os.path.isfile(source):
        raise ValueError(f"No checkpoint file or folder at {source}")
    if variant is None:
        raise ValueError(f"{source} is a checkpoint file: name its preset with --variant (a folder needs none)")
    model, _ = build_converted_model(source, variant, max_bytes=max_bytes)
    return model, load_processor(None, model.config)


# ---------------------------------------------------------------------------------------------------- writing
def timm_pretrained_cfg(peer: torch.nn.Module, processor, num_channels: int) -> dict:
    """timm's `pretrained_cfg` of `peer` with our eval preprocessing; what described the weights timm ships
    (their tag, license, test-time sizes) is dropped, since these are other weights."""
    from ..image_processing_shared_poolformer import pil_resample

    crop = processor.crop_size or {"height": 224, "width": 224}
    crop_pct = processor.crop_pct
    if crop_pct is None:  # resized straight to `size`: the crop keeps this share of it
        crop_pct = crop["height"] / (processor.size.get("shortest_edge") or processor.size.get("height"))
    kept = {key: value for key, value in peer.pretrained_cfg.items()
            if key not in ("tag", "license", "test_input_size", "test_crop_pct", "label_names", "label_descriptions")}
    return {**kept, "input_size": (num_channels, crop["height"], crop["width"]),
            "crop_pct": float(crop_pct), "interpolation": pil_resample(processor.resample).name.lower(),
            "mean": tuple(processor.image_mean), "std": tuple(processor.image_std), "num_classes": peer.num_classes}


def _label_names(config: PoolFormerConfig, num_labels: int) -> list[str] | None:
    names = [config.id2label[index] for index in range(num_labels)] if num_labels else []
    return None if names == [f"LABEL_{index}" for index in range(num_labels)] else names


def save_peer(peer: torch.nn.Module, target: str, folder: str, config: PoolFormerConfig, processor) -> None:
    """Write `peer` (from `peer_model`) as its own library saves a model, with our processor's settings."""
    if target == "timm":
        from timm.models import save_for_hf

        peer.pretrained_cfg = timm_pretrained_cfg(peer, processor, config.num_channels)
        names = _label_names(config, peer.num_classes)
        save_for_hf(peer, folder, model_config={"label_names": names} if names else None, safe_serialization=True)
        return
    import transformers

    peer.save_pretrained(folder)
    settings = processor.to_dict()
    defaults = transformers.PoolFormerImageProcessor().to_dict()
    transformers.PoolFormerImageProcessor(
        **{key: settings[key] for key in defaults if key in settings and key != "image_processor_type"}
    ).save_pretrained(folder)


def convert_to_peer(source: str, target: str, output_dir: str, variant: str | None = None, overwrite: bool = False,
                    max_bytes: int | None = None, accept_timm_v1_head: bool = False) -> str:
    """Write the model of `source` (a `from_pretrained` folder, or a checkpoint file of preset `variant`) into
    `output_dir` as a `target` folder ("timm" or "transformers"); returns the peer's architecture name.

    Every refusal (an input the peer cannot hold, a target `overwrite` may not replace) is a ValueError raised
    before anything is written; a failed write is an OSError naming the output. Either way an earlier output is
    left whole and no half-written folder stays.
    """
    if target not in PEERS:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(PEERS)}")
    if target == "timm":
        _import_timm()
    if variant is not None and variant not in PRESET_NAMES:
        raise ValueError(f"Unknown variant {variant!r}; expected one of: {', '.join(PRESET_NAMES)}")
    output_dir = check_output_folder(output_dir, overwrite, inputs=(source,))
    model, processor = load_source(source, variant, max_bytes=max_bytes)
    peer = peer_model(model, target, variant, accept_timm_v1_head)
    name = peer.pretrained_cfg["architecture"] if target == "timm" else peer.config.model_type

    write_staged(output_dir, lambda staging: save_peer(peer, target, staging, model.config, processor),
                 source=os.path.basename(os.path.normpath(source)), target=target, architecture=name)
    return name
