"""Backing out of poolformer_hf (`poolformer_hf.conversion.to_peer`): our folders written as timm's and transformers'
own, which their loaders read with every key and our logits (O(1) random weights)."""

import json
import os
import runpy
import sys

import pytest
import timm
import torch
import transformers
from safetensors.torch import load_file, save_file

from conftest import ROOT, max_abs_diff, randomize_
from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification, PoolFormerModel
from poolformer_hf.configuration_poolformer import TIMM_HEAD
from poolformer_hf.conversion.to_peer import convert_to_peer
from poolformer_hf.hub.output_folders import MARKER_NAME

PIXELS = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
LABELS = ["cat", "dog", "owl", "eel", "yak"]


def our_folder(folder, name: str, model_class=PoolFormerForImageClassification, **overrides):
    """Our model of preset `name` with O(1) random weights and named labels, saved to `folder`."""
    config = PoolFormerConfig.from_preset(name, id2label=dict(enumerate(LABELS)),
                                          label2id={label: index for index, label in enumerate(LABELS)}, **overrides)
    model = randomize_(model_class(config), seed=4).eval()
    model.save_pretrained(folder)
    return model


def logits(model, pixels=PIXELS):
    with torch.no_grad():
        output = model(pixels)
    return getattr(output, "logits", output)


def no_staging_left(parent) -> bool:
    return not [name for name in os.listdir(parent) if name.startswith(".converting")]


# ------------------------------------------------------------------------------------------------------------ timm
@pytest.mark.parametrize("name, overrides", [
    ("poolformer_s12", TIMM_HEAD),  # a v1 model with timm's head: see the next test for the paper's
    ("poolformerv2_s12", {}),
    ("convformer_s18", {}),
    ("caformer_s18", {}),  # its attention stages' MLPs: our 1×1 convs, timm's linear layers
], ids=["poolformer_s12-timm_head", "poolformerv2_s12", "convformer_s18", "caformer_s18"])
def test_timm_loads_the_backed_out_folder_with_every_key_and_our_logits(tmp_path, name, overrides):
    ours = our_folder(tmp_path / "ours", name, **overrides)
    assert convert_to_peer(str(tmp_path / "ours"), "timm", str(tmp_path / "timm")) == name
    weights = str(tmp_path / "timm" / "model.safetensors")

    strict = timm.create_model(name, num_classes=len(LABELS)).load_state_dict(load_file(weights), strict=True)
    assert strict.missing_keys == [] and strict.unexpected_keys == []
    by_file = timm.create_model(name, pretrained=True, num_classes=len(LABELS),
                                pretrained_cfg_overlay=dict(file=weights, num_classes=len(LABELS))).eval()
    by_folder = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    expected = logits(ours)
    assert expected.std() > 0.1  # O(1) weights: no near-identity block hides a wrong mapping
    for theirs in (by_file, by_folder):
        assert max_abs_diff(logits(theirs), expected) <= 1e-4


def test_timm_config_carries_the_labels_and_preprocessing_and_reads_back_in(tmp_path):
    ours = our_folder(tmp_path / "ours", "convformer_s18", crop_pct=0.95)
    from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor

    PoolFormerImageProcessor(crop_pct=0.95, resample=2).save_pretrained(tmp_path / "ours")
    convert_to_peer(str(tmp_path / "ours"), "timm", str(tmp_path / "timm"))
    config = json.loads((tmp_path / "timm" / "config.json").read_text())
    assert config["architecture"] == "convformer_s18" and config["num_classes"] == 5
    assert config["label_names"] == LABELS
    pretrained_cfg = config["pretrained_cfg"]
    assert pretrained_cfg["input_size"] == [3, 224, 224] and pretrained_cfg["crop_pct"] == 0.95
    assert pretrained_cfg["interpolation"] == "bilinear" and pretrained_cfg["num_classes"] == 5
    assert pretrained_cfg["mean"] == [0.485, 0.456, 0.406] and pretrained_cfg["std"] == [0.229, 0.224, 0.225]
    assert "tag" not in pretrained_cfg  # the weights are not timm's sail_in1k release
    loaded = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True)
    assert loaded.pretrained_cfg["label_names"] == LABELS
    back = PoolFormerForImageClassification.from_pretrained(tmp_path / "timm").eval()
    assert back.config.id2label == ours.config.id2label and back.config.crop_pct == 0.95
    assert max_abs_diff(logits(back), logits(ours)) == 0


def test_a_v1_poolformer_goes_to_timm_only_when_timms_head_is_accepted(tmp_path):
    # timm's poolformer_* normalize after global pooling; the paper, transformers and our presets before it.
    ours = our_folder(tmp_path / "ours", "poolformer_s12")
    with pytest.raises(ValueError, match="head_norm_position 'before_pool'.*--to transformers.*--accept_timm_v1_head"):
        convert_to_peer(str(tmp_path / "ours"), "timm", str(tmp_path / "timm"))
    assert not (tmp_path / "timm").exists() and no_staging_left(tmp_path)

    convert_to_peer(str(tmp_path / "ours"), "timm", str(tmp_path / "timm"), accept_timm_v1_head=True)
    theirs = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    with torch.no_grad():  # every weight went over: the bodies agree, only the heads compute differently
        body = ours.poolformer(PIXELS).last_hidden_state
        assert max_abs_diff(theirs.forward_features(PIXELS), body) <= 1e-4
    assert max_abs_diff(logits(theirs), logits(ours)) > 1e-3


def test_a_base_model_goes_to_timm_without_a_head(tmp_path):
    ours = our_folder(tmp_path / "ours", "poolformerv2_s12", model_class=PoolFormerModel)
    convert_to_peer(str(tmp_path / "ours"), "timm", str(tmp_path / "timm"))
    theirs = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    assert theirs.num_classes == 0
    with torch.no_grad():
        assert max_abs_diff(theirs(PIXELS), ours(PIXELS).pooler_output) <= 1e-4


def test_a_model_of_other_input_channels_goes_to_timm_with_them(tmp_path):
    ours = our_folder(tmp_path / "ours", "poolformerv2_s12", num_channels=1)
    convert_to_peer(str(tmp_path / "ours"), "timm", str(tmp_path / "timm"))
    theirs = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    assert theirs.pretrained_cfg["input_size"] == (1, 224, 224)
    assert max_abs_diff(logits(theirs, PIXELS[:, :1]), logits(ours, PIXELS[:, :1])) <= 1e-4


def test_a_model_timm_has_no_family_for_is_refused(tmp_path):
    our_folder(tmp_path / "ours", "identityformer_s12")
    with pytest.raises(ValueError, match="timm has no identityformer_s12"):
        convert_to_peer(str(tmp_path / "ours"), "timm", str(tmp_path / "timm"))
    assert not (tmp_path / "timm").exists()


def test_without_timm_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    with pytest.raises(ImportError, match="pip install timm"):
        convert_to_peer(str(tmp_path / "ours"), "timm", str(tmp_path / "timm"))


# ---------------------------------------------------------------------------------------------------- transformers
@pytest.fixture(scope="module")
def s12_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s12") / "ours"
    our_folder(folder, "poolformer_s12", crop_pct=0.95)
    return folder


def test_transformers_loads_the_backed_out_poolformer_with_every_key_and_our_logits(tmp_path, s12_folder):
    ours = PoolFormerForImageClassification.from_pretrained(s12_folder).eval()
    assert convert_to_peer(str(s12_folder), "transformers", str(tmp_path / "out")) == "poolformer"
    theirs, info = transformers.PoolFormerForImageClassification.from_pretrained(tmp_path / "out",
                                                                                 output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    expected = logits(ours)
    assert expected.std() > 0.1
    assert max_abs_diff(logits(theirs.eval()).float(), expected) <= 1e-4
    config = theirs.config
    assert config.model_type == "poolformer" and config.id2label == ours.config.id2label
    assert config.depths == [2, 2, 6, 2] and config.use_layer_scale and config.layer_scale_init_value == 1e-5
    assert transformers.PoolFormerImageProcessor.from_pretrained(tmp_path / "out").crop_pct == 0.95


def test_a_model_transformers_cannot_hold_is_refused_naming_preset_and_fields(tmp_path):
    our_folder(tmp_path / "ours", "caformer_s18")
    with pytest.raises(ValueError, match=r"cannot represent caformer_s18: token_mixers is .*head_type is 'mlp'"):
        convert_to_peer(str(tmp_path / "ours"), "transformers", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() and no_staging_left(tmp_path)


def test_a_v1_field_transformers_hard_codes_is_named(tmp_path):
    our_folder(tmp_path / "ours", "poolformer_s12", norm_eps=1e-6)
    with pytest.raises(ValueError, match=r"norm_eps is 1e-06 \(it has only 1e-05\)"):
        convert_to_peer(str(tmp_path / "ours"), "transformers", str(tmp_path / "out"))


# ----------------------------------------------------------------------------------------------- output folders
def test_a_folder_of_other_files_is_never_replaced_and_an_earlier_back_out_is(tmp_path, s12_folder):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        convert_to_peer(str(s12_folder), "transformers", str(out))
    with pytest.raises(ValueError, match="not the output of an earlier conversion"):
        convert_to_peer(str(s12_folder), "transformers", str(out), overwrite=True)
    assert os.listdir(out) == ["keep.txt"] and no_staging_left(tmp_path)

    (out / "keep.txt").unlink()
    convert_to_peer(str(s12_folder), "transformers", str(out))
    assert (out / MARKER_NAME).is_file()
    convert_to_peer(str(s12_folder), "transformers", str(out), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["out"]
    with pytest.raises(ValueError, match="it holds the input file"):  # the input folder itself
        convert_to_peer(str(s12_folder), "transformers", str(s12_folder), overwrite=True)


# ---------------------------------------------------------------------------------------------------------- script
def _script(capsys, *args):
    main = runpy.run_path(os.path.join(ROOT, "scripts", "convert_checkpoint.py"), run_name="convert")["main"]
    status = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err.strip().splitlines()


def test_the_script_backs_out_a_folder_or_a_checkpoint_file_and_refuses_in_one_line(tmp_path, capsys, s12_folder):
    status, out, err = _script(capsys, "--checkpoint", s12_folder, "--to", "transformers", "--output", tmp_path / "tf")
    assert status == 0 and "as a transformers poolformer folder" in out, err
    assert transformers.AutoConfig.from_pretrained(tmp_path / "tf").model_type == "poolformer"

    # A timm checkpoint file, as the converter reads it, back to timm's folder: the v1 head is timm's both ways.
    reference = randomize_(timm.create_model("poolformer_s12", num_classes=3), seed=7).eval()
    save_file(reference.state_dict(), tmp_path / "s12.safetensors")
    status, _, err = _script(capsys, "--checkpoint", tmp_path / "s12.safetensors", "--variant", "poolformer_s12",
                             "--to", "timm", "--output", tmp_path / "timm")
    assert status == 0, err
    theirs = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    assert max_abs_diff(logits(theirs), logits(reference)) <= 1e-4

    status, _, err = _script(capsys, "--checkpoint", tmp_path / "s12.safetensors", "--variant", "poolformer_s12",
                             "--to", "transformers", "--output", tmp_path / "refused")
    assert status == 1 and len(err) == 1 and err[0].startswith(
        "error: transformers' PoolFormer cannot represent poolformer_s12: head_norm_position is 'after_pool' (it has "
        "only 'before_pool'). Only the paper's v1 PoolFormer")
    status, _, err = _script(capsys, "--checkpoint", tmp_path / "s12.safetensors", "--to", "timm",
                             "--output", tmp_path / "refused")
    assert status == 1 and err == [f"error: {tmp_path / 's12.safetensors'} is a checkpoint file: name its preset "
                                   "with --variant (a folder needs none)"]
    assert not (tmp_path / "refused").exists()
