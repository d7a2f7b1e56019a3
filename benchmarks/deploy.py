"""`scripts/benchmark.py --deploy`: ours against transformers' PoolFormer, both exported the same way (transformers'
ONNX and OpenVINO exporters, dynamic batch and size, float32 programs), on ONNX Runtime and OpenVINO (float32, and
bfloat16 where the CPU has it natively), same weights; and both quantized to int8 the same way.

Ours is exported as its folded inference module (`fuse_for_inference`); transformers' as its model. OpenVINO runs
with INFERENCE_PRECISION_HINT f32 (its CPU plugin would otherwise pick bf16 on AMX CPUs). Cases are timed interleaved
(`benchmarking.time_interleaved`), medians reported.
"""

import numpy as np
import torch

from poolformer_hf.inference.folding import fuse_for_inference
from poolformer_hf.export.artefact import build_export, runner_options

RUNTIMES = {"onnxruntime": ("onnx", torch.float32), "openvino": ("openvino", torch.float32),
            "openvino-bf16": ("openvino", torch.bfloat16)}


def native_bf16_runtimes() -> bool:
    """Whether OpenVINO's CPU plugin reports native bfloat16 kernels on this CPU (AVX512-BF16 / AMX), read from the
    plugin, not assumed: elsewhere its bf16 is emulated and the row would measure the emulation."""
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def default_runtimes() -> tuple[str, ...]:
    return tuple(name for name in RUNTIMES if name != "openvino-bf16" or native_bf16_runtimes())


def _exported_case(runtime: str, module: torch.nn.Module, pixels: torch.Tensor):
    format, dtype = RUNTIMES[runtime]
    # bf16 is the runtime's inference precision over the same float32 program, as OpenVINO users run it
    exported = build_export(format, module, pixels[:2], dynamic_size=None)
    exported.to(**runner_options(format, dtype))
    return lambda x: exported(pixel_values=x).logits


def _int8_case(module: torch.nn.Module, calibration: torch.Tensor):
    from poolformer_hf.export.int8 import compile_openvino, quantize_program

    compiled = compile_openvino(quantize_program(module, calibration))
    request = compiled.create_infer_request()
    return lambda x: torch.from_numpy(np.asarray(request.infer({"pixel_values": x.numpy()})[0]))


def run_deploy(models: dict, batches=(1, 8), runtimes=None, int8: bool = True, resolution: int = 224,
               repeats: int = 5, log=print) -> list[dict]:
    """Both models exported to every runtime (default: ONNX Runtime, OpenVINO f32, and OpenVINO bf16 where the CPU
    has native bf16), and with `int8` both quantized the same way (NNCF on each one's OpenVINO program)."""
    from benchmarks.timing import summarize, time_interleaved

    sample = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    modules = {"poolformer_hf": lambda: fuse_for_inference(models["poolformer_hf"]),
               "transformers": lambda: models["transformers"].eval()}
    exported = {}
    for runtime in runtimes or default_runtimes():
        for impl, module in modules.items():
            exported[(impl, runtime)] = _exported_case(runtime, module(), sample)
    if int8:
        from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor
        from poolformer_hf.export.photos import photo_pixels

        calibration = photo_pixels(PoolFormerImageProcessor(), 8)  # the same photos for both
        for impl, module in modules.items():
            exported[(impl, "openvino-int8")] = _int8_case(module(), calibration)
    results = []
    for batch in batches:
        pixels = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            reference = models["poolformer_hf"](pixels).logits
        cases = {f"{impl}|{runtime}": (lambda run=run: run(pixels)) for (impl, runtime), run in exported.items()}
        differences = {name: (case().float() - reference).abs().max().item() for name, case in cases.items()}
        samples = time_interleaved(cases, repeats, settle_seconds=0.5)
        for name, times in samples.items():
            impl, runtime = name.split("|")
            row = {"section": "deploy", "impl": impl, "runtime": runtime, "batch": batch, "resolution": resolution,
                   "max_abs_diff_vs_ours": differences[name], **summarize(times, batch)}
            results.append(row)
            log(f"deploy batch {batch} {impl:13s} {runtime:14s} {row['median_s'] * 1e3:8.1f} ms "
                f"(|Δ logits| {differences[name]:.2g})")
    return results


def deploy_table(results: list[dict]) -> list[str]:
    rows = [row for row in results if row["section"] == "deploy"]
    if not rows:
        return []
    batches = sorted({row["batch"] for row in rows})
    ms = {(row["impl"], row["runtime"], row["batch"]): row["median_s"] * 1e3 for row in rows}
    lines = [f"**Deployment, float32 unless named, {rows[0]['resolution']}²** (ms per call, median)", "",
             "| runtime | " + " | ".join(f"transformers b{b} | ours b{b} | × b{b}" for b in batches) + " |",
             "|---|" + "---:|" * (3 * len(batches))]
    for runtime in dict.fromkeys(row["runtime"] for row in rows):
        cells = []
        for batch in batches:
            theirs, ours = ms.get(("transformers", runtime, batch)), ms.get(("poolformer_hf", runtime, batch))
            cells += [f"{theirs:.1f}" if theirs else "–", f"{ours:.1f}" if ours else "–",
                      f"{theirs / ours:.2f}×" if theirs and ours else "–"]
        lines.append(f"| {runtime} | " + " | ".join(cells) + " |")
    return lines + [""]
