"""`scripts/benchmark.py --sections data`: what one DataLoader worker delivers beside what a training step consumes.

A worker is one process with one torch thread (torch's DataLoader sets each worker to one thread), so the data cases
run with `torch.set_num_threads(1)`; the training step runs with the benchmark's threads. The data cases are
scripts/train.py's own dataset item (`ImageClassificationDataset.__getitem__`: `open_image`, PIL's decode, then
`train_transform` under the item's seeded generator), with train.py's default augmentation and with the paper's
recipe; and decoding alone, PIL's and `torchvision.io.decode_jpeg`'s. Our train transform takes PIL images only
(`TENSOR_INPUT` says why), so decode_jpeg is timed alone, as the ceiling of a tensor pipeline.

The images are JPEGs encoded once, in memory, from scikit-image's bundled photos resized to ImageNet-like sizes (the
longer side `longest_side` px, quality 90), so disk reads are not timed: the figures are decode and augmentation.
"""

import contextlib
import io
import math
import warnings

import numpy as np
import torch
from PIL import Image

from benchmarks.timing import summarize, time_interleaved
from poolformer_hf.export.photos import sample_photos
from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor
from poolformer_hf.tasks.classification.splits import ImageSplit
from poolformer_hf.tasks.classification.trainer import ImageClassificationDataset
from poolformer_hf.tasks.classification.transforms import processor_at_size, train_transform

# scripts/train.py's augmentation flags: its defaults, and the paper's recipe (docs/training.md).
AUGMENTATIONS = {
    "train.py defaults": {"min_crop_scale": 0.35, "horizontal_flip": False},
    "paper recipe": {"min_crop_scale": 0.08, "horizontal_flip": True, "rand_augment": True, "random_erasing": 0.25},
}
# Why the decode_jpeg tensor is not fed to our train transform (measured by `tensor_input_error`).
TENSOR_INPUT = "train_transform takes PIL images: its ToTensor refuses a tensor (and RandAugment bicubic on one)"


def jpeg_set(count: int = 16, longest_side: int = 500, quality: int = 90) -> list[bytes]:
    """`count` distinct photos (`sample_photos`) as RGB JPEG files in memory, the longer side `longest_side` px."""
    jpegs = []
    for photo in sample_photos(count):
        image = Image.fromarray(np.asarray(photo, dtype=np.uint8)).convert("RGB")
        scale = longest_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        jpegs.append(buffer.getvalue())
    return jpegs


def train_items(jpegs: list[bytes], resolution: int, augmentation: dict) -> ImageClassificationDataset:
    """train.py's training dataset over `jpegs` (undecoded `datasets` image dicts), at `resolution`², seed 0."""
    processor = processor_at_size(PoolFormerImageProcessor(), resolution)
    split = ImageSplit(images=[{"bytes": jpeg, "path": None} for jpeg in jpegs], labels=[0] * len(jpegs))
    return ImageClassificationDataset(split, train_transform(processor, **augmentation), seed=0)


def tensor_input_error(resolution: int = 224) -> str | None:
    """The error our train transform raises on a decode_jpeg tensor (None if it took it): measured, not assumed."""
    from torchvision.io import decode_jpeg

    jpeg = jpeg_set(1, longest_side=2 * resolution)[0]
    with one_worker():
        tensor = decode_jpeg(torch.frombuffer(bytearray(jpeg), dtype=torch.uint8))
    try:
        train_transform(processor_at_size(PoolFormerImageProcessor(), resolution))(tensor)
    except (TypeError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def data_cases(jpegs: list[bytes], resolution: int) -> dict:
    """name → (kind, a call that processes every JPEG once)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from poolformer_hf.tasks.common import open_image

    cases = {}
    for name, augmentation in AUGMENTATIONS.items():
        items = train_items(jpegs, resolution, augmentation)
        cases[f"PIL + train transform ({name})"] = ("decode+augment",
                                                    lambda items=items: [items[i] for i in range(len(items))])
    sources = [{"bytes": jpeg, "path": None} for jpeg in jpegs]
    cases["PIL decode alone (open_image)"] = ("decode", lambda: [open_image(source) for source in sources])
    buffers = [torch.frombuffer(bytearray(jpeg), dtype=torch.uint8) for jpeg in jpegs]
    cases["torchvision.io.decode_jpeg alone"] = (
        "decode", lambda: [decode_jpeg(buffer, mode=ImageReadMode.RGB) for buffer in buffers])
    return cases


def workers_needed(step_images_per_s: float, worker_images_per_s: float) -> int:
    """DataLoader workers that keep a step fed: ceil(step img/s / per-worker img/s)."""
    return math.ceil(step_images_per_s / worker_images_per_s)


@contextlib.contextmanager
def one_worker():
    """torch at one thread for the block (a DataLoader worker's setting), the caller's count restored after; and
    torchvision 0.29's deprecation warning for its decoders (it points to TorchCodec) not raised at every call."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
            yield
    finally:
        torch.set_num_threads(threads)


def run_data(model, training_step, batches=(16,), resolution: int = 224, count: int = 16, longest_side: int = 500,
             repeats: int = 5, device=torch.device("cpu"), log=print) -> list[dict]:
    """Per-worker images/s of each data case (one thread) and the training step's images/s of `model` (our
    training step built by `training_step(impl, model, batch, resolution, device)`, the harness's, at the caller's
    threads) at each batch, with the workers each case needs to keep each step fed."""
    import copy

    jpegs = jpeg_set(count, longest_side)
    cases = data_cases(jpegs, resolution)
    with one_worker():
        samples = time_interleaved({name: call for name, (_, call) in cases.items()}, repeats, min_seconds=0.2)
    steps = {}
    for batch in batches:
        step = training_step("poolformer_hf", copy.deepcopy(model).to(device), batch, resolution, device)
        times = time_interleaved({"step": step}, repeats, warmup=1, min_seconds=0.0, device=device)["step"]
        steps[batch] = {"section": "data", "kind": "train step", "impl": "poolformer_hf", "batch": batch,
                        "resolution": resolution, "threads": torch.get_num_threads(), **summarize(times, batch)}
        log(f"data     train step batch {batch:3d} {resolution}², {torch.get_num_threads()} threads "
            f"{steps[batch]['images_per_s']:8.2f} img/s")
    rows = []
    for name, times in samples.items():
        row = {"section": "data", "kind": cases[name][0], "impl": name, "resolution": resolution, "threads": 1,
               "images": len(jpegs), "longest_side": longest_side, **summarize(times, len(jpegs))}
        # Keyed by the batch as a string: the row is written to benchmark.json as it is.
        row["workers_needed"] = {str(batch): workers_needed(step["images_per_s"], row["images_per_s"])
                                 for batch, step in steps.items()}
        rows.append(row)
        log(f"data     {name:42s} {row['images_per_s']:8.1f} img/s per worker")
    error = tensor_input_error(resolution)
    if error:
        log(f"data     decode_jpeg timed alone: {TENSOR_INPUT} ({error})")
    for row in rows:
        for batch, step in steps.items():
            needed = row["workers_needed"][str(batch)]
            log(f"data     {row['impl']}, batch {batch}: workers needed to keep the step fed = "
                f"ceil({step['images_per_s']:.2f} / {row['images_per_s']:.1f}) = {needed}")
    return [*steps.values(), *rows]


def data_table(results: list[dict]) -> list[str]:
    """The data section's table: per-worker images/s beside the step's, and the workers each step needs."""
    steps = [row for row in results if row["section"] == "data" and row["kind"] == "train step"]
    rows = [row for row in results if row["section"] == "data" and row["kind"] != "train step"]
    if not steps or not rows:
        return []
    first = rows[0]
    lines = [f"**Data loading beside the training step** (JPEGs of {first['longest_side']} px longer side to "
             f"{first['resolution']}²; one worker = one process, 1 thread; the step: {steps[0]['threads']} threads; "
             "workers = ceil(step img/s / worker img/s); decode alone: a lower bound)", "",
             "| per worker | images/s | " + " | ".join(
                 f"workers for batch {step['batch']} ({step['images_per_s']:.2f} img/s)" for step in steps) + " |",
             "|---|---:|" + "---:|" * len(steps)]
    for row in rows:
        cells = [str(row["workers_needed"][str(step["batch"])]) for step in steps]
        lines.append(f"| {row['impl']} | {row['images_per_s']:.1f} | " + " | ".join(cells) + " |")
    return lines + [""]
