"""A minimal model card (README.md) for a trained output folder, with the run's eval results as model-index.

Stand-in until the Hub helpers' model_card module is on main; only `write_training_card` is used by the run.
"""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

# Trainer metric key -> (model-index metric type, display name)
CARD_METRICS = {
    "eval_accuracy": ("accuracy", "Top-1 accuracy"),
    "eval_top5_accuracy": ("top_5_accuracy", "Top-5 accuracy"),
    "eval_macro_f1": ("f1", "Macro F1"),
}


def training_card(
    model_name: str,
    dataset_name: str,
    dataset_id: str,
    eval_metrics: dict[str, float],
    base_model: str | None = None,
    training_summary: str = "",
) -> ModelCard:
    results = [
        EvalResult(
            task_type="image-classification",
            task_name="Image Classification",
            dataset_type=dataset_id,
            dataset_name=dataset_name,
            dataset_split="validation",
            metric_type=metric_type,
            metric_name=display_name,
            metric_value=round(float(eval_metrics[key]), 4),
        )
        for key, (metric_type, display_name) in CARD_METRICS.items()
        if key in eval_metrics
    ]
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        license="apache-2.0",
        tags=["poolformer", "metaformer", "image-classification", "vision"],
        base_model=base_model,
        model_name=model_name,
        eval_results=results or None,
    )
    rows = "\n".join(
        f"| {display} | {eval_metrics[key]:.4f} |" for key, (_, display) in CARD_METRICS.items() if key in eval_metrics
    )
    start = f", starting from {base_model}" if base_model else ""
    body = f"""# {model_name}

A PoolFormer (MetaFormer, "MetaFormer is Actually What You Need for Vision", https://arxiv.org/abs/2111.11418)
image classifier trained with poolformer_hf's `scripts/train.py` on {dataset_name}{start}.

## Evaluation ({dataset_name}, validation split)

| Metric | Value |
|---|---|
{rows}

## Training

{training_summary}

## How to use

```python
from transformers import AutoImageProcessor, AutoModelForImageClassification

processor = AutoImageProcessor.from_pretrained("path/or/repo", trust_remote_code=True)
model = AutoModelForImageClassification.from_pretrained("path/or/repo", trust_remote_code=True)
logits = model(**processor(image, return_tensors="pt")).logits
print(model.config.id2label[logits.argmax(-1).item()])
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def write_training_card(output_dir: str | Path, **kwargs) -> Path:
    path = Path(output_dir) / "README.md"
    training_card(**kwargs).save(path)
    return path
