"""Deployment: the folded inference module (`poolformer_hf.inference.folding`) exported through transformers' exporters.

* `program.export_program` — `torch.export` with a dynamic batch and image size (every head, with grad on or off).
* `artefact.export_model` — an ONNX / OpenVINO / ExecuTorch / `.pt2` folder, written only after the exported program
  has matched eager on real photos, with the processor config beside it, atomically.
* `int8.quantize_int8` — PT2E static int8 of every conv and linear of the body, lowered to OpenVINO.
* `loading.load_export` — an exported folder, run only on inputs of the dtype and shapes its report states.
"""

from .artefact import FORMATS, ExportParityError, export_model
from .loading import CheckedExport, load_export
from .photos import photo_pixels, sample_photos
from .program import export_program, pixel_dynamic_shapes

__all__ = [
    "CheckedExport",
    "FORMATS",
    "ExportParityError",
    "export_model",
    "export_program",
    "load_export",
    "photo_pixels",
    "pixel_dynamic_shapes",
    "sample_photos",
]
