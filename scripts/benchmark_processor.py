"""Image-processor throughput: ours (torchvision and PIL backends) against transformers' PoolFormer processors.

Each processor turns the same batch of real photographs (scikit-image's astronaut, chelsea, coffee and rocket,
repeated) into a (batch, 3, 224, 224) tensor. The processors take turns, run after run; the median and the best
run give images per second.

    python scripts/benchmark_processor.py --batch-size 32 --repeats 5 --json outputs/processor_benchmark.json
"""

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import skimage.data
import torch
import transformers
from transformers.models.poolformer.image_processing_pil_poolformer import PoolFormerImageProcessorPil as HfPil
from transformers.models.poolformer.image_processing_poolformer import PoolFormerImageProcessor as HfTorchvision


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from poolformer_hf.image_processing_pil_poolformer import PoolFormerImageProcessorPil  # noqa: E402
from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor  # noqa: E402


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
PROCESSORS = {
    "poolformer_hf torchvision": PoolFormerImageProcessor,
    "poolformer_hf PIL": PoolFormerImageProcessorPil,
    "transformers torchvision": HfTorchvision,
    "transformers PIL": HfPil,
}


def photographs(batch_size: int, kind: str) -> list:
    arrays = [getattr(skimage.data, name)() for name in PHOTOS]
    images = [arrays[i % len(arrays)] for i in range(batch_size)]
    return [PIL.Image.fromarray(a) for a in images] if kind == "pil" else images


def time_processors(processors: dict, images: list, repeats: int) -> dict:
    """Seconds per batch for each processor; the processors take turns so that load on a shared machine hits all."""
    seconds = {name: [] for name in processors}
    for processor in processors.values():
        out = processor(images, return_tensors="pt")["pixel_values"]  # warm-up, and a check
        assert out.shape == (len(images), 3, 224, 224)
    for _ in range(repeats):
        for name, processor in processors.items():
            start = time.perf_counter()
            processor(images, return_tensors="pt")
            seconds[name].append(time.perf_counter() - start)
    return {
        name: {
            "images_per_s_median": len(images) / statistics.median(runs),
            "images_per_s_best": len(images) / min(runs),
            "runs_s": runs,
        }
        for name, runs in seconds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--input", choices=("pil", "numpy"), default="pil", help="what the photographs are given as")
    parser.add_argument("--crop-pct", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.batch_size < 1 or args.repeats < 1:
        parser.error("--batch-size and --repeats must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    images = photographs(args.batch_size, args.input)
    processors = {name: cls(crop_pct=args.crop_pct) for name, cls in PROCESSORS.items()}
    results = time_processors(processors, images, args.repeats)

    print(f"{args.batch_size} photographs ({args.input}), crop_pct {args.crop_pct}, "
          f"{torch.get_num_threads()} torch threads, {args.repeats} runs each\n")
    print("| processor | images/s (median) | images/s (best) |")
    print("|---|---:|---:|")
    for name, result in results.items():
        print(f"| {name} | {result['images_per_s_median']:.1f} | {result['images_per_s_best']:.1f} |")

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "batch_size": args.batch_size,
            "input": args.input,
            "crop_pct": args.crop_pct,
            "repeats": args.repeats,
            "torch_threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "pillow": PIL.__version__, "numpy": np.__version__, "python": platform.python_version()},
            "machine": platform.machine(),
            "results": results,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
