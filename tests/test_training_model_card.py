import yaml

from poolformer_hf.training.model_card import write_training_card


def test_card_metadata_carries_the_eval_results(tmp_path):
    metrics = {"eval_accuracy": 0.95, "eval_top5_accuracy": 0.999, "eval_macro_f1": 0.949, "eval_loss": 0.2}
    path = write_training_card(tmp_path, model_name="digits", dataset_name="handwritten digits",
                               dataset_id="sklearn-digits", eval_metrics=metrics, base_model="sail/poolformer_s12",
                               training_summary="- epochs: 1")  # fmt: skip
    text = path.read_text()
    metadata = yaml.safe_load(text.split("---")[1])
    results = metadata["model-index"][0]["results"][0]
    assert results["dataset"]["type"] == "sklearn-digits"
    assert {m["type"]: m["value"] for m in results["metrics"]} == {
        "accuracy": 0.95,
        "top_5_accuracy": 0.999,
        "f1": 0.949,
    }
    assert metadata["base_model"] == "sail/poolformer_s12"
    assert "| Top-1 accuracy | 0.9500 |" in text and "- epochs: 1" in text


def test_card_without_eval_results_has_no_model_index(tmp_path):
    text = write_training_card(tmp_path, model_name="m", dataset_name="d", dataset_id="d", eval_metrics={}).read_text()
    assert "model-index" not in text
