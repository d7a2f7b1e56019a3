import dataclasses
import json

import pytest
import torch
import transformers
from huggingface_hub.errors import StrictDataclassFieldValidationError

from poolformer_hf import PRESET_NAMES, PoolFormerConfig
from poolformer_hf.configuration_poolformer import PER_STAGE_FIELDS


def test_model_type_does_not_collide_with_transformers():
    assert PoolFormerConfig.model_type != transformers.PoolFormerConfig.model_type
    assert PoolFormerConfig.model_type not in transformers.models.auto.configuration_auto.CONFIG_MAPPING_NAMES


# transformers' fields that describe no architecture of ours: translated where a config is made, never stored.
LEGACY_FIELDS = ("patch_size", "stride", "num_encoder_blocks", "use_layer_scale")


def test_has_every_architectural_field_of_transformers_config_with_the_same_defaults():
    theirs = transformers.PoolFormerConfig()
    ours = PoolFormerConfig()
    for field in dataclasses.fields(transformers.PoolFormerConfig):
        if field.name.startswith("_") or not hasattr(theirs, field.name) or field.name in LEGACY_FIELDS:
            continue
        assert hasattr(ours, field.name), field.name
        expected = getattr(theirs, field.name)
        actual = getattr(ours, field.name)
        if isinstance(expected, tuple):
            expected = list(expected)
        assert actual == expected, field.name


def test_transformers_native_config_json_loads(tmp_path):
    theirs = transformers.PoolFormerConfig(
        depths=[6, 6, 18, 6], hidden_sizes=[96, 192, 384, 768], layer_scale_init_value=1e-6,
        num_labels=5, hidden_act="relu",
    )
    theirs.save_pretrained(tmp_path)
    ours = PoolFormerConfig.from_pretrained(tmp_path)
    assert ours.depths == [6, 6, 18, 6]
    assert ours.hidden_sizes == [96, 192, 384, 768]
    assert ours.layer_scale_init_value == 1e-6
    assert ours.hidden_act == "relu"
    assert not any(name in ours.to_dict() for name in LEGACY_FIELDS)
    assert ours.num_labels == 5


def test_round_trip_keeps_per_stage_lists(tmp_path):
    config = PoolFormerConfig(
        token_mixers=["pooling", "pooling", "attention", "attention"],
        res_scale_init_value=[None, None, 1.0, 1.0],
        out_features=["stage2", "stage4"],
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "poolformer_hf"
    loaded = PoolFormerConfig.from_pretrained(tmp_path)
    assert loaded.token_mixers == ["pooling", "pooling", "attention", "attention"]
    assert loaded.res_scale_init_value == [None, None, 1.0, 1.0]
    assert loaded.out_features == ["stage2", "stage4"]
    assert loaded.out_indices == [2, 4]


def test_stage_names_follow_transformers_convention():
    assert PoolFormerConfig().stage_names == ["stem", "stage1", "stage2", "stage3", "stage4"]


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"depths": [2, 2, 6]}, "depths"),
        ({"hidden_sizes": [64, 128, 320]}, "hidden_sizes"),
        ({"strides": [4, 2, 2]}, "strides"),
        ({"padding": [2, 1, 1]}, "padding"),
        ({"depths": [2, 0, 6, 2]}, "depths"),
        ({"hidden_sizes": [64, -128, 320, 512]}, "hidden_sizes"),
        ({"pool_size": 0}, "pool_size"),
        ({"pool_size": 4}, "pool_size"),
        ({"mlp_ratio": 0.0}, "mlp_ratio"),
        ({"hidden_act": "swishy"}, "hidden_act"),
        ({"hidden_act": ["gelu", "relu"]}, "hidden_act"),
        ({"token_mixers": "convolution"}, "token_mixers"),
        ({"norm_type": "rms_norm"}, "norm_type"),
        ({"drop_path_rate": 1.5}, "drop_path_rate"),
        ({"layer_scale_init_value": -1.0}, "layer_scale_init_value"),
        ({"head_norm_position": "middle"}, "head_norm_position"),
        ({"crop_pct": 0.0}, "crop_pct"),
        ({"token_mixers": "attention", "hidden_sizes": [64, 128, 320, 500]}, "attention_head_dim"),
        # NaN passes every `<=` test; a ratio can round a layer to 0 channels or blow it up.
        ({"mlp_ratio": float("nan")}, "mlp_ratio"),
        ({"mlp_ratio": float("inf")}, "mlp_ratio"),
        ({"mlp_ratio": 0.01}, "mlp_ratio"),
        ({"mlp_ratio": 1e300}, "mlp_ratio"),
        ({"mlp_ratio": 10**30}, "mlp_ratio"),
        ({"head_type": "mlp", "head_mlp_ratio": 0.001}, "head_mlp_ratio"),
        ({"token_mixers": "sepconv", "sepconv_expansion_ratio": 0.01}, "sepconv_expansion_ratio"),
        ({"sepconv_expansion_ratio": float("nan")}, "sepconv_expansion_ratio"),
        ({"norm_eps": float("nan")}, "norm_eps"),
        ({"norm_eps": float("inf")}, "norm_eps"),
        ({"norm_eps": 0.0}, "norm_eps"),
        ({"norm_eps": 1e-300}, "norm_eps"),
        ({"norm_eps": 2.0}, "norm_eps"),
        ({"layer_scale_init_value": float("nan")}, "layer_scale_init_value"),
        ({"layer_scale_init_value": float("inf")}, "layer_scale_init_value"),
        ({"layer_scale_init_value": 1e30}, "layer_scale_init_value"),
        ({"layer_scale_init_value": [1e-5, 1e-5, float("nan"), None]}, "layer_scale_init_value"),
        ({"res_scale_init_value": float("nan")}, "res_scale_init_value"),
        ({"res_scale_init_value": [None, None, 1.0, float("-inf")]}, "res_scale_init_value"),
        ({"res_scale_init_value": 1e300}, "res_scale_init_value"),
        ({"res_scale_init_value": 1000.0, "depths": [1, 1, 1, 1]}, "res_scale_init_value"),  # 1000⁸ overflows norms
        ({"res_scale_init_value": [None, None, 3.0, 3.0], "depths": [3, 12, 18, 3]}, "res_scale_init_value"),
        ({"initializer_range": float("nan")}, "initializer_range"),
        ({"initializer_range": -0.02}, "initializer_range"),
        ({"initializer_range": 0.0}, "initializer_range"),  # found by the fuzzer: trunc_normal_ divides by it
        ({"crop_pct": float("nan")}, "crop_pct"),
        ({"head_dropout": float("inf")}, "head_dropout"),
        ({"hidden_sizes": [64, 128, 320, 2**30]}, "hidden_sizes"),
        ({"num_channels": 10**9}, "num_channels"),
        ({"padding": [7, 1, 1, 1]}, "padding"),
        ({"token_mixers": "spatial_fc", "image_size": 2}, "image_size"),
        ({"num_labels": -1}, "num_labels"),
        ({"num_labels": 10**9}, "num_labels"),  # would build a 10⁹-entry id2label before failing
        ({"id2label": {"cat": "cat"}}, "id2label"),
        ({"id2label": {1: "cat", 2: "dog"}}, "id2label"),
        ({"dtype": "float17"}, "dtype"),
        ({"torch_dtype": "auto"}, "torch_dtype"),
        ({"out_indices": [3, -6]}, "out_indices"),  # found by the fuzzer: an IndexError in transformers' own check
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        PoolFormerConfig(**overrides)


EXPECTED_V1 = {
    # name: (depths, hidden_sizes, layer_scale_init_value, drop_path_rate, crop_pct)
    "poolformer_s12": ([2, 2, 6, 2], [64, 128, 320, 512], 1e-5, 0.1, 0.9),
    "poolformer_s24": ([4, 4, 12, 4], [64, 128, 320, 512], 1e-5, 0.1, 0.9),
    "poolformer_s36": ([6, 6, 18, 6], [64, 128, 320, 512], 1e-6, 0.2, 0.9),
    "poolformer_m36": ([6, 6, 18, 6], [96, 192, 384, 768], 1e-6, 0.3, 0.95),
    "poolformer_m48": ([8, 8, 24, 8], [96, 192, 384, 768], 1e-6, 0.4, 0.95),
}


@pytest.mark.parametrize("name", list(EXPECTED_V1))
def test_v1_presets_have_the_papers_settings(name):
    config = PoolFormerConfig.from_preset(name)
    depths, widths, layer_scale, drop_path, crop_pct = EXPECTED_V1[name]
    assert (config.depths, config.hidden_sizes) == (depths, widths)
    assert config.layer_scale_init_value == layer_scale
    assert config.drop_path_rate == drop_path
    assert config.crop_pct == crop_pct
    assert config.token_mixers == "pooling" and config.norm_type == "group_norm" and config.hidden_act == "gelu"


def test_every_preset_builds_a_valid_config_and_overrides_apply():
    for name in PRESET_NAMES:
        config = PoolFormerConfig.from_preset(name, num_labels=7)
        assert config.num_labels == 7
        for field in PER_STAGE_FIELDS:
            for stage in range(config.num_stages):
                config.stage_value(field, stage)
    assert PoolFormerConfig.from_preset("poolformer_s12", drop_path_rate=0.0).drop_path_rate == 0.0


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="poolformer_s12"):
        PoolFormerConfig.from_preset("poolformer_xl")


def test_use_layer_scale_false_turns_layer_scale_off():
    # transformers' legacy switch, translated into our one switch for LayerScale, also over a per-stage list.
    config = PoolFormerConfig(use_layer_scale=False, layer_scale_init_value=[1e-5, 1e-5, 1e-6, 1e-6])
    assert config.layer_scale_init_value is None
    assert not hasattr(config, "use_layer_scale")
    assert "use_layer_scale" not in config.to_dict()


def test_transformers_legacy_fields_are_translated_not_stored():
    config = PoolFormerConfig(patch_size=16, stride=16, num_encoder_blocks=4)
    assert not any(name in config.to_dict() for name in ("patch_size", "stride", "num_encoder_blocks"))
    with pytest.raises(ValueError, match="num_encoder_blocks"):
        PoolFormerConfig(num_encoder_blocks=3)


@pytest.mark.parametrize(
    "overrides, field",
    [
        # PreTrainedConfig's own fields: strict skips their (string) annotations, so we check them.
        ({"return_dict": 5}, "return_dict"),
        ({"output_hidden_states": "yes"}, "output_hidden_states"),
        ({"is_encoder_decoder": "no"}, "is_encoder_decoder"),
        ({"problem_type": "multi_class"}, "problem_type"),
        ({"id2label": {0: 5}}, "id2label"),
        ({"label2id": ["cat"]}, "label2id"),
        ({"architectures": "PoolFormerModel"}, "architectures"),
        ({"num_labels": "3"}, "num_labels"),
        ({"num_labels": True}, "num_labels"),
        ({"num_labels": 2.0}, "num_labels"),
        ({"output_attentions": "yes"}, "output_attentions"),
    ],
)
def test_wrong_types_of_inherited_fields_raise_type_error_naming_the_field(overrides, field):
    with pytest.raises(TypeError, match=field):
        PoolFormerConfig(**overrides)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"mlp_bias": 1}, "mlp_bias"),
        ({"norm_bias": "false"}, "norm_bias"),
        ({"backbone_norm": 0}, "backbone_norm"),
        ({"hidden_sizes": [64, 128, 320.0, 512]}, "hidden_sizes"),
        ({"depths": [2, 2, True, 2]}, "depths"),
        ({"pool_size": 3.0}, "pool_size"),
        ({"mlp_ratio": True}, "mlp_ratio"),
    ],
)
def test_wrong_types_of_own_fields_are_refused_by_strict_typing_naming_the_field(overrides, field):
    with pytest.raises(StrictDataclassFieldValidationError, match=field):
        PoolFormerConfig(**overrides)


def test_edge_values_that_are_valid_still_build():
    assert PoolFormerConfig(num_labels=0).num_labels == 0  # a headless model
    assert PoolFormerConfig(mlp_ratio=1 / 64).mlp_ratio == 1 / 64  # 1 channel in the first stage
    assert PoolFormerConfig(norm_eps=1e-12, initializer_range=1e-9).norm_eps == 1e-12
    assert PoolFormerConfig(id2label={"0": "cat", "1": "dog"}).id2label == {0: "cat", 1: "dog"}  # JSON's string keys
    assert PoolFormerConfig(dtype="bfloat16").dtype is torch.bfloat16
    assert PoolFormerConfig(problem_type="multi_label_classification", num_labels=4).num_labels == 4


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_config_json_with_non_finite_literals_is_refused_naming_the_field(tmp_path, literal):
    PoolFormerConfig().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    text = json.dumps({**json.loads(path.read_text()), "norm_eps": "PLACEHOLDER"})
    path.write_text(text.replace('"PLACEHOLDER"', literal))  # Python's json reads these non-standard literals
    with pytest.raises(ValueError, match="norm_eps"):
        PoolFormerConfig.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="norm_eps"):
        PoolFormerConfig.from_json_file(path)


def test_non_finite_values_in_a_dict_are_refused_in_both_spellings():
    with pytest.raises(ValueError, match="layer_scale_init_value"):
        PoolFormerConfig.from_dict({"layer_scale_init_value": float("nan")})
    # transformers' own spelling of NaN in config.json, decoded when the file is read
    with pytest.raises(ValueError, match="mlp_ratio"):
        PoolFormerConfig.from_dict(PoolFormerConfig._decode_special_floats({"mlp_ratio": {"__float__": "NaN"}}))


def test_from_preset_refuses_an_unknown_override_naming_the_closest_field():
    with pytest.raises(ValueError, match=r"'hiden_sizes'.*did you mean 'hidden_sizes'"):
        PoolFormerConfig.from_preset("poolformer_s12", hiden_sizes=[32, 64, 128, 256])
    with pytest.raises(ValueError, match="'zzzz'"):
        PoolFormerConfig.from_preset("poolformer_s12", zzzz=1)


def test_from_preset_accepts_the_keywords_pretrained_config_takes():
    config = PoolFormerConfig.from_preset(
        "poolformer_s12", id2label={0: "cat", 1: "dog"}, label2id={"cat": 0, "dog": 1},
        problem_type="single_label_classification", dtype="float16", output_hidden_states=True,
        out_features=["stage2", "stage4"], name_or_path="mine", output_attentions=False,
    )  # fmt: skip
    assert config.num_labels == 2 and config.dtype is torch.float16 and config.out_indices == [2, 4]
    assert PoolFormerConfig.from_preset("poolformer_s12", num_labels=5, torch_dtype="bfloat16").num_labels == 5


def _saved_folder(tmp_path):
    PoolFormerConfig(num_labels=4).save_pretrained(tmp_path)
    return (tmp_path / "config.json").read_bytes()


@pytest.mark.parametrize("value", [{1, 2}, torch.ones(2)], ids=["set", "tensor"])
def test_save_of_an_attribute_json_cannot_hold_names_it_and_keeps_the_previous_config(tmp_path, value):
    before = _saved_folder(tmp_path)
    config = PoolFormerConfig(num_labels=7)
    config.my_classes = value
    with pytest.raises(TypeError, match="my_classes"):
        config.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").read_bytes() == before
    assert PoolFormerConfig.from_pretrained(tmp_path).num_labels == 4
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_save_of_a_config_changed_into_an_invalid_one_is_refused_and_keeps_the_previous_config(tmp_path):
    before = _saved_folder(tmp_path)
    config = PoolFormerConfig()
    config.mlp_ratio = float("nan")  # strict checks the type on assignment, not the value
    with pytest.raises(ValueError, match="mlp_ratio"):
        config.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").read_bytes() == before


@pytest.mark.parametrize(
    "overrides, field", [({"mlp_ratio": float("nan")}, "mlp_ratio"), ({"norm_eps": 0.0}, "norm_eps")]
)
def test_from_pretrained_checks_the_overrides_it_sets_after_construction(tmp_path, overrides, field):
    PoolFormerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 32]).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=field):
        PoolFormerConfig.from_pretrained(tmp_path, **overrides)
    with pytest.raises(ValueError, match=field):
        transformers.AutoModelForImageClassification.from_pretrained(tmp_path, **overrides)
    config, unused = PoolFormerConfig.from_pretrained(tmp_path, return_unused_kwargs=True, foo=1, num_labels=5)
    assert config.num_labels == 5 and unused == {"foo": 1}
