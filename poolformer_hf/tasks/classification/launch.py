"""How scripts/train.py was launched (one process, torchrun, accelerate launch) and what that asks of the run.

On a machine without an accelerator, transformers runs each torchrun process as an independent one-process training
unless `use_cpu` is set (accelerate only builds a CPU process group when told to use the CPU), and `accelerate
launch --num_processes N` without `--multi_gpu` starts a single process. Both exit 0 having trained N duplicates or
one process instead of N: these checks turn that into data-parallel CPU training or a clear refusal.
"""

import os

import torch

# Set by `accelerate launch` in the environment of the script it starts (every launcher, one process or several).
ACCELERATE_LAUNCH_MARKER = "ACCELERATE_DYNAMO_BACKEND"


def launched_world_size(environ=os.environ) -> int:
    """The number of processes the launcher started (WORLD_SIZE from torchrun / accelerate; 1 without one)."""
    value = environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE must be an integer, got {value!r}") from None


def has_accelerator() -> bool:
    """Whether a device other than the CPU is there for each process to train on."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def default_use_cpu(environ=os.environ) -> bool:
    """Several processes and no accelerator: train on the CPU, so that they form one (gloo) process group."""
    return launched_world_size(environ) > 1 and not has_accelerator()


def check_single_process_launch(environ=os.environ) -> None:
    """Refuse an `accelerate launch --num_processes N>1` that started this script as a lone process.

    accelerate sets MASTER_ADDR when asked for more than one process, and WORLD_SIZE only when it really starts
    several (through torchrun); without GPUs that needs --multi_gpu.
    """
    if ACCELERATE_LAUNCH_MARKER in environ and "MASTER_ADDR" in environ and "WORLD_SIZE" not in environ:
        raise ValueError(
            "accelerate launch was asked for several processes (--num_processes > 1) but started only this one: "
            "without GPUs it starts several only with --multi_gpu (they then train on the CPU, one gloo process "
            "group): accelerate launch --multi_gpu --num_processes N scripts/train.py ..."
        )


def check_world_size(training_args, environ=os.environ) -> None:
    """The launcher's processes must form one training: refuse N independent runs writing one folder."""
    launched = launched_world_size(environ)
    if launched > 1 and training_args.world_size != launched:
        raise ValueError(
            f"{launched} processes were launched but each trains alone (world size {training_args.world_size}): "
            "on a machine without an accelerator they need --use_cpu true to train together"
        )
