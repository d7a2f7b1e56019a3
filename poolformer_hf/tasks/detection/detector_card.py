"""The model card (README.md) of a saved torchvision detector, for its Hub repo.

Every number in it comes from the folder: the architecture and parameter count from `detector_config.json` (the
detector built on the meta device), the results from the `eval_results.json` its training run wrote after evaluating
these weights (`saved_detectors.write_detector_results`). Without that file the card says that no results were
recorded, rather than quoting any.
"""

from __future__ import annotations

import string

import torch
from huggingface_hub import EvalResult, ModelCardData

from ...hub.model_card import BASELINES_PAPER, POOLFORMER_PAPER, _in_units, describe_architecture
from .torchvision_detectors import DetectorConfig, build_torchvision_detector, torchvision_detector

DISPLAY_NAMES = {"retinanet": "RetinaNet", "mask_rcnn": "Mask R-CNN"}
# Results keys -> (model-index metric type, display name); the per-class APs are listed in the card's table only.
BOX_METRICS = {"eval_map": ("mAP", "box mAP@[.5:.95]"), "eval_map_50": ("mAP@0.5", "box mAP@.5"),
               "eval_map_75": ("mAP@0.75", "box mAP@.75")}
MASK_METRICS = {"eval_segm_map": ("mask_mAP", "mask mAP@[.5:.95]"), "eval_segm_map_50": ("mask_mAP@0.5", "mask mAP@.5"),
                "eval_segm_map_75": ("mask_mAP@0.75", "mask mAP@.75")}

TEMPLATE = string.Template(
    """---
$metadata
---

# $title

$summary

## Model details

- **Detector:** torchvision `$model_class` with the neck of the PoolFormer paper's COCO setup: $neck
- **Backbone:** $backbone
- **Parameters:** $params ($params_exact parameters), counted on this detector.
- **Input:** the detector resizes each image itself, the short side to $min_size px and the long side at most
  $max_size px; it takes float RGB tensors in [0, 1] of any size.
- **Files:** `model.safetensors` (the weights) and `detector_config.json` (the data that rebuilds the detector). No code
  travels with this repo: `load_detector` builds the detector from `poolformer_hf`'s own registry and reads only
  those two files.
$evaluation
## How to use

```python
$usage
```

`poolformer_hf` (with `torch` and `torchvision`) must be installed: this is not a transformers model, and
`from_pretrained` does not load it.

## Citation

```bibtex
$bibtex
```
"""
)


def render_detector_card(config: DetectorConfig, repo_id: str, results: dict | None) -> str:
    """The README.md for the detector `config` describes, published as `repo_id`, with the run's `results`
    (`read_detector_results`'s record, or None)."""
    spec = torchvision_detector(config.detector)
    name = DISPLAY_NAMES.get(config.detector, config.detector)
    with torch.device("meta"):
        params = sum(p.numel() for p in build_torchvision_detector(config).parameters())
    stages = "–".join((spec.out_features[0], spec.out_features[-1]))
    extra = "P6 and P7 by stride-2 convs" if spec.extra_levels == "p6p7" else "a max-pooled fifth level"
    neck = f"an FPN of {config.fpn_channels} channels on {stages}, {extra}"
    if spec.masks:
        neck += f"; the mask head {config.mask_head_channels} wide"
    labels = ", ".join(config.label_names)
    return TEMPLATE.substitute(
        metadata=_metadata(config, repo_id, results).to_yaml(),
        title=repo_id.split("/")[-1],
        summary=(f"A {name} object detector{' with instance masks' if spec.masks else ''} on a PoolFormer "
                 f"(MetaFormer) backbone, trained with `poolformer_hf` (`scripts/train_detection.py`). It detects "
                 f"{len(config.label_names)} classes: {labels}."),
        model_class=spec.model_class,
        neck=neck + ".",
        backbone=describe_architecture(config.backbone_config()),
        params=_in_units(params),
        params_exact=f"{params:,}",
        min_size=config.min_size,
        max_size=config.max_size,
        evaluation=_evaluation_section(config, results),
        usage=_usage(repo_id, config, spec.masks),
        bibtex=f"{POOLFORMER_PAPER.bibtex}\n\n{BASELINES_PAPER.bibtex}",
    )


def _metrics(config: DetectorConfig) -> dict[str, tuple[str, str]]:
    return {**BOX_METRICS, **(MASK_METRICS if torchvision_detector(config.detector).masks else {})}


def _metadata(config: DetectorConfig, repo_id: str, results: dict | None) -> ModelCardData:
    measured = (results or {}).get("metrics", {})
    eval_results = [
        EvalResult(task_type="object-detection", task_name="Object Detection", dataset_type=results["dataset_id"],
                   dataset_name=results["dataset"], metric_type=kind, metric_name=label, metric_value=measured[key])
        for key, (kind, label) in _metrics(config).items() if key in measured
    ] or None
    masks = torchvision_detector(config.detector).masks
    tags = ["poolformer", "metaformer", "object-detection", "torchvision", "vision",
            config.detector.replace("_", "-"), *(["instance-segmentation"] if masks else [])]
    return ModelCardData(library_name="poolformer_hf", pipeline_tag="object-detection", license="apache-2.0",
                         tags=tags, model_name=repo_id.split("/")[-1] if eval_results else None,
                         eval_results=eval_results)


def _evaluation_section(config: DetectorConfig, results: dict | None) -> str:
    if not results or not results.get("metrics"):
        return "\n## Evaluation results\n\nNo evaluation results were recorded with these weights.\n"
    measured = results["metrics"]
    rows = [(label, measured[key]) for key, (_, label) in _metrics(config).items() if key in measured]
    for prefix, kind in (("eval_ap_", "box"), ("eval_segm_ap_", "mask")):
        rows += [(f"{kind} AP {name}", measured[f"{prefix}{name}"]) for name in config.label_names
                 if f"{prefix}{name}" in measured]
    table = "\n".join(f"| {label} | {value:.4f} |" for label, value in rows)
    return f"""
## Evaluation results

Measured by the training run that produced these weights on {results["dataset"]}, {results["validation_images"]}
validation images, with COCO's mAP (torchmetrics' `MeanAveragePrecision`, pycocotools inside; -1: a class without
ground truth):

| Metric | Value |
|---|---|
{table}
"""


def _usage(repo_id: str, config: DetectorConfig, masks: bool) -> str:
    keys = "boxes, labels, scores" + (", masks" if masks else "")
    # R-CNN heads keep label 0 for the background: their class i is label_names[i - 1].
    first = int(torchvision_detector(config.detector).background_class)
    return (
        "import torch\n\nfrom poolformer_hf.tasks.detection.saved_detectors import load_detector\n\n"
        f'model = load_detector("{repo_id}")  # downloads detector_config.json and model.safetensors\n'
        "with torch.no_grad():\n"
        f"    detections = model([torch.rand(3, {config.min_size}, {config.min_size})])  # RGB in [0, 1], any size\n"
        f"print(sorted(detections[0]))  # {keys}\n"
        f"names = [model.detector_config.label_names[i - {first}] for i in detections[0][\"labels\"].tolist()]"
    )
