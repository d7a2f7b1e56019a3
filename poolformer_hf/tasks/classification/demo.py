"""The end of a run: reload the saved folder with from_pretrained and classify a few held-out images."""

import torch

from ..common import open_image
from .splits import ImageSplit


def classify_split(model, image_processor, split: ImageSplit, limit: int | None = None) -> list[dict]:
    """One row per image: predicted and true label names and the predicted probability."""
    count = len(split) if limit is None else min(limit, len(split))
    images = [open_image(split.images[i]) for i in range(count)]
    if not images:
        return []
    model.eval()
    with torch.no_grad():
        logits = model(**image_processor(images, return_tensors="pt")).logits
    probabilities = logits.float().softmax(dim=-1)
    id2label = model.config.id2label
    return [
        {
            "index": i,
            "predicted": id2label[int(probabilities[i].argmax())],
            "probability": float(probabilities[i].max()),
            "truth": id2label[split.labels[i]],
        }
        for i in range(count)
    ]


def format_predictions(rows: list[dict]) -> str:
    lines = [f"{'image':>5}  {'predicted':>12}  {'p':>5}  {'truth':>12}"]
    for row in rows:
        mark = "ok" if row["predicted"] == row["truth"] else "WRONG"
        lines.append(f"{row['index']:>5}  {row['predicted']:>12}  {row['probability']:.2f}  {row['truth']:>12}  {mark}")
    correct = sum(row["predicted"] == row["truth"] for row in rows)
    lines.append(f"{correct}/{len(rows)} held-out images classified correctly")
    return "\n".join(lines)
