"""Command-line arguments of scripts/train_segmentation.py, in the layout of transformers'
run_semantic_segmentation.py example: model and data dataclasses plus transformers.TrainingArguments."""

import sys
from dataclasses import dataclass, field

import torch
from transformers import HfArgumentParser

from ..classification.arguments import RunTrainingArguments
from ..common import parse_command_line

# The label id a label map marks pixels to ignore with: no class may have it.
IGNORE_INDEX = 255
# TrainingArguments defaults both dense scripts share (the command line overrides each one).
DENSE_TRAINING_DEFAULTS = {
    "do_train": True,
    "do_eval": True,
    "optim": "adamw_torch",
    "weight_decay": 1e-4,
    "warmup_steps": 0.05,  # a float below 1 is a fraction of all steps (transformers v5)
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
# This script's own: the paper's optimiser and schedule (AdamW; mmsegmentation's "poly": polynomial decay with power
# 0.9), at a learning rate and length that make the bare command train the generated-shapes demo in a few minutes on
# two CPU cores. The paper's own recipe: --learning_rate 2e-4 --weight_decay 1e-4 --lr_scheduler_type polynomial
# --max_steps 40000 --per_device_train_batch_size 4 (on 8 GPUs: 32 images) --crop_size 512 --image_size 512.
TRAINING_DEFAULTS = {
    **DENSE_TRAINING_DEFAULTS,
    "output_dir": "outputs/poolformer-semantic-fpn-shapes",
    "num_train_epochs": 40,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 32,
    "learning_rate": 2e-3,
    "lr_scheduler_type": "polynomial",
    "lr_scheduler_kwargs": {"power": 0.9, "lr_end": 0.0},
}


@dataclass
class SegmentationModelArguments:
    head: str = field(default="semantic_fpn", metadata={"help": "semantic_fpn (the paper's) or upernet."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A saved segmentation model to fine-tune, or any PoolFormer checkpoint (e.g. an ImageNet "
                          "classifier) whose weights start the backbone."},
    )
    preset: str | None = field(default=None, metadata={"help": "Backbone preset trained from scratch."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models and datasets are stored."})
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of the checkpoint."})


@dataclass
class SegmentationDataArguments:
    dataset_name: str | None = field(
        default=None, metadata={"help": "A Hub dataset with image and annotation columns, e.g. scene_parse_150."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    train_dir: str | None = field(default=None, metadata={"help": "Folder with images/ and annotations/ (PNG ids)."})
    validation_dir: str | None = field(default=None, metadata={"help": "Validation folder, same layout."})
    num_labels: int | None = field(
        default=None, metadata={"help": "Number of classes (after --reduce_labels); needed for folders/Hub data."}
    )
    reduce_labels: bool = field(
        default=False, metadata={"help": "0 is 'other' (ignored) and ids shift down by one, as ADE20K needs."}
    )
    validation_fraction: float = field(default=0.15, metadata={"help": "Held out of train without a validation set."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only this many training pairs."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only this many validation pairs."})
    image_size: int | None = field(
        default=None, metadata={"help": "Base (short-side) size and eval size (default: the data's, else 512)."}
    )
    crop_size: int | None = field(default=None, metadata={"help": "Training crop (default: --image_size)."})
    min_scale: float | None = field(
        default=None, metadata={"help": "Smallest random rescale ratio (default: the paper's 0.5; 0.75 for the "
                                        "generated demo, whose small shapes vanish at half size)."})
    max_scale: float | None = field(
        default=None, metadata={"help": "Largest random rescale ratio (default: the paper's 2.0; 1.25 for the demo)."})
    horizontal_flip: bool = field(default=True, metadata={"help": "Random horizontal flips (paper: on)."})
    generated_train_size: int = field(default=512, metadata={"help": "Scenes of the generated demo's train split."})
    generated_validation_size: int = field(default=128, metadata={"help": "Scenes of its validation split."})

    def __post_init__(self):
        if self.dataset_name is not None and (self.train_dir is not None or self.validation_dir is not None):
            raise ValueError("give either --dataset_name or --train_dir/--validation_dir, not both")
        generated = self.dataset_name is None and self.train_dir is None
        self.min_scale = self.min_scale if self.min_scale is not None else (0.75 if generated else 0.5)
        self.max_scale = self.max_scale if self.max_scale is not None else (1.25 if generated else 2.0)
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(f"need 0 < --min_scale <= --max_scale, got {self.min_scale} and {self.max_scale}")
        if self.num_labels is not None and not 1 <= self.num_labels <= IGNORE_INDEX:
            raise ValueError(f"--num_labels must be in [1, {IGNORE_INDEX}] (class ids 0 … num_labels-1; id "
                             f"{IGNORE_INDEX} marks ignored pixels), got {self.num_labels}")
        for name in ("max_train_samples", "max_eval_samples", "generated_train_size", "generated_validation_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1 (a split needs an image), got {getattr(self, name)}")


def parse_with_defaults(dataclass_types: tuple, defaults: dict, argv: list[str] | None = None):
    """The dataclasses parsed from argv (default sys.argv[1:]) or from one JSON file, `defaults` applied first."""
    argv = sys.argv[1:] if argv is None else argv
    return parse_command_line(HfArgumentParser(dataclass_types), defaults, argv)


def parse_arguments(argv: list[str] | None = None):
    """(model_args, data_args, training_args) of scripts/train_segmentation.py; the training arguments are
    classification's (TrainingArguments plus --overwrite_output_dir): a run refuses a folder holding a previous run."""
    return parse_with_defaults((SegmentationModelArguments, SegmentationDataArguments, RunTrainingArguments),
                               TRAINING_DEFAULTS, argv)
