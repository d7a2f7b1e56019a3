"""Small data and argument builders shared by the training tests."""

from pathlib import Path

import numpy as np
from PIL import Image

from poolformer_hf.tasks.classification.arguments import make_parser


def write_image(path: Path, seed: int, size: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_image_folder(root: Path, classes: dict[str, int], seed: int = 0) -> Path:
    """root/<class>/<i>.png with the given number of random images per class."""
    for c, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_image(root / name / f"{i}.png", seed=seed * 1000 + c * 100 + i)
    return root


def parse(*argv: str):
    """(model_args, data_args, training_args) as scripts/train.py would parse them."""
    return make_parser().parse_args_into_dataclasses(args=list(argv))
