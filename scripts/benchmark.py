#!/usr/bin/env python
"""Benchmark poolformer_hf against transformers' PoolFormer and timm's poolformer (same weights, one process).

    python scripts/benchmark.py                      # everything, CPU (CUDA when present)
    python scripts/benchmark.py --quick              # a few minutes: fewer repeats, batch 32 fp32 only, no scaling
    python scripts/benchmark.py --sections inference training --repeats 7 --out bench/
    python scripts/benchmark.py --sections family --models convformer_s18 caformer_s18  # ours beside timm
    python scripts/benchmark.py --sections dense     # Semantic FPN vs UperNet on S12, 512², batch 1 and 8
    python scripts/benchmark.py --sections composition  # LoRA (unmerged, merged, training) and the dispatch cost
    python scripts/benchmark.py --sections data --threads 2  # one DataLoader worker's images/s beside a step's
    python scripts/benchmark.py --deploy             # exported: ONNX Runtime and OpenVINO, ours vs transformers'

Writes benchmark.json (every sample), benchmark.md (the README tables) and benchmark.png (needs matplotlib) to --out.
The method (interleaved medians, peak memory in fresh processes, the 1×1-conv roofline timed alongside the float32
inference cases) is described in benchmarks/harness.py.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks import harness as bench  # noqa: E402
from benchmarks.data import run_data  # noqa: E402
from benchmarks.deploy import run_deploy  # noqa: E402

SECTIONS = ("inference", "family", "training", "memory", "scaling", "dense", "composition", "data", "deploy")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS,
                        help="default: all (quick: all but scaling and dense)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and cases, no resolution scaling")
    parser.add_argument("--deploy", action="store_true",
                        help="the deploy section (exports; alone unless --sections names others): batch 1 and 8")
    parser.add_argument("--no-int8", action="store_true", help="deploy: leave out our OpenVINO int8 case")
    parser.add_argument("--repeats", type=int, help="interleaved samples per case (default 5, quick 3)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="inference batch sizes (default 1 32)")
    parser.add_argument("--train-batch-sizes", type=int, nargs="+",
                        help="training batch sizes, also the data section's steps (default 16 32)")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), help="inference dtypes (default both)")
    parser.add_argument("--modes", nargs="+", choices=bench.PEER_MODES,
                        help="peer modes (default: eager channels_last compile; ours alongside: default, fused and "
                             "the fused module under the same compile); compile_frozen and autotune add Inductor's "
                             "freezing and max-autotune")
    parser.add_argument("--models", nargs="+", metavar="PRESET",
                        help="family section: the presets beside timm (default " + " ".join(bench.FAMILY_PRESETS) + ")")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224, 384, 512, 768, 1024])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--compare-revision", action="append", default=[], metavar="REV",
                        help="also time poolformer_hf as of this git revision (default call, training, memory)")
    parser.add_argument("--out", default="benchmark_results")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    repeats = args.repeats or (3 if quick else 5)
    device = torch.device(args.device)
    default_sections = [] if args.deploy else [
        s for s in SECTIONS if s != "deploy" and not (quick and s in ("scaling", "dense"))]
    sections = (args.sections or default_sections) + (["deploy"] if args.deploy else [])
    environment = bench.environment()
    print("environment:", environment)

    revisions = tuple(args.compare_revision)
    models = bench.build_models(revisions=revisions)
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    print("agreement (max |Δ| vs poolformer_hf):", bench.check_agreement(models, pixels))
    models = {name: model.to(device) for name, model in models.items()}

    train_batches = tuple(args.train_batch_sizes or ((16,) if quick else (16, 32)))
    runs = {
        "inference": lambda: bench.run_inference(
            models,
            batches=tuple(args.batch_sizes or ((32,) if quick else (1, 32))),
            dtypes=tuple(DTYPES[d] for d in (args.dtypes or (["float32"] if quick else list(DTYPES)))),
            modes=tuple(args.modes or ("eager", "channels_last", "compile")),
            repeats=repeats, device=device,
        ),
        # Our default call and fused model beside timm's modes for each preset of the family (--models).
        "family": lambda: bench.run_family(
            presets=tuple(args.models or bench.FAMILY_PRESETS),
            batches=tuple(args.batch_sizes or ((32,) if quick else (1, 32))),
            dtypes=tuple(DTYPES[d] for d in (args.dtypes or (["float32"] if quick else list(DTYPES)))),
            modes=tuple(args.modes or ("eager", "channels_last", "compile")), repeats=repeats, device=device,
        ),
        "training": lambda: bench.run_training(models, batches=train_batches, repeats=repeats, device=device),
        "memory": lambda: bench.run_memory(batches=train_batches, device=device, revisions=revisions),
        "scaling": lambda: bench.run_scaling(resolutions=tuple(args.resolutions), repeats=max(2, repeats // 2),
                                             device=device),
        # Semantic FPN beside transformers' UperNet on the S12 backbone, 512², batch 1 and 8.
        "dense": lambda: bench.run_dense(repeats=max(2, repeats // 2), device=device),
        # The kernels under PEFT's LoRA: inference (adapter unmerged and merged) and a LoRA training step beside the
        # plain modules, and the call-time dispatch checks' cost per forward.
        "composition": lambda: bench.run_composition(models, batches=tuple(args.batch_sizes or (1, 32)),
                                                     train_batch=train_batches[0], repeats=repeats, device=device),
        # One DataLoader worker (1 thread) decoding and augmenting as train.py does, beside the training step of
        # each training batch (--threads), and the workers that keep it fed.
        "data": lambda: run_data(models["poolformer_hf"], bench.training_step, batches=train_batches,
                                 repeats=repeats, device=device),
        "deploy": lambda: run_deploy(models, batches=tuple(args.batch_sizes or (1, 8)), int8=not args.no_int8,
                                     repeats=repeats),
    }
    results = []
    for section in (s for s in SECTIONS if s in sections):
        results += runs[section]()
        # The reports are rewritten after every section: a failure later loses only the section it happens in.
        environment["load_average_after"] = bench.environment().get("load_average")
        paths = bench.write_reports(results, environment, args.out)
    print(bench.markdown_table(results))
    print("wrote", ", ".join(paths.values()))


if __name__ == "__main__":
    main()
