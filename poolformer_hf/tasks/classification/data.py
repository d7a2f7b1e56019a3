"""Where training data comes from (image folders, a Hub dataset, or the built-in digits) and the checks that stop a
run before training when the data is unusable, each naming the culprit."""

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..common import IMAGE_EXTENSIONS, open_image
from .digits import load_digits_data
from .splits import ImageClassificationData, ImageSplit, describe_source, stratified_split

logger = logging.getLogger(__name__)


IMAGE_COLUMN_CANDIDATES = ("image", "img", "pixel_values")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "fine_label")


# --- image folders --------------------------------------------------------------------------------------------


def list_image_folder(root: str | Path) -> dict[str, list[Path]]:
    """Class name -> image files for a folder laid out as `root/<class name>/**/<image>`.

    Files whose extension PIL does not know and hidden files are ignored; a class folder without any image is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"image folder {root} has no class subfolders; expected {root}/<class name>/<image files>")
    classes = {}
    for class_dir in class_dirs:
        files = sorted(
            p
            for p in class_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )
        if not files:
            raise ValueError(f"class folder {class_dir} is empty: it holds no image file")
        classes[class_dir.name] = files
    return classes


def load_image_folders(
    train_dir: str | Path, validation_dir: str | Path | None
) -> tuple[ImageSplit, ImageSplit | None, list[str]]:
    """Train (and validation) splits from class-subfolder trees; class names are the training folder's subfolders."""
    train_classes = list_image_folder(train_dir)
    label_names = sorted(train_classes)
    train = _split_from_classes(train_classes, label_names, "train")
    validation = None
    if validation_dir is not None:
        validation_classes = list_image_folder(validation_dir)
        unknown = sorted(set(validation_classes) - set(label_names))
        if unknown:
            raise ValueError(
                f"validation folder {validation_dir} has classes the training folder {train_dir} lacks: {unknown}"
            )
        validation = _split_from_classes(validation_classes, label_names, "validation")
    return train, validation, label_names


def _split_from_classes(classes: dict[str, list[Path]], label_names: list[str], name: str) -> ImageSplit:
    label2id = {label: i for i, label in enumerate(label_names)}
    images, labels = [], []
    for class_name, files in classes.items():
        images.extend(str(p) for p in files)
        labels.extend([label2id[class_name]] * len(files))
    return ImageSplit(images=images, labels=labels, name=name)


# --- Hub datasets ---------------------------------------------------------------------------------------------


def load_hub_splits(
    dataset_name: str,
    dataset_config_name: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    cache_dir: str | None = None,
) -> tuple[ImageSplit, ImageSplit | None, list[str]]:
    """Train and (when the dataset has one) validation splits of a dataset loaded with `datasets.load_dataset`."""
    try:
        import datasets
    except ImportError as error:
        raise ImportError("--dataset_name needs the `datasets` package: pip install 'poolformer_hf[train]'") from error
    dataset = datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir)
    return splits_from_dataset_dict(dataset, image_column=image_column, label_column=label_column)


def splits_from_dataset_dict(
    dataset, image_column: str | None = None, label_column: str | None = None
) -> tuple[ImageSplit, ImageSplit | None, list[str]]:
    """Turn a `datasets.DatasetDict` with a "train" split (and optionally "validation") into ImageSplits.

    Images stay undecoded ({"bytes", "path"}) so a broken one is reported by `check_images` with its name.
    Label names come from a ClassLabel feature, else from the sorted distinct label values.
    """
    import datasets

    if "train" not in dataset:
        raise ValueError(f"the dataset has no 'train' split; its splits are {sorted(dataset)}")
    train = dataset["train"]
    image_column = find_column(train.column_names, image_column, IMAGE_COLUMN_CANDIDATES, "image")
    label_column = find_column(train.column_names, label_column, LABEL_COLUMN_CANDIDATES, "label")
    validation = dataset["validation"] if "validation" in dataset else None
    if validation is not None:
        find_column(validation.column_names, label_column, (), "label", split_name="validation")
        find_column(validation.column_names, image_column, (), "image", split_name="validation")

    feature = train.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        label_names = list(feature.names)
        train_labels = list(train[label_column])
        validation_labels = list(validation[label_column]) if validation is not None else None
    else:
        label_names = sorted({str(value) for value in train[label_column]})
        if validation is not None:
            label_names = sorted(set(label_names) | {str(value) for value in validation[label_column]})
        label2id = {name: i for i, name in enumerate(label_names)}
        train_labels = [label2id[str(value)] for value in train[label_column]]
        validation_labels = (
            [label2id[str(value)] for value in validation[label_column]] if validation is not None else None
        )

    def undecoded_images(split):
        if isinstance(split.features[image_column], datasets.Image):
            split = split.cast_column(image_column, datasets.Image(decode=False))
        return split[image_column]

    train_split = ImageSplit(images=undecoded_images(train), labels=train_labels, name="train")
    validation_split = (
        ImageSplit(images=undecoded_images(validation), labels=validation_labels, name="validation")
        if validation is not None
        else None
    )
    return train_split, validation_split, label_names


def find_column(
    columns: Sequence[str], requested: str | None, candidates: Sequence[str], role: str, split_name: str = "train"
) -> str:
    """The column of `columns` holding the `role` ("image" or "label"): `requested` when given (a ValueError if it is
    missing), else the first of `candidates` present, else a ValueError naming the columns."""
    if requested is not None:
        if requested not in columns:
            raise ValueError(
                f"{role} column {requested!r} not found in the {split_name} split; its columns are {list(columns)}"
            )
        return requested
    for candidate in candidates:
        if candidate in columns:
            return candidate
    raise ValueError(
        f"no {role} column in the {split_name} split: looked for {list(candidates)}, found columns {list(columns)}; "
        f"name it with --{role}_column_name"
    )


# --- checks ---------------------------------------------------------------------------------------------------


def check_images(split: ImageSplit) -> None:
    """Decode every image of a split once; the first one that fails is named in the error."""
    for index in range(len(split)):
        try:
            open_image(split.images[index]).load()
        except Exception as error:  # PIL raises many types for bad files (OSError, SyntaxError, ValueError...)
            raise ValueError(f"unreadable image {describe_source(split, index)}: {error}") from error


def check_labels(train: ImageSplit, validation: ImageSplit, label_names: Sequence[str]) -> None:
    """Every validation label must be one the training split has (the model cannot learn the others)."""
    missing = sorted(set(validation.labels) - set(train.labels))
    if missing:
        raise ValueError(
            f"the {validation.name} split has labels the training split lacks: {[label_names[i] for i in missing]}"
        )
    if len(set(train.labels)) < 2:
        raise ValueError(f"the training split needs at least two classes, found {sorted(set(train.labels))}")


def check_split_sizes(train: ImageSplit, validation: ImageSplit, label_names: Sequence[str]) -> None:
    """Neither split may be empty: an evaluation of 0 images reports metrics of nothing."""
    for split in (train, validation):
        if len(split) == 0:
            per_class = Counter(train.labels)
            lone = [label_names[label] for label, count in sorted(per_class.items()) if count < 2]
            raise ValueError(
                f"the {split.name} split is empty: {len(train)} training and {len(validation)} validation images "
                f"in {len(label_names)} classes"
                + (
                    f"; a validation split is held out only from classes with at least 2 images, and "
                    f"{len(lone)} of {len(per_class)} classes have 1 ({', '.join(lone[:5])}"
                    f"{', ...' if len(lone) > 5 else ''})"
                    if lone
                    else ""
                )
                + ": give more images, --validation_dir, or a larger --max_train_samples / --max_eval_samples"
            )


# --- the whole thing ------------------------------------------------------------------------------------------


def build_data(data_args, seed: int = 0, cache_dir: str | None = None) -> ImageClassificationData:
    """Load the data the arguments ask for, split off validation if needed, and check it; nothing is trained yet."""
    if data_args.dataset_name is not None:
        train, validation, label_names = load_hub_splits(
            data_args.dataset_name,
            data_args.dataset_config_name,
            image_column=data_args.image_column_name,
            label_column=data_args.label_column_name,
            cache_dir=cache_dir,
        )
        data = ImageClassificationData(
            train, validation, label_names, description=data_args.dataset_name, dataset_id=data_args.dataset_name
        )
    elif data_args.train_dir is not None:
        train, validation, label_names = load_image_folders(data_args.train_dir, data_args.validation_dir)
        data = ImageClassificationData(
            train, validation, label_names, description=f"image folder {data_args.train_dir}"
        )
    elif data_args.validation_dir is not None:
        raise ValueError("--validation_dir needs --train_dir")
    else:
        data = load_digits_data(validation_fraction=data_args.train_val_split, seed=data_args.split_seed)
    if data.validation is None:
        kept, held_out = stratified_split(data.train.labels, data_args.train_val_split, data_args.split_seed)
        data.train, data.validation = data.train.subset(kept, "train"), data.train.subset(held_out, "validation")
    data.train = truncate_split(data.train, data_args.max_train_samples, seed)
    data.validation = truncate_split(data.validation, data_args.max_eval_samples, seed)
    check_split_sizes(data.train, data.validation, data.label_names)
    check_labels(data.train, data.validation, data.label_names)
    for split in (data.train, data.validation, data.test):
        if split is not None:
            check_images(split)
    logger.info(
        "data: %s; %d train / %d validation images, %d classes",
        data.description,
        len(data.train),
        len(data.validation),
        len(data.label_names),
    )
    return data


def truncate_split(split: ImageSplit, max_samples: int | None, seed: int) -> ImageSplit:
    """At most `max_samples` of `split`, drawn by `seed` and kept in their original order (all of it for None)."""
    if max_samples is None or max_samples >= len(split):
        return split
    return split.subset(sorted(np.random.default_rng(seed).permutation(len(split))[:max_samples]), split.name)
