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

from benchmarks.timing import summarize, synchronize, time_interleaved  # noqa: F401  (bench.* for the sections)
from poolformer_hf.configuration_poolformer import PoolFormerConfig
from poolformer_hf.conversion.formats import convert_state_dict, rename_keys
from poolformer_hf.inference.folding import fuse_for_inference
from poolformer_hf.kernels import set_kernels
from poolformer_hf.modeling_poolformer import PoolFormerForImageClassification

IMPLEMENTATIONS = ("poolformer_hf", "transformers", "timm", "roofline")
NUM_LABELS = 1000


# ------------------------------------------------------------------------------------------------------ models
def import_revision(revision: str):
    """The `poolformer_hf` package as of git `revision` of this checkout, imported as `poolformer_hf_<sha>` from a
    temporary copy (its imports are relative), so an earlier revision is timed beside this one in the same run."""
    import importlib
    import tarfile
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sha = subprocess.run(["git", "-C", root, "rev-parse", "--short", revision], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    name = f"poolformer_hf_{sha}"
    folder = os.path.join(tempfile.gettempdir(), "poolformer_hf_revisions", sha)
    if not os.path.isdir(os.path.join(folder, name)):
        os.makedirs(folder, exist_ok=True)
        archive = os.path.join(folder, "package.tar")
        subprocess.run(["git", "-C", root, "archive", "-o", archive, sha, "poolformer_hf"], check=True, timeout=60)
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
        os.replace(os.path.join(folder, "poolformer_hf"), os.path.join(folder, name))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


def is_ours(impl: str) -> bool:
    """poolformer_hf itself, or an earlier revision of it (`poolformer_hf@REV`)."""
    return impl == "poolformer_hf" or impl.startswith("poolformer_hf@")


def build_models(preset: str = "poolformer_s12", seed: int = 0, revisions: tuple[str, ...] = ()) -> dict:
    """poolformer_hf, transformers and timm classifiers of `preset` (a PoolFormer v1 preset) with the same weights,
    plus poolformer_hf as of each git revision in `revisions` (named `poolformer_hf@REV`)."""
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
    models = {"poolformer_hf": ours.eval(), "transformers": reference.eval(), "timm": theirs_timm.eval()}
    for revision in revisions:
        package = import_revision(revision)
        config = package.PoolFormerConfig.from_preset(preset, num_labels=NUM_LABELS, drop_path_rate=0.0)
        earlier = package.PoolFormerForImageClassification(config)
        earlier.load_state_dict(ours.state_dict())
        models[f"poolformer_hf@{revision}"] = earlier.eval()
    return models


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
def _channels_last(model):
    return model.to(memory_format=torch.channels_last)


# Inductor options of the compile modes beyond the default one: weights frozen as constants (prepacked for oneDNN),
# and with max-autotune on top (Inductor's C++ GEMM templates tried against the library GEMMs).
FROZEN = {"freezing": True}
AUTOTUNE = {"freezing": True, "max_autotune": True}
PEER_MODES = ("eager", "channels_last", "compile", "compile_frozen", "autotune")


def allow_recompiles(limit: int = 256) -> None:
    """Every compiled model of one class shares its forward's code object, and past torch._dynamo's recompile_limit
    (8) compiles of it dynamo runs the rest eagerly without a word: a benchmark timing several compile modes, batch
    sizes, dtypes and presets passes that. Raise the limit, and make hitting it an error rather than eager timings
    under a compile mode's name."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, limit)
    dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, limit)
    dynamo_config.fail_on_recompile_limit_hit = True


def inference_models(models: dict, dtype: torch.dtype, modes: tuple[str, ...], device: torch.device) -> dict:
    """(implementation, mode) → (model, pixel memory format). Peers: eager, channels_last, compile (channels-last
    model and input, torch.compile), compile_frozen and autotune (the same with FROZEN / AUTOTUNE options). Ours:
    default (the plain model, NCHW input), fused (`fuse_for_inference`), fused+compile and its frozen / autotuned
    variants; ours always gets NCHW pixels."""
    import copy

    built = {}
    for impl, base in models.items():
        base = copy.deepcopy(base).to(device=device, dtype=dtype).eval()
        if impl != "poolformer_hf" and is_ours(impl):  # an earlier revision: its default call only
            table = {"default": lambda: base}
            pixel_format = torch.contiguous_format
        elif impl == "poolformer_hf":
            table = {
                "default": lambda: base,
                "plain": lambda: set_kernels(copy.deepcopy(base), None),
                "fused": lambda: fuse_for_inference(base),
                "fused+compile": lambda: fuse_for_inference(base, compile=True),
                "fused+compile_frozen": lambda: fuse_for_inference(base, compile=FROZEN),
                "fused+autotune": lambda: fuse_for_inference(base, compile=AUTOTUNE),
            }
            pixel_format = torch.contiguous_format
        else:
            table = {
                "eager": lambda: base,
                "channels_last": lambda: _channels_last(copy.deepcopy(base)),
                "compile": lambda: torch.compile(_channels_last(copy.deepcopy(base)), dynamic=False),
                "compile_frozen": lambda: torch.compile(_channels_last(copy.deepcopy(base)), dynamic=False,
                                                        options=FROZEN),
                "autotune": lambda: torch.compile(_channels_last(copy.deepcopy(base)), dynamic=False, options=AUTOTUNE),
            }
        for mode, make in table.items():
            if mode in modes or (is_ours(impl) and _OUR_MODE_OF.get(mode) in modes):
                fmt = torch.contiguous_format if is_ours(impl) or mode == "eager" else torch.channels_last
                built[(impl, mode)] = (make(), fmt)
    return built


# Our modes shown next to the peers' modes of the same kind.
_OUR_MODE_OF = {"default": "eager", "plain": "eager", "fused": "channels_last", "fused+compile": "compile",
                "fused+compile_frozen": "compile_frozen", "fused+autotune": "autotune"}


def run_inference(models: dict, batches=(1, 32), dtypes=(torch.float32, torch.bfloat16),
                  modes=("eager", "channels_last", "compile"), resolution: int = 224, repeats: int = 5,
                  device: torch.device = torch.device("cpu"), log=print) -> list[dict]:
    allow_recompiles()
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


# ------------------------------------------------------------------------------------------------------ family
FAMILY_PRESETS = ("poolformer_s12", "poolformerv2_s12", "convformer_s18", "caformer_s18")


def family_models(preset: str, seed: int = 0) -> dict:
    """timm's `preset` with O(1) random weights and ours loaded from its state dict (timm's head norm position, so
    the logits agree), both in eval mode."""
    import timm

    theirs = timm.create_model(preset, num_classes=NUM_LABELS)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in theirs.named_parameters():
            if param.ndim >= 2:
                param.copy_(torch.randn_like(param) / math.sqrt(param[0].numel()))
            else:
                bias = name.endswith("bias")
                param.copy_(0.2 * torch.randn_like(param) if bias else torch.rand_like(param) + 0.5)
    config = PoolFormerConfig.from_preset(preset, num_labels=NUM_LABELS, drop_path_rate=0.0,
                                          head_norm_position="after_pool")
    ours = PoolFormerForImageClassification(config)
    ours.load_state_dict(convert_state_dict(theirs.state_dict(), ours))
    return {"poolformer_hf": ours.eval(), "timm": theirs.eval()}


def run_family(presets=FAMILY_PRESETS, batches=(1, 32), dtypes=(torch.float32,), modes=("eager", "channels_last"),
               resolution: int = 224, repeats: int = 5, device: torch.device = torch.device("cpu"),
               log=print) -> list[dict]:
    """Ours (default call, fused) beside timm (`modes`) for each preset of the family, interleaved per case."""
    allow_recompiles()
    results = []
    for preset in presets:
        models = family_models(preset)
        for dtype in dtypes:
            built = inference_models(models, dtype, modes, device)
            for batch in batches:
                pixels = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(batch))
                pixels = pixels.to(device=device, dtype=dtype)
                cases = {f"{impl}|{mode}": (lambda m=model, x=pixels.contiguous(memory_format=fmt), i=impl:
                                            logits(i, m, x))
                         for (impl, mode), (model, fmt) in built.items()}
                with torch.inference_mode():
                    outputs = {name: case().float() for name, case in cases.items()}
                    reference = outputs["timm|eager"] if "timm|eager" in outputs else next(iter(outputs.values()))
                    samples = time_interleaved(cases, repeats, device=device)
                for name, times in samples.items():
                    impl, mode = name.split("|")
                    row = {"section": "family", "preset": preset, "impl": impl, "mode": mode,
                           "dtype": str(dtype).removeprefix("torch."), "batch": batch, "resolution": resolution,
                           "max_abs_diff_vs_timm": (outputs[name] - reference).abs().max().item(),
                           **summarize(times, batch)}
                    results.append(row)
                    log(f"family {preset:17s} {row['dtype']:8s} batch {batch:3d} {impl:13s} {mode:14s} "
                        f"{row['images_per_s']:8.2f} img/s  (|Δ logits| vs timm {row['max_abs_diff_vs_timm']:.1e})")
    return results


def family_table(results: list[dict]) -> list[str]:
    rows = [row for row in results if row["section"] == "family"]
    if not rows:
        return []
    lines = ["**The family** (images/s, median; × the best timm mode of the same case)", "",
             "| preset | dtype | batch | implementation | mode | images/s | × best timm |",
             "|---|---|---:|---|---|---:|---:|"]
    for row in rows:
        peers = [r["images_per_s"] for r in rows if r["impl"] == "timm" and
                 (r["preset"], r["dtype"], r["batch"]) == (row["preset"], row["dtype"], row["batch"])]
        ratio = f"{row['images_per_s'] / max(peers):.2f}×" if peers else "–"
        lines.append(f"| {row['preset']} | {row['dtype']} | {row['batch']} | {row['impl']} | {row['mode']} | "
                     f"{row['images_per_s']:.1f} | {ratio} |")
    return lines + [""]


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


# name → (implementation, how ours trains): the kernel layer (default; its branches store only their inputs),
# activation checkpointing of whole blocks on top, the plain modules, and the plain modules under torch's selective
# activation checkpointing (GEMM outputs kept, the rest recomputed) — the yardstick for the kernels' own backward.
TRAIN_CONFIGS = {
    "transformers": ("transformers", None),
    "timm": ("timm", None),
    "poolformer_hf": ("poolformer_hf", None),
    "poolformer_hf+checkpointing": ("poolformer_hf", "checkpointing"),
    "poolformer_hf plain": ("poolformer_hf", "plain"),
    "poolformer_hf plain+selective": ("poolformer_hf", "selective"),
}


def train_configs(models: dict) -> dict:
    """TRAIN_CONFIGS plus the default training of every earlier revision in `models`."""
    return {**TRAIN_CONFIGS, **{impl: (impl, None) for impl in models if impl not in TRAIN_CONFIGS and is_ours(impl)}}


def _training_model(models: dict, name: str, device):
    import copy

    from poolformer_hf.tasks.selective_checkpointing import apply_selective_checkpointing

    impl, variant = train_configs(models)[name]
    model = copy.deepcopy(models[impl]).to(device)
    if variant == "checkpointing":
        model.activation_checkpointing_enable()
    elif variant in ("plain", "selective"):
        set_kernels(model, None)
        if variant == "selective":
            apply_selective_checkpointing(model)
    return impl, model


def run_training(models: dict, batches=(16, 32), repeats: int = 3, device=torch.device("cpu"), log=print) -> list[dict]:
    results = []
    for batch in batches:
        cases = {}
        for name in train_configs(models):
            impl, model = _training_model(models, name, device)
            cases[name] = training_step(impl, model, batch, device=device)
        samples = time_interleaved(cases, repeats, warmup=1, min_seconds=0.0, device=device)
        for name, times in samples.items():
            row = {"section": "training", "impl": name, "batch": batch, **summarize(times, batch)}
            results.append(row)
            log(f"training batch {batch:3d} {name:28s} {row['images_per_s']:7.2f} img/s")
    return results


# ------------------------------------------------------------------------------------------------------ composition
LORA_TARGETS = r".*\.mlp\.fc[12]"  # scripts/train.py's default for PoolFormer v1: the MLP's 1×1 convs


def lora_model(model, rank: int = 8):
    """A copy of `model` with PEFT's LoRA (rank `rank`, alpha 2·rank) on the MLP convs and the classifier trained."""
    import copy

    import peft

    config = peft.LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=LORA_TARGETS, modules_to_save=["classifier"],
                             init_lora_weights=False)  # B ≠ 0: the adapter changes the outputs it is timed on
    return peft.get_peft_model(copy.deepcopy(model), config)


def dispatch_seconds(model, pixels: torch.Tensor, calls: int = 200) -> float:
    """Seconds per forward that the kernel layer's call-time checks take (`kernels.dispatch`): the tree and per-call
    checks that one no-grad forward of `model` on `pixels` makes, recorded during that forward and then timed alone."""
    from poolformer_hf.kernels import PLANS, dispatch

    names = sorted({plan.__name__ for plan in PLANS.values()} | {"environment"})
    made, originals = [], {name: getattr(dispatch, name) for name in names}

    def recording(check):
        def record(*args):
            made.append((check, args))
            return check(*args)
        return record

    try:
        for name, check in originals.items():
            setattr(dispatch, name, recording(check))
        with torch.no_grad():
            model(pixel_values=pixels)
    finally:
        for name, check in originals.items():
            setattr(dispatch, name, check)
    start = time.perf_counter()
    for _ in range(calls):
        for check, args in made:
            check(*args)
    return (time.perf_counter() - start) / calls


def run_composition(models: dict, batches=(1, 32), train_batch: int = 16, repeats: int = 5, resolution: int = 224,
                    device=torch.device("cpu"), log=print) -> list[dict]:
    """The kernels under PEFT's LoRA: inference of the default model, the plain modules, LoRA (unmerged) and LoRA
    merged (`merge_and_unload`), with earlier revisions of the default model beside them; a LoRA training step with
    the kernels and with the plain modules; and the cost of the call-time dispatch checks per forward."""
    import copy

    rows = []
    ours = models["poolformer_hf"]
    adapted = lora_model(ours).eval()
    merged = copy.deepcopy(adapted).merge_and_unload().eval()
    cases_models = {"poolformer_hf": ours, "poolformer_hf plain": set_kernels(copy.deepcopy(ours), None),
                    "poolformer_hf+LoRA": adapted, "poolformer_hf+LoRA plain": set_kernels(copy.deepcopy(adapted), None),
                    "poolformer_hf+LoRA merged": merged,
                    **{impl: model for impl, model in models.items() if is_ours(impl) and impl != "poolformer_hf"}}
    for batch in batches:
        generator = torch.Generator().manual_seed(batch)
        pixels = torch.randn(batch, 3, resolution, resolution, generator=generator).to(device)

        def forward(model):
            def call():
                with torch.no_grad():
                    return model(pixel_values=pixels)
            return call

        samples = time_interleaved({name: forward(model.to(device)) for name, model in cases_models.items()},
                                   repeats, device=device)
        for name, times in samples.items():
            rows.append({"section": "composition", "kind": "inference", "impl": name, "batch": batch,
                         **summarize(times, batch)})
            log(f"composition inference batch {batch:3d} {name:28s} {rows[-1]['images_per_s']:7.2f} img/s")
        seconds = statistics.median(dispatch_seconds(ours, pixels) for _ in range(repeats))
        rows.append({"section": "composition", "kind": "dispatch", "impl": "poolformer_hf", "batch": batch,
                     "dispatch_s": seconds})
        log(f"composition dispatch checks per forward: {seconds * 1e6:.0f} µs")
    training = {"poolformer_hf+LoRA": lora_model(ours), "poolformer_hf+LoRA plain": set_kernels(lora_model(ours), None)}
    steps = {name: training_step("poolformer_hf", model.to(device), train_batch, resolution, device=device)
             for name, model in training.items()}
    for name, times in time_interleaved(steps, repeats, warmup=1, min_seconds=0.0, device=device).items():
        rows.append({"section": "composition", "kind": "training", "impl": name, "batch": train_batch,
                     **summarize(times, train_batch)})
        log(f"composition LoRA training batch {train_batch:3d} {name:28s} {rows[-1]['images_per_s']:7.2f} img/s")
    for line in composition_ratios(rows):
        log(f"composition {line}")
    return rows


def composition_ratios(results: list[dict]) -> list[str]:
    """The composition section's figures as ratios: per inference batch LoRA unmerged and merged against the default
    call, and the dispatch checks' cost per forward; the LoRA training step with the kernels against the plain modules."""
    rows = [row for row in results if row["section"] == "composition"]

    def find(kind, impl, batch):
        return next((r for r in rows if r["kind"] == kind and r["impl"] == impl and r["batch"] == batch), None)

    lines = []
    for batch in sorted({r["batch"] for r in rows if r["kind"] == "inference"}):
        default = find("inference", "poolformer_hf", batch)
        for impl, label in (("poolformer_hf+LoRA", "LoRA unmerged"), ("poolformer_hf+LoRA merged", "LoRA merged")):
            row = find("inference", impl, batch)
            if default and row:
                ratio = row["images_per_s"] / default["images_per_s"]
                lines.append(f"batch {batch}: {label} / default call {ratio:.2f}×")
        dispatch = find("dispatch", "poolformer_hf", batch)
        if default and dispatch:
            lines.append(f"batch {batch}: dispatch checks {dispatch['dispatch_s'] * 1e6:.0f} µs per forward, "
                         f"{dispatch['dispatch_s'] / default['median_s']:.2%} of the default call")
    for batch in sorted({r["batch"] for r in rows if r["kind"] == "training"}):
        fast, plain = find("training", "poolformer_hf+LoRA", batch), find("training", "poolformer_hf+LoRA plain", batch)
        if fast and plain:
            lines.append(f"batch {batch}: LoRA training step kernels / plain modules "
                         f"{fast['images_per_s'] / plain['images_per_s']:.2f}× (images/s)")
    return lines


def composition_table(results: list[dict]) -> list[str]:
    rows = [row for row in results if row["section"] == "composition"]
    if not rows:
        return []
    lines = ["**The kernels under PEFT's LoRA** (S12, 224², rank 8 on the MLP convs + classifier; images/s, median)", "",
             "| case | batch | images/s | × poolformer_hf |", "|---|---:|---:|---:|"]
    for kind in ("inference", "training"):
        for row in (r for r in rows if r["kind"] == kind):
            base_name = "poolformer_hf" if kind == "inference" else "poolformer_hf+LoRA plain"
            base = next(r for r in rows if r["kind"] == kind and r["impl"] == base_name and r["batch"] == row["batch"])
            label = f"{row['impl']}{' training step' if kind == 'training' else ''}"
            ratio = row["images_per_s"] / base["images_per_s"]
            lines.append(f"| {label} | {row['batch']} | {row['images_per_s']:.2f} | "
                         f"{ratio:.2f}×{' (of plain)' if kind == 'training' else ''} |")
    for row in (r for r in rows if r["kind"] == "dispatch"):
        forward = next(r for r in rows if r["kind"] == "inference" and r["impl"] == "poolformer_hf"
                       and r["batch"] == row["batch"])
        lines.append(f"| dispatch checks of one forward | {row['batch']} | {row['dispatch_s'] * 1e6:.0f} µs | "
                     f"{row['dispatch_s'] / forward['median_s']:.2%} of it |")
    return lines + [""]


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
    (spec: kind="inference", model, batch, resolution), measured in this process with spec's `threads` (the parent's
    by `measure_in_subprocess`). Run it in a fresh process."""
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec.get("device", "cpu"))
    if spec.get("kind") == "inference":
        model = scaling_model(spec["model"]).to(device).eval()
        pixels = torch.randn(spec["batch"], 3, spec["resolution"], spec["resolution"], device=device)
        run = lambda: model(pixels)  # noqa: E731
        context = torch.inference_mode
    else:
        models = build_models(spec.get("preset", "poolformer_s12"), revisions=tuple(spec.get("revisions", ())))
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
            return {"peak_bytes": torch.cuda.max_memory_allocated(device) - before, "method": "cuda allocator peak",
                    "threads": torch.get_num_threads()}
        before = _rss_bytes()
        method = "peak RSS delta (VmHWM reset)" if _reset_peak_rss() else "peak RSS delta (ru_maxrss, not reset)"
        tensor_peak = _tensor_peak_bytes(run)
        return {"peak_bytes": tensor_peak, "rss_peak_bytes": _peak_rss_bytes() - before,
                "method": f"peak of live tensor bytes (profiler); {method}", "threads": torch.get_num_threads()}


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
    """`memory_probe(spec)` in a fresh process, with this process's thread count (`--threads`) unless spec names one."""
    spec = {"threads": torch.get_num_threads(), **spec}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import json, sys; from benchmarks.harness import memory_probe; "
            "print('RESULT ' + json.dumps(memory_probe(json.loads(sys.argv[1]))))")
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=root)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"memory probe {spec} failed:\n{done.stderr[-3000:]}")


def run_memory(batches=(16, 32), repeats: int = 1, device=torch.device("cpu"), revisions: tuple[str, ...] = (),
               log=print) -> list[dict]:
    results = []
    names = list(TRAIN_CONFIGS) + [f"poolformer_hf@{revision}" for revision in revisions]
    for batch in batches:
        for name in names:
            spec = {"name": name, "batch": batch, "device": device.type, "revisions": list(revisions)}
            probes = [measure_in_subprocess(spec) for _ in range(repeats)]
            peak = statistics.median(probe["peak_bytes"] for probe in probes)
            rss = statistics.median(probe.get("rss_peak_bytes", 0) for probe in probes)
            results.append({"section": "memory", "impl": name, "batch": batch, "peak_mib": peak / 2**20,
                            "rss_peak_mib": rss / 2**20, "method": probes[0]["method"]})
            log(f"memory   batch {batch:3d} {name:28s} {peak / 2**20:8.0f} MiB tensors, {rss / 2**20:8.0f} MiB RSS")
    return results


# ------------------------------------------------------------------------------------------------------ roofline
def model_macs(config: PoolFormerConfig, resolution: int = 224) -> int:
    from poolformer_hf.hub.complexity import measure

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
    at once, and in the row chunks the MLP kernel uses — and the factor that turns one case's seconds into the images/s
    of the whole model's MACs at that GEMM rate."""
    from poolformer_hf.kernels.branches import chunk_rows

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
    """PoolFormer-S12 and CAFormer-S18 (ours), and timm's ViT-S/16 at any resolution (and the dense models)."""
    if name in DENSE_MODELS:
        return dense_model(name)
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


# ------------------------------------------------------------------------------------------------------ dense
DENSE_MODELS = ("semantic_fpn_s12", "upernet_s12")


def dense_model(name: str) -> torch.nn.Module:
    """ADE20K-sized (150 classes) segmentation models on a PoolFormer-S12 backbone: the paper's Semantic FPN (ours)
    and transformers' UperNet (512 channels, with its auxiliary head, as mmsegmentation's UperNet configs)."""
    from transformers import UperNetConfig, UperNetForSemanticSegmentation

    from poolformer_hf.modeling_poolformer_segmentation import PoolFormerForSemanticSegmentation

    backbone = PoolFormerConfig.from_preset("poolformer_s12", num_labels=150,
                                            out_features=["stage1", "stage2", "stage3", "stage4"])
    if name == "semantic_fpn_s12":
        return PoolFormerForSemanticSegmentation(backbone)
    if name == "upernet_s12":
        return UperNetForSemanticSegmentation(UperNetConfig(backbone_config=backbone, num_labels=150,
                                                            auxiliary_in_channels=backbone.hidden_sizes[2]))
    raise ValueError(f"unknown dense model {name!r}; expected one of {list(DENSE_MODELS)}")


def run_dense(batches=(1, 8), resolution: int = 512, repeats: int = 3, device=torch.device("cpu"),
              log=print) -> list[dict]:
    """Dense inference (eval forward to the logits) of Semantic FPN and UperNet on S12 at `resolution`²: time per
    batch, interleaved, and the peak memory of one forward in a fresh process."""
    results = []
    built = {name: dense_model(name).to(device).eval() for name in DENSE_MODELS}
    for batch in batches:
        pixels = torch.randn(batch, 3, resolution, resolution, device=device)
        cases = {name: (lambda m=model: m(pixel_values=pixels)) for name, model in built.items()}
        with torch.inference_mode():
            samples = time_interleaved(cases, repeats, min_seconds=0.0, device=device)
        for name, times in samples.items():
            memory = measure_in_subprocess({"kind": "inference", "model": name, "batch": batch,
                                            "resolution": resolution, "device": device.type})
            row = {"section": "dense", "impl": name, "batch": batch, "resolution": resolution,
                   "params_m": sum(p.numel() for p in built[name].parameters()) / 1e6,
                   "peak_mib": memory["peak_bytes"] / 2**20, **summarize(times, batch)}
            results.append(row)
            log(f"dense    {resolution}² batch {batch} {name:18s} {row['median_s'] * 1e3:9.1f} ms  "
                f"{row['peak_mib']:8.0f} MiB")
    return results


def dense_table(results: list[dict]) -> list[str]:
    rows = [row for row in results if row["section"] == "dense"]
    if not rows:
        return []
    lines = [f"**Dense inference, {rows[0]['resolution']}²** (S12 backbone, 150 classes; median per batch, peak "
             "memory of one forward)", "", "| model | params (M) | batch | ms per batch | images/s | peak MiB |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['impl']} | {row['params_m']:.1f} | {row['batch']} | {row['median_s'] * 1e3:.0f} | "
                     f"{row['images_per_s']:.2f} | {row['peak_mib']:.0f} |")
    return lines + [""]


# ------------------------------------------------------------------------------------------------------ reports
def _implementation_order(impl: str) -> int:
    return IMPLEMENTATIONS.index(impl) if impl in IMPLEMENTATIONS else len(IMPLEMENTATIONS)


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
            for row in sorted(rows, key=lambda r: (_implementation_order(r["impl"]), r["mode"])):
                speedup = f"{row['images_per_s'] / baseline['images_per_s']:.2f}×" if baseline else "–"
                share = f"{row['images_per_s'] / roof:.0%}" if roof else "–"
                lines.append(f"| {row['impl']} | {row['mode']} | {row['images_per_s']:.1f} | {speedup} | {share} |")
            lines.append("")
    from benchmarks.deploy import deploy_table  # the deploy section's own table (ONNX Runtime, OpenVINO)

    lines += deploy_table(results)
    lines += family_table(results)
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
    lines += dense_table(results)
    lines += composition_table(results)
    from benchmarks.data import data_table  # the data section's own table (DataLoader workers beside the step)

    lines += data_table(results)
    return "\n".join(lines)


PLOT_COLORS = {"poolformer_hf": "tab:green", "transformers": "tab:gray", "timm": "tab:brown", "roofline": "tab:blue"}


def plot_panels(results: list[dict]) -> list[dict]:
    """What the plot shows, one dict per panel: bar panels (inference at the largest batch, the training step, its
    peak memory) with a label, value and printed figure per bar; line panels (time and memory against resolution)."""
    panels = []
    inference = [row for row in results if row["section"] == "inference"]
    if inference:
        batch = max(row["batch"] for row in inference)
        rows = sorted((row for row in inference if row["batch"] == batch),
                      key=lambda r: (r["dtype"], _implementation_order(r["impl"]), r["mode"]))
        panels.append({"kind": "bars", "title": f"Inference, batch {batch}, {rows[0]['resolution']}²",
                       "xlabel": "images/s (median)", "rows": rows,
                       "labels": [f"{row['impl']} · {row['mode']} · {row['dtype']}" for row in rows],
                       "values": [row["images_per_s"] for row in rows],
                       "figures": [f"{row['images_per_s']:.1f}" for row in rows]})
    for section, title, key, xlabel, unit in (
        ("training", "Training step (fwd + bwd + AdamW), 224²", "images_per_s", "images/s (median)", ""),
        ("memory", "Peak memory of a training step", "peak_mib", "peak tensors (MiB)", " MiB"),
    ):
        rows = [row for row in results if row["section"] == section]
        if rows:
            panels.append({"kind": "bars", "title": title, "xlabel": xlabel, "rows": rows,
                           "labels": [f"{row['impl']} · batch {row['batch']}" for row in rows],
                           "values": [row[key] for row in rows],
                           "figures": [f"{row[key]:.{0 if unit else 2}f}{unit}" for row in rows]})
    scaling = [row for row in results if row["section"] == "scaling"]
    for key, title, ylabel in (("median_s", "Time against resolution (batch 1)", "seconds per image"),
                               ("peak_mib", "Memory against resolution (batch 1)", "peak MiB")):
        if scaling:
            names = list(dict.fromkeys(row["impl"] for row in scaling))
            series = {name: sorted(((row["resolution"], row[key]) for row in scaling if row["impl"] == name))
                      for name in names}
            panels.append({"kind": "lines", "title": title, "ylabel": ylabel, "series": series})
    return panels


def draw(panels: list[dict], title: str):
    """A matplotlib figure of `panels` (see plot_panels), three per row, under `title`."""
    import matplotlib.pyplot as plt

    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    tallest = max((len(panel.get("values", ())) for panel in panels), default=0)
    figure, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, rows * max(4.5, 0.3 * tallest + 1.5)),
                                squeeze=False)
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis, panel in zip(axes.flat, panels):
        axis.set_title(panel["title"], fontsize=10)
        if panel["kind"] == "bars":
            bars = axis.barh(range(len(panel["values"])), panel["values"],
                             color=[PLOT_COLORS.get(row["impl"], "tab:purple") for row in panel["rows"]])
            axis.bar_label(bars, labels=panel["figures"], padding=2, fontsize=7)
            axis.set_yticks(range(len(panel["labels"])), panel["labels"], fontsize=7)
            axis.invert_yaxis()
            axis.set_xlabel(panel["xlabel"])
            axis.set_xlim(0, max(panel["values"]) * 1.18)  # room for the figures at the bars' ends
        else:
            for name, points in panel["series"].items():
                axis.plot([x for x, _ in points], [y for _, y in points], marker="o", label=name)
            axis.set_xlabel("resolution (pixels per side)")
            axis.set_ylabel(panel["ylabel"])
            axis.set_yscale("log")
            axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_title(environment: dict) -> str:
    device = environment.get("cuda_device") or f"CPU ({environment.get('cpu_capability', '?')}, " \
        f"{environment.get('threads', '?')} threads)"
    return f"poolformer_hf vs transformers vs timm, PoolFormer-S12 — {device}, torch {environment.get('torch', '?')}"


def plot(results: list[dict], path: str, title: str = "PoolFormer benchmark") -> bool:
    """A PNG of every section's results (see plot_panels) under `title`; False without matplotlib or results."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = plot_panels(results)
    if not panels:
        return False
    figure = draw(panels, title)
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
    if not plot(results, paths["png"], title=plot_title(environment)):
        paths.pop("png")
    return paths


MATMUL_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_description() -> dict:
    """The CPU's model name and the matmul-relevant feature flags it reports (Linux /proc/cpuinfo), for the record."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"cpu_model": fields.get("model name", "unknown"),
            "cpu_flags": [flag for flag in MATMUL_FLAGS if flag in flags]}


def environment() -> dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), **cpu_description()}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info
