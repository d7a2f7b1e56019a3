"""What `scripts/export.py` exports: a saved poolformer_hf folder (or a preset with random weights, to try a
runtime), as the head asked for, with the folder's own processor when it has one."""

from pathlib import Path

HEADS = ("classification", "base", "backbone")


def load_for_export(source: str | None = None, preset: str | None = None, head: str = "classification"):
    """(model, processor or None). `source` is a from_pretrained folder or Hub id; `preset` builds random weights."""
    from .. import PoolFormerBackbone, PoolFormerConfig, PoolFormerForImageClassification, PoolFormerModel
    from ..conversion.checkpoint_files import read_json_object
    from ..image_processing_poolformer import PoolFormerImageProcessor

    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}; got {head!r}")
    if (source is None) == (preset is None):
        raise ValueError("give exactly one of a model folder (source) or a preset")
    model_class = {"classification": PoolFormerForImageClassification, "base": PoolFormerModel,
                   "backbone": PoolFormerBackbone}[head]
    if preset is not None:
        return model_class(PoolFormerConfig.from_preset(preset)).eval(), None
    config_file = Path(source, "config.json")
    if config_file.is_file():  # a folder of another model: say so, rather than fail on its weight names
        model_type = read_json_object(config_file).get("model_type")
        if model_type not in (None, "poolformer_hf", "poolformer"):  # None: timm's layout, which we translate
            raise ValueError(f"{source} holds a {model_type!r} model (config.json's model_type), not a poolformer_hf "
                             "or transformers PoolFormer model")
    model = model_class.from_pretrained(source).eval()
    has_processor = Path(source, "preprocessor_config.json").is_file() if Path(source).is_dir() else False
    return model, PoolFormerImageProcessor.from_pretrained(source) if has_processor else None
