import pytest
import torch
from transformers import UperNetConfig, UperNetForSemanticSegmentation

from conftest import max_abs_diff, randomize_, tiny_config
from poolformer_hf import PoolFormerBackbone, PoolFormerForImageClassification
from poolformer_hf.layers import GroupNorm1


def test_feature_maps_at_strides_4_8_16_32():
    config = tiny_config(out_features=["stage1", "stage2", "stage3", "stage4"])
    backbone = PoolFormerBackbone(config).eval()
    maps = backbone(torch.randn(1, 3, 128, 128)).feature_maps
    assert [tuple(m.shape) for m in maps] == [(1, 8, 32, 32), (1, 16, 16, 16), (1, 32, 8, 8), (1, 32, 4, 4)]
    assert backbone.channels == [8, 16, 32, 32]
    assert backbone.stage_names == ["stem", "stage1", "stage2", "stage3", "stage4"]


def test_out_indices_select_and_each_output_is_normalized():
    backbone = randomize_(PoolFormerBackbone(tiny_config(out_indices=[0, 2, 4]))).eval()
    assert backbone.out_features == ["stem", "stage2", "stage4"]
    assert all(isinstance(norm, GroupNorm1) for norm in backbone.hidden_states_norms.values())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = backbone(x, output_hidden_states=True)
        body = backbone.encode(x, output_hidden_states=True).hidden_states
    assert len(out.feature_maps) == 3 and len(out.hidden_states) == 5
    for stage, feature in zip(["stem", "stage2", "stage4"], out.feature_maps):
        index = backbone.stage_names.index(stage)
        assert max_abs_diff(feature, backbone.hidden_states_norms[stage](body[index])) == 0


def test_backbone_norm_can_be_turned_off():
    backbone = PoolFormerBackbone(tiny_config(out_features=["stage3"], backbone_norm=False)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(backbone(x).feature_maps[0], backbone.encode(x, output_hidden_states=True).hidden_states[3])


def test_backbone_loads_a_classification_checkpoint(tmp_path):
    classifier = randomize_(PoolFormerForImageClassification(tiny_config()))
    classifier.save_pretrained(tmp_path)
    # (AutoBackbone.from_pretrained asks the Hub whether the repo exists even for a local folder, so it needs a
    # network; the class itself loads offline.)
    backbone = PoolFormerBackbone.from_pretrained(tmp_path, out_features=["stage2", "stage4"])
    assert isinstance(backbone, PoolFormerBackbone)
    assert torch.equal(backbone.stages[1].blocks[0].mlp.fc1.weight,
                       classifier.poolformer.stages[1].blocks[0].mlp.fc1.weight)


def test_upernet_segmentation_forward_and_backward():
    backbone_config = tiny_config(out_features=["stage1", "stage2", "stage3", "stage4"])
    config = UperNetConfig(backbone_config=backbone_config, hidden_size=16, auxiliary_channels=8, num_labels=5,
                           use_auxiliary_head=True)
    model = UperNetForSemanticSegmentation(config).train()
    assert isinstance(model.backbone, PoolFormerBackbone)
    pixels = torch.randn(2, 3, 64, 64)
    labels = torch.randint(0, 5, (2, 64, 64))
    out = model(pixel_values=pixels, labels=labels)
    assert out.logits.shape == (2, 5, 64, 64)
    out.loss.backward()
    grad = model.backbone.stem.conv.weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("mixer", ["attention", "sepconv", "identity"])
def test_backbone_works_for_other_mixers(mixer):
    backbone = PoolFormerBackbone(tiny_config(token_mixers=mixer, attention_head_dim=8, out_indices=[1, 2, 3, 4])).eval()
    maps = backbone(torch.randn(1, 3, 64, 64)).feature_maps
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]


def test_readmes_way_to_a_backbone_from_a_local_folder_without_the_package(tmp_path):
    # README (Usage): AutoBackbone.from_pretrained(local folder) fails in transformers 5.24 (it asks the Hub
    # repo_exists(path) first); the folder's own class, through get_class_from_dynamic_module, loads it.
    from isolated_python import run_isolated

    classifier = randomize_(PoolFormerForImageClassification(tiny_config()))
    classifier.save_pretrained(tmp_path / "folder")
    code = f"""
import torch
from transformers import AutoConfig
from transformers.dynamic_module_utils import get_class_from_dynamic_module
folder = {str(tmp_path / "folder")!r}
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
Backbone = get_class_from_dynamic_module(config.auto_map["AutoBackbone"], folder)
backbone = Backbone.from_pretrained(folder, out_features=["stage2", "stage4"])
weight = backbone.stages[1].blocks[0].mlp.fc1.weight
print(type(backbone).__name__, len(backbone(torch.randn(1, 3, 64, 64)).feature_maps), float(weight.sum()))
"""
    name, maps, weight_sum = run_isolated(code, tmp_path).split()
    assert (name, maps) == ("PoolFormerBackbone", "2")
    expected = classifier.poolformer.stages[1].blocks[0].mlp.fc1.weight.sum().item()
    assert abs(float(weight_sum) - expected) < 1e-4
