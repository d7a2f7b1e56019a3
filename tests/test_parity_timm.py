"""Fidelity against timm's MetaFormer implementations with the same (O(1) random) weights."""

import pytest
import timm
import torch

from conftest import max_abs_diff, randomize_
from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification
from poolformer_hf.conversion.formats import convert_state_dict, detect_format


def timm_and_ours(name: str, num_classes: int = 10):
    theirs = randomize_(timm.create_model(name, num_classes=num_classes), seed=2).eval()
    with torch.device("meta"):  # skip our own init: every tensor is replaced below
        ours = PoolFormerForImageClassification(PoolFormerConfig.from_preset(name, num_labels=num_classes))
    state = convert_state_dict(theirs.state_dict(), ours)
    ours.load_state_dict(state, strict=True, assign=True)
    return theirs, ours.eval()


def test_timm_checkpoints_are_detected():
    assert detect_format(timm.create_model("poolformer_s12", pretrained=False).state_dict()) == "timm"


def test_poolformer_v1_body_matches_timm_stage_by_stage():
    theirs, ours = timm_and_ours("poolformer_s12")
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, expected = theirs.forward_intermediates(pixels)
        actual = ours(pixels, output_hidden_states=True).hidden_states
    for stage, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert max_abs_diff(a, e) <= 1e-4, f"stage {stage + 1}"
        assert e.std() > 0.1


@pytest.mark.parametrize(
    "name", ["poolformerv2_s12", "convformer_s18", "caformer_s18"],
)
def test_logits_match_timm(name):
    theirs, ours = timm_and_ours(name)
    pixels = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = theirs(pixels)
        actual = ours(pixels).logits
    assert expected.std() > 0.1
    assert max_abs_diff(actual, expected) <= 1e-4


def test_wrong_variant_is_named():
    theirs = timm.create_model("poolformerv2_s12", num_classes=10)
    ours = PoolFormerForImageClassification(PoolFormerConfig.from_preset("poolformerv2_s24", num_labels=10))
    with pytest.raises(ValueError, match="wrong variant"):
        convert_state_dict(theirs.state_dict(), ours)


def save_timm_hub_folder(name: str, folder) -> torch.nn.Module:
    from timm.models._hub import save_for_hf

    theirs = randomize_(timm.create_model(name, num_classes=6), seed=3).eval()
    theirs.pretrained_cfg = {**theirs.pretrained_cfg, "crop_pct": 0.95}
    save_for_hf(theirs, str(folder), safe_serialization=True)
    return theirs


def test_from_pretrained_loads_a_timm_hub_folder_and_saves_in_our_names(tmp_path):
    theirs = save_timm_hub_folder("convformer_s18", tmp_path / "timm")
    ours = PoolFormerForImageClassification.from_pretrained(tmp_path / "timm").eval()
    assert ours.config.num_labels == 6 and ours.config.crop_pct == 0.95
    pixels = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_abs_diff(ours(pixels).logits, theirs(pixels)) <= 1e-4
    ours.save_pretrained(tmp_path / "ours")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ours" / "model.safetensors"), "pt") as saved:
        assert "poolformer.stem.conv.weight" in saved.keys() and "stem.conv.weight" not in saved.keys()


def test_a_timm_caformer_folder_converts_with_the_converter(tmp_path):
    # timm keeps CAFormer's attention-stage MLPs as linear layers; the converter reshapes them into our 1×1 convs.
    from poolformer_hf.conversion.to_folder import convert_checkpoint

    theirs = save_timm_hub_folder("caformer_s18", tmp_path / "timm")
    assert convert_checkpoint(str(tmp_path / "timm" / "model.safetensors"), "caformer_s18", str(tmp_path / "out")) == "timm"
    ours = PoolFormerForImageClassification.from_pretrained(tmp_path / "out").eval()
    pixels = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert max_abs_diff(ours(pixels).logits, theirs(pixels)) <= 1e-4
