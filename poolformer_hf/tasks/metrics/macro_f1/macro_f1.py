"""Macro-averaged F1 as an `evaluate` metric module, shipped inside poolformer_hf and loaded by path.

Only library imports on purpose: `evaluate.load` copies this single file into its module cache.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Macro F1: the unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN). A class whose F1 is undefined
(no true and no predicted example among `labels`) counts as 0, as scikit-learn's `zero_division=0` does.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: class ids (shape [n]) or per-example class scores (shape [n, num_classes], argmax is taken).
    references: true class ids, shape [n].
    labels: the classes to average over (default: every class seen in references or predictions).
Returns:
    macro_f1: float in [0, 1].
Examples:
    >>> metric = evaluate.load("poolformer_hf/tasks/metrics/macro_f1")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'macro_f1': 0.6666666666666666}
"""


class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features(
                    {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
                ),
            ],
        )

    def _compute(self, predictions, references, labels=None):
        references = np.asarray(references, dtype=np.int64)
        predictions = np.asarray(predictions)
        if predictions.ndim == 2:
            predictions = predictions.argmax(axis=1)
        predictions = predictions.astype(np.int64)
        labels = np.union1d(references, predictions) if labels is None else np.asarray(labels, dtype=np.int64)
        if labels.size == 0:
            raise ValueError("macro F1 needs at least one example or one label")
        scores = []
        for label in labels:
            true_positives = np.sum((predictions == label) & (references == label))
            denominator = np.sum(predictions == label) + np.sum(references == label)
            scores.append(2.0 * true_positives / denominator if denominator else 0.0)
        return {"macro_f1": float(np.mean(scores))}
