"""DeepSpeed ZeRO-2 parity on the CPU over gloo, run by hand where the `deepspeed` extra is installed (it is not in the
test extra, and the suite does not collect this file: its name is not test_*.py):

    pip install -e ".[test,deepspeed]"
    OMP_NUM_THREADS=1 python -m pytest tests/check_deepspeed.py

As tests/test_scale_out.py checks FSDP2: 2 processes at half the per-process batch train 5 AdamW steps to the weights
and per-step gradient norms of one process at the same global batch (within 1e-5, relative), through the accelerate
config and through `--deepspeed CONFIG`; each process holds its own ZeRO partition of the optimizer state. Nothing of
ours is needed for it: on a machine without an accelerator train.py trains several processes as one CPU (gloo)
process group (`use_cpu`), and accelerate's state still turns DeepSpeed on over it, with DeepSpeed's CPU accelerator.
"""

import sys

import pytest
from test_classification_run import launch
from test_scale_out import assert_same_training, launch_with, reference_run, torchrun, user_argv


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    return reference_run(tmp_path_factory.mktemp("one_process"), {})


def assert_zero_partitions(output_dir, step: int = 3):
    """DeepSpeed trained, not DDP (which would match the weights as well): one ZeRO optimizer partition per process
    in the checkpoint."""
    checkpoint = output_dir / f"checkpoint-{step}" / f"global_step{step}"
    assert sorted(path.name for path in checkpoint.glob("zero_pp_rank_*_optim_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]


def test_zero2_through_the_accelerate_config_matches_one_process(one_process, tmp_path):
    output_dir = tmp_path / "out"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               "scripts/accelerate_deepspeed_zero2.yaml", "scripts/train.py", *user_argv(output_dir, 2)]
    launch_with(command, {})
    assert_zero_partitions(output_dir)
    assert_same_training(output_dir, one_process, "accelerate DeepSpeed ZeRO-2 config")


def test_zero2_through_trainers_deepspeed_argument_matches_one_process(one_process, tmp_path):
    output_dir = tmp_path / "out"
    argv = user_argv(output_dir, 2, "--deepspeed", "scripts/deepspeed_zero2.json")
    launch(torchrun("--nproc_per_node", "2", "scripts/train.py", *argv), tmp_path)
    assert_zero_partitions(output_dir)
    assert_same_training(output_dir, one_process, "torchrun --deepspeed ZeRO-2")
