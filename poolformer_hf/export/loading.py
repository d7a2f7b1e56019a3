"""What `scripts/export.py` exports: a saved poolformer_hf folder (or a preset with random weights, to try a
runtime), as the head asked for, with the folder's own processor when it has one; and an exported folder loaded
back to run, its inputs checked against what its export_report.json states."""

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


class CheckedExport:
    """An exported folder (`export_model`'s), run as transformers' `ExportedModel` but with its pixel_values checked
    first against the shapes export_report.json states (a ValueError naming both, not a failed guard deep inside) and
    cast to the dtype it states (a bfloat16 `.pt2` takes bfloat16 pixels; processors give float32)."""

    def __init__(self, exported, report: dict):
        self.exported, self.report = exported, report

    def __call__(self, pixel_values, **kwargs):
        import torch

        from .program import check_pixel_shape

        check_pixel_shape(pixel_values.shape, self.report["accepted_shapes"])
        return self.exported(pixel_values=pixel_values.to(getattr(torch, self.report["input_dtype"])), **kwargs)


def load_export(folder, **kwargs) -> CheckedExport:
    """`ExportedModel.from_pretrained(folder, **kwargs)` (a `.pt2` needs `trust_remote_code=True`: it unpickles),
    checked before each run (`CheckedExport`)."""
    import json

    from transformers.exporters import ExportedModel

    from .artefact import REPORT_NAME

    report = json.loads(Path(folder, REPORT_NAME).read_text(encoding="utf-8"))
    if "accepted_shapes" not in report:
        raise ValueError(f"{folder}/{REPORT_NAME} states no accepted_shapes: it was written before they were recorded; export it again")
    return CheckedExport(ExportedModel.from_pretrained(folder, **kwargs), report)
