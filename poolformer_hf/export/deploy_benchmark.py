"""`scripts/benchmark.py --deploy`: ours against transformers' PoolFormer, both exported the same way (transformers'
ONNX and OpenVINO exporters, dynamic batch and size, float32), on ONNX Runtime and OpenVINO, same weights.

Ours is exported as its folded inference module (`fuse_for_inference`); transformers' as its model. OpenVINO runs
with INFERENCE_PRECISION_HINT f32 (its CPU plugin would otherwise pick bf16 on AMX CPUs). Cases are timed interleaved
(`benchmarking.time_interleaved`), medians reported; with `int8`, ours also in int8 (`int8.quantize_int8`).
"""

import numpy as np
import torch

from ..inference import fuse_for_inference
from .artefact import build_export, runner_options

RUNTIMES = {"onnxruntime": "onnx", "openvino": "openvino"}


def _exported_case(format: str, module: torch.nn.Module, pixels: torch.Tensor):
    exported = build_export(format, module, pixels[:2], dynamic_size=None)
    exported.to(**runner_options(format, torch.float32))
    return lambda x: exported(pixel_values=x).logits


def _int8_case(model, pixels: torch.Tensor):
    from .int8 import compile_openvino, quantize_int8

    compiled = compile_openvino(quantize_int8(model, calibration_photos=8))
    request = compiled.create_infer_request()
    return lambda x: torch.from_numpy(np.asarray(request.infer({"pixel_values": x.numpy()})[0]))


def run_deploy(models: dict, batches=(1, 8), runtimes=tuple(RUNTIMES), int8: bool = True, resolution: int = 224,
               repeats: int = 5, log=print) -> list[dict]:
    from ..benchmarking import summarize, time_interleaved

    sample = torch.randn(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    exported = {}
    for runtime in runtimes:
        exported[("poolformer_hf", runtime)] = _exported_case(
            RUNTIMES[runtime], fuse_for_inference(models["poolformer_hf"]), sample)
        exported[("transformers", runtime)] = _exported_case(RUNTIMES[runtime], models["transformers"], sample)
    if int8:
        exported[("poolformer_hf", "openvino-int8")] = _int8_case(models["poolformer_hf"], sample)
    results = []
    for batch in batches:
        pixels = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            reference = models["poolformer_hf"](pixels).logits
        cases = {f"{impl}|{runtime}": (lambda run=run: run(pixels)) for (impl, runtime), run in exported.items()}
        differences = {name: (case().float() - reference).abs().max().item() for name, case in cases.items()}
        samples = time_interleaved(cases, repeats)
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
