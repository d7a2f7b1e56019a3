"""The checks and loading behind --train_shards / --streaming: everything is read and refused here, before a model is
built; the training stream itself is streaming.StreamingBatches."""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..data import check_images, find_column, load_image_folders, truncate_split
from ..splits import ImageClassificationData, ImageSplit
from .batches import HubSource, ShardSource, StreamingBatches
from .shards import index_shards, iter_shard, list_shards, shard_label_names

logger = logging.getLogger(__name__)


def is_streaming(data_args) -> bool:
    return data_args.train_shards is not None or data_args.streaming


@dataclass
class StreamedData:
    """The held-out data (in memory) and a maker of each process's training stream."""

    data: ImageClassificationData  # its `train` is empty: the training images are streamed, never listed
    make_source: Callable[[int, int], object]  # (rank, world_size) -> ShardSource | HubSource
    num_samples: int | None  # training samples per epoch, where known


def check_stream_launch(streamed: StreamedData, training_args) -> None:
    """What a streamed run needs from the training arguments, checked before training."""
    streamed.make_source(training_args.process_index, training_args.world_size)  # shards >= processes
    if streamed.num_samples is None:
        if training_args.max_steps <= 0:
            raise ValueError("--streaming a Hub dataset has no known length: give --max_steps")
        epochs = [
            name
            for name in ("eval_strategy", "save_strategy", "logging_strategy")
            if getattr(getattr(training_args, name), "value", None) == "epoch"
        ]
        if epochs and training_args.do_train:
            raise ValueError(
                f"--streaming a Hub dataset has no epochs, so --{epochs[0]} epoch would never act: give "
                + " ".join(f"--{name} steps" for name in epochs)
            )
    if training_args.dataloader_persistent_workers:
        raise ValueError(
            "--dataloader_persistent_workers with streamed data: persistent workers never see the new epoch, so "
            "every epoch would repeat the first one's order; leave it off"
        )


def training_stream(streamed: StreamedData, data_args, training_args, transform) -> StreamingBatches:
    return StreamingBatches(
        streamed.make_source(training_args.process_index, training_args.world_size),
        transform,
        batch_size=training_args.per_device_train_batch_size,
        seed=training_args.seed,
        shuffle_buffer=data_args.shuffle_buffer,
        corrupt=data_args.corrupt_shards,
    )


def build_streamed_data(data_args, seed: int = 0, cache_dir: str | None = None) -> StreamedData:
    if data_args.train_shards is not None:
        streamed = _shard_data(data_args, seed)
    else:
        streamed = _hub_data(data_args, seed, cache_dir)
    data = streamed.data
    data.validation = truncate_split(data.validation, data_args.max_eval_samples, seed)
    if len(data.validation) == 0:
        raise ValueError("the validation split is empty")
    unknown = sorted(set(data.validation.labels) - set(range(len(data.label_names))))
    if unknown:
        raise ValueError(f"the validation split has labels the training data lacks: {unknown}")
    check_images(data.validation)
    logger.info(
        "data: %s; %s training samples per epoch (streamed) / %d validation images, %d classes",
        data.description,
        "unknown" if streamed.num_samples is None else streamed.num_samples,
        len(data.validation),
        len(data.label_names),
    )
    return streamed


def _shard_data(data_args, seed: int) -> StreamedData:
    index = index_shards(list_shards(data_args.train_shards), corrupt=data_args.corrupt_shards)
    label_names = shard_label_names(index.shards, index.num_labels)
    if data_args.validation_shards is not None:
        validation = shard_split(list_shards(data_args.validation_shards), "validation")
    else:
        validation = _folder_validation(data_args.validation_dir, label_names)
    logger.info("%d shards, %d samples", len(index.shards), index.num_samples)
    data = ImageClassificationData(
        ImageSplit([], [], "train"), validation, label_names, description=f"shards {data_args.train_shards}"
    )
    return StreamedData(
        data, lambda rank, world_size: ShardSource(index, rank, world_size, seed), index.num_samples
    )


def _folder_validation(validation_dir: str, label_names: list[str]) -> ImageSplit:
    """A validation image folder whose class subfolders are named as the shards' classes."""
    validation, _, folder_names = load_image_folders(validation_dir, None)
    unknown = sorted(set(folder_names) - set(label_names))
    if unknown:
        raise ValueError(f"validation folder {validation_dir} has classes the shards lack: {unknown[:5]}")
    label2id = {name: i for i, name in enumerate(label_names)}
    return ImageSplit(validation.images, [label2id[folder_names[i]] for i in validation.labels], "validation")


def shard_split(paths: list[str], name: str) -> ImageSplit:
    """All samples of some shards in memory, undecoded (a validation set is small)."""
    images, labels = [], []
    for path in paths:
        for sample in iter_shard(path):
            images.append(sample.read_image())
            labels.append(sample.label)
    return ImageSplit(images, labels, name)


def _hub_data(data_args, seed: int, cache_dir: str | None) -> StreamedData:
    import datasets

    train = datasets.load_dataset(
        data_args.dataset_name, data_args.dataset_config_name, split="train", streaming=True, cache_dir=cache_dir
    )
    return streamed_hub_data(train, data_args, seed, description=data_args.dataset_name)


def streamed_hub_data(train, data_args, seed: int, description: str, validation=None) -> StreamedData:
    """A streamed `datasets.IterableDataset` as training data; validation is the dataset's own "validation" split
    (streamed too, read into memory up to --max_eval_samples)."""
    import datasets

    columns = list(train.features)
    image_column = find_column(columns, data_args.image_column_name, ("image", "img"), "image")
    label_column = find_column(columns, data_args.label_column_name, ("label", "labels"), "label")
    feature = train.features[label_column]
    if not isinstance(feature, datasets.ClassLabel):
        raise ValueError(
            f"--streaming needs a ClassLabel label column (its class names cannot be read without reading every "
            f"row); {label_column!r} is {feature}"
        )
    label_names = list(feature.names)
    if validation is None:
        try:
            validation = datasets.load_dataset(
                data_args.dataset_name, data_args.dataset_config_name, split="validation", streaming=True
            )
        except ValueError as error:
            raise ValueError(f"{description} has no 'validation' split to evaluate on: {error}") from error
    validation = validation.cast_column(image_column, datasets.Image(decode=False))
    rows = validation.take(data_args.max_eval_samples) if data_args.max_eval_samples else validation
    images, labels = [], []
    for row in rows:
        images.append(row[image_column])
        labels.append(int(row[label_column]))
    validation_split = ImageSplit(images, labels, "validation")
    data = ImageClassificationData(
        ImageSplit([], [], "train"), validation_split, label_names, description=description, dataset_id=description
    )
    return StreamedData(
        data,
        lambda rank, world_size: HubSource(train, image_column, label_column, rank, world_size, seed),
        None,
    )
