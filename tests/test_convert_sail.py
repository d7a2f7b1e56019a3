"""sail-sg's original checkpoints through scripts/convert_checkpoint.py and poolformer_hf.conversion.to_folder.

sail-sg/poolformer's classification files (released, or as its timm-style train.py saves them), its mmdet / mmseg
detector and segmentor files (whose PoolFormer backbone has a norm after each stage), and sail-sg/metaformer's
PoolFormerV2, ConvFormer and CAFormer releases. Each file is built offline: a timm model with O(1) random weights,
its state dict renamed into the names sail-sg's code gives (models/poolformer.py, metaformer_baselines.py) and saved
as those repos save it. The converted folder must give the timm model's outputs.
"""

import argparse
import functools
import logging
import os
import re
import subprocess
import sys

import pytest
import timm
import torch
import torch.nn.functional as F

from conftest import ROOT, max_abs_diff, randomize_
from poolformer_hf import PoolFormerBackbone, PoolFormerForImageClassification
from poolformer_hf.conversion.formats import rename_keys, split_backbone
from poolformer_hf.conversion.to_folder import convert_checkpoint

PIXELS = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
TOLERANCE = 1e-4


@functools.cache
def timm_reference(name: str, num_classes: int) -> torch.nn.Module:
    return randomize_(timm.create_model(name, num_classes=num_classes), seed=3).eval()


# sail-sg/poolformer names timm's PoolFormer v1 modules so: `network` holds the stages at even indices and the
# downsamplings between them at odd ones; the layer scales are bare parameters; the final norm and head sit at the top.
_TIMM_TO_SAIL_V1 = [
    (r"^stem\.conv\.", "patch_embed.proj."),
    (r"^stages\.(\d)\.downsample\.conv\.", lambda m: f"network.{2 * int(m[1]) - 1}.proj."),
    (r"^stages\.(\d)\.blocks\.(\d+)\.", lambda m: f"network.{2 * int(m[1])}.{m[2]}."),
    (r"\.layer_scale(\d)\.scale$", r".layer_scale_\1"),
    (r"^head\.norm\.", "norm."),
    (r"^head\.fc\.", "head."),
]


def sail_v1_state_dict(reference: torch.nn.Module) -> dict:
    out = {}
    for key, tensor in reference.state_dict().items():
        for pattern, replacement in _TIMM_TO_SAIL_V1:
            key = re.sub(pattern, replacement, key)
        out[key] = tensor
    return out


def sail_v2_state_dict(reference: torch.nn.Module) -> dict:
    """sail-sg/metaformer names for a timm MetaFormer's weights; that code keeps every MLP, SepConv pointwise conv and
    attention projection as a linear layer (2-D weights), and the MLP head as head.fc1 / head.norm / head.fc2."""
    out = {}
    for key, tensor in reference.state_dict().items():
        key = key.replace("stem.conv.", "downsample_layers.0.conv.")
        key = key.replace("stem.norm.", "downsample_layers.0.post_norm.")
        for stage in range(1, 4):
            key = key.replace(f"stages.{stage}.downsample.norm.", f"downsample_layers.{stage}.pre_norm.")
            key = key.replace(f"stages.{stage}.downsample.conv.", f"downsample_layers.{stage}.conv.")
        key = key.replace(".blocks.", ".").replace("head.norm.", "norm.").replace("head.fc.", "head.")
        if tensor.ndim == 4 and tensor.shape[-2:] == (1, 1) and ("mlp.fc" in key or "pwconv" in key):
            tensor = tensor.flatten(1)
        out[key] = tensor
    return out


def sail_v1_logits(reference: torch.nn.Module) -> torch.Tensor:
    """sail-sg/poolformer's head on timm's body: its final GroupNorm comes before the global pool (timm's PoolFormer
    applies its final norm after the pool instead, so timm's own logits are not the release's)."""
    with torch.no_grad():
        body = reference.forward_features(PIXELS)
        pooled = F.group_norm(body, 1, reference.head.norm.weight, reference.head.norm.bias, eps=1e-5).mean((-2, -1))
        return reference.head.fc(pooled)


def timm_training_checkpoint(weights: dict, arch: str, wrapper: str = "state_dict") -> dict:
    """What timm's CheckpointSaver (sail-sg's train.py) writes: the weights beside the run's state and arguments."""
    first = next(iter(weights.values()))
    return {
        "epoch": 299, "arch": arch, wrapper: weights, "version": 2, "metric": 77.2,
        "optimizer": {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(first)}},
                      "param_groups": [{"lr": 4e-3, "weight_decay": 0.05, "params": [0]}]},
        "amp_scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
        "args": argparse.Namespace(model=arch, lr=4e-3, batch_size=128, aa="rand-m9-mstd0.5-inc1", mean=None),
    }


def logits_of(folder) -> torch.Tensor:
    model = PoolFormerForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(PIXELS).logits


# Names as sail-sg's code gives them (models/poolformer.py; metaformer_baselines.py), and ours.
@pytest.mark.parametrize("source_format, key, ours", [
    ("sail_v1", "patch_embed.proj.weight", "poolformer.stem.conv.weight"),
    ("sail_v1", "network.1.proj.bias", "poolformer.stages.1.downsample.conv.bias"),
    ("sail_v1", "network.6.1.mlp.fc2.weight", "poolformer.stages.3.blocks.1.mlp.fc2.weight"),
    ("sail_v1", "network.4.5.layer_scale_2", "poolformer.stages.2.blocks.5.layer_scale2.scale"),
    ("sail_v1", "norm.weight", "poolformer.norm.weight"),
    ("sail_v1", "head.bias", "classifier.bias"),
    ("sail_v1", "norm0.weight", "hidden_states_norms.stage1.weight"),
    ("sail_v1", "norm6.bias", "hidden_states_norms.stage4.bias"),
    ("sail_v2", "downsample_layers.0.post_norm.weight", "poolformer.stem.norm.weight"),
    ("sail_v2", "downsample_layers.3.pre_norm.weight", "poolformer.stages.3.downsample.norm.weight"),
    ("sail_v2", "stages.0.2.token_mixer.pwconv1.weight", "poolformer.stages.0.blocks.2.token_mixer.pwconv1.weight"),
    ("sail_v2", "stages.2.8.token_mixer.qkv.weight", "poolformer.stages.2.blocks.8.token_mixer.qkv.weight"),
    ("sail_v2", "stages.3.0.token_mixer.proj.weight", "poolformer.stages.3.blocks.0.token_mixer.proj.weight"),
    ("sail_v2", "stages.3.2.res_scale2.scale", "poolformer.stages.3.blocks.2.res_scale2.scale"),
    ("sail_v2", "head.fc1.weight", "classifier.fc1.weight"),
    ("sail_v2", "head.norm.bias", "classifier.norm.bias"),
    ("sail_v2", "norm.weight", "poolformer.norm.weight"),
])
def test_sail_names_rename_to_ours(source_format, key, ours):
    assert list(rename_keys({key: None}, source_format)) == [ours]


@pytest.mark.parametrize("name, saved_as", [
    ("poolformer_s12", "released"), ("poolformer_s12", "state_dict"), ("poolformer_s12", "model"),
    ("poolformerv2_s12", "released"), ("convformer_s18", "released"), ("caformer_s18", "released"),
    ("caformer_s18", "state_dict"),
])
def test_sail_classification_file_converts_to_the_reference_logits(tmp_path, name, saved_as):
    v1 = name.startswith("poolformer_")  # sail-sg/poolformer's; the others are sail-sg/metaformer's
    reference = timm_reference(name, 7)
    weights = (sail_v1_state_dict if v1 else sail_v2_state_dict)(reference)
    checkpoint = tmp_path / (f"{name}.pth.tar" if v1 else f"{name}.pth")
    torch.save(weights if saved_as == "released" else timm_training_checkpoint(weights, name, saved_as), checkpoint)
    assert convert_checkpoint(str(checkpoint), name, str(tmp_path / "out")) == ("sail_v1" if v1 else "sail_v2")
    with torch.no_grad():
        expected = sail_v1_logits(reference) if v1 else reference(PIXELS)
    assert max_abs_diff(logits_of(tmp_path / "out"), expected) <= TOLERANCE


# The parts beside the backbone in sail-sg/poolformer's detectors and segmentor (mmdet 2.19 / mmseg 0.19 names), and
# the stages whose output the backbone normalizes: RetinaNet's (FORK_LAST3) has no norm after the first stage.
DENSE = {
    "mask_rcnn": (("neck.lateral_convs.0.conv.weight", "rpn_head.rpn_conv.weight", "roi_head.bbox_head.fc_cls.weight",
                   "roi_head.mask_head.convs.0.conv.weight"), (0, 1, 2, 3)),
    "retinanet": (("neck.fpn_convs.0.conv.weight", "bbox_head.retina_cls.weight", "bbox_head.cls_convs.0.conv.bias"),
                  (1, 2, 3)),
    "semantic_fpn": (("neck.lateral_convs.0.conv.weight", "decode_head.conv_seg.weight",
                      "decode_head.scale_heads.0.0.bn.num_batches_tracked"), (0, 1, 2, 3)),
}


def dense_checkpoint(reference: torch.nn.Module, detector: str) -> dict:
    """An mmcv checkpoint of a detector or segmentor on sail-sg's PoolFormer backbone (`fork_feat=True`): no final norm
    or head, a GroupNorm after each normalized stage (norm0, norm2, norm4, norm6: their index in `network`)."""
    others, stages = DENSE[detector]
    generator = torch.Generator().manual_seed(7)
    weights = {f"backbone.{key}": tensor for key, tensor in sail_v1_state_dict(reference).items()
               if not key.startswith(("norm.", "head."))}
    for stage in stages:
        width = reference.feature_info[stage]["num_chs"]
        weights[f"backbone.norm{2 * stage}.weight"] = torch.rand(width, generator=generator) + 0.5
        weights[f"backbone.norm{2 * stage}.bias"] = 0.2 * torch.randn(width, generator=generator)
    for key in others:
        counter = key.endswith("num_batches_tracked")  # an int64 buffer of a BatchNorm in the heads
        weights[key] = torch.tensor(5) if counter else torch.randn(8, 4, generator=generator)
    meta = {"mmcv_version": "1.4.0", "time": "Mon Dec  6 10:00:00 2021", "epoch": 12, "iter": 87960,
            "CLASSES": ("person", "bicycle"), "config": "model = dict(backbone=dict(type='poolformer_s12_feat'))"}
    return {"meta": meta, "state_dict": weights,
            "optimizer": {"state": {}, "param_groups": [{"lr": 2e-4, "params": []}]}}


def sail_feature_maps(reference: torch.nn.Module, checkpoint: dict, detector: str) -> list[torch.Tensor]:
    """sail-sg's fork_feat forward, written out here: each normalized stage's output through its GroupNorm(1, C)."""
    with torch.no_grad():
        outputs = reference.forward_intermediates(PIXELS, intermediates_only=True)
    weights = checkpoint["state_dict"]
    return [F.group_norm(outputs[stage], 1, weights[f"backbone.norm{2 * stage}.weight"],
                         weights[f"backbone.norm{2 * stage}.bias"], eps=1e-5) for stage in DENSE[detector][1]]


@pytest.mark.parametrize("detector", list(DENSE))
def test_sail_v1_detector_or_segmentor_file_becomes_a_backbone(tmp_path, caplog, detector):
    reference = timm_reference("poolformer_s12", 0)
    contents = dense_checkpoint(reference, detector)
    checkpoint = tmp_path / f"{detector}_poolformer_s12.pth"
    torch.save(contents, checkpoint)
    with caplog.at_level(logging.WARNING, logger="poolformer_hf"):
        assert convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out")) == "sail_v1"
    _, left_out = split_backbone(contents["state_dict"])
    assert f"leaving out the {sum(left_out.values())} tensors" in caplog.text
    assert all(f"{part} ({count})" in caplog.text for part, count in left_out.items())
    backbone = PoolFormerBackbone.from_pretrained(tmp_path / "out").eval()
    assert backbone.out_features == [f"stage{stage + 1}" for stage in DENSE[detector][1]]
    with torch.no_grad():
        maps = backbone(PIXELS).feature_maps
    expected = sail_feature_maps(reference, contents, detector)
    assert len(maps) == len(expected)
    assert max(max_abs_diff(ours, theirs) for ours, theirs in zip(maps, expected)) <= TOLERANCE


def test_the_cli_converts_a_segmentor_file_and_names_what_it_left_out(tmp_path):
    checkpoint = tmp_path / "fpn_poolformer_s12_ade20k_40k.pth"
    torch.save(dense_checkpoint(timm_reference("poolformer_s12", 0), "semantic_fpn"), checkpoint)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "convert_checkpoint.py"), "--checkpoint", str(checkpoint),
         "--variant", "poolformer_s12", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 0, result.stderr
    assert "leaving out the 3 tensors of its other parts: decode_head. (2), neck. (1)" in result.stderr
    assert PoolFormerBackbone.from_pretrained(tmp_path / "out").out_features == ["stage1", "stage2", "stage3", "stage4"]


SAIL_FILES = {
    "poolformer_s12 classifier": lambda: sail_v1_state_dict(timm_reference("poolformer_s12", 7)),
    "poolformer_s12 Mask R-CNN": lambda: dense_checkpoint(timm_reference("poolformer_s12", 0), "mask_rcnn"),
    "caformer_s18 classifier": lambda: sail_v2_state_dict(timm_reference("caformer_s18", 7)),
}
STEM_OF_ANOTHER_WIDTH = r"stem\.conv\.weight: checkpoint \(64, 3, 7, 7\) vs model \(96, 3, 7, 7\)"


@pytest.mark.parametrize("source, variant, message", [
    ("poolformer_s12 Mask R-CNN", "poolformer_m36", STEM_OF_ANOTHER_WIDTH),
    ("poolformer_s12 Mask R-CNN", "poolformer_s24", r"missing, e\.g\. \['stages\.0\.blocks\.2\."),
    ("poolformer_s12 classifier", "poolformer_m36", STEM_OF_ANOTHER_WIDTH),
    ("caformer_s18 classifier", "caformer_m36", STEM_OF_ANOTHER_WIDTH),
    ("caformer_s18 classifier", "convformer_s18",
     r"missing, e\.g\. \[.*token_mixer\.(act1|dwconv|pwconv).*unexpected, e\.g\. \[.*token_mixer\.(proj|qkv)"),
])
def test_a_sail_file_of_another_variant_is_refused_naming_the_tensor(tmp_path, source, variant, message):
    checkpoint = tmp_path / "other_variant.pth"
    torch.save(SAIL_FILES[source](), checkpoint)
    with pytest.raises(ValueError, match=message):
        convert_checkpoint(str(checkpoint), variant, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_truncated_detector_file_is_refused(tmp_path):
    checkpoint = tmp_path / "mask_rcnn_poolformer_s12_fpn_1x_coco.pth"
    torch.save(dense_checkpoint(timm_reference("poolformer_s12", 0), "mask_rcnn"), checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
