"""Mean intersection-over-union of label maps as an `evaluate` metric module, shipped inside poolformer_hf and loaded
by path.

Only library imports on purpose: `evaluate.load` copies this single file into its module cache.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Semantic segmentation scores over all pixels of all maps (not averaged per image), as mmsegmentation and evaluate's
`mean_iou` count them: per class IoU = |pred ∩ ref| / |pred ∪ ref| and accuracy = |pred ∩ ref| / |ref|; pixels whose
reference is `ignore_index` are left out. A class absent from both predictions and references has an undefined IoU
(NaN in `per_category_iou`) and is left out of the means.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted label maps, each (height, width) of class ids.
    references: reference label maps of the same shapes.
    num_labels: number of classes; ids outside [0, num_labels) other than ignore_index are an error.
    ignore_index: reference value that marks unlabelled pixels (default 255).
Returns:
    mean_iou, mean_accuracy (over classes), overall_accuracy (over pixels), per_category_iou, per_category_accuracy.
Examples:
    >>> metric = evaluate.load("poolformer_hf/tasks/metrics/mean_iou")
    >>> metric.compute(predictions=[[[0, 1], [1, 1]]], references=[[[0, 1], [0, 1]]], num_labels=2)["mean_iou"]
    0.5833333333333333
"""


class MeanIoU(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
                }
            ),
        )

    def _compute(self, predictions, references, num_labels, ignore_index=255):
        if not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"num_labels must be a positive integer, got {num_labels!r}")
        intersection = np.zeros(num_labels, dtype=np.int64)
        predicted_area = np.zeros(num_labels, dtype=np.int64)
        reference_area = np.zeros(num_labels, dtype=np.int64)
        for index, (prediction, reference) in enumerate(zip(predictions, references)):
            prediction, reference = np.asarray(prediction, dtype=np.int64), np.asarray(reference, dtype=np.int64)
            if prediction.shape != reference.shape:
                raise ValueError(
                    f"map {index}: prediction shape {prediction.shape} differs from reference shape {reference.shape}"
                )
            labelled = reference != ignore_index
            prediction, reference = prediction[labelled], reference[labelled]
            for name, values in (("prediction", prediction), ("reference", reference)):
                if values.size and (values.min() < 0 or values.max() >= num_labels):
                    raise ValueError(
                        f"map {index}: {name} ids must be in [0, {num_labels - 1}] (or {ignore_index} in references), "
                        f"got values from {values.min()} to {values.max()}"
                    )
            intersection += np.bincount(reference[prediction == reference], minlength=num_labels)
            predicted_area += np.bincount(prediction, minlength=num_labels)
            reference_area += np.bincount(reference, minlength=num_labels)
        union = predicted_area + reference_area - intersection
        with np.errstate(divide="ignore", invalid="ignore"):
            per_category_iou = np.where(union > 0, intersection / union, np.nan)
            per_category_accuracy = np.where(reference_area > 0, intersection / reference_area, np.nan)
        total = reference_area.sum()
        if total == 0:
            raise ValueError("mean IoU needs at least one labelled pixel (every reference pixel is ignore_index)")
        return {
            "mean_iou": float(np.nanmean(per_category_iou)),
            "mean_accuracy": float(np.nanmean(per_category_accuracy)),
            "overall_accuracy": float(intersection.sum() / total),
            "per_category_iou": per_category_iou,
            "per_category_accuracy": per_category_accuracy,
        }
