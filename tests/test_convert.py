"""scripts/convert_checkpoint.py and poolformer_hf.convert: every source format, and every way a file can be bad."""

import os
import pickle
import subprocess
import sys

import pytest
import timm
import torch
import transformers
from safetensors.torch import save_file

from conftest import ROOT, max_abs_diff, randomize_
from poolformer_hf import PoolFormerForImageClassification, PoolFormerModel
from poolformer_hf.convert import convert_checkpoint

PIXELS = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))


def logits_of(folder, pixels=PIXELS):
    model = PoolFormerForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(pixels).logits


def sail_v1_state_dict(reference: transformers.PoolFormerForImageClassification) -> dict:
    """The original release's names for a transformers PoolFormer's weights, written out by hand here."""
    source = reference.state_dict()
    out = {"patch_embed.proj.weight": source["poolformer.encoder.patch_embeddings.0.projection.weight"],
           "patch_embed.proj.bias": source["poolformer.encoder.patch_embeddings.0.projection.bias"],
           "norm.weight": source["norm.weight"], "norm.bias": source["norm.bias"],
           "head.weight": source["classifier.weight"], "head.bias": source["classifier.bias"]}
    for stage, depth in enumerate(reference.config.depths):
        if stage:
            for kind in ("weight", "bias"):
                out[f"network.{2 * stage - 1}.proj.{kind}"] = source[
                    f"poolformer.encoder.patch_embeddings.{stage}.projection.{kind}"]
        for block in range(depth):
            theirs = f"poolformer.encoder.block.{stage}.{block}."
            mine = f"network.{2 * stage}.{block}."
            for a, b in (("norm1", "before_norm"), ("norm2", "after_norm"), ("mlp.fc1", "output.conv1"),
                         ("mlp.fc2", "output.conv2")):
                for kind in ("weight", "bias"):
                    out[f"{mine}{a}.{kind}"] = source[f"{theirs}{b}.{kind}"]
            out[mine + "layer_scale_1"] = source[theirs + "layer_scale_1"]
            out[mine + "layer_scale_2"] = source[theirs + "layer_scale_2"]
    return out


def sail_v2_state_dict(reference) -> dict:
    """sail-sg/metaformer names for a timm MetaFormer's weights; that code keeps MLPs as linear layers (2-D)."""
    out = {}
    for key, tensor in reference.state_dict().items():
        key = key.replace("stem.conv.", "downsample_layers.0.conv.").replace("stem.norm.", "downsample_layers.0.post_norm.")
        for stage in range(1, 4):
            key = key.replace(f"stages.{stage}.downsample.norm.", f"downsample_layers.{stage}.pre_norm.")
            key = key.replace(f"stages.{stage}.downsample.conv.", f"downsample_layers.{stage}.conv.")
        key = key.replace(".blocks.", ".").replace("head.norm.", "norm.").replace("head.fc.", "head.")
        if tensor.ndim == 4 and tensor.shape[-2:] == (1, 1) and ("mlp.fc" in key or "pwconv" in key):
            tensor = tensor.flatten(1)
        out[key] = tensor
    return out


def test_sail_v1_release_file_converts_to_the_original_logits(tmp_path):
    config = transformers.PoolFormerConfig(num_labels=7)
    reference = randomize_(transformers.PoolFormerForImageClassification(config), seed=3).eval()
    checkpoint = tmp_path / "poolformer_s12.pth.tar"
    torch.save(sail_v1_state_dict(reference), checkpoint)
    assert convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out")) == "sail_v1"
    with torch.no_grad():
        expected = reference(PIXELS).logits
    assert max_abs_diff(logits_of(tmp_path / "out"), expected) <= 1e-4


@pytest.mark.parametrize("name", ["poolformerv2_s12", "caformer_s18"])
def test_sail_v2_release_file_converts_to_the_reference_logits(tmp_path, name):
    reference = randomize_(timm.create_model(name, num_classes=5), seed=4).eval()
    checkpoint = tmp_path / f"{name}.pth"
    torch.save({"model": sail_v2_state_dict(reference)}, checkpoint)  # a training checkpoint wraps the weights
    assert convert_checkpoint(str(checkpoint), name, str(tmp_path / "out")) == "sail_v2"
    with torch.no_grad():
        expected = reference(PIXELS)
    assert max_abs_diff(logits_of(tmp_path / "out"), expected) <= 1e-4


def test_timm_safetensors_with_imagenet_head_gets_labels_processor_and_code(tmp_path):
    reference = randomize_(timm.create_model("convformer_s18", num_classes=1000), seed=5).eval()
    checkpoint = tmp_path / "convformer_s18.safetensors"
    save_file(reference.state_dict(), checkpoint)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "convert_checkpoint.py"), "--checkpoint", str(checkpoint),
         "--variant", "convformer_s18", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out"
    with torch.no_grad():
        expected = reference(PIXELS)
    assert max_abs_diff(logits_of(folder), expected) <= 1e-4
    config = transformers.AutoConfig.from_pretrained(folder)
    assert config.num_labels == 1000 and config.id2label[0] and config.id2label[0] != "LABEL_0"
    assert config.crop_pct == 1.0
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    assert processor.crop_pct == 1.0
    assert (folder / "modeling_poolformer.py").exists() and (folder / "model.safetensors").exists()


def test_headless_checkpoint_becomes_a_base_model(tmp_path):
    reference = randomize_(timm.create_model("poolformerv2_s12", num_classes=0), seed=6).eval()
    checkpoint = tmp_path / "body.safetensors"
    save_file(reference.state_dict(), checkpoint)
    convert_checkpoint(str(checkpoint), "poolformerv2_s12", str(tmp_path / "out"))
    model = PoolFormerModel.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(PIXELS), pre_logits=True)
        assert max_abs_diff(model(PIXELS).pooler_output, expected) <= 1e-4


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = tmp_path / "evil.pth"
    with open(checkpoint, "wb") as handle:
        pickle.dump({"stem.conv.weight": _RunsCode()}, handle)
    with pytest.raises(ValueError, match="refused|Refused"):
        convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out"))
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "out").exists()


def test_truncated_file_is_reported_and_leaves_no_folder(tmp_path):
    reference = timm.create_model("poolformer_s12", num_classes=3)
    for suffix, save in ((".pth", torch.save), (".safetensors", save_file)):
        checkpoint = tmp_path / f"model{suffix}"
        save(reference.state_dict(), checkpoint)
        data = checkpoint.read_bytes()
        checkpoint.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="truncated"):
            convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["model.pth", "model.safetensors"]


def test_checkpoint_of_another_model_is_named(tmp_path):
    checkpoint = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("resnet10t", num_classes=3).state_dict(), checkpoint)
    with pytest.raises(ValueError, match="not a PoolFormer/MetaFormer"):
        convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_variant_that_does_not_match_the_weights_is_named(tmp_path):
    checkpoint = tmp_path / "s12.safetensors"
    save_file(timm.create_model("poolformer_s12", num_classes=3).state_dict(), checkpoint)
    with pytest.raises(ValueError, match="wrong variant"):
        convert_checkpoint(str(checkpoint), "poolformer_m36", str(tmp_path / "out"))
    with pytest.raises(ValueError, match="Unknown variant"):
        convert_checkpoint(str(checkpoint), "poolformer_xxl", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".converting")]


def test_existing_output_is_not_overwritten_without_asking(tmp_path):
    checkpoint = tmp_path / "s12.safetensors"
    save_file(timm.create_model("poolformer_s12", num_classes=3).state_dict(), checkpoint)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out"))
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out"), overwrite=True)
    assert not (tmp_path / "out" / "keep.txt").exists()
