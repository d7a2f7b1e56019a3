"""COCO mAP of a detector on a split, through torchmetrics' MeanAveragePrecision (pycocotools' COCOeval inside)."""

import torch

from ..common import open_image


def coco_targets(annotation: dict) -> dict[str, torch.Tensor]:
    """A COCO-style annotation as torchmetrics' target: boxes in absolute (x_min, y_min, x_max, y_max)."""
    boxes = torch.tensor([a["bbox"] for a in annotation["annotations"]], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    labels = torch.tensor([a["category_id"] for a in annotation["annotations"]], dtype=torch.long)
    return {"boxes": boxes, "labels": labels}


@torch.no_grad()
def mean_average_precision(model, processor, split, batch_size: int = 16, threshold: float = 0.0) -> dict:
    """mAP@[.5:.95], mAP@.5 and mAP@.75 (keys map, map_50, map_75) of `model` on `split`, boxes post-processed
    to each image's own size by the processor."""
    model.eval()
    detections = []
    for start in range(0, len(split), batch_size):
        images = [open_image(source) for source in split.images[start : start + batch_size]]
        inputs = processor(images=images, return_tensors="pt")
        outputs = model(pixel_values=inputs["pixel_values"].to(model.device))
        sizes = [image.size[::-1] for image in images]
        batch = processor.post_process_object_detection(outputs, threshold=threshold, target_sizes=sizes)
        detections.extend({key: d[key].cpu() for key in ("boxes", "scores", "labels")} for d in batch)
    return coco_map(detections, split.annotations)


def coco_map(detections: list[dict], annotations: list[dict]) -> dict:
    """COCO mAP of detections ({"boxes" xyxy, "scores", "labels"} per image) against COCO-style annotations."""
    from torchmetrics.detection import MeanAveragePrecision

    if len(detections) != len(annotations):
        raise ValueError(f"{len(detections)} images of detections for {len(annotations)} annotated images")
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
    metric.update(detections, [coco_targets(annotation) for annotation in annotations])
    results = metric.compute()
    return {key: float(results[key]) for key in ("map", "map_50", "map_75")}
