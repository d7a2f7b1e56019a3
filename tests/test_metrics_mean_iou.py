import numpy as np
import pytest

from poolformer_hf.tasks.metrics import load_metric


@pytest.fixture(scope="module")
def mean_iou():
    return load_metric("mean_iou")


def test_scores_match_a_hand_computed_case(mean_iou):
    predictions = [np.array([[0, 1], [1, 1]]), np.array([[2, 2], [0, 1]])]
    references = [np.array([[0, 1], [0, 255]]), np.array([[2, 0], [0, 1]])]
    results = mean_iou.compute(predictions=predictions, references=references, num_labels=4)
    # Labelled pixels (reference, prediction): (0,0) (1,1) (0,1) | (2,2) (0,2) (0,0) (1,1).
    # class 0: ∩ 2, |pred| 2, |ref| 4 → IoU 2/4, acc 2/4; class 1: ∩ 2, |pred| 3, |ref| 2 → IoU 2/3, acc 1;
    # class 2: ∩ 1, |pred| 2, |ref| 1 → IoU 1/2, acc 1; class 3 absent from both → NaN, left out of the means.
    assert results["per_category_iou"][:3] == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert np.isnan(results["per_category_iou"][3])
    assert results["mean_iou"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert results["mean_accuracy"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert results["overall_accuracy"] == pytest.approx(5 / 7)


def test_a_class_predicted_but_absent_counts_as_zero(mean_iou):
    results = mean_iou.compute(predictions=[np.array([[1, 1]])], references=[np.array([[0, 1]])], num_labels=2)
    assert results["per_category_iou"] == pytest.approx([0.0, 0.5])
    assert results["mean_iou"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "predictions, references, message",
    [
        ([np.zeros((2, 2), int)], [np.zeros((2, 3), int)], "differs from reference shape"),
        ([np.full((2, 2), 7)], [np.zeros((2, 2), int)], "prediction ids must be in \\[0, 2\\]"),
        ([np.zeros((2, 2), int)], [np.full((2, 2), 255)], "at least one labelled pixel"),
    ],
)
def test_bad_inputs_are_named(mean_iou, predictions, references, message):
    with pytest.raises(ValueError, match=message):
        mean_iou.compute(predictions=predictions, references=references, num_labels=3)
