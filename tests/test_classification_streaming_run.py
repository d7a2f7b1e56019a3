"""scripts/train.py on streamed data: tar shards and a streamed Hub-format dataset train through Trainer; a run
resumed mid-epoch draws the uninterrupted run's next batch and loss bit for bit; bad streaming input stops the run
before anything is written; two torchrun processes see every sample exactly once per epoch."""

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_classification_run import TINY, launch, run_in_process
from test_classification_streaming import hub_format_dataset, write_id_shards

from poolformer_hf.tasks.classification.trainer import ImageClassificationTrainer

REPO_ROOT = Path(__file__).resolve().parents[1]
# TINY without --max_train_samples (a stream has no sample list to cut) and without epochs (set per test).
STREAMED = [a for a in TINY if a not in ("--max_train_samples", "64")]


def argv(output_dir, *extra):
    return ["--output_dir", str(output_dir), *STREAMED, "--per_device_train_batch_size", "4", *extra]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """6 shards of 4 id-labelled samples (24 classes: the label is the id) and validation shards."""
    folder = tmp_path_factory.mktemp("shards")
    write_id_shards(folder, [4] * 6)
    write_id_shards(folder / "validation", [8])
    return str(folder / "s0{0..5}-000000.tar"), str(folder / "validation" / "s00-000000.tar")


class Recorder:
    """Trainer.compute_loss, recording each training step's batch and loss."""

    def __init__(self, monkeypatch):
        self.steps = []
        original = ImageClassificationTrainer.compute_loss

        def compute_loss(trainer, model, inputs, *args, **kwargs):
            loss = original(trainer, model, inputs, *args, **kwargs)
            if model.training:
                self.steps.append((inputs["pixel_values"].clone(), inputs["labels"].clone(), loss.detach().clone()))
            return loss

        monkeypatch.setattr(ImageClassificationTrainer, "compute_loss", compute_loss)


def test_a_run_resumed_mid_epoch_draws_the_next_batch_and_loss_bit_for_bit(shards, tmp_path, monkeypatch):
    train, validation = shards
    # 6 steps an epoch; the checkpoint after step 8 is mid-epoch 2. Augmentation, stochastic depth and the shuffle
    # buffer are on: each must be restored or re-drawn alike.
    recipe = ["--train_shards", train, "--validation_shards", validation, "--shuffle_buffer", "6",
              "--num_train_epochs", "2", "--save_strategy", "steps", "--save_steps", "4", "--save_total_limit", "5",
              "--random_resized_crop", "true", "--drop_path_rate", "0.1", "--do_eval", "false"]  # fmt: skip
    uninterrupted = Recorder(monkeypatch)
    run_in_process(argv(tmp_path / "uninterrupted", *recipe))
    assert len(uninterrupted.steps) == 12
    (tmp_path / "resumed").mkdir()
    shutil.copytree(tmp_path / "uninterrupted" / "checkpoint-8", tmp_path / "resumed" / "checkpoint-8")
    resumed = Recorder(monkeypatch)
    metrics = run_in_process(argv(tmp_path / "resumed", *recipe, "--resume_from_checkpoint", "last"))
    assert metrics["train_resumed_from_step"] == 8
    assert len(resumed.steps) == 4
    for (pixels, labels, loss), (pixels_0, labels_0, loss_0) in zip(resumed.steps, uninterrupted.steps[8:]):
        assert torch.equal(pixels, pixels_0) and torch.equal(labels, labels_0) and torch.equal(loss, loss_0)


def test_one_epoch_of_shards_trains_on_each_sample_once_and_reports_samples(shards, tmp_path, monkeypatch):
    train, validation = shards
    recorder = Recorder(monkeypatch)
    metrics = run_in_process(argv(tmp_path / "out", "--train_shards", train, "--validation_shards", validation,
                                  "--num_train_epochs", "1"))  # fmt: skip
    assert sorted(torch.cat([labels for _, labels, _ in recorder.steps]).tolist()) == list(range(24))
    assert (tmp_path / "out" / "model.safetensors").is_file() and "eval_accuracy" in metrics
    # Trainer's throughput counts samples, not the stream's batches
    assert metrics["train_samples_per_second"] == pytest.approx(24 / metrics["train_runtime"], rel=0.05)


def test_a_streamed_hub_format_dataset_trains_for_max_steps(tmp_path, monkeypatch):
    folder = tmp_path / "hub"
    hub_format_dataset(24).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    hub_format_dataset(6).to_parquet(str(folder / "data" / "validation-00000-of-00001.parquet"))
    recorder = Recorder(monkeypatch)
    steps = ["--eval_strategy", "steps", "--save_strategy", "steps", "--logging_strategy", "steps"]
    metrics = run_in_process(argv(tmp_path / "out", "--dataset_name", str(folder), "--streaming", "true",
                                  "--max_steps", "8", *steps))  # fmt: skip
    assert len(recorder.steps) == 8  # past the 24 rows: the stream goes round again
    assert "eval_accuracy" in metrics and (tmp_path / "out" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--train_shards", "{folder}/nothing-*.tar", "--validation_dir", "{folder}"], "matches no file"),
        (["--train_shards", "{train}"], "needs --validation_shards or --validation_dir"),
        (["--train_shards", "{train}", "--validation_shards", "{validation}", "--max_train_samples", "3"],
         "does not apply to streamed data"),
        (["--train_shards", "{train}", "--validation_shards", "{validation}", "--corrupt_shards", "ignore"],
         "must be one of"),
        (["--streaming", "true"], "--streaming streams a --dataset_name"),
        (["--dataset_name", "{folder}/hub", "--streaming", "true"], "give --max_steps"),
        (["--dataset_name", "{folder}/hub", "--streaming", "true", "--max_steps", "3"],
         "--eval_strategy epoch would never act"),
    ],
)
def test_bad_streaming_input_stops_before_anything_is_written(shards, tmp_path, extra, message):
    train, validation = shards
    hub_format_dataset(4).to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    hub_format_dataset(4).to_parquet(str(tmp_path / "hub" / "data" / "validation-00000-of-00001.parquet"))
    extra = [a.format(folder=tmp_path, train=train, validation=validation) for a in extra]
    with pytest.raises(ValueError, match=message):
        run_in_process(argv(tmp_path / "out", "--num_train_epochs", "1", "--eval_strategy", "epoch", *extra))
    assert not (tmp_path / "out").exists()


RECORD_LABELS = textwrap.dedent(
    """
    import json, os, sys
    from poolformer_hf.tasks.classification.trainer import ImageClassificationTrainer
    from poolformer_hf.tasks.classification.run import main

    original, seen = ImageClassificationTrainer.compute_loss, []
    def compute_loss(trainer, model, inputs, *args, **kwargs):
        if model.training:
            seen.append(inputs["labels"].tolist())
        return original(trainer, model, inputs, *args, **kwargs)
    ImageClassificationTrainer.compute_loss = compute_loss
    main(sys.argv[2:])
    with open(os.path.join(sys.argv[1], f"seen-{os.environ['RANK']}.json"), "w") as file:
        json.dump(seen, file)
    """
)


def test_two_torchrun_processes_see_every_sample_exactly_once_per_epoch(shards, tmp_path):
    train, validation = shards
    script = tmp_path / "record.py"
    script.write_text(RECORD_LABELS)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script), str(tmp_path),
               *argv(tmp_path / "out", "--train_shards", train, "--validation_shards", validation,
                     "--shuffle_buffer", "5", "--num_train_epochs", "2", "--do_eval", "false",
                     "--per_device_eval_batch_size", "4")]  # fmt: skip
    launch(command, tmp_path)
    per_rank = [json.loads((tmp_path / f"seen-{rank}.json").read_text()) for rank in (0, 1)]
    assert [len(batches) for batches in per_rank] == [6, 6]  # 24 samples / 2 processes / 4 per batch, 2 epochs
    for epoch in (0, 1):
        seen = sorted(i for batches in per_rank for batch in batches[3 * epoch : 3 * epoch + 3] for i in batch)
        assert seen == list(range(24))
