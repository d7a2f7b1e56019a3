"""The benchmark's data section (benchmarks/data.py): one DataLoader worker's decode + augmentation beside the
training step, and the workers that keep the step fed. Structure and arithmetic only, no speed is asserted."""

import io
import math

import torch
from PIL import Image

from benchmarks import data as bench_data
from benchmarks.harness import markdown_table, training_step
from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification


def test_the_jpegs_are_distinct_rgb_jpegs_of_the_asked_longer_side():
    jpegs = bench_data.jpeg_set(3, longest_side=96)
    assert len(set(jpegs)) == 3
    for jpeg in jpegs:
        image = Image.open(io.BytesIO(jpeg))
        assert image.format == "JPEG" and image.mode == "RGB" and max(image.size) == 96


def test_the_augmented_items_are_train_pys_at_the_asked_size():
    paper = bench_data.AUGMENTATIONS["paper recipe"]
    items = bench_data.train_items(bench_data.jpeg_set(2, longest_side=64), 32, paper)
    item = items[1]
    assert item["pixel_values"].shape == (3, 32, 32) and item["labels"] == 0
    assert torch.equal(items[1]["pixel_values"], item["pixel_values"])  # seeded per item, as in train.py


def test_our_train_transform_refuses_a_decode_jpeg_tensor():
    error = bench_data.tensor_input_error(32)
    assert error is not None and "PIL Image" in error


def test_the_section_reports_each_worker_case_beside_the_steps_and_the_workers_they_need():
    config = PoolFormerConfig.from_preset("poolformer_s12", depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16],
                                          num_labels=1000)
    logged = []
    threads = torch.get_num_threads()
    rows = bench_data.run_data(PoolFormerForImageClassification(config), training_step, batches=(2, 4),
                               resolution=32, count=2, longest_side=64, repeats=1, log=logged.append)
    assert torch.get_num_threads() == threads  # the workers' one thread is not left behind
    steps = {row["batch"]: row for row in rows if row["kind"] == "train step"}
    workers = [row for row in rows if row["kind"] != "train step"]
    assert sorted(steps) == [2, 4] and all(step["threads"] == threads for step in steps.values())
    assert [row["impl"] for row in workers] == [
        "PIL + train transform (train.py defaults)", "PIL + train transform (paper recipe)",
        "PIL decode alone (open_image)", "torchvision.io.decode_jpeg alone"]
    for row in workers:
        assert row["threads"] == 1 and row["images"] == 2 and row["images_per_s"] > 0
        for batch, step in steps.items():
            expected = math.ceil(step["images_per_s"] / row["images_per_s"])
            assert row["workers_needed"][str(batch)] == expected
            assert (f"data     {row['impl']}, batch {batch}: workers needed to keep the step fed = "
                    f"ceil({step['images_per_s']:.2f} / {row['images_per_s']:.1f}) = {expected}") in logged
    assert any(bench_data.TENSOR_INPUT in line for line in logged)
    table = bench_data.data_table(rows)
    assert table[2] == (f"| per worker | images/s | workers for batch 2 ({steps[2]['images_per_s']:.2f} img/s) | "
                        f"workers for batch 4 ({steps[4]['images_per_s']:.2f} img/s) |")
    decode = workers[-1]
    assert table[-2] == (f"| torchvision.io.decode_jpeg alone | {decode['images_per_s']:.1f} | "
                         f"{decode['workers_needed']['2']} | {decode['workers_needed']['4']} |")
    assert "\n".join(table) in markdown_table(rows)  # benchmark.md holds it


def test_workers_needed_rounds_up():
    assert bench_data.workers_needed(10.0, 5.0) == 2
    assert bench_data.workers_needed(10.0, 4.0) == 3
    assert bench_data.workers_needed(1.0, 100.0) == 1
