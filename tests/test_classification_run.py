"""End-to-end runs of the training entry point on a tiny model and tiny digits: one process, torchrun and
accelerate launch agree (on the CPU, as the README launches them); a run killed after a checkpoint resumes to the
same result; bf16 and gradient checkpointing switch on; bad data, a reused output folder and a one-process
accelerate launch stop the run before anything is written; a full disk is named."""

import json
import stat
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from isolated_python import run_isolated
from safetensors.torch import load_file
from classification_helpers import parse, write_image_folder
from transformers import TrainerCallback

from poolformer_hf.hub.complexity import measure
from poolformer_hf.configuration_poolformer import PoolFormerConfig
from poolformer_hf.files import current_umask
from poolformer_hf.tasks.classification.run import run

REPO_ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 16

# Tiny model, tiny images, a few steps, and by default nothing random but the (seeded) data order. Eval sizes
# divide evenly: with a ragged last batch, accelerate pads it with repeated samples and Trainer's eval_loss (a
# per-batch mean) then differs slightly between one process and two, though predictions and metrics do not.
TINY = [
    "--depths", "1,1,1,1",
    "--hidden_sizes", "8,16,24,32",
    "--image_size", "16",
    "--max_train_samples", "64",
    "--max_eval_samples", "32",
    "--random_resized_crop", "false",
    "--drop_path_rate", "0",
    "--num_train_epochs", "2",
    "--learning_rate", "0.01",
    "--warmup_steps", "0.25",
    "--per_device_eval_batch_size", "8",  # 32 = 4 x 8: the same eval batches in one process and in two
    "--eval_strategy", "no",
    "--save_strategy", "no",
    "--logging_strategy", "no",
    "--num_demo_images", "3",
    "--disable_tqdm", "true",
    "--use_cpu", "true",
]  # fmt: skip


def tiny_argv(output_dir, *extra, per_device_batch=GLOBAL_BATCH):
    return ["--output_dir", str(output_dir), *TINY, "--per_device_train_batch_size", str(per_device_batch), *extra]


def run_in_process(argv, callbacks=None):
    return run(*parse(*argv), callbacks=callbacks)


def subprocess_env():
    # CUDA_VISIBLE_DEVICES="": the launchers see a CPU-only machine, as on the project's CI.
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "CUDA_VISIBLE_DEVICES": ""}  # fmt: skip


def launch(command, tmp_path, returncode=0):
    result = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == returncode, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def as_a_user_launches(argv):
    """The argv without --use_cpu: the README's launch commands do not pass it."""
    index = argv.index("--use_cpu")
    return argv[:index] + argv[index + 2 :]


def eval_metrics(output_dir):
    results = json.loads((Path(output_dir) / "eval_results.json").read_text())
    return {key: results[key] for key in ("eval_accuracy", "eval_top5_accuracy", "eval_macro_f1", "eval_loss")}


def assert_same_weights(dir_a, dir_b, atol):
    a, b = load_file(Path(dir_a) / "model.safetensors"), load_file(Path(dir_b) / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("single")
    metrics = run_in_process(tiny_argv(output_dir))
    return output_dir, metrics


def test_single_process_run_writes_a_hub_ready_folder(single_process_run):
    output_dir, metrics = single_process_run
    for name in ("model.safetensors", "config.json", "preprocessor_config.json", "training_args.bin",
                 "all_results.json", "eval_results.json", "train_results.json", "README.md"):  # fmt: skip
        assert (output_dir / name).is_file(), name
    config = json.loads((output_dir / "config.json").read_text())
    assert config["id2label"] == {str(i): str(i) for i in range(10)}
    card = yaml.safe_load((output_dir / "README.md").read_text().split("---")[1])
    results = card["model-index"][0]["results"][0]
    values = {metric["type"]: metric["value"] for metric in results["metrics"]}
    assert values["accuracy"] == pytest.approx(metrics["eval_accuracy"])
    assert values["top_5_accuracy"] == pytest.approx(metrics["eval_top5_accuracy"])
    assert results["dataset"]["type"] == "sklearn-digits"
    assert 0.0 <= metrics["demo_accuracy"] <= 1.0
    mask = current_umask()  # every file readable as the umask allows, the weights too (safetensors writes 0600)
    for path in output_dir.rglob("*"):  # (the folder itself is pytest's tmp_path, 0700)
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_config_and_card_state_the_resolution_trained_at(single_process_run):
    output_dir, metrics = single_process_run
    config = PoolFormerConfig.from_pretrained(output_dir)
    assert config.image_size == 16
    text = (output_dir / "README.md").read_text()
    macs = measure(config, image_size=16)["macs"]
    assert "**Resolution:** 16×16" in text and f"**MACs at 16×16:** {macs / 1e6:.2f} M" in text
    assert "short side resized to 17, then a 16×16 center crop" in text and "224" not in text


def test_total_flos_are_the_measured_forward_and_backward_flops(single_process_run):
    output_dir, metrics = single_process_run
    macs = measure(PoolFormerConfig.from_pretrained(output_dir), image_size=16)["macs"]
    images_seen = 64 * 2  # 64 training images, 2 epochs
    assert metrics["total_flos"] == 3 * 2 * macs * images_seen


def test_a_second_run_into_the_same_folder_is_refused(single_process_run):
    output_dir, _ = single_process_run
    before = {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()}
    with pytest.raises(ValueError, match="holds a previous run.*--overwrite_output_dir"):
        run_in_process(tiny_argv(output_dir))
    assert {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir()} == before


# Augmentation may stay on across processes: each image's random transform is seeded by (seed, epoch, index).
AUGMENTED = ["--random_resized_crop", "true", "--rand_augment", "true"]


@pytest.fixture(scope="module")
def augmented_single_process_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("augmented")
    run_in_process(tiny_argv(output_dir, *AUGMENTED))
    return output_dir


def test_output_folder_loads_with_trust_remote_code_alone(single_process_run, tmp_path):
    output_dir, metrics = single_process_run
    code = f"""
from transformers import AutoImageProcessor, AutoModelForImageClassification
from sklearn.datasets import load_digits
from PIL import Image
import numpy as np
model = AutoModelForImageClassification.from_pretrained({str(output_dir)!r}, trust_remote_code=True)
processor = AutoImageProcessor.from_pretrained({str(output_dir)!r}, trust_remote_code=True)
image = Image.fromarray(np.uint8(load_digits().images[0] * 15)).convert("RGB")
logits = model(**processor(image, return_tensors="pt")).logits
print(type(model).__module__, logits.shape[-1], model.config.id2label[int(logits.argmax())])
"""
    module, num_labels, label = run_isolated(code, tmp_path).split()
    assert "poolformer_hf" not in module and num_labels == "10" and label in {str(d) for d in range(10)}


def test_torchrun_two_processes_match_one_process(augmented_single_process_run, tmp_path):
    output_dir = augmented_single_process_run
    argv = as_a_user_launches(tiny_argv(tmp_path / "torchrun", *AUGMENTED, per_device_batch=GLOBAL_BATCH // 2))
    result = launch(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "scripts/train.py", *argv], tmp_path
    )
    assert "world size 2" in result.stdout
    assert eval_metrics(tmp_path / "torchrun") == pytest.approx(eval_metrics(output_dir), abs=1e-4)
    assert_same_weights(output_dir, tmp_path / "torchrun", atol=1e-4)


def test_accelerate_launch_two_processes_match_one_process(augmented_single_process_run, tmp_path):
    output_dir = augmented_single_process_run
    argv = as_a_user_launches(tiny_argv(tmp_path / "accelerate", *AUGMENTED, per_device_batch=GLOBAL_BATCH // 2))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "scripts/train.py", *argv]  # fmt: skip
    result = launch(command, tmp_path)
    assert "world size 2" in result.stdout
    assert eval_metrics(tmp_path / "accelerate") == pytest.approx(eval_metrics(output_dir), abs=1e-4)
    assert_same_weights(output_dir, tmp_path / "accelerate", atol=1e-4)


def test_accelerate_launch_of_one_process_for_two_is_refused_naming_the_flag(tmp_path):
    argv = as_a_user_launches(tiny_argv(tmp_path / "one", per_device_batch=GLOBAL_BATCH // 2))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "scripts/train.py", *argv]  # fmt: skip
    result = launch(command, tmp_path, returncode=1)  # accelerate's own exit status for a failed script
    assert "train.py: error: accelerate launch was asked for several processes" in result.stderr
    assert "--multi_gpu" in result.stderr
    assert not (tmp_path / "one").exists()


KILL_AFTER_SAVE = textwrap.dedent(
    """
    import json, os, signal, sys
    from transformers import TrainerCallback
    from poolformer_hf.tasks.classification.arguments import parse_arguments
    from poolformer_hf.tasks.classification.run import run

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == int(sys.argv[1]):
                os.kill(os.getpid(), signal.SIGKILL)

    run(*parse_arguments(json.loads(sys.argv[2])), callbacks=[KillAfterSave()])
    """
)


def test_resume_after_sigkill_reaches_the_uninterrupted_result(tmp_path):
    # The recipe's randomness stays on here (random resized crop, stochastic depth): resuming restores the data
    # order and the RNG states that drive them. Checkpoint every 3 steps: the kill lands mid-epoch.
    recipe = ["--random_resized_crop", "true", "--rand_augment", "true", "--drop_path_rate", "0.1",
              "--mixup", "0.8", "--save_strategy", "steps", "--save_steps", "3"]  # fmt: skip
    uninterrupted = tmp_path / "uninterrupted"
    run_in_process(tiny_argv(uninterrupted, *recipe))

    killed = tmp_path / "killed"
    argv = tiny_argv(killed, *recipe)
    result = subprocess.run([sys.executable, "-c", KILL_AFTER_SAVE, "3", json.dumps(argv)], cwd=REPO_ROOT,
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == -9, result.stderr[-3000:]
    assert (killed / "checkpoint-3" / "trainer_state.json").is_file()
    assert not (killed / "model.safetensors").exists()

    metrics = run_in_process([*argv, "--resume_from_checkpoint", "last"])
    assert metrics["train_resumed_from_step"] == 3  # train_loss covers steps 4..8 and says so
    assert eval_metrics(killed) == pytest.approx(eval_metrics(uninterrupted), abs=1e-5)
    # Not bit-equal: the killed run's first steps ran in a process with another thread count (float sum order).
    assert_same_weights(uninterrupted, killed, atol=1e-4)


class RecordLogitsDtype(TrainerCallback):
    def __init__(self):
        self.dtypes, self.gradient_checkpointing = set(), None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.gradient_checkpointing = model.is_gradient_checkpointing
        model.classifier.register_forward_hook(lambda module, inputs, output: self.dtypes.add(output.dtype))


def test_bf16_switch_runs_the_forward_in_bfloat16(tmp_path):
    recorder = RecordLogitsDtype()
    metrics = run_in_process(tiny_argv(tmp_path / "bf16", "--bf16", "true", "--max_steps", "2"), [recorder])
    assert torch.bfloat16 in recorder.dtypes
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))


def test_gradient_checkpointing_switch_keeps_the_result(single_process_run, tmp_path):
    recorder = RecordLogitsDtype()
    run_in_process(tiny_argv(tmp_path / "checkpointed", "--gradient_checkpointing", "true"), [recorder])
    assert recorder.gradient_checkpointing is True
    assert_same_weights(single_process_run[0], tmp_path / "checkpointed", atol=1e-5)


def test_bad_data_stops_before_anything_is_written(tmp_path):
    write_image_folder(tmp_path / "train", {"a": 3, "b": 3})
    (tmp_path / "train" / "a" / "broken.png").write_bytes(b"not a png")
    output_dir = tmp_path / "out"
    with pytest.raises(ValueError, match="broken.png"):
        run_in_process(tiny_argv(output_dir, "--train_dir", str(tmp_path / "train")))
    assert not output_dir.exists()


def test_a_validation_split_of_nothing_is_refused_with_the_numbers(tmp_path):
    write_image_folder(tmp_path / "train", {"cat": 1, "dog": 1})
    output_dir = tmp_path / "out"
    with pytest.raises(ValueError, match=r"validation split is empty: 2 training and 0 validation.*2 of 2 classes"):
        run_in_process(tiny_argv(output_dir, "--train_dir", str(tmp_path / "train")))
    assert not output_dir.exists()


class FillTheDisk(TrainerCallback):
    """Raise what torch.save raises when the disk fills, once the checkpoint's first files are written."""

    def on_save(self, args, state, control, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def test_a_full_disk_while_saving_says_so_and_names_the_file(tmp_path):
    output_dir = tmp_path / "out"
    argv = tiny_argv(output_dir, "--max_steps", "1", "--save_strategy", "steps", "--save_steps", "1")
    with pytest.raises(OSError, match=rf"disk holding {output_dir} is full .* while writing {output_dir}/checkpoint-1/"):
        run_in_process(argv, callbacks=[FillTheDisk()])
    assert not (output_dir / ".poolformer-train.lock").exists()  # the lock goes with the failed run


def test_no_writing_model_shards_bar_during_a_run():
    import transformers

    from poolformer_hf.tasks.classification.run import _quiet_shard_bars

    assert transformers.utils.logging.is_progress_bar_enabled()
    with _quiet_shard_bars():
        assert not transformers.utils.logging.is_progress_bar_enabled()  # save_pretrained's tqdm is off
    assert transformers.utils.logging.is_progress_bar_enabled()
