"""COCO mAP of a detector on a split (boxes, and masks for instance segmentation), with each class's AP, through
torchmetrics' MeanAveragePrecision (pycocotools' COCOeval inside)."""

import torch

from ..common import open_image

# The summary numbers reported per IoU type (torchmetrics' names, COCOeval's first six).
SUMMARY_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")


def coco_targets(annotation: dict, masks=None) -> dict[str, torch.Tensor]:
    """A COCO-style annotation as torchmetrics' target: boxes in absolute (x_min, y_min, x_max, y_max), crowd flags
    (COCOeval ignores detections matched to crowd regions) and areas (its small / medium / large split); `masks`
    (objects, H, W), where given, for the mask AP."""
    objects = annotation["annotations"]
    boxes = torch.tensor([a["bbox"] for a in objects], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    target = {"boxes": boxes, "labels": torch.tensor([a["category_id"] for a in objects], dtype=torch.long),
              "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in objects], dtype=torch.long),
              "area": torch.tensor([float(a.get("area", 0.0)) for a in objects], dtype=torch.float32)}
    if masks is not None:
        target["masks"] = torch.as_tensor(masks).bool()
    return target


class CocoEvaluation:
    """COCO evaluation fed batch by batch (masks are run-length encoded as they come, so a split's masks never sit
    in memory at once). `compute()` gives map, map_50, map_75, map_small/medium/large and `ap_<class name>` for the
    boxes, and the same prefixed `segm_` for the masks when `masks`; a class without ground truth has AP -1, as in
    COCOeval."""

    def __init__(self, label_names: list[str] | None = None, masks: bool = False):
        from torchmetrics.detection import MeanAveragePrecision

        self.label_names, self.iou_types = label_names, ("bbox", "segm") if masks else ("bbox",)
        # extended_summary: the precision array COCOeval accumulates, from which each class's AP is read.
        self.metric = MeanAveragePrecision(box_format="xyxy", iou_type=self.iou_types, extended_summary=True)
        self.images = 0

    def update(self, detections: list[dict], targets: list[dict]) -> None:
        """Detections ({"boxes" xyxy, "scores", "labels"[, "masks" (N, H, W) bool]}) and targets (`coco_targets`)
        of the same images."""
        if len(detections) != len(targets):
            raise ValueError(f"{len(detections)} images of detections for {len(targets)} annotated images")
        self.metric.update(detections, targets)
        self.images += len(targets)

    def compute(self) -> dict[str, float]:
        results = self.metric.compute()
        classes = [int(c) for c in torch.as_tensor(results["classes"]).reshape(-1).tolist()]
        metrics = {}
        for iou_type in self.iou_types:
            source = f"{iou_type}_" if f"{iou_type}_map" in results else ""
            target = "" if iou_type == "bbox" else f"{iou_type}_"
            metrics.update({f"{target}{key}": float(results[f"{source}{key}"]) for key in SUMMARY_KEYS})
            if self.label_names is not None:
                per_class = _per_class_ap(results[f"{source}precision"], classes)
                metrics.update({f"{target}ap_{name}": per_class.get(index, -1.0)
                                for index, name in enumerate(self.label_names)})
        return metrics


def _per_class_ap(precision: torch.Tensor, classes: list[int]) -> dict[int, float]:
    """AP@[.5:.95] of each class from COCOeval's precision array (IoU, recall, class, area, max detections): the
    mean over IoU thresholds and recall points, all areas, 100 detections; -1 where the class has no ground truth."""
    result = {}
    for index, label in enumerate(classes):
        values = precision[:, :, index, 0, -1]
        values = values[values > -1]
        result[label] = float(values.mean()) if values.numel() else -1.0
    return result


def coco_map(detections: list[dict], annotations: list[dict], label_names: list[str] | None = None) -> dict:
    """COCO box mAP of detections ({"boxes" xyxy, "scores", "labels"} per image) against COCO-style annotations."""
    evaluation = CocoEvaluation(label_names)
    evaluation.update(detections, [coco_targets(annotation) for annotation in annotations])
    return evaluation.compute()


@torch.no_grad()
def mean_average_precision(model, processor, split, batch_size: int = 16, threshold: float = 0.0,
                           label_names: list[str] | None = None) -> dict:
    """COCO box mAP (keys of `CocoEvaluation`) of a transformers detector on `split`, boxes post-processed to each
    image's own size by the processor."""
    model.eval()
    evaluation = CocoEvaluation(label_names)
    for start in range(0, len(split), batch_size):
        images = [open_image(source) for source in split.images[start : start + batch_size]]
        inputs = processor(images=images, return_tensors="pt")
        outputs = model(pixel_values=inputs["pixel_values"].to(model.device))
        sizes = [image.size[::-1] for image in images]
        batch = processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes)
        evaluation.update([{key: d[key].cpu() for key in ("boxes", "scores", "labels")} for d in batch],
                          [coco_targets(annotation) for annotation in split.annotations[start : start + batch_size]])
    return evaluation.compute()
