"""How scripts/train.py was launched (one process, torchrun, accelerate launch, one machine or several) and what
that asks of the run.

On a machine without an accelerator, transformers runs each torchrun process as an independent one-process training
unless `use_cpu` is set (accelerate only builds a CPU process group when told to use the CPU), and `accelerate
launch --num_processes N` without `--multi_gpu` starts a single process. Both exit 0 having trained N duplicates or
one process instead of N: these checks turn that into data-parallel CPU training or a clear refusal.

FSDP has two more silent ways out on such a machine, closed here: accelerate builds its FSDP plugin only for
accelerator process groups and wraps the model in DDP otherwise (`shard_on_cpu` makes it shard), and FSDP2's gradient
average over gloo has been a sum in some torch releases (pytorch/pytorch#162338: `guard_gradient_average` measures it
and makes FSDP sum and divide instead). Batch sizes are per process, as in Trainer: the global batch is
per_device_train_batch_size x processes x accumulation steps, so every world size divides it.
"""

import argparse
import contextlib
import json
import logging
import os
import sys
from datetime import timedelta

import torch
from torch import nn
from transformers import TrainerCallback, TrainingArguments

logger = logging.getLogger(__name__)

# Set by `accelerate launch` in the environment of the script it starts (every launcher, one process or several).
ACCELERATE_LAUNCH_MARKER = "ACCELERATE_DYNAMO_BACKEND"
# Set by `accelerate launch` when its config (or --use_fsdp) asks for FSDP; the FSDP_* variables carry the options.
ACCELERATE_FSDP = "ACCELERATE_USE_FSDP"
GRADIENT_SUM_ISSUE = "pytorch/pytorch#162338"


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


def fsdp_requested(training_args, environ=os.environ) -> bool:
    """Whether the run is asked to shard the model: `--fsdp` or an accelerate config with FSDP."""
    return bool(getattr(training_args, "fsdp", None)) or environ.get(ACCELERATE_FSDP, "false").lower() == "true"


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
    """The launcher's processes must form one training: refuse N independent runs writing one folder, and FSDP
    (which shards the model across the processes of one training) on a lone process."""
    launched = launched_world_size(environ)
    if launched > 1 and training_args.world_size != launched:
        raise ValueError(
            f"{launched} processes were launched but each trains alone (world size {training_args.world_size}): "
            "on a machine without an accelerator they need --use_cpu true to train together"
        )
    # One accelerator under a launcher may shard alone (FSDP's CPU offload); a lone process has no group to shard over.
    lone = "LOCAL_RANK" not in environ or not has_accelerator()
    if fsdp_requested(training_args, environ) and launched == 1 and lone:
        asked = "--fsdp" if getattr(training_args, "fsdp", None) else "the accelerate config's FSDP"
        raise ValueError(
            f"{asked} shards the model across the processes of one training, but this is a single process "
            "with nothing to shard over: launch several, e.g. torchrun --nproc_per_node 2 scripts/train.py ... "
            "--fsdp 'full_shard auto_wrap', or accelerate launch --config_file scripts/accelerate_fsdp.yaml "
            "scripts/train.py ... (docs/training.md, Scaling out)"
        )


# ------------------------------------------------------------------------------------------ the process group
def _ddp_timeout(argv: list[str]) -> int:
    """--ddp_timeout from the command line (or the one JSON file of arguments), else TrainingArguments' default."""
    default = TrainingArguments.__dataclass_fields__["ddp_timeout"].default
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(argv[0], encoding="utf-8") as file:
            return int(json.load(file).get("ddp_timeout", default))
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--ddp_timeout", "--ddp-timeout", type=int, default=default)
    return parser.parse_known_args(argv)[0].ddp_timeout


def form_cpu_process_group(argv: list[str], environ=os.environ) -> None:
    """Form the CPU (gloo) process group of a launch with several processes and no accelerator, bounded by
    --ddp_timeout.

    TrainingArguments would form it while parsing, but with `use_cpu` it leaves --ddp_timeout out (transformers
    passes it for accelerator groups only), so a process whose peers never come would wait torch's default 30 min.
    Formed first here, accelerate finds it formed and keeps it.
    """
    if launched_world_size(environ) <= 1 or has_accelerator() or torch.distributed.is_initialized():
        return
    torch.distributed.init_process_group("gloo", timeout=timedelta(seconds=_ddp_timeout(argv)))


@contextlib.contextmanager
def rendezvous_named(environ=os.environ):
    """A process group that does not form within its timeout raises a ValueError naming the endpoint and the ranks,
    not torch's DistStoreError / DistNetworkError alone."""
    try:
        yield
    except (torch.distributed.DistStoreError, torch.distributed.DistNetworkError) as error:
        rank, world = environ.get("RANK", "?"), environ.get("WORLD_SIZE", "?")
        endpoint = f"{environ.get('MASTER_ADDR', '?')}:{environ.get('MASTER_PORT', '?')}"
        raise ValueError(
            f"the process group did not form: rank {rank} of {world} waited at {endpoint} "
            f"(MASTER_ADDR:MASTER_PORT) until its timeout ({error}). Start every process (every node's launcher) "
            "with the same address, port and world size, check that the address is reachable from each node, and "
            "bound the wait with --ddp_timeout SECONDS (torchrun's own rendezvous: --rdzv-conf join_timeout=SECONDS)"
        ) from error


# ------------------------------------------------------------------------------------------ torchrun's rendezvous
def rendezvous_failure(args, error: BaseException) -> str:
    """What a torchrun node whose rendezvous failed says: the endpoint (--rdzv-endpoint, or --master-addr:port for
    the static backend), the backend, the node count and the timeout it waited. torchrun's own c10d
    RendezvousTimeoutError carries no message at all."""
    from torch.distributed.run import get_rdzv_endpoint

    conf = dict(item.split("=", 1) for item in args.rdzv_conf.split(",") if "=" in item)
    key, default = ("timeout", 600) if args.rdzv_backend == "static" else ("join_timeout", 600)
    reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return (
        f"the rendezvous did not complete: this node waited at {get_rdzv_endpoint(args)} ({args.rdzv_backend} "
        f"backend, --rdzv-id {args.rdzv_id}) for {args.nnodes} nodes, --rdzv-conf {key}={conf.get(key, default)} "
        f"({reason}). Start every node's launcher with the same --rdzv-endpoint (a host:port of the first node, "
        "reachable from each), --rdzv-id and --nnodes; the wait is bounded by --rdzv-conf "
        f"{key}=SECONDS (docs/training.md, Scaling out)"
    )


def torchrun(argv: list[str]) -> None:
    """torchrun (`python -m torch.distributed.run`) with the same arguments, whose failed rendezvous ends with one
    `torchrun: error:` line naming the endpoint (`rendezvous_failure`) instead of a traceback without it:
    python -m poolformer_hf.tasks.classification.launch --nnodes 2 ... scripts/train.py ..."""
    from torch.distributed import run
    from torch.distributed.elastic.rendezvous import RendezvousConnectionError, RendezvousTimeoutError

    args = run.parse_args(argv)
    # The static backend's TCPStore raises torch's DistNetworkError / DistStoreError where c10d raises its own.
    failures = (RendezvousTimeoutError, RendezvousConnectionError, torch.distributed.DistNetworkError,
                torch.distributed.DistStoreError)
    try:
        run.run(args)
    except failures as error:
        print(f"torchrun: error: {rendezvous_failure(args, error)}", file=sys.stderr)
        sys.exit(1)


# ---------------------------------------------------------------------------------------------- FSDP on a CPU
def shard_on_cpu(accelerator, training_args, environ=os.environ) -> bool:
    """Give accelerate the FSDP it was asked for on a CPU (gloo) process group; True when it was left out.

    accelerate's state turns a plugin into DistributedType.FSDP only for accelerator process groups; on MULTI_CPU it
    keeps the plugin aside and the model is wrapped in DDP, training unsharded without a word. FSDP2's
    `fully_shard` itself runs on CPU tensors over gloo, so the state is told FSDP here; the caller then runs
    Trainer's own FSDP set-up again (`ImageClassificationTrainer.create_accelerator_and_postprocess`).
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU or getattr(state, "fsdp_plugin", None) is not None:
        return False
    if training_args.fsdp_plugin_args is not None:
        plugin = FullyShardedDataParallelPlugin(**training_args.fsdp_plugin_args)
    elif environ.get(ACCELERATE_FSDP, "false").lower() == "true":
        plugin = FullyShardedDataParallelPlugin()  # from accelerate launch's FSDP_* variables
    else:
        return False
    if plugin.fsdp_version != 2:
        raise ValueError(
            f"FSDP version {plugin.fsdp_version} on the CPU: only FSDP2 (fully_shard) shards over a CPU process "
            "group here; set fsdp_version: 2 in the accelerate config (--fsdp_config '{\"version\": 2}' is "
            "transformers' default)"
        )
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    return True


@contextlib.contextmanager
def unsharded_class(model: nn.Module):
    """`model` as an instance of its own class while a save runs.

    fully_shard swaps a module's class for a subclass FSDP<Class> defined in torch's FSDP package; transformers
    then writes that class into the folder's auto_map and copies torch's FSDP files as the folder's remote code
    instead of modeling_poolformer.py (trust_remote_code could not load it)."""
    from torch.distributed.fsdp import FSDPModule

    sharded = type(model)
    if not isinstance(model, FSDPModule):
        yield model
        return
    model.__class__ = next(cls for cls in sharded.__mro__[1:] if not issubclass(cls, FSDPModule))
    try:
        yield model
    finally:
        model.__class__ = sharded


def _fsdp_modules(model: nn.Module) -> list:
    from torch.distributed.fsdp import FSDPModule

    return [module for module in model.modules() if isinstance(module, FSDPModule)]


def gradient_reduction_factor(mesh, force_sum: bool = False) -> float:
    """FSDP2's reduced gradient over the true mean of the processes' gradients, measured on a probe sharded over
    `mesh`: 1 when FSDP averages, the world size where it sums (pytorch#162338). Every process must call it."""
    from torch.distributed.fsdp import fully_shard

    world, rank = mesh.size(), torch.distributed.get_rank()
    probe = nn.utils.skip_init(nn.Linear, 1, world, bias=False, device=mesh.device_type)  # no draw from the RNG
    nn.init.zeros_(probe.weight)
    fully_shard(probe, mesh=mesh)
    if force_sum:
        probe.set_force_sum_reduction_for_comms(True)
    # Process r's gradient is r + 1 in every entry: their mean is (world + 1) / 2.
    probe(torch.full((1, 1), float(rank + 1), device=mesh.device_type)).sum().backward()
    return probe.weight.grad.full_tensor().mean().item() / ((world + 1) / 2)


def guard_gradient_average(model: nn.Module) -> bool:
    """Where FSDP2 over gloo sums the gradients it should average (pytorch#162338), make each FSDP unit of `model`
    reduce with a sum and divide by the world size itself. True when the bug was found (and guarded)."""
    units = _fsdp_modules(model)
    if not units:
        return False
    mesh = next(p for p in model.parameters() if hasattr(p, "device_mesh")).device_mesh
    if mesh.device_type != "cpu":  # the bug is gloo's; accelerator backends average themselves
        return False
    factor = gradient_reduction_factor(mesh)
    if abs(factor - 1.0) < 1e-6:
        return False
    if abs(gradient_reduction_factor(mesh, force_sum=True) - 1.0) > 1e-6:
        raise RuntimeError(
            f"FSDP2's gradient reduction over gloo gives {factor:g}x the mean gradient, even when told to sum and "
            f"divide ({GRADIENT_SUM_ISSUE}): the run would train on wrong gradients. Train with DDP (no --fsdp) here"
        )
    for unit in units:
        unit.set_force_sum_reduction_for_comms(True)
    logger.warning(
        "FSDP2 over gloo summed the gradients instead of averaging them (%.3gx, %s): each FSDP unit now reduces "
        "with a sum and divides by the world size",
        factor,
        GRADIENT_SUM_ISSUE,
    )
    return True


class FsdpRunCallback(TrainerCallback):
    """What an FSDP run adds to Trainer's: at the start of training, once the model is sharded, log how (units,
    processes) and guard the gradient average (`guard_gradient_average`); at each SHARDED_STATE_DICT checkpoint
    (one weights file per process, none with the config), write the config and image processor beside the shards,
    so that the folder loads with from_pretrained once `accelerate merge-weights` has gathered its weights."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        units = _fsdp_modules(model)
        if not units:
            return
        logger.info(
            "FSDP2 (fully_shard): %d units (%s) sharded over %d processes",
            len(units),
            ", ".join(sorted({type(unit).__name__.removeprefix("FSDP") for unit in units})),
            torch.distributed.get_world_size(),
        )
        guard_gradient_average(model)

    def on_save(self, args, state, control, model=None, processing_class=None, **kwargs):
        checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        sharded = os.path.isdir(os.path.join(checkpoint, "pytorch_model_fsdp_0"))
        if not state.is_world_process_zero or not sharded or os.path.exists(os.path.join(checkpoint, "config.json")):
            return
        with unsharded_class(model):
            model.config.save_pretrained(checkpoint)
        if processing_class is not None:
            processing_class.save_pretrained(checkpoint)


if __name__ == "__main__":
    torchrun(sys.argv[1:])
