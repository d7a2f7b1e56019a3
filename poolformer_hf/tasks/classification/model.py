"""The model and image processor a run starts from: a checkpoint (`--model_name_or_path`), a preset trained from
scratch (`--preset`), or with neither a PoolFormer-S12 layout shrunk for the digits demo."""

import logging

from .transforms import processor_at_size, processor_image_size

logger = logging.getLogger(__name__)

DEFAULT_PRESET = "poolformer_s12"
# Used only when neither --model_name_or_path nor --preset is given: S12's layout at a tenth of its width and a
# third of its depth, so the digits demo trains in minutes on two CPU cores.
DEFAULT_SCRATCH_OVERRIDES = {"depths": [1, 1, 3, 1], "hidden_sizes": [32, 64, 128, 256]}


def _int_list(text: str | None, name: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--{name} must be comma-separated integers, got {text!r}") from None
    if len(values) != 4 or min(values) < 1:
        raise ValueError(f"--{name} must be four positive integers (one per stage), got {text!r}")
    return values


def build_model(model_args, label_names: list[str], image_size: int | None = None):
    """A PoolFormerForImageClassification for `label_names`, from a checkpoint or from scratch; a model built from
    scratch is built for `image_size` (its config then states the resolution it is trained at)."""
    from ... import PoolFormerConfig, PoolFormerForImageClassification

    id2label = dict(enumerate(label_names))
    label_kwargs = {
        "num_labels": len(label_names),
        "id2label": id2label,
        "label2id": {v: k for k, v in id2label.items()},
    }
    overrides = {"drop_path_rate": model_args.drop_path_rate} if model_args.drop_path_rate is not None else {}
    depths = _int_list(model_args.depths, "depths")
    hidden_sizes = _int_list(model_args.hidden_sizes, "hidden_sizes")
    if model_args.model_name_or_path is not None:
        if model_args.preset is not None or depths or hidden_sizes:
            raise ValueError(
                "--preset, --depths and --hidden_sizes build a new model; do not combine them with --model_name_or_path"
            )
        check_poolformer_checkpoint(model_args.model_name_or_path, cache_dir=model_args.cache_dir,
                                    revision=model_args.model_revision)
        return PoolFormerForImageClassification.from_pretrained(
            model_args.model_name_or_path,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
            cache_dir=model_args.cache_dir,
            revision=model_args.model_revision,
            **label_kwargs,
            **overrides,
        )
    if model_args.preset is None:
        overrides = {**DEFAULT_SCRATCH_OVERRIDES, **overrides}
    if depths:
        overrides["depths"] = depths
    if hidden_sizes:
        overrides["hidden_sizes"] = hidden_sizes
    if image_size is not None:
        overrides["image_size"] = image_size
    config = PoolFormerConfig.from_preset(model_args.preset or DEFAULT_PRESET, **label_kwargs, **overrides)
    return PoolFormerForImageClassification(config)


def check_poolformer_checkpoint(name_or_path: str, **loading) -> None:
    """Refuse a checkpoint of another model type: its weights would not fit our classes, which would start from
    random weights with only a warning. Checkpoints load into this package's classes (ours, transformers' PoolFormer
    and timm's MetaFormers translate to them), so no code a checkpoint ships ever runs: there is no
    --trust_remote_code."""
    from ... import PoolFormerConfig

    model_type = PoolFormerConfig.get_config_dict(name_or_path, **loading)[0].get("model_type")
    if model_type not in (None, PoolFormerConfig.model_type):
        raise ValueError(
            f"--model_name_or_path {name_or_path} is a {model_type!r} checkpoint; expected a PoolFormer/MetaFormer "
            "one (this package's, transformers' PoolFormer or timm's MetaFormers); no checkpoint's own code is run"
        )


def build_image_processor(model_args, model, image_size: int | None):
    """The checkpoint's processor (or a fresh one: a preset's eval transform from the preset registry, else one
    matching the model's crop_pct), set to `image_size` if given.

    Checkpoint processors load into our PoolFormerImageProcessor: transformers-native PoolFormer ones use the same
    fields (size, crop_size, crop_pct, mean, std, resample).
    """
    from ...image_processing_poolformer import PoolFormerImageProcessor
    from ...presets import preset_info

    source = model_args.image_processor_name or model_args.model_name_or_path
    processor = None
    if source is not None:
        try:
            processor = PoolFormerImageProcessor.from_pretrained(
                source, cache_dir=model_args.cache_dir, revision=model_args.model_revision
            )
        except OSError:
            logger.warning("no image processor found at %s; using a default one", source)
    if processor is None and model_args.preset is not None:
        processor = PoolFormerImageProcessor(**preset_info(model_args.preset).processor_kwargs())
    if processor is None:
        processor = PoolFormerImageProcessor(crop_pct=getattr(model.config, "crop_pct", 0.9))
    if image_size is not None and image_size != processor_image_size(processor):
        processor = processor_at_size(processor, image_size)
    return processor
