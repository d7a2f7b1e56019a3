"""Where segmentation data comes from (image/annotation folders, a Hub dataset, or the generated shapes) and the
checks that stop a run before training when it is unusable, each naming the culprit."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..common import IMAGE_EXTENSIONS, open_image
from .shapes import LABEL_NAMES, make_scenes

ANNOTATION_COLUMN_CANDIDATES = ("annotation", "label", "semantic_map", "mask", "segmentation")
IMAGE_COLUMN_CANDIDATES = ("image", "img", "pixel_values")


@dataclass
class SegmentationSplit:
    """`images[i]` and `label_maps[i]`: PIL images, file paths or undecoded `datasets` images ({"bytes", "path"})."""

    images: Sequence
    label_maps: Sequence
    name: str = "train"

    def __post_init__(self):
        if len(self.images) != len(self.label_maps):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.label_maps)} label maps")

    def __len__(self) -> int:
        return len(self.images)

    def head(self, count: int | None) -> "SegmentationSplit":
        if count is None or count >= len(self):
            return self
        return SegmentationSplit(self.images[:count], self.label_maps[:count], self.name)


@dataclass
class SegmentationData:
    train: SegmentationSplit
    validation: SegmentationSplit
    label_names: list[str]
    dataset_id: str
    image_size: int | None = None  # the resolution the data is made for (generated data)


def open_label_map(source) -> np.ndarray:
    """A 2-D array of class ids from a PIL image (mode L, P or I), a path, a `datasets` image dict or an array."""
    if isinstance(source, np.ndarray):
        if source.ndim != 2 or not np.issubdtype(source.dtype, np.integer):
            raise ValueError(
                f"label map (an array) of shape {source.shape} and dtype {source.dtype}; expected one integer class "
                "id per pixel: a 2-D (height, width) array of ints"
            )
        return source
    if isinstance(source, dict):
        from io import BytesIO

        source = Image.open(BytesIO(source["bytes"]) if source.get("bytes") else source["path"])
    elif isinstance(source, (str, Path)):
        source = Image.open(source)
    if source.mode not in ("L", "P", "I", "I;16"):
        raise ValueError(
            f"label map {getattr(source, 'filename', '') or '(in memory)'} is a {source.mode} image; expected one class "
            "id per pixel (mode L, P or I), not colours"
        )
    return np.array(source)


# --- generated shapes -----------------------------------------------------------------------------------------


def generated_shapes(train_size: int = 512, validation_size: int = 128, image_size: int = 64) -> SegmentationData:
    """The offline default: textured circles, squares and triangles (see `shapes.py`), train and validation drawn
    from different seeds."""

    def split(count, seed, name):
        scenes = make_scenes(count, image_size, seed)
        return SegmentationSplit(
            [Image.fromarray(scene.image) for scene in scenes],
            [Image.fromarray(scene.label_map, mode="L") for scene in scenes],
            name,
        )

    return SegmentationData(
        train=split(train_size, 0, "train"),
        validation=split(validation_size, 1, "validation"),
        label_names=list(LABEL_NAMES),
        dataset_id="generated-shapes",
        image_size=image_size,
    )


# --- folders --------------------------------------------------------------------------------------------------


def load_folder(root: str | Path, name: str) -> SegmentationSplit:
    """`root/images/<stem>.<image ext>` with `root/annotations/<stem>.png` (the ADE20K layout, one split)."""
    root = Path(root)
    image_dir, annotation_dir = root / "images", root / "annotations"
    for folder in (image_dir, annotation_dir):
        if not folder.is_dir():
            raise ValueError(f"{folder} is missing: a segmentation folder holds images/ and annotations/")
    images = sorted(
        p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    if not images:
        raise ValueError(f"{image_dir} holds no image file")
    annotations = {p.stem: p for p in annotation_dir.iterdir() if p.suffix.lower() == ".png"}
    missing = [p.name for p in images if p.stem not in annotations]
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) of {image_dir} have no annotation {annotation_dir}/<same name>.png, e.g. "
            f"{missing[:3]}"
        )
    return SegmentationSplit([str(p) for p in images], [str(annotations[p.stem]) for p in images], name)


# --- Hub datasets ---------------------------------------------------------------------------------------------


def load_hub_splits(dataset_name: str, config_name: str | None, cache_dir: str | None, validation_fraction: float,
                    seed: int) -> tuple[SegmentationSplit, SegmentationSplit]:
    """Train and validation splits of a `datasets` dataset with an image and an annotation column (e.g.
    scene_parse_150); without a validation split, `validation_fraction` of train is held out."""
    import datasets

    dataset = datasets.load_dataset(dataset_name, config_name, cache_dir=cache_dir)
    if "train" not in dataset:
        raise ValueError(f"the dataset has no 'train' split; its splits are {sorted(dataset)}")
    if "validation" not in dataset:
        dataset = dataset["train"].train_test_split(test_size=validation_fraction, seed=seed)
        dataset = datasets.DatasetDict(train=dataset["train"], validation=dataset["test"])
    columns = dataset["train"].column_names
    image_column = _column(columns, IMAGE_COLUMN_CANDIDATES, "image")
    annotation_column = _column(columns, ANNOTATION_COLUMN_CANDIDATES, "annotation")

    def split(name):
        part = dataset[name]
        for column in (image_column, annotation_column):
            if isinstance(part.features[column], datasets.Image):
                part = part.cast_column(column, datasets.Image(decode=False))
        return SegmentationSplit(part[image_column], part[annotation_column], name)

    return split("train"), split("validation")


def _column(columns: Sequence[str], candidates: Sequence[str], role: str) -> str:
    for candidate in candidates:
        if candidate in columns:
            return candidate
    raise ValueError(f"no {role} column: looked for {list(candidates)}, found columns {list(columns)}")


# --- checks ---------------------------------------------------------------------------------------------------


def check_split(split: SegmentationSplit, num_labels: int, ignore_index: int, reduce_labels: bool) -> None:
    """Decode every pair once: an empty split, unreadable files, size mismatches and ids outside the classes (other
    than `ignore_index`) are named."""
    if not len(split):
        raise ValueError(f"the {split.name} split holds no image: a run needs at least one image/label-map pair")
    for index in range(len(split)):
        where = split.images[index] if isinstance(split.images[index], str) else f"{split.name} example {index}"
        annotation = split.label_maps[index]
        annotation = f"label map {annotation}" if isinstance(annotation, str) else "label map"
        try:
            image = open_image(split.images[index])
            label_map = open_label_map(split.label_maps[index])
        except ValueError:
            raise
        except Exception as error:  # PIL raises many types for bad files
            raise ValueError(f"unreadable image or label map {where}: {error}") from error
        if label_map.shape != (image.height, image.width):
            raise ValueError(
                f"{where}: its {annotation} is {label_map.shape[1]}×{label_map.shape[0]} pixels, the image "
                f"{image.width}×{image.height}; a label map gives one class id per pixel of its image"
            )
        ids = np.unique(label_map)
        ids = ids[ids != ignore_index]
        if reduce_labels:
            ids = ids[ids != 0] - 1
        valid = f"0 … {num_labels - 1}, or {ignore_index} for pixels to ignore"
        if ids.size and ids.min() < 0:
            raise ValueError(f"{where}: its {annotation} holds class id {int(ids.min())}; expected {valid}")
        if ids.size and ids.max() >= num_labels:
            raise ValueError(
                f"{where}: its {annotation} holds class id {int(ids.max())} but there are {num_labels} classes"
                + (" (after --reduce_labels)" if reduce_labels else "")
                + f" ({valid}); set --num_labels or the label names"
            )
