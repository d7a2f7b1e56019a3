"""Top-k accuracy as an `evaluate` metric module, shipped inside poolformer_hf and loaded by path.

Only library imports on purpose: `evaluate.load` copies this single file into its module cache.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Top-k accuracy: the fraction of examples whose true class is among the k highest-scoring classes.
With class ids as predictions only k=1 is defined (plain accuracy).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per-example class scores (logits or probabilities, shape [n, num_classes]) or class ids (shape [n]).
    references: true class ids, shape [n].
    k: an int or a list of ints (default 1). Every k >= num_classes counts every example as correct.
Returns:
    one entry per k, named `top{k}_accuracy`.
Examples:
    >>> metric = evaluate.load("poolformer_hf/tasks/metrics/top_k_accuracy")
    >>> metric.compute(predictions=[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]], references=[2, 0], k=[1, 2])
    {'top1_accuracy': 0.5, 'top2_accuracy': 1.0}
"""


class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
                ),
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            ],
        )

    def _compute(self, predictions, references, k=1):
        ks = [k] if isinstance(k, int) else list(k)
        if not ks or any(not isinstance(value, int) or value < 1 for value in ks):
            raise ValueError(f"k must be a positive int or a list of them, got {k!r}")
        references = np.asarray(references, dtype=np.int64)
        predictions = np.asarray(predictions)
        if predictions.ndim == 1:
            if ks != [1]:
                raise ValueError(f"top-k accuracy with k={ks} needs class scores, got class ids (1-D predictions)")
            return {"top1_accuracy": float(np.mean(predictions == references))}
        # A stable sort over negated scores breaks ties towards the lower class id, as argmax does,
        # so top-1 here equals the accuracy of argmax predictions.
        ranked = np.argsort(-predictions, axis=1, kind="stable")
        return {
            f"top{value}_accuracy": float(np.mean((ranked[:, :value] == references[:, None]).any(axis=1)))
            for value in ks
        }
