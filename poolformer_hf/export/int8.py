"""int8 for CPU: the folded model exported to OpenVINO, then every conv and linear quantized by NNCF's post-training
quantization (int8 weights per channel, int8 activations calibrated on real photos through our processor).

Why this recipe (measured, see the README's Deployment section): PT2E with X86InductorQuantizer lowered to OpenVINO
ran slower than float32, and torchao's `quantize_` reaches only `nn.Linear` (the classifier), not the MLP's 1×1 convs.
NNCF quantizes the OpenVINO graph itself, so OpenVINO's CPU plugin runs its own int8 kernels.
"""

import json

import numpy as np
import torch

from ..inference.folding import fuse_for_inference
from .artefact import REPORT_NAME, ExportParityError, build_export, check_export_output, source_folder, write_atomically
from .photos import photo_pixels
from .program import accepted_pixel_shapes

WEIGHTED_OPS = ("Convolution", "GroupConvolution", "MatMul")


def _weight_is_quantized(node) -> bool:
    """Whether a conv / matmul reads its weight through an int8 FakeQuantize (or an int8 constant and a dequantize)."""
    weight = node.input_value(1).get_node()
    while weight.get_type_name() in ("Convert", "Reshape", "Transpose", "Unsqueeze"):
        weight = weight.input_value(0).get_node()
    if weight.get_type_name() == "FakeQuantize":
        return True
    if weight.get_type_name() in ("Multiply", "Subtract"):  # dequantization of an int8 constant
        source = weight.input_value(0).get_node()
        while source.get_type_name() in ("Convert", "Subtract", "Multiply"):
            source = source.input_value(0).get_node()
        return source.get_type_name() == "Constant" and source.get_element_type().get_type_name() in ("i8", "u8")
    return False


def _activation_is_quantized(node) -> bool:
    return node.input_value(0).get_node().get_type_name() == "FakeQuantize"


def layer_counts(ov_model) -> dict[str, int]:
    """Convs and matmuls with a constant weight, and how many of them read int8 weights and int8 activations."""
    layers = [node for node in ov_model.get_ordered_ops() if node.get_type_name() in WEIGHTED_OPS
              and _has_constant_weight(node)]
    quantized = [node for node in layers if _weight_is_quantized(node) and _activation_is_quantized(node)]
    return {"layers": len(layers), "quantized": len(quantized)}


def _has_constant_weight(node) -> bool:
    weight = node.input_value(1).get_node()
    while weight.get_type_name() in ("Convert", "Reshape", "Transpose", "Unsqueeze", "FakeQuantize", "Multiply",
                                     "Subtract"):
        weight = weight.input_value(0 if weight.get_type_name() != "FakeQuantize" else 0).get_node()
    return weight.get_type_name() == "Constant"


def _default_processor(model):
    from ..image_processing_poolformer import PoolFormerImageProcessor

    return PoolFormerImageProcessor(crop_pct=model.config.crop_pct)


def quantize_int8(model, processor=None, calibration_photos: int = 32, pixels: torch.Tensor | None = None):
    """The OpenVINO model of `model` (any head) with every conv and linear in int8, calibrated on
    `calibration_photos` photos through `processor` (the model's PoolFormerImageProcessor by default), or on
    `pixels` when given."""
    if pixels is None:
        pixels = photo_pixels(processor or _default_processor(model), calibration_photos)
    return quantize_program(fuse_for_inference(model.eval()), pixels)


def quantize_program(module: torch.nn.Module, pixels: torch.Tensor):
    """`module` (a folded poolformer_hf module, or another library's model taking `pixel_values`) exported to
    OpenVINO and quantized by NNCF, calibrated on `pixels` one image at a time."""
    import nncf

    exported = build_export("openvino", module, pixels[:2], dynamic_size=None)
    samples = [{"pixel_values": pixels[i : i + 1].numpy()} for i in range(len(pixels))]
    return nncf.quantize(exported.program, nncf.Dataset(samples), subset_size=len(samples),
                         model_type=None, preset=nncf.QuantizationPreset.PERFORMANCE)


def compile_openvino(ov_model, precision: str = "f32"):
    import openvino

    return openvino.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                            "PERFORMANCE_HINT": "LATENCY"})


def int8_drift(model, compiled, pixels: torch.Tensor) -> dict:
    """Top-1 agreement of the int8 program with the float32 eager classifier on `pixels`, and max|Δ| of the logits."""
    with torch.no_grad():
        expected = model(pixel_values=pixels).logits
    actual = torch.from_numpy(np.asarray(compiled({"pixel_values": pixels.numpy()})[0]))
    return {"images": len(pixels), "top1_agreement": (actual.argmax(-1) == expected.argmax(-1)).float().mean().item(),
            "max_abs_diff_logits": (actual - expected).abs().max().item(),
            "logit_scale": expected.abs().max().item()}


def export_int8(model, output_dir, processor=None, calibration_photos: int = 32, evaluation_photos: int = 64,
                min_agreement: float = 0.98, overwrite: bool = False) -> dict:
    """`quantize_int8` of a classifier, written as an OpenVINO folder (program, config, processor config,
    export_report.json) only if its top-1 agrees with float32 eager on `min_agreement` of `evaluation_photos` held-out
    photos (views the calibration did not see); otherwise `ExportParityError` and nothing is written."""
    import openvino

    from ..modeling_poolformer import PoolFormerForImageClassification

    if not isinstance(model, PoolFormerForImageClassification):
        raise ValueError("export_int8 checks top-1 agreement, so it takes a PoolFormerForImageClassification")
    source = source_folder(model)
    output_dir = check_export_output(output_dir, overwrite, source)
    processor = processor or _default_processor(model)
    pixels = photo_pixels(processor, calibration_photos + evaluation_photos)
    quantized = quantize_int8(model.eval(), pixels=pixels[:calibration_photos])
    drift = int8_drift(model, compile_openvino(quantized), pixels[calibration_photos:])
    report = {"format": "openvino", "dtype": "int8", "calibration_photos": calibration_photos, **drift,
              **layer_counts(quantized), "input_dtype": "float32",
              "accepted_shapes": accepted_pixel_shapes(model.config, None)}
    if not drift["top1_agreement"] >= min_agreement:
        raise ExportParityError(f"int8 top-1 agrees with float32 on {drift['top1_agreement']:.1%} of "
                                f"{drift['images']} photos (< {min_agreement:.0%}); nothing was written ({report})")

    def write(folder):
        openvino.save_model(quantized, str(folder / "openvino_model.xml"), compress_to_fp16=False)
        model.config.save_pretrained(folder)
        processor.save_pretrained(folder)
        (folder / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    write_atomically(output_dir, write, overwrite, source, format="openvino int8")
    return report
