import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, top_k_accuracy_score
from transformers import EvalPrediction

from poolformer_hf.tasks.metrics import compute_metrics_fn, load_metric, metric_path


@pytest.fixture(scope="module")
def top_k_accuracy():
    return load_metric("top_k_accuracy")


@pytest.fixture(scope="module")
def macro_f1():
    return load_metric("macro_f1")


def random_logits(seed, n=64, num_classes=10):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, num_classes)).astype(np.float32), rng.integers(0, num_classes, size=n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_accuracy_matches_sklearn(top_k_accuracy, seed):
    logits, references = random_logits(seed)
    result = top_k_accuracy.compute(predictions=logits, references=references, k=[1, 3, 5])
    labels = np.arange(logits.shape[1])
    assert result["top1_accuracy"] == pytest.approx(accuracy_score(references, logits.argmax(axis=1)))
    for k in (3, 5):
        expected = top_k_accuracy_score(references, logits, k=k, labels=labels)
        assert result[f"top{k}_accuracy"] == pytest.approx(expected)


def test_top_k_accuracy_from_class_ids(top_k_accuracy):
    logits, references = random_logits(3)
    result = top_k_accuracy.compute(predictions=logits.argmax(axis=1), references=references)
    assert result == {"top1_accuracy": pytest.approx(accuracy_score(references, logits.argmax(axis=1)))}


def test_top_k_accuracy_rejects_k_above_one_for_class_ids(top_k_accuracy):
    with pytest.raises(ValueError, match="needs class scores"):
        top_k_accuracy.compute(predictions=[0, 1], references=[0, 1], k=5)


@pytest.mark.parametrize("seed", [0, 1])
def test_macro_f1_matches_sklearn(macro_f1, seed):
    logits, references = random_logits(seed, n=40, num_classes=6)
    predictions = logits.argmax(axis=1)
    result = macro_f1.compute(predictions=predictions, references=references)
    assert result["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro", zero_division=0))


def test_macro_f1_counts_a_never_predicted_class_as_zero(macro_f1):
    references = [0, 1, 2, 2]
    predictions = [0, 1, 1, 1]
    expected = f1_score(references, predictions, average="macro", zero_division=0)
    assert macro_f1.compute(predictions=predictions, references=references)["macro_f1"] == pytest.approx(expected)


def test_compute_metrics_fn_for_trainer():
    logits, references = random_logits(4, num_classes=10)
    metrics = compute_metrics_fn()(EvalPrediction(predictions=logits, label_ids=references))
    assert set(metrics) == {"accuracy", "top5_accuracy", "macro_f1"}
    assert metrics["accuracy"] == pytest.approx(accuracy_score(references, logits.argmax(axis=1)))
    assert metrics["top5_accuracy"] == pytest.approx(top_k_accuracy_score(references, logits, k=5))
    assert metrics["macro_f1"] == pytest.approx(f1_score(references, logits.argmax(axis=1), average="macro"))


def test_compute_metrics_fn_leaves_out_k_not_below_num_classes():
    logits, references = random_logits(5, num_classes=3)
    metrics = compute_metrics_fn()(EvalPrediction(predictions=logits, label_ids=references))
    assert set(metrics) == {"accuracy", "macro_f1"}


def test_unknown_metric_name_is_rejected():
    with pytest.raises(ValueError, match="top_k_accuracy"):
        metric_path("accuracy")


def test_metrics_load_offline_on_an_empty_cache(tmp_path):
    code = (
        "import json, evaluate\n"
        "from poolformer_hf.tasks.metrics import metric_path\n"
        "top_k = evaluate.load(metric_path('top_k_accuracy'))\n"
        "f1 = evaluate.load(metric_path('macro_f1') + '/macro_f1.py')\n"
        "r = top_k.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[1, 1], k=[1])\n"
        "r.update(f1.compute(predictions=[1, 0], references=[1, 1]))\n"
        "print(json.dumps(r))\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"}
    env.pop("HF_MODULES_CACHE", None)
    env.pop("HF_EVALUATE_CACHE", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"top1_accuracy": 0.5, "macro_f1": pytest.approx(1 / 3)}
    assert (tmp_path / "hf" / "modules").is_dir()
