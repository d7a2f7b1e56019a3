"""The torch Dataset over a SegmentationSplit, its collator, and the metrics glue for transformers.Trainer."""

import numpy as np
import torch
from torch.nn import functional as F

from ..metrics import load_metric
from ..common import EpochSeededDataset
from .data import SegmentationSplit


class SegmentationDataset(EpochSeededDataset):
    """Items {"pixel_values": (3, H, W) float, "labels": (H, W) int64}, decoded and transformed when read."""

    def __init__(self, split: SegmentationSplit, transform, seed: int = 0):
        super().__init__(len(split), seed)
        self.split, self.transform = split, transform

    def __getitem__(self, index: int) -> dict:
        pixel_values, labels = self.transform(self.split.images[index], self.split.label_maps[index],
                                              self.generator(index))
        return {"pixel_values": pixel_values, "labels": labels}


def collate_segmentation(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.stack([example["labels"] for example in examples]),
    }


def predicted_label_maps(logits, labels) -> torch.Tensor:
    """`preprocess_logits_for_metrics`: logits upsampled to the labels' size and argmaxed, so evaluation keeps one
    int map per image instead of every class score."""
    logits = logits[0] if isinstance(logits, (tuple, list)) else logits
    return F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False).argmax(1)


def compute_metrics_fn(label_names: list[str], ignore_index: int = 255):
    """A `compute_metrics` for Trainer: mean IoU, mean and overall accuracy, and per-class IoU ("iou_<name>")."""
    mean_iou = load_metric("mean_iou")

    def compute_metrics(eval_prediction) -> dict[str, float]:
        predictions = np.asarray(eval_prediction.predictions)
        references = np.asarray(eval_prediction.label_ids)
        results = mean_iou.compute(
            predictions=list(predictions), references=list(references), num_labels=len(label_names),
            ignore_index=ignore_index,
        )
        metrics = {key: results[key] for key in ("mean_iou", "mean_accuracy", "overall_accuracy")}
        for name, value in zip(label_names, results["per_category_iou"]):
            metrics[f"iou_{name}"] = float(value)
        return metrics

    return compute_metrics
