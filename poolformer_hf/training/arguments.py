"""Command-line arguments of scripts/train.py, in the layout of transformers' run_image_classification.py example:
ModelArguments, DataTrainingArguments and transformers.TrainingArguments, parsed by HfArgumentParser."""

import os
import sys
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser, TrainingArguments

DEFAULT_OUTPUT_DIR = "outputs/poolformer-digits"

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
    "report_to": "none",
    "remove_unused_columns": False,
    # Pinned host memory only helps copies to an accelerator; on a CPU-only machine torch warns that it is unused.
    "dataloader_pin_memory": torch.cuda.is_available(),
}


@dataclass
class ModelArguments:
    """Which model to start from: a folder or Hub id (`--model_name_or_path`), or a preset trained from scratch."""

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
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow code from the checkpoint's repository."})


@dataclass
class DataTrainingArguments:
    """Which data: a Hub dataset, image folders, or (with neither) scikit-learn's digits; plus the training recipe."""

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
    label_smoothing: float = field(default=0.1, metadata={"help": "Label smoothing (paper 0.1)."})
    num_demo_images: int = field(
        default=10, metadata={"help": "Held-out images classified by the reloaded model at the end."}
    )

    def __post_init__(self):
        if self.dataset_name is not None and (self.train_dir is not None or self.validation_dir is not None):
            raise ValueError("give either --dataset_name or --train_dir/--validation_dir, not both")
        for name in ("mixup", "cutmix", "random_erasing", "label_smoothing"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise ValueError(f"--min_crop_scale must be in (0, 1], got {self.min_crop_scale}")


def make_parser() -> HfArgumentParser:
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    parser.set_defaults(**TRAINING_DEFAULTS)
    return parser


def parse_arguments(argv: list[str] | None = None):
    """(model_args, data_args, training_args) from argv (default sys.argv[1:]) or from one JSON file."""
    argv = sys.argv[1:] if argv is None else argv
    parser = make_parser()
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)
