"""Side-by-side benchmark of poolformer_hf, transformers' PoolFormer and timm's poolformer (scripts/benchmark.py).

Method:
* Same weights everywhere: a transformers PoolFormer (with O(1) random norm affines and layer scales, so agreement is a
  real check) is converted to ours by `convert_state_dict` and copied into timm through our key-renaming table; the
  three must agree to 1e-4 before anything is timed.
* Timing: every case of a section is called in one process, interleaved — each repeat calls every case once, in an
  order rotated per repeat — and the median over repeats is reported (the CPU may be shared; medians of interleaved
  repeats are robust to load that comes and goes). A sample is at least `min_seconds` of back-to-back calls.
* Peak memory: each configuration runs in a fresh subprocess. On Linux the resident-set high-water mark is reset
  (`/proc/self/clear_refs`) after the model, optimizer and batch exist, and the peak RSS of one training step (forward,
  backward, AdamW step, which also allocates the gradients and AdamW state) is reported as the delta over the RSS at
  that point. On CUDA, `torch.cuda.max_memory_allocated` over the same step.
* Roofline: only the model's 1×1 convs, as the GEMMs they are (bias included, preallocated outputs, same threads,
  same batch; over the whole batch and in our row chunks), timed interleaved with the float32 inference cases, give
  the machine's GEMM rate on this model's shapes; the roofline is the model's MACs (all its convs) at that rate.
"""

import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .configuration_poolformer import PoolFormerConfig
from .conversion import convert_state_dict, rename_keys
from .inference import fuse_for_inference
from .modeling_poolformer import PoolFormerForImageClassification

IMPLEMENTATIONS = ("poolformer_hf", "transformers", "timm", "roofline")
NUM_LABELS = 1000


# ------------------------------------------------------------------------------------------------------ models
def build_models(preset: str = "poolformer_s12", seed: int = 0) -> dict[str, torch.nn.Module]:
    """poolformer_hf, transformers and timm classifiers of `preset` (a PoolFormer v1 preset) with the same weights."""
    import timm
    import transformers

    ours_config = PoolFormerConfig.from_preset(preset, num_labels=NUM_LABELS, drop_path_rate=0.0)
    theirs_config = transformers.PoolFormerConfig(
        depths=ours_config.depths, hidden_sizes=ours_config.hidden_sizes, num_labels=NUM_LABELS,
        layer_scale_init_value=ours_config.layer_scale_init_value,
    )
    torch.manual_seed(seed)
    reference = transformers.PoolFormerForImageClassification(theirs_config)
    with torch.no_grad():  # O(1) norm affines, layer scales and biases: a wrong mixer or scale would show
        for name, param in reference.named_parameters():
            if param.ndim == 1:
                param.copy_(0.2 * torch.randn_like(param) if name.endswith("bias") else torch.rand_like(param) + 0.5)
    ours = PoolFormerForImageClassification(ours_config)
    ours.load_state_dict(convert_state_dict(reference.state_dict(), ours))
    theirs_timm = timm.create_model(preset, num_classes=NUM_LABELS)
    theirs_timm.load_state_dict(state_dict_for_timm(ours.state_dict(), theirs_timm))
    return {"poolformer_hf": ours.eval(), "transformers": reference.eval(), "timm": theirs_timm.eval()}


def state_dict_for_timm(ours: dict, timm_model: torch.nn.Module) -> dict:
    """Our tensors under timm's names, through the same renaming table that reads timm checkpoints."""
    theirs = timm_model.state_dict()
    our_name = rename_keys({key: None for key in theirs}, "timm")  # their key order, our names
    return {key: ours[name].reshape(theirs[key].shape) for key, name in zip(theirs, our_name)}


def logits(impl: str, model, pixels: torch.Tensor) -> torch.Tensor:
    out = model(pixels)
    return out if isinstance(out, torch.Tensor) else out.logits


def features(impl: str, model, pixels: torch.Tensor) -> torch.Tensor:
    """The last feature map of the body (timm's v1 head differs: LayerNorm after pooling, so logits would not)."""
    if impl == "timm":
        return model.forward_features(pixels)
    return model.poolformer(pixels).last_hidden_state


def check_agreement(models: dict, pixels: torch.Tensor, tolerance: float = 1e-4) -> dict[str, float]:
    """Max |Δ| of every implementation's last feature map against poolformer_hf's, and of transformers' logits;
    a ValueError if any exceeds `tolerance`."""
    with torch.no_grad():
        expected = features("poolformer_hf", models["poolformer_hf"], pixels)
        diffs = {impl: (features(impl, model, pixels) - expected).abs().max().item() for impl, model in models.items()}
        ours, theirs = (logits(impl, models[impl], pixels) for impl in ("poolformer_hf", "transformers"))
        diffs["transformers logits"] = (ours - theirs).abs().max().item()
    if max(diffs.values()) > tolerance or expected.std() < 1e-3:
        raise ValueError(f"the implementations disagree (max |Δ| {diffs}); timing them would be meaningless")
    return diffs


# ------------------------------------------------------------------------------------------------------ timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(cases: dict[str, Callable], repeats: int, warmup: int = 1, min_seconds: float = 0.2,
                     device: torch.device = torch.device("cpu")) -> dict[str, list[float]]:
    """Seconds per call of every case: `repeats` interleaved samples each, in rotated order, after `warmup` calls."""
    names = list(cases)
    calls = {}
    for name in names:
        start = time.perf_counter()
        for _ in range(warmup):
            cases[name]()
        synchronize(device)
        per_call = (time.perf_counter() - start) / max(warmup, 1)
        calls[name] = max(1, math.ceil(min_seconds / max(per_call, 1e-6)))
    samples = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            for _ in range(calls[name]):
                cases[name]()
            synchronize(device)
            samples[name].append((time.perf_counter() - start) / calls[name])
    return samples


def summarize(samples: list[float], images: int) -> dict:
    median = statistics.median(samples)
    return {"images_per_s": images / median, "median_s": median, "samples_s": samples}


# ------------------------------------------------------------------------------------------------------ inference
def _channels_last(model):
    return model.to(memory_format=torch.channels_last)


def inference_models(models: dict, dtype: torch.dtype, modes: tuple[str, ...], device: torch.device) -> dict:
    """(implementation, mode) → (model, pixel memory format). Peers: eager, channels_last, compile (channels-last
    model and input, torch.compile). Ours: default (the plain model, NCHW input), fused (`fuse_for_inference`),
    fused+compile; ours always gets NCHW pixels."""
    import copy

    built = {}
    for impl, base in models.items():
        base = copy.deepcopy(base).to(device=device, dtype=dtype).eval()
        if impl == "poolformer_hf":
            table = {
                "default": lambda: base,
                "fused": lambda: fuse_for_inference(base),
                "fused+compile": lambda: fuse_for_inference(base, compile=True),
            }
            pixel_format = torch.contiguous_format
        else:
            table = {
                "eager": lambda: base,
                "channels_last": lambda: _channels_last(copy.deepcopy(base)),
                "compile": lambda: torch.compile(_channels_last(copy.deepcopy(base)), dynamic=False),
            }
        for mode, make in table.items():
            if mode in modes or (impl == "poolformer_hf" and _OUR_MODE_OF.get(mode) in modes):
                fmt = torch.contiguous_format if impl == "poolformer_hf" or mode == "eager" else torch.channels_last
                built[(impl, mode)] = (make(), fmt)
    return built


# Our modes shown next to the peers' modes of the same kind.
_OUR_MODE_OF = {"default": "eager", "fused": "channels_last", "fused+compile": "compile"}


def run_inference(models: dict, batches=(1, 32), dtypes=(torch.float32, torch.bfloat16),
                  modes=("eager", "channels_last", "compile"), resolution: int = 224, repeats: int = 5,
                  device: torch.device = torch.device("cpu"), log=print) -> list[dict]:
    results = []
    for dtype in dtypes:
        built = inference_models(models, dtype, modes, device)
        for batch in batches:
            pixels = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(batch))
            pixels = pixels.to(device=device, dtype=dtype)
            inputs = {fmt: pixels.contiguous(memory_format=fmt) for fmt in (torch.contiguous_format, torch.channels_last)}
            cases = {}
            for (impl, mode), (model, fmt) in built.items():
                x = inputs[fmt]
                cases[f"{impl}|{mode}"] = (lambda m=model, x=x, i=impl: logits(i, m, x))
            with torch.inference_mode():
                outputs = {name: case().float() for name, case in cases.items()}  # also the compile warm-up
                reference = outputs.get("poolformer_hf|default", next(iter(outputs.values())))
                roofline, factor = ({}, 0.0) if dtype != torch.float32 else roofline_cases(
                    models["poolformer_hf"].config, batch, resolution, dtype, device)
                samples = time_interleaved({**cases, **roofline}, repeats, device=device)
            for name in roofline:
                results.append(roofline_row(name, samples.pop(name), factor, batch, resolution, dtype))
                log(f"inference {results[-1]['dtype']:8s} batch {batch:3d} roofline      {name:22s} "
                    f"{results[-1]['images_per_s']:8.2f} img/s")
            for name, times in samples.items():
                impl, mode = name.split("|")
                row = {"section": "inference", "impl": impl, "mode": mode, "dtype": str(dtype).removeprefix("torch."),
                       "batch": batch, "resolution": resolution,
                       "max_abs_diff_vs_ours": (outputs[name] - reference).abs().max().item() if impl != "timm" else None,
                       **summarize(times, batch)}
                results.append(row)
                log(f"inference {row['dtype']:8s} batch {batch:3d} {impl:13s} {mode:14s} "
                    f"{row['images_per_s']:8.2f} img/s  (|Δ logits| {row['max_abs_diff_vs_ours']})")
    return results


# ------------------------------------------------------------------------------------------------------ training
def training_step(impl: str, model, batch: int, resolution: int = 224, device=torch.device("cpu")) -> Callable:
    """One step — forward with the loss, backward, AdamW step, zero_grad — on a fixed random batch."""
    generator = torch.Generator().manual_seed(batch)
    pixels = torch.randn(batch, 3, resolution, resolution, generator=generator).to(device)
    labels = torch.randint(0, NUM_LABELS, (batch,), generator=generator).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def step():
        if impl == "timm":
            loss = F.cross_entropy(model(pixels), labels)
        else:
            loss = model(pixels, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


TRAIN_CONFIGS = {  # name → (implementation, gradient checkpointing)
    "transformers": ("transformers", False),
    "timm": ("timm", False),
    "poolformer_hf": ("poolformer_hf", False),
    "poolformer_hf+checkpointing": ("poolformer_hf", True),
}


def _training_model(models: dict, name: str, device):
    import copy

    impl, checkpointing = TRAIN_CONFIGS[name]
    model = copy.deepcopy(models[impl]).to(device)
    if checkpointing:
        model.gradient_checkpointing_enable()
    return impl, model


def run_training(models: dict, batches=(16, 32), repeats: int = 3, device=torch.device("cpu"), log=print) -> list[dict]:
    results = []
    for batch in batches:
        cases = {}
        for name in TRAIN_CONFIGS:
            impl, model = _training_model(models, name, device)
            cases[name] = training_step(impl, model, batch, device=device)
        samples = time_interleaved(cases, repeats, warmup=1, min_seconds=0.0, device=device)
        for name, times in samples.items():
            row = {"section": "training", "impl": name, "batch": batch, **summarize(times, batch)}
            results.append(row)
            log(f"training batch {batch:3d} {name:28s} {row['images_per_s']:7.2f} img/s")
    return results


# ------------------------------------------------------------------------------------------------------ memory
def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def memory_probe(spec: dict) -> dict:
    """Peak memory of one training step (spec: name, batch, resolution, preset, device) or of one inference forward
    (spec: kind="inference", model, batch, resolution), measured in this process. Run it in a fresh process."""
    device = torch.device(spec.get("device", "cpu"))
    if spec.get("kind") == "inference":
        model = scaling_model(spec["model"]).to(device).eval()
        pixels = torch.randn(spec["batch"], 3, spec["resolution"], spec["resolution"], device=device)
        run = lambda: model(pixels)  # noqa: E731
        context = torch.inference_mode
    else:
        models = build_models(spec.get("preset", "poolformer_s12"))
        impl, model = _training_model(models, spec["name"], device)
        del models
        run = training_step(impl, model, spec["batch"], spec.get("resolution", 224), device=device)
        context = torch.enable_grad
    gc.collect()
    with context():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            run()
            torch.cuda.synchronize(device)
            return {"peak_bytes": torch.cuda.max_memory_allocated(device) - before, "method": "cuda allocator peak"}
        before = _rss_bytes()
        method = "peak RSS delta (VmHWM reset)" if _reset_peak_rss() else "peak RSS delta (ru_maxrss, not reset)"
        tensor_peak = _tensor_peak_bytes(run)
        return {"peak_bytes": tensor_peak, "rss_peak_bytes": _peak_rss_bytes() - before,
                "method": f"peak of live tensor bytes (profiler); {method}"}


def _tensor_peak_bytes(run: Callable) -> int:
    """The peak of the bytes held by tensors allocated during `run`, from the profiler's allocator records: exact and
    free of malloc's caching and page-level noise (library scratch space outside PyTorch's allocator is not seen)."""
    import tempfile

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profiler:
        run()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "trace.json")
        profiler.export_chrome_trace(path)
        with open(path) as handle:
            events = json.load(handle)["traceEvents"]
    totals = [event["args"]["Total Allocated"] for event in events
              if event.get("name") == "[memory]" and event["args"].get("Device Type") == 0]
    return max(totals, default=0)


def measure_in_subprocess(spec: dict, timeout: int = 1800) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import json, sys; from poolformer_hf.benchmarking import memory_probe; "
            "print('RESULT ' + json.dumps(memory_probe(json.loads(sys.argv[1]))))")
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=root)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"memory probe {spec} failed:\n{done.stderr[-3000:]}")


def run_memory(batches=(16, 32), repeats: int = 1, device=torch.device("cpu"), log=print) -> list[dict]:
    results = []
    for batch in batches:
        for name in TRAIN_CONFIGS:
            probes = [measure_in_subprocess({"name": name, "batch": batch, "device": device.type})
                      for _ in range(repeats)]
            peak = statistics.median(probe["peak_bytes"] for probe in probes)
            rss = statistics.median(probe.get("rss_peak_bytes", 0) for probe in probes)
            results.append({"section": "memory", "impl": name, "batch": batch, "peak_mib": peak / 2**20,
                            "rss_peak_mib": rss / 2**20, "method": probes[0]["method"]})
            log(f"memory   batch {batch:3d} {name:28s} {peak / 2**20:8.0f} MiB tensors, {rss / 2**20:8.0f} MiB RSS")
    return results


# ------------------------------------------------------------------------------------------------------ roofline
def model_macs(config: PoolFormerConfig, resolution: int = 224) -> int:
    from .complexity import measure

    return measure(config, resolution)["macs"]


def pointwise_conv_shapes(config: PoolFormerConfig, resolution: int = 224) -> list[tuple[int, int, int]]:
    """(rows per image, in, out) of every 1×1 conv of the model's MLPs."""
    shapes = []
    for stage, (height, width) in enumerate(config.stage_resolutions(resolution, resolution)):
        dim, hidden = config.hidden_sizes[stage], int(config.hidden_sizes[stage] * config.mlp_ratio)
        shapes += [(height * width, dim, hidden), (height * width, hidden, dim)] * config.depths[stage]
    return shapes


def roofline_cases(config: PoolFormerConfig, batch: int, resolution: int = 224, dtype=torch.float32,
                   device=torch.device("cpu")) -> tuple[dict[str, Callable], float]:
    """Cases that run only the model's 1×1 convs, as GEMMs with bias into preallocated outputs — over the whole batch
    at once, and in the row chunks `fused.py` uses — and the factor that turns one case's seconds into the images/s
    of the whole model's MACs at that GEMM rate."""
    from .fused import chunk_rows

    shapes = pointwise_conv_shapes(config, resolution)
    make = lambda *shape: torch.randn(*shape, device=device, dtype=dtype)  # noqa: E731
    operands = [(make(batch * rows, fan_in), make(fan_in, fan_out), make(fan_out), make(batch * rows, fan_out))
                for rows, fan_in, fan_out in shapes]

    def gemms(chunked: bool):
        def run():
            for matrix, weight, bias, out in operands:
                step = chunk_rows(len(out), max(weight.shape), out.element_size()) if chunked else len(out)
                for start in range(0, len(out), step):
                    torch.addmm(bias, matrix[start:start + step], weight, out=out[start:start + step])
        return run

    macs_1x1 = batch * sum(rows * fan_in * fan_out for rows, fan_in, fan_out in shapes)
    return {"1x1 GEMMs, whole batch": gemms(False), "1x1 GEMMs, chunked": gemms(True)}, macs_1x1 / model_macs(config, resolution)


def roofline_row(name: str, samples: list[float], factor: float, batch: int, resolution: int, dtype) -> dict:
    seconds = statistics.median(samples)
    return {"section": "inference", "impl": "roofline", "mode": name, "dtype": str(dtype).removeprefix("torch."),
            "batch": batch, "resolution": resolution, "images_per_s": factor / seconds, "median_s": seconds,
            "samples_s": samples, "max_abs_diff_vs_ours": None}


# ------------------------------------------------------------------------------------------------------ scaling
SCALING_MODELS = ("poolformer_s12", "caformer_s18", "vit_small_patch16")


def scaling_model(name: str) -> torch.nn.Module:
    """PoolFormer-S12 and CAFormer-S18 (ours), and timm's ViT-S/16 at any resolution."""
    if name == "vit_small_patch16":
        import timm

        return timm.create_model("vit_small_patch16_224", num_classes=NUM_LABELS, dynamic_img_size=True)
    return PoolFormerForImageClassification(PoolFormerConfig.from_preset(name, num_labels=NUM_LABELS))


def run_scaling(resolutions=(224, 384, 512, 768, 1024), models=SCALING_MODELS, repeats: int = 3,
                device=torch.device("cpu"), log=print) -> list[dict]:
    """Time and peak memory of one image's forward as the resolution grows: token mixing by pooling is linear in the
    number of tokens, attention quadratic (the paper's argument for long sequences)."""
    results = []
    built = {name: scaling_model(name).to(device).eval() for name in models}
    for resolution in resolutions:
        pixels = torch.randn(1, 3, resolution, resolution, device=device)
        cases = {name: (lambda m=model: m(pixels)) for name, model in built.items()}
        with torch.inference_mode():
            samples = time_interleaved(cases, repeats, min_seconds=0.0, device=device)
        for name, times in samples.items():
            memory = measure_in_subprocess({"kind": "inference", "model": name, "batch": 1, "resolution": resolution,
                                            "device": device.type})
            row = {"section": "scaling", "impl": name, "resolution": resolution, "tokens": (resolution // 4) ** 2,
                   "peak_mib": memory["peak_bytes"] / 2**20, **summarize(times, 1)}
            results.append(row)
            log(f"scaling  {resolution:4d}² {name:18s} {row['median_s'] * 1e3:9.1f} ms  {row['peak_mib']:8.0f} MiB")
    return results


# ------------------------------------------------------------------------------------------------------ reports
def markdown_table(results: list[dict]) -> str:
    """The README tables: inference images/s per implementation and mode, training, memory, roofline, scaling."""
    lines = []
    inference = [row for row in results if row["section"] == "inference"]
    for dtype in sorted({row["dtype"] for row in inference}, reverse=True):
        for batch in sorted({row["batch"] for row in inference if row["dtype"] == dtype}):
            rows = [row for row in inference if row["dtype"] == dtype and row["batch"] == batch]
            baseline = next((row for row in rows if row["impl"] == "transformers" and row["mode"] == "eager"), None)
            roof = max((row["images_per_s"] for row in rows if row["impl"] == "roofline"), default=None)
            lines += [f"**Inference, {dtype}, batch {batch}, {rows[0]['resolution']}²** (images/s, median)", "",
                      "| implementation | mode | images/s | × transformers eager | of the roofline |",
                      "|---|---|---:|---:|---:|"]
            for row in sorted(rows, key=lambda r: (IMPLEMENTATIONS.index(r["impl"]), r["mode"])):
                speedup = f"{row['images_per_s'] / baseline['images_per_s']:.2f}×" if baseline else "–"
                share = f"{row['images_per_s'] / roof:.0%}" if roof else "–"
                lines.append(f"| {row['impl']} | {row['mode']} | {row['images_per_s']:.1f} | {speedup} | {share} |")
            lines.append("")
    from .export.deploy_benchmark import deploy_table  # the deploy section's own table (ONNX Runtime, OpenVINO)

    lines += deploy_table(results)
    training = [row for row in results if row["section"] == "training"]
    memory = {(row["impl"], row["batch"]): row for row in results if row["section"] == "memory"}
    if training:
        lines += ["**Training step** (forward + backward + AdamW, 224²; peak memory of the step: live tensors from the "
                  "profiler, and process RSS)", "",
                  "| implementation | batch | images/s | × transformers | peak tensors (MiB) | × transformers "
                  "| peak RSS (MiB) | × transformers |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in training:
            base = next(r for r in training if r["impl"] == "transformers" and r["batch"] == row["batch"])
            mem, base_mem = memory.get((row["impl"], row["batch"])), memory.get(("transformers", row["batch"]))
            cells = []
            for key in ("peak_mib", "rss_peak_mib"):
                cells.append(f"{mem[key]:.0f} | {mem[key] / base_mem[key]:.2f}×" if mem and base_mem else "– | –")
            lines.append(f"| {row['impl']} | {row['batch']} | {row['images_per_s']:.2f} | "
                         f"{row['images_per_s'] / base['images_per_s']:.2f}× | {' | '.join(cells)} |")
        lines.append("")
    scaling = [row for row in results if row["section"] == "scaling"]
    if scaling:
        names = list(dict.fromkeys(row["impl"] for row in scaling))
        lines += ["**Scaling with resolution** (batch 1: ms per image / peak MiB)", "",
                  "| resolution | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
        for resolution in sorted({row["resolution"] for row in scaling}):
            cells = []
            for name in names:
                row = next((r for r in scaling if r["impl"] == name and r["resolution"] == resolution), None)
                cells.append(f"{row['median_s'] * 1e3:.0f} ms / {row['peak_mib']:.0f} MiB" if row else "–")
            lines.append(f"| {resolution}² | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: str) -> bool:
    """A PNG of inference images/s per mode and of time/memory against resolution; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    inference = [row for row in results if row["section"] == "inference"]
    scaling = [row for row in results if row["section"] == "scaling"]
    panels = [p for p in ("inference", "time", "memory") if (p == "inference" and inference) or (p != "inference" and scaling)]
    if not panels:
        return False
    batch = max(row["batch"] for row in inference) if inference else 0
    bars = sorted((row for row in inference if row["batch"] == batch),
                  key=lambda r: (r["dtype"], IMPLEMENTATIONS.index(r["impl"]), r["mode"]))
    colors = {"poolformer_hf": "tab:green", "transformers": "tab:gray", "timm": "tab:brown", "roofline": "tab:blue"}
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), max(4.5, 0.28 * len(bars))),
                                squeeze=False)
    for axis, panel in zip(axes[0], panels):
        if panel == "inference":
            axis.barh(range(len(bars)), [row["images_per_s"] for row in bars],
                      color=[colors[row["impl"]] for row in bars])
            axis.set_yticks(range(len(bars)), [f"{row['impl']} · {row['mode']} · {row['dtype']}" for row in bars],
                            fontsize=7)
            axis.invert_yaxis()
            axis.set_xlabel(f"images/s (batch {batch}, 224², median)")
        else:
            key, label = ("median_s", "seconds per image") if panel == "time" else ("peak_mib", "peak MiB")
            for name in dict.fromkeys(row["impl"] for row in scaling):
                rows = sorted((row for row in scaling if row["impl"] == name), key=lambda r: r["resolution"])
                axis.plot([row["resolution"] for row in rows], [row[key] for row in rows], marker="o", label=name)
            axis.set_xlabel("resolution (pixels per side)")
            axis.set_ylabel(label)
            axis.set_yscale("log")
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def write_reports(results: list[dict], environment: dict, out_dir: str) -> dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "benchmark.json"), "markdown": os.path.join(out_dir, "benchmark.md"),
             "png": os.path.join(out_dir, "benchmark.png")}
    with open(paths["json"], "w") as handle:
        json.dump({"environment": environment, "results": results}, handle, indent=1)
    with open(paths["markdown"], "w") as handle:
        handle.write(markdown_table(results) + "\n")
    if not plot(results, paths["png"]):
        paths.pop("png")
    return paths


def environment() -> dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info
