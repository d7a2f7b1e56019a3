"""What every task's run shares: how an image source is decoded, which files are images, how a command line (or its
JSON file) is parsed over the script's defaults, the run's logging, and datasets whose random augmentation is
seeded per (epoch, item), so a resumed run draws what an uninterrupted one drew."""

import json
import logging
import os
import sys
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import TrainerCallback

from ..image_inputs import load_image, to_rgb_pil

IMAGE_EXTENSIONS = frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def open_image(source) -> Image.Image:
    """Decode one image source of an `ImageSplit` as the image processors decode it, as an 8-bit RGB PIL image.

    EXIF orientation, transparency (on white), 16-bit and other modes are handled by the processors' own
    `image_inputs` functions, so training sees what inference sees (16-bit and float sources rounded to 8 bits).
    """
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (str, Path)):
        image = load_image(source)
    elif isinstance(source, dict) and (source.get("bytes") or source.get("path")):
        raw = source.get("bytes")
        image = load_image(BytesIO(raw) if raw else source["path"])
    else:
        raise ValueError(
            f"not an image: expected a PIL image, a file path or a datasets image dict, got {source!r:.80}"
        )
    return to_rgb_pil(image)


def setup_logging(training_args) -> None:
    """Log lines to stdout; transformers' and this package's loggers at the run's level (every training run's)."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    transformers.utils.logging.set_verbosity(log_level)
    # The run's own lines (world size, data, model, resume point) show on the main process unless told otherwise.
    if training_args.should_log and training_args.log_level == "passive":
        log_level = logging.INFO
    logging.getLogger("poolformer_hf").setLevel(log_level)


class EpochSeededDataset(torch.utils.data.Dataset):
    """A dataset whose random transforms draw, for item i in epoch e, from a generator seeded by (seed, e, i), not
    from torch's global one. So an item is augmented the same whichever process or worker reads it, and the global
    generator (which Trainer checkpoints) is left to the model (stochastic depth) and to mixup: a run resumed from a
    checkpoint then draws exactly what the uninterrupted run drew. `DatasetEpoch` tells it the epoch."""

    def __init__(self, length: int, seed: int | None = 0):
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def item_seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])

    def generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.item_seed(index))


class DatasetEpoch(TrainerCallback):
    """Tell the training dataset the epoch before its data loader is iterated (resumed runs included)."""

    def __init__(self, dataset: EpochSeededDataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch counts finished epochs, fractional after resuming mid-epoch.
        self.dataset.set_epoch(int((state.epoch or 0.0) + 1e-6))


def parse_command_line(parser, defaults: dict, argv: list[str]) -> tuple:
    """The dataclasses of an HfArgumentParser from argv, or from one JSON file of arguments, with the script's own
    `defaults` under both. The parser's `set_defaults` is not enough for the file: transformers builds the
    dataclasses from a JSON file directly, past the parser, so there the defaults are merged in here."""
    if len(argv) == 1 and argv[0].endswith(".json"):
        path = os.path.abspath(argv[0])
        with open(path, encoding="utf-8") as handle:
            given = json.load(handle)
        if not isinstance(given, dict):
            raise ValueError(f"{path} must hold one JSON object of arguments, got a {type(given).__name__}")
        return parser.parse_dict({**defaults, **given})
    parser.set_defaults(**defaults)
    return parser.parse_args_into_dataclasses(args=argv)
