import dataclasses
import json

import pytest
import transformers

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
