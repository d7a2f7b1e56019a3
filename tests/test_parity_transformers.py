"""Fidelity against transformers' built-in PoolFormer: same weights, same logits and stage outputs."""

import pytest
import torch
import transformers

from conftest import max_abs_diff, randomize_
from poolformer_hf import PoolFormerForImageClassification, PoolFormerModel
from poolformer_hf.conversion.formats import convert_state_dict

SHAPES = {
    "s12": dict(depths=[2, 2, 6, 2], hidden_sizes=[64, 128, 320, 512]),
    "m36": dict(depths=[6, 6, 18, 6], hidden_sizes=[96, 192, 384, 768], layer_scale_init_value=1e-6),
}


def reference(shape: str, num_labels: int = 10):
    config = transformers.PoolFormerConfig(**SHAPES[shape], num_labels=num_labels)
    return randomize_(transformers.PoolFormerForImageClassification(config), seed=1).eval()


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("shape", ["s12", "m36"])
def test_from_pretrained_on_a_transformers_folder_matches_logits_and_stages(tmp_path, pixels, shape):
    theirs = reference(shape)
    theirs.save_pretrained(tmp_path)
    ours = PoolFormerForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        expected = theirs(pixels, output_hidden_states=True)
        actual = ours(pixels, output_hidden_states=True)
    assert max_abs_diff(actual.logits, expected.logits) <= 1e-4
    assert expected.logits.std() > 0.1  # O(1) weights: the comparison is not of near-zero numbers
    # One hidden state per stage, as transformers' PoolFormer returns them.
    for stage, (a, e) in enumerate(zip(actual.hidden_states, expected.hidden_states, strict=True)):
        assert max_abs_diff(a, e) <= 1e-4, f"stage {stage + 1}"


def test_loaded_model_saves_in_our_own_format(tmp_path, pixels):
    reference("s12").save_pretrained(tmp_path / "theirs")
    ours = PoolFormerForImageClassification.from_pretrained(tmp_path / "theirs")
    ours.save_pretrained(tmp_path / "ours")
    config = (tmp_path / "ours" / "config.json").read_text()
    assert '"model_type": "poolformer_hf"' in config
    reloaded = PoolFormerForImageClassification.from_pretrained(tmp_path / "ours")
    assert torch.equal(reloaded.poolformer.stages[2].blocks[1].mlp.fc1.weight,
                       ours.poolformer.stages[2].blocks[1].mlp.fc1.weight)


def test_base_model_and_new_label_set_load_from_a_transformers_folder(tmp_path, pixels):
    theirs = reference("s12")
    theirs.save_pretrained(tmp_path)
    base = PoolFormerModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        expected = theirs.poolformer(pixels).last_hidden_state
        assert max_abs_diff(base(pixels).last_hidden_state, expected) <= 1e-4
    # Fine-tuning on a new label set: the classifier is re-initialized, the body kept.
    resized = PoolFormerForImageClassification.from_pretrained(tmp_path, num_labels=4, ignore_mismatched_sizes=True)
    assert resized.classifier.weight.shape == (4, 512)
    assert torch.equal(resized.poolformer.stem.conv.weight, base.stem.conv.weight)


def test_transformers_base_model_checkpoint_converts_without_prefix(pixels):
    theirs = reference("s12").poolformer
    ours = PoolFormerModel(PoolFormerForImageClassification.config_class(**SHAPES["s12"]))
    state = convert_state_dict(theirs.state_dict(), ours.__class__(ours.config, add_pooling_layer=False))
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert missing == ["norm.weight", "norm.bias"] and unexpected == []
