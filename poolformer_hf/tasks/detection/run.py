"""The detection run behind scripts/train_detection.py: data (COCO files or the generated shapes), a detector on a
PoolFormer backbone (transformers' RT-DETR / DETR / Conditional DETR, or torchvision's RetinaNet / Mask R-CNN with the
paper's necks), Trainer, COCO mAP on the validation split, a saved folder that is reloaded and evaluated; a
torchvision detector's folder records the run's metrics and, with --push_to_hub, goes to the Hub (`hub_detectors`)."""

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainingArguments, set_seed

from ..common import DatasetEpoch, EpochSeededDataset, open_image, setup_logging
from ..segmentation.arguments import DENSE_TRAINING_DEFAULTS, parse_with_defaults
from .data import DetectionData, check_masks, generated_shapes, load_coco
from .metrics import mean_average_precision
from .model import DETECTORS, build_detection_model, build_detection_processor
from .saved_detectors import DETECTOR_FOLDER, load_detector, save_detector, write_detector_results
from .torchvision_detectors import TORCHVISION_DETECTORS, torchvision_detector
from .torchvision_training import (
    PAPER_DECAY_AT,
    TorchvisionDetectionDataset,
    TorchvisionDetectionTrainer,
    collate_torchvision,
    decay_points,
    evaluate_detector,
    new_torchvision_detector,
)

logger = logging.getLogger(__name__)
DETECTOR_NAMES = [*DETECTORS, *TORCHVISION_DETECTORS]
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


def training_defaults(detector: str, demo: bool = False) -> dict:
    """The command-line defaults for `detector`. RetinaNet and Mask R-CNN get the paper's recipe (sail-sg's
    configs on mmdetection's 1x schedule): AdamW at its learning rate and weight decay 1e-4, no gradient clipping,
    12 epochs, the rate ×0.1 after 2/3 and 11/12 of the run (see --lr_decay_at); batch and warm-up are the demo's
    (the paper: 16 images a step on 8 GPUs, 500 warm-up steps). With `demo` (no --train_annotation_file: the
    generated shapes), the detector's `demo_run` defaults replace some of them."""
    if detector not in TORCHVISION_DETECTORS:
        return TRAINING_DEFAULTS
    spec = TORCHVISION_DETECTORS[detector]
    return {
        **DENSE_TRAINING_DEFAULTS,
        "output_dir": f"outputs/poolformer-{detector.replace('_', '-')}-shapes",
        "num_train_epochs": 12,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "learning_rate": spec.learning_rate,
        "weight_decay": spec.weight_decay,
        "max_grad_norm": 0.0,
        "lr_scheduler_type": "constant_with_warmup",
        **(spec.demo_run if demo else {}),
    }


@dataclass
class DetectionArguments:
    detector: str = field(default="rt_detr", metadata={"help": f"One of {DETECTOR_NAMES}."})
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
    drop_degenerate_boxes: bool = field(
        default=False, metadata={"help": "Drop COCO annotations whose box has zero or negative width or height "
                                         "(train2017 has two) instead of refusing the file."})
    lr_decay_at: str | None = field(
        default=None, metadata={"help": "retinanet / mask_rcnn: fractions of the run after which the learning rate "
                                        f"is ×0.1 (default {PAPER_DECAY_AT}: mmdetection's 1x, epochs 8 and 11 of "
                                        "12; 'none' for no steps)."})
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


def build_data(args, masks: bool = False) -> DetectionData:
    """The run's data; with `masks`, every object must carry a segmentation (checked before training)."""
    if args.train_annotation_file is None:
        return generated_shapes(args.generated_train_size, args.generated_validation_size,
                                args.image_size or GENERATED_IMAGE_SIZE)
    if None in (args.train_image_dir, args.validation_annotation_file, args.validation_image_dir):
        raise ValueError("COCO data needs --train_annotation_file, --train_image_dir, --validation_annotation_file "
                         "and --validation_image_dir")
    drop = args.drop_degenerate_boxes
    train, category_ids, names = load_coco(args.train_annotation_file, args.train_image_dir, "train",
                                           drop_degenerate_boxes=drop)
    validation, _, _ = load_coco(args.validation_annotation_file, args.validation_image_dir, "validation",
                                 category_ids, drop_degenerate_boxes=drop)
    if masks:
        check_masks(train, args.train_annotation_file)
        check_masks(validation, args.validation_annotation_file)
    return DetectionData(train, validation, names, "coco-format")


def run(args, training_args, callbacks=None) -> dict:
    """Train and/or evaluate; returns the final metrics (train_*, eval_loss (transformers' detectors), eval_map*,
    eval_ap_<class>, eval_segm_* (Mask R-CNN), reloaded_map)."""
    setup_logging(training_args)
    set_seed(training_args.seed)
    if args.detector not in DETECTOR_NAMES:
        raise ValueError(f"unknown detector {args.detector!r}; expected one of {DETECTOR_NAMES}")
    if args.detector in TORCHVISION_DETECTORS:
        return _run_torchvision(args, training_args, callbacks)
    if args.lr_decay_at is not None:
        raise ValueError(f"--lr_decay_at is for {list(TORCHVISION_DETECTORS)}; {args.detector} follows "
                         "--lr_scheduler_type")
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

    def box_map() -> dict:
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        results = mean_average_precision(unwrapped, processor, data.validation, label_names=data.label_names)
        return {f"eval_{k}": v for k, v in results.items()}

    return _train_evaluate_reload(trainer, training_args, save=trainer.save_model, extra_eval=box_map,
                                  reloaded_map=lambda: _reloaded_map(training_args.output_dir, args.detector, data))


def _train_evaluate_reload(trainer, training_args, save, reloaded_map, extra_eval=None) -> dict:
    """Train (then `save()`), evaluate (Trainer's metrics, plus `extra_eval()`'s), and after training measure the
    saved folder again (`reloaded_map()`); returns the metrics."""
    metrics = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        save()
        trainer.save_state()
        metrics.update(result.metrics)
    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        eval_metrics.update(extra_eval() if extra_eval is not None else {})
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    if training_args.do_train and trainer.is_world_process_zero():
        metrics["reloaded_map"] = reloaded_map()
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


def _run_torchvision(args, training_args, callbacks=None) -> dict:
    """The run for torchvision's RetinaNet / Mask R-CNN: their own datasets and Trainer, the detector saved as
    `<output_dir>/detector` (atomically), reloaded with `load_detector` and measured again."""
    spec = torchvision_detector(args.detector)
    push = _hub_push(training_args)
    data = build_data(args, masks=spec.masks)
    model = new_torchvision_detector(args.detector, data.label_names, preset=args.preset,
                                     model_name_or_path=args.model_name_or_path,
                                     image_size=args.image_size or data.image_size, cache_dir=args.cache_dir)
    config = model.detector_config
    logger.info("model: torchvision %s, %d parameters; images resized to a short side of %d px (long side at most "
                "%d)", type(model).__name__, sum(p.numel() for p in model.parameters()), config.min_size,
                config.max_size)
    train_dataset = TorchvisionDetectionDataset(data.train, args.detector, flip=args.horizontal_flip,
                                                seed=training_args.seed)
    decay_at = decay_points(PAPER_DECAY_AT if args.lr_decay_at is None else args.lr_decay_at)
    trainer = TorchvisionDetectionTrainer(
        model=model, args=training_args, train_dataset=train_dataset,
        eval_dataset=TorchvisionDetectionDataset(data.validation, args.detector), data_collator=collate_torchvision,
        callbacks=[DatasetEpoch(train_dataset), *(callbacks or [])], decay_at=decay_at,
    )
    folder = os.path.join(training_args.output_dir, DETECTOR_FOLDER)

    def save() -> None:
        if trainer.is_world_process_zero():
            save_detector(trainer.accelerator.unwrap_model(trainer.model), folder)

    def reloaded_map() -> float:
        reloaded = evaluate_detector(load_detector(folder), data.validation, training_args.per_device_eval_batch_size)
        masks = f", mask mAP {reloaded['segm_map']:.4f}" if "segm_map" in reloaded else ""
        print(f"\nReloaded {folder}; validation mAP@[.5:.95] {reloaded['map']:.4f}{masks}")
        return reloaded["map"]

    metrics = _train_evaluate_reload(trainer, training_args, save, reloaded_map)
    if training_args.do_train and training_args.do_eval and trainer.is_world_process_zero():
        write_detector_results(folder, metrics, _dataset_description(args, data), data.dataset_id,
                               len(data.validation))
    if push is not None and trainer.is_world_process_zero():
        result = push(folder)
        print(f"Pushed {folder} to {result.repo_id}@{result.revision} ({result.commit_url})")
    return metrics


def _hub_push(training_args):
    """For --push_to_hub: a function that publishes the run's detector folder to --hub_model_id (checked now, before
    training), else None. Trainer's own push (the whole output folder, checkpoints included) is turned off."""
    if not training_args.push_to_hub:
        return None
    repo_id = training_args.hub_model_id
    if not repo_id or "/" not in repo_id:
        raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME for a torchvision detector, e.g. "
                         f"--hub_model_id my-name/{os.path.basename(os.path.abspath(training_args.output_dir))}")
    training_args.push_to_hub = False
    from .hub_detectors import push_detector_to_hub

    private = bool(training_args.hub_private_repo)
    return lambda folder: push_detector_to_hub(folder, repo_id, private=private, token=training_args.hub_token)


def _dataset_description(args, data) -> str:
    """What the card says the detector was evaluated on."""
    if data.dataset_id == "generated-shapes":
        return "poolformer_hf's generated shapes, the offline demo"
    return f"COCO-format data ({os.path.basename(args.validation_annotation_file)})"


def _requested(argv: list[str]) -> dict:
    """--detector and --train_annotation_file of a command line (or of its one JSON file), before the full parse
    picks its defaults."""
    if len(argv) == 1 and argv[0].endswith(".json"):
        with open(argv[0], encoding="utf-8") as file:
            values = json.load(file)
        return {"detector": values.get("detector", "rt_detr"),
                "train_annotation_file": values.get("train_annotation_file")}
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--detector", default="rt_detr")
    parser.add_argument("--train_annotation_file", default=None)
    return vars(parser.parse_known_args(argv)[0])


def requested_detector(argv: list[str]) -> str:
    return _requested(argv)["detector"]


def requested_demo(argv: list[str]) -> bool:
    """Whether the command line trains on the generated shapes (it names no --train_annotation_file)."""
    return _requested(argv)["train_annotation_file"] is None


def parse_arguments(argv: list[str]) -> tuple[DetectionArguments, TrainingArguments]:
    """The run's arguments, on the defaults of the detector and data it names."""
    defaults = training_defaults(requested_detector(argv), demo=requested_demo(argv))
    return parse_with_defaults((DetectionArguments, TrainingArguments), defaults, argv)


def main(argv: list[str] | None = None) -> dict:
    return run(*parse_arguments(sys.argv[1:] if argv is None else argv))
