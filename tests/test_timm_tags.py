"""Every pretrained MetaFormer tag timm lists loads with `from_pretrained` from a folder in timm's Hub layout: the
weights of each architecture with no missing, unexpected or mismatched keys and timm's logits, and each tag's config
and image processor from its `config.json` (classes, `pretrained_cfg`). Folders are built offline with random
weights and saved as timm pushes them (`save_for_hf`)."""

import json
import logging

import pytest
import torch

from conftest import randomize_

from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification, PoolFormerImageProcessorPil

timm = pytest.importorskip("timm")
from timm.models._hub import save_config_for_hf, save_for_hf  # noqa: E402

FAMILIES = ["poolformer_*", "poolformerv2_*", "convformer_*", "caformer_*"]
TAGS = timm.list_models(FAMILIES, pretrained=True)
ARCHITECTURES = sorted({tag.split(".")[0] for tag in TAGS})


def test_the_covered_tags_are_all_of_timms():
    # The README states this count; a new timm tag shows up here first.
    assert len(TAGS) == 50 and len(ARCHITECTURES) == 18
    assert {tag.split(".")[1] for tag in TAGS} == {
        "sail_in1k", "sail_in1k_384", "sail_in22k", "sail_in22k_ft_in1k", "sail_in22k_ft_in1k_384",
    }  # fmt: skip


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_loads_from_its_timm_folder_with_timms_logits(architecture, tmp_path):
    theirs = randomize_(timm.create_model(architecture, num_classes=5), seed=7).eval()
    save_for_hf(theirs, str(tmp_path), safe_serialization=True)
    ours, info = PoolFormerForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert {key: value for key, value in info.items() if value} == {}
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = theirs(pixels), ours.eval()(pixels).logits
    assert expected.abs().max() > 0.1  # O(1) weights give O(1) logits: a wrong mixer cannot hide
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def _timm_config_folder(tag: str, folder) -> dict:
    with torch.device("meta"):
        model = timm.create_model(tag, pretrained=False)
    save_config_for_hf(model, str(folder / "config.json"))
    return model.pretrained_cfg


@pytest.mark.parametrize("tag", TAGS)
def test_each_tag_gets_its_config_and_image_processor_from_its_config_json(tag, tmp_path):
    pretrained_cfg = _timm_config_folder(tag, tmp_path)
    config = PoolFormerConfig.from_pretrained(tmp_path)
    preset = PoolFormerConfig.from_preset(tag.split(".")[0])
    architecture_fields = ("depths", "hidden_sizes", "token_mixers", "norm_type", "head_type", "hidden_act")
    assert {name: getattr(config, name) for name in architecture_fields} == {
        name: getattr(preset, name) for name in architecture_fields
    }
    assert config.num_labels == pretrained_cfg["num_classes"]
    assert config.crop_pct == pretrained_cfg["crop_pct"]

    processor = PoolFormerImageProcessorPil.from_pretrained(tmp_path)
    _, height, width = pretrained_cfg["input_size"]
    assert (processor.crop_size["height"], processor.crop_size["width"]) == (height, width)
    assert processor.size["shortest_edge"] == min(height, width)
    assert processor.crop_pct == pretrained_cfg["crop_pct"]
    assert processor.resample.name.lower() == pretrained_cfg["interpolation"]
    assert tuple(processor.image_mean) == tuple(pretrained_cfg["mean"])
    assert tuple(processor.image_std) == tuple(pretrained_cfg["std"])


@pytest.mark.parametrize("tag", ["caformer_s18.sail_in22k_ft_in1k_384", "poolformer_s12.sail_in1k"])
def test_the_processor_of_a_tag_gives_timms_eval_pixels(tag, tmp_path):
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    pretrained_cfg = _timm_config_folder(tag, tmp_path)
    image = Image.fromarray(
        torch.randint(0, 256, (301, 437, 3), generator=torch.Generator().manual_seed(1), dtype=torch.uint8).numpy()
    )
    theirs = create_transform(**resolve_data_config(pretrained_cfg=pretrained_cfg))(image)
    ours = PoolFormerImageProcessorPil.from_pretrained(tmp_path)(image, return_tensors="pt")["pixel_values"][0]
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max() <= 1e-5


def test_a_timm_folder_of_another_architecture_is_not_taken_for_ours(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "resnet50", "num_classes": 10,
                                                      "pretrained_cfg": {"input_size": [3, 224, 224]}}))
    with pytest.raises(OSError, match="preprocessor_config.json"):
        PoolFormerImageProcessorPil.from_pretrained(tmp_path)
    with pytest.raises((ValueError, TypeError), match="resnet50|architecture|model_type"):
        PoolFormerForImageClassification.from_pretrained(tmp_path)


def test_translating_a_foreign_folder_on_purpose_does_not_warn_of_another_model_type(tmp_path, caplog):
    import transformers

    theirs = randomize_(timm.create_model("poolformer_s12", num_classes=3), seed=1)
    save_for_hf(theirs, str(tmp_path / "timm"), safe_serialization=True)
    native = transformers.PoolFormerForImageClassification(
        transformers.PoolFormerConfig(num_encoder_blocks=4, depths=[1, 1, 1, 1], num_labels=3)
    )
    native.save_pretrained(tmp_path / "transformers")
    transformers.utils.logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING, logger="transformers"):
            for folder in ("timm", "transformers"):
                model = PoolFormerForImageClassification.from_pretrained(tmp_path / folder)
                assert model.config.num_encoder_blocks == 4
    finally:
        transformers.utils.logging.disable_propagation()
    assert "to instantiate a model of type" not in caplog.text


def test_the_converter_gives_timms_logits_for_a_timm_v1_state_dict(tmp_path):
    from safetensors.torch import save_file

    from poolformer_hf.conversion.to_folder import convert_checkpoint

    theirs = randomize_(timm.create_model("poolformer_s12", num_classes=4), seed=5).eval()
    save_file(theirs.state_dict(), str(tmp_path / "s12.safetensors"))
    assert convert_checkpoint(str(tmp_path / "s12.safetensors"), "poolformer_s12", str(tmp_path / "out")) == "timm"
    ours = PoolFormerForImageClassification.from_pretrained(tmp_path / "out").eval()
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = theirs(pixels), ours(pixels).logits
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
