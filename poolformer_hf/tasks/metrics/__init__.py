"""Evaluation metrics shipped with the package as `evaluate` modules, loaded by path (no Hub access).

Each metric lives in `metrics/<name>/<name>.py`; `evaluate.load` copies it into its module cache, so the same
file gives the same numbers online, offline (HF_HUB_OFFLINE=1 / HF_EVALUATE_OFFLINE=1) and on a fresh cache.
"""

from pathlib import Path

import numpy as np

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("top_k_accuracy", "macro_f1", "mean_iou")


def metric_path(name: str) -> str:
    """The folder of the shipped metric `name`, as `evaluate.load` takes it."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; shipped metrics are {list(METRIC_NAMES)}")
    return str(METRICS_DIR / name)


def load_metric(name: str):
    """`evaluate.load` of a shipped metric; kept in memory so concurrent processes share no cache files."""
    import evaluate

    return evaluate.load(metric_path(name), keep_in_memory=True)


def compute_metrics_fn(top_k=(5,)):
    """A `compute_metrics` for `transformers.Trainer`: top-k accuracies and macro F1 from logits.

    Keys: "accuracy" (top-1, the name `evaluate`'s accuracy metric uses), "top{k}_accuracy" for each k in `top_k`,
    "macro_f1". A k at or above the number of classes is left out (every example would count as correct).
    """
    top_k_accuracy = load_metric("top_k_accuracy")
    macro_f1 = load_metric("macro_f1")

    def compute_metrics(eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        logits = np.asarray(logits, dtype=np.float32)
        references = np.asarray(eval_prediction.label_ids, dtype=np.int64)
        ks = [1] + [k for k in top_k if 1 < k < logits.shape[1]]
        results = top_k_accuracy.compute(predictions=logits, references=references, k=ks)
        results["accuracy"] = results.pop("top1_accuracy")
        results.update(macro_f1.compute(predictions=logits.argmax(axis=1), references=references))
        return results

    return compute_metrics
