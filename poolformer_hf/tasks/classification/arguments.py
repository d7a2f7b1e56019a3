"""Command-line arguments of scripts/train.py, in the layout of transformers' run_image_classification.py example:
ModelArguments, DataTrainingArguments and RunTrainingArguments (transformers.TrainingArguments plus
--overwrite_output_dir), parsed by HfArgumentParser. `--help` shows the options a run commonly needs; `--help_all`
every TrainingArguments option."""

import argparse
import sys
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, TrainingArguments

from ..common import parse_command_line
from .launch import check_single_process_launch, check_world_size, default_use_cpu
from .streaming.shards import CORRUPT_POLICIES

DEFAULT_OUTPUT_DIR = "outputs/poolformer-digits"

DESCRIPTION = f"""Train or fine-tune a PoolFormer (MetaFormer) image classifier with transformers.Trainer.

With no data arguments it trains a small PoolFormer from scratch on scikit-learn's handwritten digits (shipped in the
scikit-learn wheel, nothing downloaded) at 32 px for 10 epochs, evaluates top-1/top-5 accuracy and macro F1, saves
a Hub-ready folder to --output_dir (default {DEFAULT_OUTPUT_DIR}), reloads it and classifies 10 held-out digits.
Give --train_dir (image folders) or --dataset_name (a Hub dataset) for your own data, --model_name_or_path or
--preset for another model. Several processes: torchrun --nproc_per_node N, or accelerate launch --multi_gpu
--num_processes N (both also on a CPU-only machine). FSDP: --fsdp 'full_shard auto_wrap'."""

# Defaults of this script for TrainingArguments fields (the command line still overrides each one). They make the
# bare command train and evaluate the built-in digits dataset in a few minutes on two CPU cores, with the paper's
# optimiser (AdamW, cosine schedule with warm-up).
TRAINING_DEFAULTS = {
    "output_dir": DEFAULT_OUTPUT_DIR,
    "do_train": True,
    "do_eval": True,
    "num_train_epochs": 10,
    "per_device_train_batch_size": 64,
    "per_device_eval_batch_size": 128,
    "learning_rate": 2e-3,
    "weight_decay": 0.05,
    "optim": "adamw_torch",
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.1,  # a float below 1 is a fraction of all steps (transformers v5)
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 1,
    "logging_strategy": "epoch",
    "seed": 42,
    "label_smoothing_factor": 0.1,  # the paper's; applied to the soft targets of our loss (trainer.py)
    "report_to": "none",
    "remove_unused_columns": False,
    # Pinned host memory only helps copies to an accelerator; on a CPU-only machine torch warns that it is unused.
    "dataloader_pin_memory": torch.cuda.is_available(),
}


@dataclass
class ModelArguments:
    """Which model to start from: a folder or Hub id (`--model_name_or_path`), or a preset trained from scratch.

    (No --trust_remote_code: checkpoints load into this package's own classes, so no code from a checkpoint runs;
    a checkpoint of another model type is refused, see `model.check_poolformer_checkpoint`.)
    """

    _argument_group_name = "model"

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Folder or Hub id of a checkpoint to fine-tune (ours, or a transformers-native PoolFormer one)."
        },
    )
    preset: str | None = field(
        default=None, metadata={"help": "Start from scratch with this preset (poolformer_hf.PRESET_NAMES)."}
    )
    depths: str | None = field(
        default=None, metadata={"help": "Override the preset's blocks per stage, comma-separated, e.g. 1,1,3,1."}
    )
    hidden_sizes: str | None = field(
        default=None, metadata={"help": "Override the preset's widths per stage, comma-separated, e.g. 32,64,128,256."}
    )
    drop_path_rate: float | None = field(default=None, metadata={"help": "Stochastic depth rate (paper: 0.1 for S12)."})
    image_processor_name: str | None = field(
        default=None, metadata={"help": "Folder or Hub id of the image processor, if not the model's."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Re-initialise the classifier when the checkpoint has another label count."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and datasets are stored."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the checkpoint."})
    lora: bool = field(
        default=False,
        metadata={"help": "Train LoRA adapters (PEFT) and a new classifier, base frozen; saves <output_dir>/adapter."},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank (with --lora)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator: updates are scaled alpha / r."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch's input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={
            "help": "Modules LoRA adapts: comma-separated name suffixes or a regex of full names (default: every "
            "MLP's fc1/fc2, the separable convs' pwconv1/pwconv2, the attention's qkv/proj; docs/lora.md)."
        },
    )


@dataclass
class DataTrainingArguments:
    """Which data: a Hub dataset, image folders, or (with neither) scikit-learn's digits; plus the training recipe."""

    _argument_group_name = "data and recipe (with no data arguments: scikit-learn's digits)"

    dataset_name: str | None = field(default=None, metadata={"help": "Dataset name or path for datasets.load_dataset."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    image_column_name: str | None = field(default=None, metadata={"help": "Image column (default: image or img)."})
    label_column_name: str | None = field(default=None, metadata={"help": "Label column (default: label or labels)."})
    train_dir: str | None = field(default=None, metadata={"help": "Training images as <train_dir>/<class>/<image>."})
    validation_dir: str | None = field(default=None, metadata={"help": "Validation images, same layout."})
    train_val_split: float = field(
        default=0.15, metadata={"help": "Fraction of train split off (stratified) when there is no validation set."}
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the train/validation split."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only this many training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only this many validation images."})
    image_size: int | None = field(
        default=None, metadata={"help": "Train and evaluate at this resolution (default: the image processor's)."}
    )
    random_resized_crop: bool = field(default=True, metadata={"help": "RandomResizedCrop in training."})
    min_crop_scale: float = field(
        default=0.35, metadata={"help": "Smallest crop area of RandomResizedCrop (paper 0.08)."}
    )
    horizontal_flip: bool = field(default=False, metadata={"help": "Random horizontal flips (paper: on)."})
    rand_augment: bool = field(default=False, metadata={"help": "RandAugment (2 ops, magnitude 9) as in the paper."})
    random_erasing: float = field(default=0.0, metadata={"help": "Random erasing probability (paper 0.25)."})
    mixup: float = field(default=0.0, metadata={"help": "Mixup alpha, 0 disables (paper 0.8)."})
    cutmix: float = field(default=0.0, metadata={"help": "CutMix alpha, 0 disables (paper 1.0)."})
    train_shards: str | None = field(
        default=None,
        metadata={"help": "Stream tar shards, e.g. 'dir/train-{000000..000007}.tar' (docs/training.md)."},
    )
    validation_shards: str | None = field(
        default=None, metadata={"help": "Validation shards, same layout (read into memory)."}
    )
    streaming: bool = field(
        default=False, metadata={"help": "Stream --dataset_name (needs --max_steps and steps strategies)."}
    )
    shuffle_buffer: int = field(
        default=1000, metadata={"help": "Shuffle buffer of streamed samples (0: shard order only)."}
    )
    corrupt_shards: str = field(
        default="stop", metadata={"help": "A corrupt shard or image: stop (the default), or skip and count it."}
    )
    num_demo_images: int = field(
        default=10, metadata={"help": "Held-out images classified by the reloaded model at the end."}
    )

    def __post_init__(self):
        if self.dataset_name is not None and (self.train_dir is not None or self.validation_dir is not None):
            raise ValueError("give either --dataset_name or --train_dir/--validation_dir, not both")
        self._check_streaming()
        for name in ("mixup", "cutmix", "random_erasing"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise ValueError(f"--min_crop_scale must be in (0, 1], got {self.min_crop_scale}")

    def _check_streaming(self):
        if self.corrupt_shards not in CORRUPT_POLICIES:
            raise ValueError(f"--corrupt_shards must be one of {CORRUPT_POLICIES}, got {self.corrupt_shards!r}")
        if self.shuffle_buffer < 0:
            raise ValueError(f"--shuffle_buffer must be >= 0, got {self.shuffle_buffer}")
        if self.streaming and self.dataset_name is None:
            raise ValueError("--streaming streams a --dataset_name; for tar shards give --train_shards alone")
        if self.train_shards is not None:
            if self.dataset_name is not None or self.train_dir is not None:
                raise ValueError("give one training source: --train_shards, --train_dir or --dataset_name")
            if self.validation_shards is None and self.validation_dir is None:
                raise ValueError(
                    "--train_shards needs --validation_shards or --validation_dir: nothing is held out of a stream"
                )
        elif self.validation_shards is not None:
            raise ValueError("--validation_shards goes with --train_shards")
        if (self.train_shards is not None or self.streaming) and self.max_train_samples is not None:
            raise ValueError("--max_train_samples does not apply to streamed data: use --max_steps")


@dataclass
class RunTrainingArguments(TrainingArguments):
    """transformers.TrainingArguments plus --overwrite_output_dir (which transformers v5 no longer has): a run
    refuses an --output_dir holding a previous run unless told to replace it or to resume it."""

    _argument_group_name = "training (transformers.TrainingArguments; --help_all lists all of them)"

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace a previous run in --output_dir (its model, results and checkpoints)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.label_smoothing_factor < 1.0:
            raise ValueError(f"--label_smoothing_factor must be in [0, 1), got {self.label_smoothing_factor}")


# The TrainingArguments options `--help` shows, with a one-line help each; `--help_all` shows them all.
COMMON_TRAINING_OPTIONS = {
    "output_dir": "Where the model, results, model card and checkpoints go.",
    "overwrite_output_dir": "Replace a previous run in --output_dir (its model, results and checkpoints).",
    "resume_from_checkpoint": "Resume from DIR/checkpoint-N, or `last`: the newest complete one in --output_dir.",
    "do_train": "Train (default true).",
    "do_eval": "Evaluate on the validation split (default true).",
    "num_train_epochs": "Epochs to train.",
    "max_steps": "Stop after this many optimizer steps (overrides --num_train_epochs when > 0).",
    "per_device_train_batch_size": "Training batch per process (the global batch is this x processes x accumulation).",
    "per_device_eval_batch_size": "Evaluation batch per process.",
    "gradient_accumulation_steps": "Batches accumulated per optimizer step.",
    "learning_rate": "Peak learning rate of AdamW.",
    "weight_decay": "AdamW weight decay.",
    "lr_scheduler_type": "Learning-rate schedule (cosine, linear, constant, ...).",
    "warmup_steps": "Warm-up steps; a float below 1 is a fraction of all steps.",
    "label_smoothing_factor": "Label smoothing of the training targets (paper 0.1).",
    "eval_strategy": "When to evaluate during training: no, steps or epoch.",
    "save_strategy": "When to save a checkpoint: no, steps or epoch.",
    "save_steps": "Checkpoint every N steps (with --save_strategy steps).",
    "save_total_limit": "Checkpoints kept in --output_dir.",
    "logging_strategy": "When to log the training loss: no, steps or epoch.",
    "logging_steps": "Log every N steps (with --logging_strategy steps).",
    "seed": "Seed of the model's initialisation, data order and augmentation.",
    "bf16": "Train in bfloat16 mixed precision.",
    "gradient_checkpointing": "Recompute activations in backward: less memory, more time.",
    "use_cpu": "Train on the CPU even if an accelerator is there (set by itself when several processes have none).",
    "fsdp": "Shard model, gradients and optimizer over the processes (FSDP2), e.g. 'full_shard auto_wrap' "
            "(docs/training.md, Scaling out).",
    "fsdp_config": "JSON file of FSDP options (transformers' keys, e.g. state_dict_type).",
    "ddp_timeout": "Seconds to wait for every process to join the process group.",
    "dataloader_num_workers": "Worker processes decoding images.",
    "disable_tqdm": "No progress bar (logs are printed instead).",
    "report_to": "Experiment trackers to report to (default none).",
    "push_to_hub": "Upload the final folder to the Hub (see also scripts/push_to_hub.py).",
    "hub_model_id": "Hub repo id for --push_to_hub.",
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """One line per option: its underscore spelling only (the hyphen spelling still parses), a short placeholder
    for its value, the help beside it."""

    PLACEHOLDERS = {int: "N", float: "X"}

    def __init__(self, prog):
        super().__init__(prog, max_help_position=40, width=118)

    def _format_action_invocation(self, action):
        if not action.option_strings:
            return super()._format_action_invocation(action)
        if action.nargs == 0:
            return ", ".join(action.option_strings[:2]) if action.dest == "help" else action.option_strings[0]
        placeholder = "BOOL" if getattr(action.type, "__name__", "") == "string_to_bool" else "VALUE"
        return f"{action.option_strings[0]} {self.PLACEHOLDERS.get(action.type, placeholder)}"


class _HelpAll(argparse.Action):
    """`--help_all`: the help with every TrainingArguments option, then exit."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        make_parser(show_all=True).print_help()
        parser.exit()


def script_defaults() -> dict:
    """train.py's own defaults over TrainingArguments' (the recipe, and the CPU where there is no accelerator)."""
    return {**TRAINING_DEFAULTS, "use_cpu": default_use_cpu()}


def make_parser(show_all: bool = False) -> HfArgumentParser:
    """The parser of scripts/train.py; `show_all=False` hides the rarely used TrainingArguments options from --help
    (they still parse)."""
    parser = HfArgumentParser(
        (ModelArguments, DataTrainingArguments, RunTrainingArguments),
        description=DESCRIPTION,
        usage="%(prog)s [--output_dir DIR] [data, model, recipe and training options]",
        formatter_class=_HelpFormatter,
    )
    parser.set_defaults(**script_defaults())
    parser.add_argument("--help_all", action=_HelpAll, help="Show every transformers.TrainingArguments option.")
    for action in parser._actions:  # argparse has no public way to edit an added option
        if action.dest not in RunTrainingArguments.__dataclass_fields__:
            continue
        if action.dest in COMMON_TRAINING_OPTIONS:
            action.help = COMMON_TRAINING_OPTIONS[action.dest]
        elif not show_all:
            action.help = argparse.SUPPRESS
    for action in parser._actions:  # `--no_x` repeats `--x false` (HfArgumentParser adds one per default-True flag)
        if action.option_strings and action.option_strings[0].startswith("--no_"):
            action.help = argparse.SUPPRESS
    return parser


def parse_arguments(argv: list[str] | None = None):
    """(model_args, data_args, training_args) from argv (default sys.argv[1:]) or from one JSON file.

    Refuses a launch whose processes would not train together (see launch.py).
    """
    argv = sys.argv[1:] if argv is None else argv
    check_single_process_launch()
    arguments = parse_command_line(make_parser(), script_defaults(), argv)
    check_world_size(arguments[2])
    return arguments
