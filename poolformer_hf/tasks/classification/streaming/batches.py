"""Each process's stream of samples (ShardSource, HubSource), its shuffle buffer, and the batches it is cut into
(StreamingBatches); how an epoch is cut over processes and workers is told in the package docstring."""

import itertools
import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ...common import EpochSeededDataset, open_image
from .shards import CORRUPT_POLICIES, ShardIndex, iter_shard

logger = logging.getLogger(__name__)


class ShardSource:
    """The references one process reads in one epoch of WebDataset shards (see the module docstring)."""

    def __init__(self, index: ShardIndex, rank: int, world_size: int, seed: int):
        if len(index.shards) < world_size:
            raise ValueError(
                f"{len(index.shards)} shards for {world_size} processes: every process needs at least one shard; "
                f"write more, smaller shards (scripts/make_shards.py --samples_per_shard) or use fewer processes"
            )
        self.index, self.rank, self.world_size, self.seed = index, rank, world_size, seed

    @property
    def samples_per_process(self) -> int:
        return self.index.num_samples // self.world_size

    def records(self, epoch: int) -> Iterator[tuple[int, object]]:
        """(position in the epoch's order, SampleRef) for this process's range."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.index.shards))
        start = self.rank * self.samples_per_process
        stop = start + self.samples_per_process
        shard_start = 0
        for shard_number in order:
            count = self.index.counts[shard_number]
            shard_stop = shard_start + count
            if shard_stop > start and shard_start < stop:
                skip = max(start - shard_start, 0)
                position = shard_start + skip
                for sample in iter_shard(self.index.shards[shard_number], skip=skip):
                    if position >= stop:
                        break
                    yield position, sample
                    position += 1
            shard_start = shard_stop
            if shard_start >= stop:
                return


class HubSource:
    """The rows one process reads from a streamed `datasets.IterableDataset`, endlessly, epoch after epoch."""

    def __init__(self, dataset, image_column: str, label_column: str, rank: int, world_size: int, seed: int):
        import datasets
        from datasets.distributed import split_dataset_by_node

        if dataset.num_shards < world_size:
            raise ValueError(
                f"the streamed dataset has {dataset.num_shards} shards (files) for {world_size} processes: every "
                f"process needs at least one; use fewer processes or a dataset in more files"
            )
        if isinstance(dataset.features[image_column], datasets.Image):
            # Undecoded, so a skipped or buffered row costs its bytes, not a decode.
            dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        # A shuffled file order is re-drawn by set_epoch on every pass (the samples are shuffled by our buffer).
        # One file has no order to shuffle, and a shuffled stream's iteration starts seconds late (datasets 5.2).
        if dataset.num_shards > 1:
            dataset = dataset.shuffle(seed=seed, buffer_size=1)
        # Whole files per process when their count divides by the processes, else every world_size-th row.
        self.dataset = split_dataset_by_node(dataset, rank, world_size)
        self.image_column, self.label_column = image_column, label_column
        self.rank, self.world_size = rank, world_size
        self.samples_per_process = None

    def records(self, epoch: int) -> Iterator[tuple[int, object]]:
        """(a position unique over processes, (undecoded image, label)); Trainer only ever runs epoch 0 here."""
        position = 0
        for dataset_epoch in itertools.count():  # endless: --max_steps stops every process at the same step
            self.dataset.set_epoch(dataset_epoch)
            # .iter() bypasses datasets' own split over DataLoader workers: each worker reads the whole stream.
            for rows in self.dataset.iter(batch_size=64):
                for image, label in zip(rows[self.image_column], rows[self.label_column]):
                    yield position * self.world_size + self.rank, (image, int(label))
                    position += 1


def shuffled(records: Iterator, buffer_size: int, rng: np.random.Generator) -> Iterator:
    """A shuffle buffer: each record out is drawn at random from the next `buffer_size` in."""
    if buffer_size <= 1:
        yield from records
        return
    buffer = []
    for record in records:
        if len(buffer) < buffer_size:
            buffer.append(record)
            continue
        i = int(rng.integers(len(buffer)))
        buffer[i], record = record, buffer[i]
        yield record
    rng.shuffle(buffer)
    yield from buffer


class StreamingBatches(torch.utils.data.IterableDataset):
    """Batches (lists of {"pixel_values", "labels"} items) for this process; use with DataLoader(batch_size=None).

    `len()` is the batch count of one epoch where the source knows it (shards), else a TypeError (Hub streaming:
    Trainer then needs --max_steps).
    """

    def __init__(
        self,
        source,
        transform: Callable,
        batch_size: int,
        seed: int = 0,
        shuffle_buffer: int = 0,
        corrupt: str = "stop",
    ):
        if corrupt not in CORRUPT_POLICIES:
            raise ValueError(f"--corrupt_shards must be one of {CORRUPT_POLICIES}, got {corrupt!r}")
        self.source, self.transform, self.batch_size = source, transform, batch_size
        self.shuffle_buffer, self.corrupt = shuffle_buffer, corrupt
        self.seeds = EpochSeededDataset(0, seed)  # its per-(seed, epoch, item) seeds, shared with map-style data
        self.skip = None  # (epoch, batches) to pass over once: the resume point
        self.skipped_images = 0

    @property
    def epoch(self) -> int:
        return self.seeds.epoch

    def set_epoch(self, epoch: int) -> None:
        self.seeds.set_epoch(epoch)
        if self.skip is not None and self.skip[0] is None:
            self.skip = (epoch, self.skip[1])

    @property
    def num_samples(self) -> int:
        if self.source.samples_per_process is None:
            raise TypeError("a streamed Hub dataset has no known length")
        return self.source.samples_per_process

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def resume_at(self, batches: int) -> None:
        """Make the pass over the next epoch set (Trainer sets it after asking for the resumed loader) start after
        its first `batches` batches. The skip stays bound to that epoch rather than being cleared once used: with
        DataLoader workers, the copy that is used lives in a worker, not here."""
        self.skip = (None, batches)

    def __iter__(self) -> Iterator[list[dict]]:
        epoch = self.epoch
        skip_batches = self.skip[1] if self.skip is not None and self.skip[0] == epoch else 0
        worker = torch.utils.data.get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        rng = np.random.default_rng([self.seeds.seed, epoch, getattr(self.source, "rank", 0)])
        records = shuffled(self.source.records(epoch), self.shuffle_buffer, rng)
        batch, batch_number = [], 0
        for record in records:
            batch.append(record)
            if len(batch) < self.batch_size:
                continue
            yield from self._own_batch(batch, batch_number, skip_batches, worker_id, num_workers)
            batch, batch_number = [], batch_number + 1
        if batch:
            yield from self._own_batch(batch, batch_number, skip_batches, worker_id, num_workers)

    def _own_batch(self, batch, batch_number, skip_batches, worker_id, num_workers):
        if batch_number >= skip_batches and (batch_number - skip_batches) % num_workers == worker_id:
            yield self._decode(batch)

    def _decode(self, batch: list) -> list[dict]:
        items = []
        for position, sample in batch:
            image_source, label = (sample.read_image(), sample.label) if hasattr(sample, "read_image") else sample
            try:
                image = open_image(image_source)
                image.load()
            except Exception as error:  # PIL raises many types for bad data (OSError, SyntaxError, ValueError...)
                name = image_source.get("path") if isinstance(image_source, dict) else None
                if self.corrupt == "stop":
                    raise ValueError(
                        f"undecodable image {name or position}: {error} (--corrupt_shards skip leaves it out)"
                    ) from error
                self.skipped_images += 1
                logger.warning("skipped undecodable image %s (%d so far in this worker)", name, self.skipped_images)
                continue
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seeds.item_seed(position))
                items.append({"pixel_values": self.transform(image), "labels": label})
        if not items:
            # An empty batch would leave this process a step short of the others (a DDP hang): stop instead.
            raise ValueError(f"every image of a batch is undecodable (positions {batch[0][0]}..{batch[-1][0]})")
        return items
