import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from poolformer_hf.tasks.classification.splits import ImageSplit
from poolformer_hf.tasks.classification.trainer import ImageClassificationDataset, collate_images


def _dataset(seed):
    images = [Image.new("RGB", (20, 20), (i * 40, 100, 200 - i * 40)) for i in range(4)]
    noisy = T.Compose([T.ToTensor(), T.Lambda(lambda x: x + torch.rand_like(x))])
    return ImageClassificationDataset(ImageSplit(images=images, labels=[0, 1, 0, 1]), noisy, seed=seed)


def test_seeded_items_depend_on_seed_epoch_and_index_only():
    dataset = _dataset(seed=7)
    first = dataset[2]["pixel_values"]
    torch.manual_seed(123)  # the global generator does not matter
    torch.testing.assert_close(dataset[2]["pixel_values"], first)
    assert not torch.equal(dataset[1]["pixel_values"], first)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2]["pixel_values"], first)
    assert not torch.equal(_dataset(seed=8)[2]["pixel_values"], first)


def test_seeded_items_leave_the_global_generator_alone():
    dataset = _dataset(seed=7)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    dataset[0]
    torch.testing.assert_close(torch.rand(3), expected)


def test_unseeded_items_use_the_global_generator():
    dataset = _dataset(seed=None)
    torch.manual_seed(0)
    first = dataset[0]["pixel_values"]
    assert not torch.equal(dataset[0]["pixel_values"], first)


def test_collate_stacks_pixels_and_labels():
    batch = collate_images([_dataset(seed=0)[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 3, 20, 20)
    assert batch["labels"].tolist() == [0, 1, 0] and batch["labels"].dtype == torch.long


@pytest.mark.parametrize("index", [0, 3])
def test_items_carry_their_label(index):
    assert _dataset(seed=0)[index]["labels"] == [0, 1, 0, 1][index]


def test_no_evaluation_bar_while_the_training_bar_runs_and_logs_keep_total_flos():
    from types import SimpleNamespace

    from poolformer_hf.tasks.classification.trainer import LogPrinter, TrainingProgress

    state = SimpleNamespace(is_world_process_zero=True, is_local_process_zero=True, max_steps=4, global_step=0)
    progress = TrainingProgress()
    progress.on_train_begin(None, state, None)
    progress.on_prediction_step(None, state, None, eval_dataloader=[1, 2])
    assert progress.prediction_bar is None  # it would interleave with the training bar
    progress.on_train_end(None, state, None)
    progress.on_prediction_step(None, state, None, eval_dataloader=[1, 2])
    assert progress.prediction_bar is not None  # an evaluation on its own keeps its bar
    progress.on_evaluate(None, state, None)

    logs = {"train_loss": 2.3, "total_flos": 4.1e11}
    LogPrinter().on_log(None, state, None, logs=logs)
    assert logs == {"train_loss": 2.3, "total_flos": 4.1e11}  # transformers' PrinterCallback pops total_flos


def test_flops_are_printed_in_flops():
    from poolformer_hf.tasks.classification.trainer import format_flops

    assert format_flops(355119 * 2**30) == "381 TFLOPs"
    assert format_flops(4.86e7) == "48.6 MFLOPs" and format_flops(12) == "12 FLOPs"
