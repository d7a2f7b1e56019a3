"""README.md of a trained segmentation folder: what it is, how it was evaluated, how to use it."""

from pathlib import Path

CARD = """---
library_name: transformers
pipeline_tag: image-segmentation
tags:
- poolformer
- metaformer
- semantic-segmentation
datasets:
- {dataset}
model-index:
- name: {name}
  results:
  - task:
      type: image-segmentation
    dataset:
      name: {dataset}
      type: {dataset}
    metrics:
    - type: mean_iou
      value: {mean_iou}
---

# {name}

{head} on a PoolFormer backbone ({parameters:.2f}M parameters), trained with `poolformer_hf`'s
`scripts/train_segmentation.py` on `{dataset}` ({num_labels} classes: {labels}).

Validation: mean IoU {mean_iou}, pixel accuracy {overall_accuracy} (the processor's {size}×{size} input).

```python
{setup}from PIL import Image
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

processor = AutoImageProcessor.from_pretrained("{name}", trust_remote_code=True)
model = AutoModelForSemanticSegmentation.from_pretrained("{name}", trust_remote_code=True)
image = Image.open("image.png").convert("RGB")
outputs = model(**processor(image, return_tensors="pt"))
label_map = processor.post_process_semantic_segmentation(outputs, target_sizes=[image.size[::-1]])[0]
```
"""

HEAD_TITLES = {"semantic_fpn": "Semantic FPN", "upernet": "UperNet"}


def write_segmentation_card(output_dir: str, head: str, data, metrics: dict, model) -> None:
    import json

    folder = Path(output_dir)
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    card = CARD.format(
        name=folder.name, head=HEAD_TITLES[head], parameters=model.num_parameters() / 1e6, dataset=data.dataset_id,
        num_labels=len(data.label_names),
        labels=", ".join(data.label_names[:20]) + (" …" if len(data.label_names) > 20 else ""),
        mean_iou=round(metrics.get("eval_mean_iou", float("nan")), 4),
        overall_accuracy=round(metrics.get("eval_overall_accuracy", float("nan")), 4),
        size=processor["size"]["height"],
        # UperNet is transformers' own class: its folder names our backbone by model type, which only the installed
        # package registers.
        setup="import poolformer_hf  # registers the PoolFormer backbone UperNet's config names\n"
        if head == "upernet" else "",
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
