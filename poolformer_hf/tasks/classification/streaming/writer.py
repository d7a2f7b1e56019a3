"""Writing WebDataset tar shards (the layout shards.py reads) from an image folder or a Hub-format
dataset: the logic of scripts/make_shards.py."""

import contextlib
import io
import json
import os
import secrets
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

from ....files import write_text_atomically
from ..data import list_image_folder
from .shards import IMAGE_SUFFIXES, LABEL_NAMES_FILE, LABEL_SUFFIX

Sample = tuple[bytes, str, int]  # (encoded image, its suffix, label)


def folder_samples(root: str) -> tuple[Iterator[Sample], list[str]]:
    """Samples of `root/<class>/<image>` (classes sorted by name, as --train_dir numbers them)."""
    classes = list_image_folder(root)
    label_names = sorted(classes)

    def samples():
        for label, name in enumerate(label_names):
            for path in classes[name]:
                yield _as_shard_image(path.read_bytes(), path.suffix.lstrip(".").lower(), str(path)) + (label,)

    return samples(), label_names


def dataset_samples(dataset, image_column: str | None = None, label_column: str | None = None):
    """Samples of a `datasets.Dataset` (one split) whose label column is a ClassLabel."""
    import datasets

    from ..data import IMAGE_COLUMN_CANDIDATES, LABEL_COLUMN_CANDIDATES, find_column

    image_column = find_column(dataset.column_names, image_column, IMAGE_COLUMN_CANDIDATES, "image")
    label_column = find_column(dataset.column_names, label_column, LABEL_COLUMN_CANDIDATES, "label")
    feature = dataset.features[label_column]
    if not isinstance(feature, datasets.ClassLabel):
        raise ValueError(f"label column {label_column!r} is {feature}, not a ClassLabel: its class names are unknown")
    dataset = dataset.cast_column(image_column, datasets.Image(decode=False))

    def samples():
        for index, row in enumerate(dataset):
            image = row[image_column]
            raw = image.get("bytes") or Path(image["path"]).read_bytes()
            suffix = Path(image.get("path") or "").suffix.lstrip(".").lower()
            yield _as_shard_image(raw, suffix, image.get("path") or f"row {index}") + (int(row[label_column]),)

    return samples(), list(feature.names)


def _as_shard_image(raw: bytes, suffix: str, name: str) -> tuple[bytes, str]:
    """The image as the shards keep it: its own bytes when its format is a shard image suffix, else PNG."""
    try:
        with Image.open(io.BytesIO(raw)) as image:
            detected = (image.format or "").lower()
            if suffix in IMAGE_SUFFIXES and detected in {"jpeg", "png", "webp"}:
                return raw, suffix
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return buffer.getvalue(), "png"
    except Exception as error:  # PIL raises many types for bad files
        raise ValueError(f"unreadable image {name}: {error}") from error


def write_shards(
    samples: Iterable[Sample], label_names: list[str], output_dir: str, prefix: str = "train", samples_per_shard=1000
) -> str:
    """Write `<output_dir>/<prefix>-000000.tar`, ... and label_names.json; returns the --train_shards pattern.

    Each shard is written under a hidden temporary name and renamed when complete, so an interrupted run leaves
    no shard that looks whole.
    """
    if samples_per_shard < 1:
        raise ValueError(f"--samples_per_shard must be >= 1, got {samples_per_shard}")
    os.makedirs(output_dir, exist_ok=True)
    shard_number, in_shard, archive, temporary, total = 0, 0, None, None, 0
    try:
        for raw, suffix, label in samples:
            if archive is None:
                temporary = os.path.join(output_dir, f".{prefix}-{shard_number:06d}.{secrets.token_hex(6)}.tmp")
                archive = tarfile.open(temporary, "w")
            key = f"{total:09d}"
            _add(archive, f"{key}.{suffix}", raw)
            _add(archive, f"{key}.{LABEL_SUFFIX}", str(label).encode())
            in_shard, total = in_shard + 1, total + 1
            if in_shard == samples_per_shard:
                _finish(archive, temporary, output_dir, prefix, shard_number)
                archive, shard_number, in_shard = None, shard_number + 1, 0
        if archive is not None:
            _finish(archive, temporary, output_dir, prefix, shard_number)
            archive, shard_number = None, shard_number + 1
    finally:
        if archive is not None:
            archive.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    if total == 0:
        raise ValueError("no sample to write")
    write_text_atomically(os.path.join(output_dir, LABEL_NAMES_FILE), json.dumps(label_names, indent=1) + "\n")
    return os.path.join(output_dir, f"{prefix}-{{{0:06d}..{shard_number - 1:06d}}}.tar")


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def _finish(archive, temporary: str, output_dir: str, prefix: str, shard_number: int) -> None:
    archive.close()
    os.replace(temporary, os.path.join(output_dir, f"{prefix}-{shard_number:06d}.tar"))


def load_split(dataset_name: str, split: str = "train", config_name: str | None = None):
    """One split of a Hub-format dataset: a folder written by `save_to_disk`, else whatever `load_dataset` reads
    (a Hub id, or offline a local data folder or file)."""
    import datasets

    if (Path(dataset_name) / "dataset_dict.json").is_file() or (Path(dataset_name) / "dataset_info.json").is_file():
        dataset = datasets.load_from_disk(dataset_name)
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise ValueError(f"{dataset_name} has no split {split!r}; its splits are {sorted(dataset)}")
            dataset = dataset[split]
        return dataset
    return datasets.load_dataset(dataset_name, config_name, split=split)
