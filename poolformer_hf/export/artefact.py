"""One call from a poolformer_hf model to a deployable folder: fold, export through transformers' exporters, check
against eager on real photos, and only then write the folder (atomically) with the processor config beside it."""

import json
import os
from pathlib import Path

import torch

from ..hub.output_folders import check_output_folder, write_staged
from ..inference.folding import FoldedPoolFormer, fuse_for_inference, set_normalization_form
from .photos import photo_pixels
from .program import accepted_pixel_shapes, pixel_dynamic_shapes

FORMATS = ("onnx", "openvino", "executorch", "pt2")
_EXPORTERS = {  # format: (exporter, its config, the packages its runtime needs)
    "pt2": ("DynamoExporter", "DynamoConfig", ()),
    "onnx": ("OnnxExporter", "OnnxConfig", ("onnx", "onnxscript", "onnxruntime")),
    "openvino": ("OpenVINOExporter", "OpenVINOConfig", ("openvino",)),
    "executorch": ("ExecutorchExporter", "ExecutorchConfig", ("executorch",)),
}
_PRECISIONS = {torch.float32: "f32", torch.bfloat16: "bf16"}
# The form of the one-group norms each format's runtime fuses best (inference.NORMALIZATION_FORMS; README figures).
NORMALIZATION_FORM = {"openvino": "moments"}
REPORT_NAME = "export_report.json"
# Formats whose runtime cannot run a bfloat16 program, and why (measured on a tiny model; see docs/deployment.md).
NO_BFLOAT16 = {"onnx": "ONNX Runtime's CPU kernels take no bfloat16 (AveragePool refuses the graph)",
               "executorch": "ExecuTorch's CPU kernels fail to run the bfloat16 program (execute error 0x12)"}
# Formats whose program takes float32 pixels whatever its precision: OpenVINO's IR keeps f32 parameters (bf16 is its
# runtime's INFERENCE_PRECISION_HINT); the others take pixels in the export's dtype.
FLOAT32_INPUT = ("openvino",)


class ExportParityError(ValueError):
    """The exported program does not give the eager model's outputs: nothing was written."""


def missing_packages(format: str) -> list[str]:
    import importlib.util

    return [name for name in _EXPORTERS[format][2] if importlib.util.find_spec(name) is None]


def check_format_dtype(format: str, dtype: torch.dtype) -> None:
    """ValueError, before any work, for a format or dtype `export_model` cannot write."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    if dtype not in _PRECISIONS:
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16; got {dtype}")
    if dtype == torch.bfloat16 and format in NO_BFLOAT16:
        able = [name for name in FORMATS if name not in NO_BFLOAT16]
        raise ValueError(f"{format} cannot be exported in bfloat16: {NO_BFLOAT16[format]}; export {format} in "
                         f"float32, or bfloat16 as {', '.join(able)}")


def input_dtype(format: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype the `format` program exported in `dtype` takes its pixel_values in (export_report.json's)."""
    return torch.float32 if format in FLOAT32_INPUT else dtype


def build_export(format: str, module: torch.nn.Module, example: torch.Tensor, dynamic_size: bool | None):
    """The transformers `ExportedModel` of `module` in `format`, its pixel axes dynamic (see `pixel_dynamic_shapes`).
    A folded module (`fuse_for_inference`) is first set to trace its norms in the form that format's runtime fuses."""
    import transformers.exporters as exporters

    if isinstance(module, FoldedPoolFormer):
        set_normalization_form(module, NORMALIZATION_FORM.get(format, "layer_norm"))

    exporter_name, config_name, _ = _EXPORTERS[format]
    config = getattr(exporters, config_name)(
        dynamic_shapes={"pixel_values": pixel_dynamic_shapes(module.config, dynamic_size)})
    return getattr(exporters, exporter_name)().export(module, {"pixel_values": example}, config)


def runner_options(format: str, dtype: torch.dtype) -> dict:
    # OpenVINO's CPU plugin runs f32 graphs in bf16 on CPUs with AMX unless told otherwise.
    return {"config": {"INFERENCE_PRECISION_HINT": _PRECISIONS[dtype]}} if format == "openvino" else {}


def _tensors(output) -> dict[str, torch.Tensor]:
    flat = {}
    for key, value in output.items():
        for index, tensor in enumerate(value if isinstance(value, (tuple, list)) else [value]):
            flat[f"{key}[{index}]" if isinstance(value, (tuple, list)) else key] = tensor
    return flat


def output_differences(exported, model: torch.nn.Module, pixels: torch.Tensor,
                       input_dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """max|Δ| of every output of `exported` (fed `pixels` cast to `input_dtype`, the dtype it was traced with)
    against the eager model on `pixels`."""
    with torch.no_grad():
        expected = _tensors(model(pixel_values=pixels))
    actual = _tensors(exported(pixel_values=pixels.to(input_dtype)))
    return {key: (value.float() - expected[key].float()).abs().max().item() for key, value in actual.items()}


def _tolerance(model, pixels: torch.Tensor, dtype: torch.dtype) -> float:
    with torch.no_grad():
        scale = max(value.abs().max().item() for value in _tensors(model(pixel_values=pixels)).values())
    return (1e-4 if dtype == torch.float32 else 5e-2) * max(1.0, scale)


def check_export_output(output_dir, overwrite: bool, source: str | None = None) -> str:
    """The absolute output path, or ValueError before anything is read or written: the rules of every folder this
    package generates (`hub.output_folders.check_output_folder`: `--overwrite` replaces only a folder an earlier
    export or conversion wrote, never the working directory, a parent of the source, a symlink or a file), and
    never a folder inside the source model folder."""
    output_dir = check_output_folder(output_dir, overwrite, inputs=(source,) if source else ())
    if source and os.path.isdir(source):
        real_source, real_output = os.path.realpath(source), os.path.realpath(output_dir)
        if real_output.startswith(real_source + os.sep):
            raise ValueError(f"refusing --output {output_dir}: it is inside the source model folder {source}; "
                             "write the export beside it")
    return output_dir


def source_folder(model) -> str | None:
    """The local folder `model` was loaded from, if any (what an export must not overwrite)."""
    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    return path if path and os.path.isdir(path) else None


def write_atomically(output_dir, write, overwrite: bool = False, source: str | None = None, **facts) -> None:
    """`write(folder)` into a hidden staging sibling, swapped into `output_dir` only when it returns: a failure leaves
    no folder, an existing output is replaced (with `overwrite`) only by a complete one, and only if an earlier export
    or conversion wrote it (its marker file lists what is in it). Staging folders of killed runs are cleaned first."""
    output_dir = check_export_output(output_dir, overwrite, source)
    write_staged(output_dir, lambda staging: write(Path(staging)), step="export", **facts)


def export_model(model, output_dir, format: str = "onnx", processor=None, dtype: torch.dtype = torch.float32,
                 photos: int = 8, tolerance: float | None = None, dynamic_size: bool | None = None,
                 overwrite: bool = False) -> dict:
    """Export a poolformer_hf model (any head) as `format` into `output_dir`, and return the report it writes there.

    The model is folded (`fuse_for_inference`, in `dtype`: float32 unless bfloat16 is asked for), exported with a
    dynamic batch and image size, and run on `photos` real photos through `processor` (the model's
    `PoolFormerImageProcessor` by default): every output must be within `tolerance` of the eager model's (default
    1e-4, bfloat16 5e-2, times the outputs' scale when above 1), or `ExportParityError` is raised and nothing is
    written. The folder holds the program, transformers' export manifest, the model config, the processor config
    and `export_report.json` (the max|Δ| per output); it appears whole or not at all.
    """
    from ..image_processing_poolformer import PoolFormerImageProcessor

    check_format_dtype(format, dtype)
    missing = missing_packages(format)
    if missing:
        raise ImportError(f"Exporting to {format} needs {', '.join(missing)}: pip install 'poolformer_hf[export]'")
    source = source_folder(model)
    output_dir = check_export_output(output_dir, overwrite, source)
    model = model.eval()
    if processor is None:
        processor = PoolFormerImageProcessor(crop_pct=model.config.crop_pct)
    pixels = photo_pixels(processor, photos)
    module = fuse_for_inference(model, dtype=None if dtype == torch.float32 else dtype)
    if format == "executorch":  # its portable kernels take contiguous (NCHW-ordered) maps only
        module = module.to(memory_format=torch.contiguous_format)
        module.memory_format = torch.contiguous_format
    exported = build_export(format, module, pixels[:2].to(dtype), dynamic_size)
    exported.to(**runner_options(format, dtype))
    differences = output_differences(exported, model, pixels, input_dtype(format, dtype))
    limit = tolerance if tolerance is not None else _tolerance(model, pixels, dtype)
    worst = max(differences.values())
    if not worst <= limit:  # NaN fails too
        raise ExportParityError(
            f"The {format} program does not match the eager model on {len(pixels)} photos: max|Δ| {worst:.3g} > "
            f"tolerance {limit:.3g} ({differences}); nothing was written to {output_dir}"
        )
    report = {"format": format, "dtype": str(dtype).removeprefix("torch."), "photos": len(pixels),
              "pixel_shape": list(pixels.shape), "max_abs_diff": differences, "tolerance": limit,
              "dynamic_axes": sorted(pixel_dynamic_shapes(model.config, dynamic_size)),
              "input_dtype": str(input_dtype(format, dtype)).removeprefix("torch."),
              "accepted_shapes": accepted_pixel_shapes(model.config, dynamic_size)}

    def write(folder: Path) -> None:
        exported.save_pretrained(folder)
        processor.save_pretrained(folder)
        (folder / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    write_atomically(output_dir, write, overwrite, source, format=format)
    return report
