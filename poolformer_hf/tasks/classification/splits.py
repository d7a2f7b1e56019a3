"""Image classification splits: lazily opened images with integer labels, and a deterministic stratified split."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np



@dataclass
class ImageSplit:
    """One split: `images[i]` is a PIL image, a file path, or an undecoded `datasets` image ({"bytes", "path"});
    `labels[i]` is its class id. Images are opened only when used (see `open_image`)."""

    images: Sequence
    labels: list[int]
    name: str = "train"

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices, name: str | None = None) -> "ImageSplit":
        indices = [int(i) for i in indices]
        return ImageSplit(
            images=_Subset(self.images, indices), labels=[self.labels[i] for i in indices], name=name or self.name
        )


@dataclass
class ImageClassificationData:
    """Everything a run needs: train and validation splits, the class names, and optional held-out test images."""

    train: ImageSplit
    validation: ImageSplit
    label_names: list[str]
    test: ImageSplit | None = None
    description: str = field(default="")
    dataset_id: str = "imagefolder"  # how a model card names the dataset (a Hub id where there is one)
    image_size: int | None = None  # the resolution the data is made for (a model trained from scratch uses it)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}


class _Subset(Sequence):
    def __init__(self, items: Sequence, indices: list[int]):
        self.items, self.indices = items, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.items[self.indices[i]]


def describe_source(split: ImageSplit, index: int) -> str:
    """How an error message names one image: its path when it has one, else its position in the split."""
    source = split.images[index]
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, dict) and source.get("path"):
        return f"{source['path']} ({split.name} example {index})"
    return f"{split.name} example {index}"


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split indices into (kept, held_out) with about `fraction` of each class held out (at least one from every
    class with two or more examples), reproducibly for a given seed."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be between 0 and 1 (exclusive), got {fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    kept, held_out = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(fraction * len(members)))
        count = min(max(count, 1), len(members) - 1) if len(members) > 1 else 0
        held_out.extend(members[:count].tolist())
        kept.extend(members[count:].tolist())
    return sorted(kept), sorted(held_out)
