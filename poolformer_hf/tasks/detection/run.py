"""The detection run behind scripts/train_detection.py: data (COCO files or the generated shapes), a detector on a
PoolFormer backbone, Trainer, COCO mAP on the validation split, a saved folder that is reloaded and evaluated."""

import logging
from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainingArguments, set_seed

from ..common import DatasetEpoch, EpochSeededDataset, open_image, setup_logging
from ..segmentation.arguments import DENSE_TRAINING_DEFAULTS, parse_with_defaults
from .data import DetectionData, generated_shapes, load_coco
from .metrics import mean_average_precision
from .model import DETECTORS, build_detection_model, build_detection_processor

logger = logging.getLogger(__name__)
# The demo's scenes: at 64² RT-DETR's stride 8–32 maps are 8² to 2² cells.
GENERATED_IMAGE_SIZE = 128

# This script's TrainingArguments defaults: AdamW with a cosine schedule, sized so the bare command trains the
# generated-shapes demo in a few minutes on one CPU core (README, Detection: what was tried).
TRAINING_DEFAULTS = {
    **DENSE_TRAINING_DEFAULTS,
    "output_dir": "outputs/poolformer-rt-detr-shapes",
    "num_train_epochs": 12,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 32,
    "learning_rate": 1e-3,
    "max_grad_norm": 0.1,
    "lr_scheduler_type": "cosine",
    "eval_do_concat_batches": False,
}


@dataclass
class DetectionArguments:
    detector: str = field(default="rt_detr", metadata={"help": f"One of {list(DETECTORS)}."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved detector, or any PoolFormer checkpoint whose weights start the "
                                        "backbone (e.g. an ImageNet classifier)."})
    preset: str | None = field(default=None, metadata={"help": "Backbone preset trained from scratch."})
    train_annotation_file: str | None = field(default=None, metadata={"help": "COCO instances JSON (train)."})
    train_image_dir: str | None = field(default=None, metadata={"help": "Folder of the train images."})
    validation_annotation_file: str | None = field(default=None, metadata={"help": "COCO JSON (validation)."})
    validation_image_dir: str | None = field(default=None, metadata={"help": "Folder of the validation images."})
    image_size: int | None = field(default=None, metadata={"help": "Square input size (default: data's, else 640)."})
    horizontal_flip: bool = field(default=True, metadata={"help": "Random horizontal flips in training."})
    generated_train_size: int = field(default=512, metadata={"help": "Scenes of the generated demo's train split."})
    generated_validation_size: int = field(default=64, metadata={"help": "Scenes of its validation split."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where downloaded models are stored."})


def flip_annotation(annotation: dict, width: int) -> dict:
    """The annotation of the horizontally flipped image."""
    flipped = [{**a, "bbox": [width - a["bbox"][0] - a["bbox"][2], *a["bbox"][1:]]} for a in annotation["annotations"]]
    return {**annotation, "annotations": flipped}


class DetectionDataset(EpochSeededDataset):
    """Items {"pixel_values", "labels": {"class_labels", "boxes" (normalized cx, cy, w, h), ...}} from the detector's
    processor; with `flip`, an item is flipped by a draw of its (seed, epoch, index) generator."""

    def __init__(self, split, processor, flip: bool = False, seed: int = 0):
        super().__init__(len(split), seed)
        self.split, self.processor, self.flip = split, processor, flip

    def __getitem__(self, index: int) -> dict:
        image, annotation = open_image(self.split.images[index]), self.split.annotations[index]
        if self.flip and torch.rand((), generator=self.generator(index)).item() < 0.5:
            image, annotation = image.transpose(0), flip_annotation(annotation, image.width)  # 0: FLIP_LEFT_RIGHT
        out = self.processor(images=image, annotations=annotation, return_tensors="pt")
        return {"pixel_values": out["pixel_values"][0], "labels": out["labels"][0]}


def collate_detection(examples: list[dict]) -> dict:
    return {"pixel_values": torch.stack([e["pixel_values"] for e in examples]),
            "labels": [e["labels"] for e in examples]}


def build_data(args) -> DetectionData:
    if args.train_annotation_file is None:
        return generated_shapes(args.generated_train_size, args.generated_validation_size,
                                args.image_size or GENERATED_IMAGE_SIZE)
    if None in (args.train_image_dir, args.validation_annotation_file, args.validation_image_dir):
        raise ValueError("COCO data needs --train_annotation_file, --train_image_dir, --validation_annotation_file "
                         "and --validation_image_dir")
    train, category_ids, names = load_coco(args.train_annotation_file, args.train_image_dir, "train")
    validation, _, _ = load_coco(args.validation_annotation_file, args.validation_image_dir, "validation",
                                 category_ids)
    return DetectionData(train, validation, names, "coco-format")


def run(args, training_args, callbacks=None) -> dict:
    """Train and/or evaluate; returns the final metrics (train_*, eval_loss, eval_map*, reloaded_map)."""
    setup_logging(training_args)
    set_seed(training_args.seed)
    data = build_data(args)
    image_size = args.image_size or data.image_size or 640
    model = build_detection_model(args.detector, data.label_names, preset=args.preset,
                                  model_name_or_path=args.model_name_or_path, cache_dir=args.cache_dir)
    processor = build_detection_processor(args.detector, image_size)
    logger.info("model: %s, %d parameters; images at %d px", type(model).__name__, model.num_parameters(), image_size)
    train_dataset = DetectionDataset(data.train, processor, flip=args.horizontal_flip, seed=training_args.seed)
    trainer = Trainer(
        model=model, args=training_args, train_dataset=train_dataset,
        eval_dataset=DetectionDataset(data.validation, processor), data_collator=collate_detection,
        processing_class=processor, callbacks=[DatasetEpoch(train_dataset), *(callbacks or [])],
    )
    metrics = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
        trainer.save_state()
        metrics.update(result.metrics)
    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        eval_metrics.update({f"eval_{k}": v for k, v in mean_average_precision(unwrapped, processor,
                                                                               data.validation).items()})
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    if training_args.do_train and trainer.is_world_process_zero():
        metrics["reloaded_map"] = _reloaded_map(training_args.output_dir, args.detector, data)
    return metrics


def _reloaded_map(output_dir: str, detector: str, data: DetectionData) -> float:
    """Reload the saved folder as a user would and measure its mAP again (the same number, or saving lost
    something)."""
    import transformers

    model = getattr(transformers, DETECTORS[detector].model_class).from_pretrained(output_dir)
    processor = transformers.AutoImageProcessor.from_pretrained(output_dir)
    result = mean_average_precision(model, processor, data.validation)["map"]
    print(f"\nReloaded {output_dir}; validation mAP@[.5:.95] {result:.4f}")
    return result


def main(argv: list[str] | None = None) -> dict:
    return run(*parse_with_defaults((DetectionArguments, TrainingArguments), TRAINING_DEFAULTS, argv))
