"""The preset registry: names listed as timm lists its models, per-preset facts that agree with timm's pretrained cfgs
and with the models we build, and the config, processor and model card of a preset derived from it."""

import ast
import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image

import poolformer_hf
from poolformer_hf import (
    PRESET_NAMES,
    PoolFormerConfig,
    PoolFormerForImageClassification,
    PoolFormerImageProcessor,
    PoolFormerImageProcessorPil,
    list_presets,
    preset_info,
)
from poolformer_hf.hub.complexity import count_parameters, measure
from poolformer_hf.hub.model_card import preset_card

PRESETS_FILE = Path(poolformer_hf.__file__).parent / "presets.py"
MODELS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "models.md"
WITH_FIGURES = [name for name in PRESET_NAMES if preset_info(name).params_m is not None]
WITH_TIMM_TAGS = [name for name in PRESET_NAMES if preset_info(name).timm_tags]


def _within_one_percent(ours: float, published: float) -> bool:
    return abs(ours - published) <= 0.01 * published


def _meta_classifier(name: str) -> PoolFormerForImageClassification:
    with torch.device("meta"):
        return PoolFormerForImageClassification(PoolFormerConfig.from_preset(name, num_labels=1000))


# ---------------------------------------------------------------------------------------------- listing
def test_list_presets_matches_wildcards_in_timms_order():
    assert list_presets("caformer*") == ["caformer_b36", "caformer_m36", "caformer_s18", "caformer_s36"]
    assert sorted(list_presets()) == sorted(PRESET_NAMES)
    assert list_presets(["poolformer_s*", "*former_m48"], exclude="poolformerv2*") == [
        "poolformer_m48", "poolformer_s12", "poolformer_s24", "poolformer_s36"]
    assert list_presets("vit*") == []


def test_pretrained_lists_the_presets_with_released_weights():
    assert set(list_presets()) - set(list_presets(pretrained=True)) == {
        "hybrid_pool_attention_s12", "hybrid_pool_spatial_fc_s12"}


def test_the_order_is_timms_for_the_families_timm_has():
    timm = pytest.importorskip("timm")
    families = ["poolformer*", "poolformerv2*", "convformer*", "caformer*"]
    assert list_presets(families) == timm.list_models(families)


def test_unknown_preset_is_refused_with_the_closest_name():
    with pytest.raises(ValueError, match="'caformer_s18'"):
        preset_info("caformer_s81")


def test_preset_info_is_frozen_data():
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset_info("caformer_s18").crop_pct = 0.5


def test_the_shipped_presets_file_imports_only_the_standard_library():
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(PRESETS_FILE.read_text()))
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(PRESETS_FILE.read_text()))
                 if isinstance(node, ast.ImportFrom) and not node.level}
    relative = [node for node in ast.walk(ast.parse(PRESETS_FILE.read_text()))
                if isinstance(node, ast.ImportFrom) and node.level]
    assert imported <= {"collections", "dataclasses", "difflib", "fnmatch", "re"} and not relative


# ---------------------------------------------------------------------------------------------- the facts
def test_published_figures_are_stated_exactly_where_the_authors_released_weights():
    for name in PRESET_NAMES:
        info = preset_info(name)
        figures = (info.params_m, info.gmacs, info.top1, info.license, info.complexity_source, info.top1_source)
        assert all(value is not None for value in figures) if info.pretrained else figures == (None,) * 6, name


@pytest.mark.parametrize("name", WITH_TIMM_TAGS)
def test_preprocessing_license_and_tags_agree_with_timms_pretrained_cfgs(name):
    timm = pytest.importorskip("timm")
    info = preset_info(name)
    same_preset = [tag for tag in timm.list_models(name, pretrained=True)
                   if tuple(timm.models.get_pretrained_cfg(tag).input_size) == info.input_size
                   and timm.models.get_pretrained_cfg(tag).num_classes == info.num_classes]
    assert sorted(info.timm_tags) == sorted(same_preset) and info.timm_tags[0].endswith(".sail_in1k")
    for tag in info.timm_tags:
        cfg = timm.models.get_pretrained_cfg(tag)
        assert (cfg.crop_pct, cfg.interpolation, tuple(cfg.mean), tuple(cfg.std), cfg.license) == (
            info.crop_pct, info.interpolation, info.mean, info.std, info.license), tag


def test_presets_without_timm_tags_have_no_timm_weights():
    timm = pytest.importorskip("timm")
    for name in set(PRESET_NAMES) - set(WITH_TIMM_TAGS):
        assert timm.list_models(name, pretrained=True) == [], name


def test_parameters_of_every_preset_are_within_one_percent_of_the_published_figure():
    for name in WITH_FIGURES:
        params = count_parameters(_meta_classifier(name))
        assert _within_one_percent(params / 1e6, preset_info(name).params_m), (name, params)


# A timm figure and one from the authors' README (one decimal); pooling, sepconv + attention, random mixing.
@pytest.mark.parametrize("name", ["poolformer_s12", "caformer_s18", "randformer_s12"])
def test_macs_are_within_one_percent_of_the_published_figure(name):
    info = preset_info(name)
    macs = measure(PoolFormerConfig.from_preset(name, num_labels=1000), image_size=info.image_size)["macs"]
    assert _within_one_percent(macs / 1e9, info.gmacs), (name, macs)


@pytest.mark.parametrize("name", ["poolformer_m36", "poolformerv2_s12", "convformer_s18", "caformer_s18"])
def test_parameter_count_equals_timms_model(name):
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        reference = timm.create_model(name, pretrained=False)
    assert count_parameters(_meta_classifier(name)) == sum(p.numel() for p in reference.parameters())


# ---------------------------------------------------------------------------------------------- what derives from it
def test_the_config_of_every_preset_takes_its_resolution_and_crop_from_the_registry():
    for name in PRESET_NAMES:
        config = PoolFormerConfig.from_preset(name)
        assert (config.image_size, config.crop_pct) == (preset_info(name).image_size, preset_info(name).crop_pct)


@pytest.mark.parametrize("processor_class", [PoolFormerImageProcessor, PoolFormerImageProcessorPil])
def test_a_presets_processor_is_its_eval_transform(processor_class):
    info = preset_info("poolformer_m36")
    processor = processor_class(**info.processor_kwargs())
    assert (processor.crop_pct, processor.size["shortest_edge"], processor.crop_size["height"]) == (0.95, 224, 224)
    assert int(processor.resample) == 3 and tuple(processor.image_mean) == info.mean  # PIL's bicubic
    pixels = processor(images=Image.new("RGB", (320, 240), (124, 116, 104)), return_tensors="pt").pixel_values
    assert pixels.shape == (1, 3, 224, 224)


def test_every_presets_processor_is_the_default_one_at_its_crop_pct():
    # What a converted folder shipped before the registry (`PoolFormerImageProcessor(crop_pct=config.crop_pct)`).
    for name in PRESET_NAMES:
        info = preset_info(name)
        assert PoolFormerImageProcessor(**info.processor_kwargs()).to_dict() == (
            PoolFormerImageProcessor(crop_pct=info.crop_pct).to_dict()), name


def test_a_presets_model_card_states_the_registrys_figures_weights_and_license():
    card = preset_card("caformer_s18")
    assert "| CAFormer-S18 | 83.6 | [MetaFormer Baselines for Vision]" in card
    assert "26.34 M parameters, 4.13 GMACs at 224²" in card
    assert "[`caformer_s18.sail_in22k_ft_in1k`](https://huggingface.co/timm/caformer_s18.sail_in22k_ft_in1k)" in card
    assert preset_info("caformer_s18").release_url in card and "**License of the weights:** apache-2.0." in card
    assert "The authors' weights" not in preset_card("hybrid_pool_attention_s12")


def test_the_docs_table_is_the_registry():
    def cells(*values):
        return " | ".join("—" if value is None else str(value) for value in values)

    rows = ["| Preset | Params (M) | GMACs at 224² | Paper's top-1 (%) | crop_pct | timm tag |", "|---" * 6 + "|"]
    for name in list_presets():
        info = preset_info(name)
        tag = f"`{info.timm_tags[0]}`" if info.timm_tags else None
        rows.append(f"| `{name}` | {cells(info.params_m, info.gmacs, info.top1, info.crop_pct, tag)} |")
    assert "\n".join(rows) + "\n" in MODELS_PAGE.read_text(encoding="utf-8")
