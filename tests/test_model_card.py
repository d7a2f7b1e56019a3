"""Model cards: metadata that the Hub parses, numbers measured on the architecture, the papers' numbers as theirs."""

import json
import re
import runpy

import pytest
import torch
from huggingface_hub import ModelCard

from hub_fixtures import REPO_ROOT, save_tiny_model
from poolformer_hf import PRESET_NAMES, PoolFormerConfig, PoolFormerForImageClassification
from poolformer_hf.hub.complexity import count_parameters, measure
from poolformer_hf.hub.model_card import folder_facts, match_preset, preset_card, render_card

CARDS = REPO_ROOT / "model_cards"

# ImageNet-1k top-1 at 224² as the papers print it: "MetaFormer is Actually What You Need for Vision" (v1) and
# "MetaFormer Baselines for Vision" (the rest).
PAPER_TOP1 = {
    "poolformer_s12": 77.2, "poolformer_s24": 80.3, "poolformer_s36": 81.4, "poolformer_m36": 82.1,
    "poolformer_m48": 82.5,
    "poolformerv2_s12": 78.0, "poolformerv2_s24": 80.7, "poolformerv2_s36": 81.6, "poolformerv2_m36": 82.2,
    "poolformerv2_m48": 82.6, "identityformer_s12": 74.6, "randformer_s12": 76.6,
    "convformer_s18": 83.0, "convformer_s36": 84.1, "convformer_m36": 84.5, "convformer_b36": 84.8,
    "caformer_s18": 83.6, "caformer_s36": 84.5, "caformer_m36": 85.2, "caformer_b36": 85.5,
}


def _meta_model(preset):
    with torch.device("meta"):
        return PoolFormerForImageClassification(PoolFormerConfig.from_preset(preset, num_labels=1000))


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_committed_card_of_every_preset_states_its_measured_parameters_and_valid_metadata(preset):
    text = (CARDS / f"{preset}.md").read_text()

    exact = re.search(r"\*\*Parameters:\*\* [\d.]+ M \(([\d,]+) parameters\)", text)
    assert exact and int(exact.group(1).replace(",", "")) == count_parameters(_meta_model(preset))
    data = ModelCard(text).data
    assert data.library_name == "transformers" and data.license == "apache-2.0"
    assert data.pipeline_tag == "image-classification"
    assert {"poolformer", "metaformer", "image-classification"} <= set(data.tags)
    assert data.datasets == ["imagenet-1k"]
    assert data.eval_results is None  # the papers' numbers are not ours: no model-index
    assert "trust_remote_code=True" in text
    assert "@inproceedings{yu2022metaformer" in text and "@article{yu2024metaformer" in text
    if preset in PAPER_TOP1:
        assert f"| {PAPER_TOP1[preset]} | [MetaFormer" in text and "not reproduced by us" in text
    else:
        assert "reported by the paper" not in text


# Between them: every token mixer (pooling, sepconv, attention, identity, random mixing, spatial MLP).
@pytest.mark.parametrize("preset", ["poolformer_s12", "caformer_s18", "randformer_s12", "hybrid_pool_spatial_fc_s12"])
def test_committed_card_is_what_the_generator_writes_now_with_measured_macs(preset):
    text = (CARDS / f"{preset}.md").read_text()
    macs = measure(PoolFormerConfig.from_preset(preset, num_labels=1000))["macs"]
    assert f"**MACs at 224×224:** {macs / 1e9:.2f} G" in text
    assert preset_card(preset) == text


def test_generator_script_writes_the_named_presets(tmp_path):
    main = runpy.run_path(str(REPO_ROOT / "scripts" / "generate_model_cards.py"), run_name="cards")["main"]
    assert main(["--output_dir", str(tmp_path), "--presets", "identityformer_s12", "--namespace", "me"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["identityformer_s12.md"]
    assert 'repo_id = "me/identityformer_s12"' in (tmp_path / "identityformer_s12.md").read_text()


def test_folder_card_has_a_model_index_from_the_trainers_results(tmp_path):
    model = save_tiny_model(tmp_path)
    results = {"eval_accuracy": 0.875, "eval_top5_accuracy": 1.0, "eval_macro_f1": 0.8, "eval_loss": 0.4, "epoch": 3.0}
    (tmp_path / "all_results.json").write_text(json.dumps(results))

    text = render_card(folder_facts(tmp_path, "me/tiny-beans", model, eval_dataset="beans"))

    data = ModelCard(text).data
    metrics = {(r.metric_type, r.metric_value, r.dataset_type) for r in data.eval_results}
    assert metrics == {("accuracy", 0.875, "beans"), ("top_5_accuracy", 1.0, "beans"), ("f1", 0.8, "beans")}
    assert data.model_name == "tiny-beans" and data.datasets == ["beans"]
    assert f"({count_parameters(model):,} parameters)" in text and "| Top-1 accuracy | 87.50 |" in text
    assert "trust_remote_code=True" in text and "the modeling code ships in this repo" in text
    assert "reported by the paper" not in text  # a tiny custom architecture has no paper number


def test_card_of_a_converted_imagenet_folder_quotes_the_paper_for_its_preset(tmp_path):
    model = _meta_model("poolformer_s12")  # the card only reads the config: no weights needed
    text = render_card(folder_facts(tmp_path, "me/poolformer-s12", model))
    assert "| PoolFormer-S12 | 77.2 | [MetaFormer is Actually What You Need for Vision]" in text
    assert "not reproduced by us" in text and "poolformer_s12" in text
    assert ModelCard(text).data.eval_results is None


def test_folder_card_without_results_has_no_model_index(tmp_path):
    model = save_tiny_model(tmp_path)
    data = ModelCard(render_card(folder_facts(tmp_path, "me/tiny", model))).data
    assert data.eval_results is None and data.library_name == "transformers"


def test_presets_are_recognized_from_a_saved_config_whatever_the_head():
    fine_tuned = PoolFormerConfig.from_preset("caformer_s18", num_labels=10, drop_path_rate=0.0)
    assert match_preset(fine_tuned) == "caformer_s18"
    assert match_preset(PoolFormerConfig.from_preset("poolformer_s12")) == "poolformer_s12"
    assert match_preset(PoolFormerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])) is None
