"""Training and evaluating the torchvision detectors (`torchvision_detectors`) with transformers' Trainer: the
detector a run starts from, their dataset and collator, a Trainer that takes torchvision's loss dict, evaluates COCO mAP (boxes, and masks for Mask
R-CNN) and saves detector folders, and mmdetection's step schedule."""

import logging
import math
from fractions import Fraction

import numpy as np
import torch
from torch import nn
from transformers import Trainer

from ..common import EpochSeededDataset, open_image
from .data import DetectionSplit, annotation_masks
from .metrics import CocoEvaluation, coco_targets
from .model import DEMO_BACKBONE
from .saved_detectors import find_detector_folder, load_detector, write_detector_files
from .torchvision_detectors import (
    DetectorConfig,
    TorchvisionDetector,
    backbone_dict,
    build_torchvision_detector,
    input_sizes,
    torchvision_detector,
)

logger = logging.getLogger(__name__)

# mmdetection's 1x schedule: linear warm-up from 0.001 of the learning rate, then ×0.1 after epochs 8 and 11 of 12.
WARMUP_START = 0.001
DECAY_FACTOR = 0.1
PAPER_DECAY_AT = "8/12,11/12"


def new_torchvision_detector(detector: str, label_names: list[str], preset: str | None = None,
                             model_name_or_path: str | None = None, image_size: int | None = None,
                             **loading) -> nn.Module:
    """A torchvision detector for `label_names`: fine-tuned from a saved detector (`load_detector`'s folders; its
    class-specific layers start new when the labels differ), or new on a backbone that is a PoolFormer checkpoint's
    (e.g. an ImageNet classifier, as the paper starts), a preset's (random), or the demo's small one."""
    from ... import PoolFormerBackbone, PoolFormerConfig

    spec = torchvision_detector(detector)
    sizes = input_sizes(image_size)
    if model_name_or_path is not None:
        if preset is not None:
            raise ValueError("--preset builds a new model; do not combine it with --model_name_or_path")
        if find_detector_folder(model_name_or_path) is not None:
            return _relabelled(load_detector(model_name_or_path), detector, label_names, sizes)
        backbone = PoolFormerBackbone.from_pretrained(model_name_or_path, out_features=list(spec.out_features),
                                                      **loading)
        config = DetectorConfig(detector, list(label_names), backbone_dict(backbone.config), **sizes)
        return build_torchvision_detector(config, backbone.state_dict())
    demo = preset is None
    backbone_config = PoolFormerConfig.from_preset(preset or "poolformer_s12", **(DEMO_BACKBONE if demo else {}))
    config = DetectorConfig(detector, list(label_names), backbone_dict(backbone_config), **sizes,
                            **(spec.demo if demo else {}))
    return build_torchvision_detector(config)


def _relabelled(model: nn.Module, detector: str, label_names: list[str], sizes: dict) -> nn.Module:
    """A saved detector for this run: the same when its labels are `label_names`; otherwise rebuilt for them with
    every weight whose shape still fits copied over (the class-specific output layers start new)."""
    config = model.detector_config
    if config.detector != detector:
        raise ValueError(f"--model_name_or_path is a saved {config.detector}, but --detector is {detector}")
    wanted = DetectorConfig.from_dict({**config.to_dict(), "label_names": list(label_names), **sizes})
    if wanted == config:
        return model
    new = build_torchvision_detector(wanted)
    state = new.state_dict()
    kept = {k: v for k, v in model.state_dict().items() if k in state and state[k].shape == v.shape}
    new.load_state_dict(kept, strict=False)
    logger.info("fine-tuning a saved %s for %d labels: %d of %d tensors loaded, the rest new", detector,
                len(label_names), len(kept), len(state))
    return new


def read_image(split: DetectionSplit, index: int):
    """Image `index` of `split`, refused (one line, naming it) where it is not the size its annotation file says."""
    image = open_image(split.images[index])
    if split.image_sizes is not None and tuple(image.size) != tuple(split.image_sizes[index]):
        width, height = split.image_sizes[index]
        raise ValueError(f"{split.name} image {split.annotations[index]['image_id']} ({split.images[index]}) is "
                         f"{image.width}×{image.height}, but its annotation file says {width}×{height}")
    return image


def image_tensor(image) -> torch.Tensor:
    """(3, H, W) float in [0, 1]: what torchvision's detectors take (they normalize and resize themselves)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)


def training_target(annotation: dict, width: int, height: int, spec: TorchvisionDetector) -> dict:
    """torchvision's target of an image: boxes (x_min, y_min, x_max, y_max), labels (1…K where the detector keeps 0
    for the background) and, for Mask R-CNN, masks (objects, H, W). Crowd regions are left out, as torchvision's
    and mmdetection's COCO training do."""
    kept = {**annotation, "annotations": [a for a in annotation["annotations"] if not a.get("iscrowd", 0)]}
    target = coco_targets(kept)
    target = {"boxes": target["boxes"], "labels": target["labels"] + int(spec.background_class)}
    if spec.masks:
        target["masks"] = torch.from_numpy(annotation_masks(kept, height, width))
    return target


def flip_target(target: dict, width: int) -> dict:
    """The target of the horizontally flipped image."""
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    flipped = {**target, "boxes": boxes}
    if "masks" in target:
        flipped["masks"] = target["masks"].flip(-1)
    return flipped


class TorchvisionDetectionDataset(EpochSeededDataset):
    """Items {"image": (3, H, W) float in [0, 1], "target": torchvision's target}; with `flip`, an item is flipped by
    a draw of its (seed, epoch, index) generator."""

    def __init__(self, split: DetectionSplit, detector: str, flip: bool = False, seed: int = 0):
        super().__init__(len(split), seed)
        self.split, self.spec, self.flip = split, torchvision_detector(detector), flip

    def __getitem__(self, index: int) -> dict:
        image = read_image(self.split, index)
        target = training_target(self.split.annotations[index], image.width, image.height, self.spec)
        pixels = image_tensor(image)
        if self.flip and torch.rand((), generator=self.generator(index)).item() < 0.5:
            pixels, target = pixels.flip(-1), flip_target(target, image.width)
        return {"image": pixels, "target": target}


def collate_torchvision(examples: list[dict]) -> dict:
    """A batch as torchvision's detectors take it: lists, the images at their own sizes."""
    return {"images": [e["image"] for e in examples], "targets": [e["target"] for e in examples]}


@torch.no_grad()
def evaluate_detector(model, split: DetectionSplit, batch_size: int = 8, device=None) -> dict[str, float]:
    """COCO mAP (`CocoEvaluation`'s keys: boxes, plus segm_* for Mask R-CNN, each class's AP) of a torchvision
    detector on `split`, at each image's own size."""
    config = model.detector_config
    spec = torchvision_detector(config.detector)
    device = device if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    evaluation = CocoEvaluation(config.label_names, masks=spec.masks)
    for start in range(0, len(split), batch_size):
        indices = range(start, min(start + batch_size, len(split)))
        images = [read_image(split, index) for index in indices]
        outputs = model([image_tensor(image).to(device) for image in images])
        detections, targets = [], []
        for index, image, output in zip(indices, images, outputs):
            detection = {"boxes": output["boxes"].cpu(), "scores": output["scores"].cpu(),
                         "labels": output["labels"].cpu() - int(spec.background_class)}
            annotation = split.annotations[index]
            masks = None
            if spec.masks:
                detection["masks"] = output["masks"][:, 0].cpu() > 0.5  # pasted at the image's size: probabilities
                masks = annotation_masks(annotation, image.height, image.width)
            detections.append(detection)
            targets.append(coco_targets(annotation, masks))
        evaluation.update(detections, targets)
    model.train(was_training)
    return evaluation.compute()


def decay_points(value: str | None) -> list[float]:
    """--lr_decay_at: comma-separated fractions of the run in (0, 1) ("0.75" or "8/12"), ascending; empty or "none"
    for none."""
    if value is None or value.strip().lower() in ("", "none"):
        return []
    try:
        points = [float(Fraction(part.strip())) for part in value.split(",")]
    except ValueError:
        raise ValueError(f"--lr_decay_at must be comma-separated fractions of the run, got {value!r}") from None
    if any(not 0 < p < 1 for p in points) or points != sorted(points):
        raise ValueError(f"--lr_decay_at must be ascending fractions of the run between 0 and 1, got {value!r}")
    return points


def step_schedule(optimizer, warmup_steps: int, total_steps: int, decay_at: list[float]):
    """mmdetection's step schedule: linear warm-up from WARMUP_START of the learning rate over `warmup_steps`, then
    ×DECAY_FACTOR at each fraction `decay_at` of `total_steps`."""
    boundaries = [math.ceil(point * total_steps - 1e-6) for point in decay_at]  # 8/12 of 12 steps: step 8

    def factor(step: int) -> float:
        warm = WARMUP_START + (1 - WARMUP_START) * step / warmup_steps if step < warmup_steps else 1.0
        return warm * DECAY_FACTOR ** sum(step >= boundary for boundary in boundaries)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class TorchvisionDetectionTrainer(Trainer):
    """Trainer for a torchvision detector: the loss is the sum of the losses it returns in training mode;
    `evaluate` is COCO mAP on the evaluation dataset's split (torchvision's detectors give no loss in eval mode);
    checkpoints are detector folders (`load_detector` reads them); with `decay_at`, the learning rate follows
    `step_schedule` (which needs --lr_scheduler_type constant_with_warmup, the schedule it replaces)."""

    def __init__(self, *args, decay_at: list[float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.decay_at = decay_at or []
        if self.decay_at and self.args.lr_scheduler_type != "constant_with_warmup":
            raise ValueError(f"--lr_decay_at steps a constant learning rate down, but --lr_scheduler_type is "
                             f"{self.args.lr_scheduler_type.value}: pass --lr_scheduler_type constant_with_warmup, "
                             "or --lr_decay_at none")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        losses = model(inputs["images"], inputs["targets"])
        loss = sum(losses.values())
        return (loss, losses) if return_outputs else loss

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.decay_at:
            warmup_steps = self.args.get_warmup_steps(num_training_steps)
            self.lr_scheduler = step_schedule(optimizer or self.optimizer, warmup_steps, num_training_steps,
                                              self.decay_at)
            self._created_lr_scheduler = True
        return super().create_scheduler(num_training_steps, optimizer)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        model = self.accelerator.unwrap_model(self.model)
        results = evaluate_detector(model, dataset.split, self.args.per_device_eval_batch_size, self.args.device)
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in results.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if not self.args.should_save:
            return
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        write_detector_files(self.accelerator.unwrap_model(self.model), output_dir, state_dict)
        torch.save(self.args, f"{output_dir}/training_args.bin")
