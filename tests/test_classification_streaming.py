"""Streamed training data (the streaming package: batches, shards, writer): shard patterns, every sample
exactly once per epoch over 1, 2 and 4 processes (simulated in-process by rank and world size), the uneven-split
rule, the shuffle, DataLoader workers, corrupt shards, and a Hub-style streamed dataset through the same path."""

import io
import json
import logging
import runpy
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from poolformer_hf.tasks.classification.streaming.batches import HubSource, ShardSource, StreamingBatches
from poolformer_hf.tasks.classification.streaming.shards import (
    CorruptShardError,
    expand_braces,
    index_shards,
    list_shards,
)
from poolformer_hf.tasks.classification.streaming.writer import write_shards
from poolformer_hf.tasks.classification.trainer import collate_images

REPO_ROOT = Path(__file__).resolve().parents[1]


def png(seed: int, size: int = 8) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_id_shards(folder: Path, counts: list[int]) -> list[str]:
    """Shards whose samples' labels are their ids 0..N-1, so a label counts a sample."""
    paths, next_id = [], 0
    for number, count in enumerate(counts):
        samples = [(png(i), "png", i) for i in range(next_id, next_id + count)]
        names = [f"id{i}" for i in range(sum(counts))]
        pattern = write_shards(samples, names, str(folder), prefix=f"s{number:02d}", samples_per_shard=count)
        paths.extend(list_shards(pattern))
        next_id += count
    return paths


def stream(index, rank=0, world_size=1, batch_size=4, shuffle_buffer=0, seed=0, corrupt="stop"):
    return StreamingBatches(
        ShardSource(index, rank, world_size, seed),
        transform=lambda image: torch.from_numpy(np.asarray(image, dtype=np.float32)),
        batch_size=batch_size,
        seed=seed,
        shuffle_buffer=shuffle_buffer,
        corrupt=corrupt,
    )


def epoch_ids(dataset, epoch=0) -> list[list[int]]:
    """The label ids of each batch of one epoch, in order."""
    dataset.set_epoch(epoch)
    return [[item["labels"] for item in batch] for batch in dataset]


@pytest.fixture(scope="module")
def even_shards(tmp_path_factory):
    """8 shards of 6: 48 samples, which 1, 2 and 4 processes divide evenly."""
    return index_shards(write_id_shards(tmp_path_factory.mktemp("even"), [6] * 8))


# --- patterns -------------------------------------------------------------------------------------------------


def test_brace_ranges_expand_with_their_zero_padding_and_in_order():
    assert expand_braces("d/train-{000000..000002}.tar") == [f"d/train-00000{i}.tar" for i in range(3)]
    assert expand_braces("{0..1}-{08..10}") == ["0-08", "0-09", "0-10", "1-08", "1-09", "1-10"]
    with pytest.raises(ValueError, match="counts down"):
        expand_braces("a-{3..1}.tar")


def test_a_pattern_matching_nothing_or_missing_a_shard_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="matches no file"):
        list_shards(str(tmp_path / "*.tar"))
    (tmp_path / "t-0.tar").write_bytes(b"")
    with pytest.raises(ValueError, match=r"names 3 files, 2 of them missing \(first: .*t-1.tar\)"):
        list_shards(str(tmp_path / "t-{0..2}.tar"))


# --- exactly once, evenly ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2, 4])
@pytest.mark.parametrize("shuffle_buffer", [0, 5])
def test_every_sample_is_seen_exactly_once_per_epoch_over_the_processes(even_shards, world_size, shuffle_buffer):
    for epoch in (0, 1):
        per_rank = [epoch_ids(stream(even_shards, r, world_size, shuffle_buffer=shuffle_buffer), epoch)
                    for r in range(world_size)]  # fmt: skip
        assert len({len(batches) for batches in per_rank}) == 1  # the same step count on every process
        seen = Counter(i for batches in per_rank for batch in batches for i in batch)
        assert seen == Counter(range(48))


def test_an_uneven_split_drops_the_epochs_last_samples_so_every_process_runs_the_same_steps(tmp_path):
    index = index_shards(write_id_shards(tmp_path, [5, 3, 4, 7]))  # 19 samples, 2 processes: 9 each, 1 dropped
    dropped = []
    for epoch in range(4):
        per_rank = [epoch_ids(stream(index, r, 2, batch_size=4), epoch) for r in range(2)]
        assert [sum(map(len, batches)) for batches in per_rank] == [9, 9]
        assert [len(batches) for batches in per_rank] == [3, 3]
        seen = Counter(i for batches in per_rank for batch in batches for i in batch)
        assert max(seen.values()) == 1
        dropped.append(set(range(19)) - set(seen))
        assert len(dropped[-1]) == 1
    assert len(set(map(frozenset, dropped))) > 1  # the shard order changes, so does the dropped sample


def test_fewer_shards_than_processes_is_refused_naming_both(tmp_path):
    index = index_shards(write_id_shards(tmp_path, [4, 4, 4]))
    with pytest.raises(ValueError, match="3 shards for 4 processes"):
        ShardSource(index, 0, 4, seed=0)


# --- shuffling --------------------------------------------------------------------------------------------------


def test_shard_order_and_buffer_shuffle_change_with_the_epoch_and_repeat_with_the_seed(even_shards):
    def order(epoch, buffer, seed=0):
        return [i for batch in epoch_ids(stream(even_shards, shuffle_buffer=buffer, seed=seed), epoch) for i in batch]

    assert order(0, 0) != order(1, 0)  # shard order, per epoch
    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 0, seed=1)
    within_shards = order(0, 0)
    runs = [within_shards[start : start + 6] for start in range(0, 48, 6)]  # without a buffer: whole shards in turn
    assert all(run == list(range(run[0], run[0] + 6)) for run in runs)
    shuffled = order(0, 16)
    assert shuffled != within_shards and sorted(shuffled) == list(range(48))
    assert shuffled == order(0, 16)


def test_batches_are_the_same_for_any_number_of_dataloader_workers(even_shards):
    def batches(num_workers):
        dataset = stream(even_shards, shuffle_buffer=8, batch_size=5)
        dataset.set_epoch(1)
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, collate_fn=collate_images,
                                             num_workers=num_workers)  # fmt: skip
        return list(loader)

    inline, two_workers = batches(0), batches(2)
    assert len(inline) == len(two_workers) == len(stream(even_shards, batch_size=5)) == 10
    for a, b in zip(inline, two_workers):
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["pixel_values"], b["pixel_values"])


def test_resuming_skips_the_first_batches_without_reading_an_image(even_shards, monkeypatch):
    dataset = stream(even_shards, shuffle_buffer=8)
    full = epoch_ids(dataset, epoch=1)
    reads = []
    from poolformer_hf.tasks.classification.streaming import shards

    original = shards.SampleRef.read_image
    monkeypatch.setattr(shards.SampleRef, "read_image", lambda self: reads.append(self) or original(self))
    dataset.resume_at(5)
    assert epoch_ids(dataset, epoch=1) == full[5:]
    assert len(reads) == 48 - 5 * 4


# --- the index cache --------------------------------------------------------------------------------------------


def test_a_restart_takes_the_index_from_its_cache_and_reads_only_a_rewritten_shard_again(tmp_path, monkeypatch):
    from poolformer_hf.tasks.classification.streaming import shards

    paths = write_id_shards(tmp_path / "data", [3, 4, 5])
    first = index_shards(paths, cache=tmp_path / "cache")
    read = []
    original = shards.iter_shard
    monkeypatch.setattr(shards, "iter_shard", lambda path, skip=0: read.append(path) or original(path, skip))
    again = index_shards(paths, cache=tmp_path / "cache")
    assert (again.counts, again.num_labels, read) == (first.counts, first.num_labels, [])  # no tar header read
    rewritten = write_id_shards(tmp_path / "other", [3, 4, 7])[2]
    Path(paths[2]).write_bytes(Path(rewritten).read_bytes())  # the same path, another shard
    changed = index_shards(paths, cache=tmp_path / "cache")
    assert read == [paths[2]] and changed.counts == [3, 4, 7] and changed.num_labels == 14
    assert index_shards(paths, cache=False).counts == [3, 4, 7] and read[1:] == paths  # no cache: every shard read


# --- corrupt data -----------------------------------------------------------------------------------------------


def truncate(path: str, keep: int) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:keep])


@pytest.mark.parametrize("keep", [700, 512 * 3])  # mid-member, and cut between members (tarfile stops quietly)
def test_a_truncated_shard_stops_the_run_by_default_naming_it(tmp_path, keep):
    paths = write_id_shards(tmp_path, [3, 3])
    truncate(paths[1], keep)
    with pytest.raises(CorruptShardError, match=f"shard {paths[1]} is truncated.*--corrupt_shards skip"):
        index_shards(paths)


def test_skip_leaves_corrupt_shards_out_and_counts_them(tmp_path, caplog):
    paths = write_id_shards(tmp_path, [3, 3, 3])
    truncate(paths[0], 700)
    Path(paths[2]).write_bytes(b"not a tar at all" * 100)
    with caplog.at_level(logging.WARNING):
        index = index_shards(paths, corrupt="skip")
    assert index.shards == [paths[1]] and index.skipped == [paths[0], paths[2]]
    assert "left out 2 of 3 shards" in caplog.text


def shard_with_a_bad_image(tmp_path) -> list[str]:
    samples = [(png(0), "png", 0), (b"\x89PNG but broken", "png", 1), (png(2), "png", 2), (png(3), "png", 3)]
    return list_shards(write_shards(samples, ["x"], str(tmp_path), samples_per_shard=4))


def test_an_undecodable_image_stops_by_default_and_is_skipped_and_counted_with_skip(tmp_path, caplog):
    index = index_shards(shard_with_a_bad_image(tmp_path))
    with pytest.raises(ValueError, match=r"undecodable image .*train-000000.tar:000000001"):
        epoch_ids(stream(index, batch_size=2))
    skipping = stream(index, batch_size=2, corrupt="skip")
    with caplog.at_level(logging.WARNING):
        assert epoch_ids(skipping) == [[0], [2, 3]]  # the batch is one shorter; the step count stays
    assert skipping.skipped_images == 1 and "1 so far" in caplog.text


# --- writing shards ---------------------------------------------------------------------------------------------


def test_make_shards_writes_an_image_folder_as_shards_and_prints_their_pattern(tmp_path, capsys):
    from classification_helpers import write_image_folder

    write_image_folder(tmp_path / "images", {"cat": 3, "dog": 4})
    script = runpy.run_path(str(REPO_ROOT / "scripts" / "make_shards.py"), run_name="make_shards")
    script["main"](["--train_dir", str(tmp_path / "images"), "--output_dir", str(tmp_path / "shards"),
                    "--samples_per_shard", "3"])  # fmt: skip
    pattern = capsys.readouterr().out.strip()
    assert pattern == str(tmp_path / "shards" / "train-{000000..000002}.tar")
    index = index_shards(list_shards(pattern))
    assert index.counts == [3, 3, 1] and index.num_labels == 2
    assert json.loads((tmp_path / "shards" / "label_names.json").read_text()) == ["cat", "dog"]
    # no temporary file left
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "label_names.json", "train-000000.tar", "train-000001.tar", "train-000002.tar"]  # fmt: skip
    with tarfile.open(tmp_path / "shards" / "train-000000.tar") as archive:
        assert archive.getnames() == ["000000000.png", "000000000.cls", "000000001.png", "000000001.cls",
                                      "000000002.png", "000000002.cls"]  # fmt: skip


def hub_format_dataset(count: int):
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    rows = {"image": [{"bytes": png(i), "path": None} for i in range(count)], "label": [i % 3 for i in range(count)]}
    return datasets.Dataset.from_dict(rows, features=features)


def test_make_shards_reads_a_saved_hub_format_dataset(tmp_path):
    from poolformer_hf.tasks.classification.streaming.writer import dataset_samples, load_split

    hub_format_dataset(5).save_to_disk(str(tmp_path / "saved"))
    samples, names = dataset_samples(load_split(str(tmp_path / "saved")))
    pattern = write_shards(samples, names, str(tmp_path / "shards"), samples_per_shard=2)
    index = index_shards(list_shards(pattern))
    assert index.counts == [2, 2, 1] and names == ["a", "b", "c"]


# --- a streamed Hub dataset -------------------------------------------------------------------------------------


@pytest.mark.parametrize("world_size", [1, 2])
def test_a_streamed_dataset_splits_by_node_into_disjoint_parts_covering_it(world_size):
    dataset = hub_format_dataset(24).to_iterable_dataset(num_shards=4)
    ids_per_rank = []
    for rank in range(world_size):
        source = HubSource(dataset, "image", "label", rank, world_size, seed=0)
        rows = []
        for _, (image, label) in source.records(0):
            rows.append(png_id(image["bytes"]))
            if len(rows) == 24 // world_size:
                break
        ids_per_rank.append(rows)
    assert Counter(i for rows in ids_per_rank for i in rows) == Counter(range(24))


PNG_IDS = {}


def png_id(data: bytes) -> int:
    if not PNG_IDS:
        PNG_IDS.update({png(i): i for i in range(24)})
    return PNG_IDS[data]


def test_a_streamed_dataset_in_fewer_files_than_processes_is_refused():
    with pytest.raises(ValueError, match="2 shards .* for 4 processes"):
        HubSource(hub_format_dataset(4).to_iterable_dataset(num_shards=2), "image", "label", 0, 4, seed=0)


def test_a_streamed_dataset_gives_the_same_batches_with_dataloader_workers():
    # datasets would split a stream over DataLoader workers itself; ours reads it whole in each worker instead.
    source = HubSource(hub_format_dataset(12).to_iterable_dataset(num_shards=2), "image", "label", 0, 1, seed=0)
    dataset = StreamingBatches(source, lambda image: torch.from_numpy(np.asarray(image, dtype=np.float32)),
                               batch_size=4, shuffle_buffer=4)  # fmt: skip

    def first_batches(num_workers, count=5):  # 20 rows: past the dataset's 12, the stream goes round
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, collate_fn=collate_images,
                                             num_workers=num_workers)  # fmt: skip
        return [batch for batch, _ in zip(loader, range(count))]

    inline, two_workers = first_batches(0), first_batches(2)
    for a, b in zip(inline, two_workers, strict=True):
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["pixel_values"], b["pixel_values"])
