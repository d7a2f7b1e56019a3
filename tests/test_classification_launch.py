"""How train.py was launched: several processes without an accelerator train together on the CPU, and a launch
that would train alone is refused with the missing flag named."""

from types import SimpleNamespace

import pytest

from poolformer_hf.tasks.classification import launch
from poolformer_hf.tasks.classification.launch import (
    check_single_process_launch,
    check_world_size,
    default_use_cpu,
    launched_world_size,
)


def test_several_processes_without_an_accelerator_default_to_the_cpu(monkeypatch):
    monkeypatch.setattr(launch, "has_accelerator", lambda: False)
    assert default_use_cpu({"WORLD_SIZE": "2", "LOCAL_RANK": "0"}) is True
    assert default_use_cpu({}) is False  # one process: the device is transformers' choice
    monkeypatch.setattr(launch, "has_accelerator", lambda: True)
    assert default_use_cpu({"WORLD_SIZE": "2"}) is False


def test_world_size_comes_from_the_launcher():
    assert launched_world_size({}) == 1 and launched_world_size({"WORLD_SIZE": "4"}) == 4
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        launched_world_size({"WORLD_SIZE": "two"})


def test_accelerate_launching_one_process_for_several_is_refused_naming_multi_gpu():
    # What `accelerate launch --num_processes 2 train.py` hands its single process on a machine without GPUs.
    one_of_two = {"ACCELERATE_DYNAMO_BACKEND": "NO", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    with pytest.raises(ValueError, match="--multi_gpu"):
        check_single_process_launch(one_of_two)
    check_single_process_launch({**one_of_two, "WORLD_SIZE": "2"})  # --multi_gpu: really two processes
    check_single_process_launch({"ACCELERATE_DYNAMO_BACKEND": "NO"})  # accelerate launch of one process


def test_processes_that_would_each_train_alone_are_refused_naming_use_cpu():
    with pytest.raises(ValueError, match="--use_cpu true"):
        check_world_size(SimpleNamespace(world_size=1), {"WORLD_SIZE": "2"})
    check_world_size(SimpleNamespace(world_size=2), {"WORLD_SIZE": "2"})
    check_world_size(SimpleNamespace(world_size=1), {})
