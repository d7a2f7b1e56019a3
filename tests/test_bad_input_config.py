"""A careless or hostile config: misspelt fields, strings for switches, ints for floats, a config.json that is not
one JSON object, attributes JSON cannot hold at save time. Each is refused in one line naming the field, file or
attribute and what would be valid, before anything is built or written; what transformers keeps (an unknown
keyword far from every field) is kept."""

import json
import os

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError
from transformers import AutoConfig, AutoModelForImageClassification

from conftest import tiny_config
from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification, PoolFormerImageProcessor
from poolformer_hf.configuration_checks import HEAD_SETTINGS, MAX_JSON_DEPTH
from poolformer_hf.modeling_poolformer_segmentation import SEMANTIC_FPN_DEFAULTS


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    PoolFormerForImageClassification(tiny_config()).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------- 1. misspelt fields
TYPOS = [("hiden_sizes", "hidden_sizes"), ("depth", "depths"), ("mlp_ration", "mlp_ratio"),
         ("token_mixer", "token_mixers"), ("use_layerscale", "use_layer_scale"), ("num_label", "num_labels"),
         ("layer_scale_init", "layer_scale_init_value"), ("croppct", "crop_pct")]  # fmt: skip
LOADERS = {
    "PoolFormerConfig(...)": lambda folder, **kw: PoolFormerConfig(**kw),
    "PoolFormerConfig.from_pretrained": lambda folder, **kw: PoolFormerConfig.from_pretrained(folder, **kw),
    "AutoConfig.from_pretrained": lambda folder, **kw: AutoConfig.from_pretrained(folder, **kw),
    "model.from_pretrained": lambda folder, **kw: PoolFormerForImageClassification.from_pretrained(folder, **kw),
    "AutoModel.from_pretrained": lambda folder, **kw: AutoModelForImageClassification.from_pretrained(folder, **kw),
}


@pytest.mark.parametrize("typo, field", TYPOS)
@pytest.mark.parametrize("loader", list(LOADERS))
def test_a_misspelt_field_is_refused_naming_the_field_meant(model_folder, loader, typo, field):
    # before: the constructor kept it as a stray attribute and the config's from_pretrained dropped it (the field
    # kept its default); a model's from_pretrained failed with "__init__() got an unexpected keyword argument"
    with pytest.raises(ValueError, match=rf"^unknown config field '{typo}': did you mean '{field}'\?$"):
        LOADERS[loader](model_folder, **{typo: [8, 16, 32, 32]})


def test_a_misspelt_key_in_config_json_is_refused(tmp_path, model_folder):
    saved = json.loads((model_folder / "config.json").read_text())
    saved["hiden_sizes"] = saved.pop("hidden_sizes")
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="'hiden_sizes': did you mean 'hidden_sizes'"):
        PoolFormerConfig.from_pretrained(tmp_path)


# Keys far from every field of ours: other models' fields, transformers v4's config attributes, our own extras.
KEPT = {"foo": 1, "drop_rate": 0.1, "tie_encoder_decoder": False, "tokenizer_class": None, "is_decoder": False,
        "backbone": "x", "task_specific_params": {"a": 1}}  # fmt: skip


def test_an_unknown_keyword_far_from_every_field_is_kept_as_transformers_keeps_it(tmp_path, model_folder):
    config = tiny_config(**KEPT, num_beams=4)  # a generation parameter: transformers drops it
    assert {name: getattr(config, name) for name in KEPT} == KEPT and not hasattr(config, "num_beams")
    config.save_pretrained(tmp_path)
    reloaded = PoolFormerConfig.from_pretrained(tmp_path)  # the extras, model_type, stage_names come back as keys
    assert {name: getattr(reloaded, name) for name in KEPT} == KEPT
    # from_pretrained: returned as unused (a model's from_pretrained hands them to the model class, which refuses)
    assert PoolFormerConfig.from_pretrained(model_folder, foo=1, return_unused_kwargs=True)[1] == {"foo": 1}
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        PoolFormerForImageClassification.from_pretrained(model_folder, foo=1)


def test_every_head_setting_is_a_keyword_and_no_misspelling():
    assert set(SEMANTIC_FPN_DEFAULTS) <= set(HEAD_SETTINGS)
    config = tiny_config(**{name: value for name, value in SEMANTIC_FPN_DEFAULTS.items()})
    assert {name: getattr(config, name) for name in SEMANTIC_FPN_DEFAULTS} == SEMANTIC_FPN_DEFAULTS


def test_a_transformers_v4_config_json_with_its_bookkeeping_keys_loads(tmp_path):
    keys = {"_name_or_path": "sail/poolformer_s12", "model_type": "poolformer", "transformers_version": "4.30.0",
            "architectures": ["PoolFormerForImageClassification"], "tie_encoder_decoder": False, "use_layer_scale": True,
            "num_encoder_blocks": 4, "patch_size": 16, "stride": 16, "hidden_sizes": [64, 128, 320, 512]}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(keys))
    assert PoolFormerConfig.from_pretrained(tmp_path).hidden_sizes == [64, 128, 320, 512]


def test_a_foreign_field_given_to_from_pretrained_is_translated(model_folder):
    # before: returned as unused and dropped, LayerScale stayed on
    assert PoolFormerConfig.from_pretrained(model_folder, use_layer_scale=False).layer_scale_init_value is None


# -------------------------------------------------------------------------------- 2. switches and numbers by type
@pytest.mark.parametrize("value", ["false", "False", "0", 0, 1, None, [False]])
def test_use_layer_scale_takes_only_a_bool(tmp_path, value):
    # before: anything but False itself (the string 'false' included) meant LayerScale on
    message = rf"^use_layer_scale must be a bool \(True or False\), got {type(value).__name__} "
    with pytest.raises(TypeError, match=message):
        PoolFormerConfig(use_layer_scale=value)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "poolformer", "use_layer_scale": value}))
    with pytest.raises(TypeError, match=message):  # in a config.json of transformers' PoolFormer
        PoolFormerConfig.from_pretrained(tmp_path)


CROP_PCT_SOURCES = {
    "constructor": lambda tmp_path: PoolFormerConfig(crop_pct=1),
    "override": lambda tmp_path: PoolFormerConfig.from_pretrained(_saved(tmp_path), crop_pct=1),
    "config.json": lambda tmp_path: PoolFormerConfig.from_pretrained(_saved(tmp_path, crop_pct=1)),
}


def _saved(folder, **json_fields):
    PoolFormerConfig().save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**saved, **json_fields}))
    return folder


@pytest.mark.parametrize("source", list(CROP_PCT_SOURCES))
def test_an_int_crop_pct_is_the_float_it_means(tmp_path, source):
    # before: strict typing refused the int 1 (StrictDataclassFieldValidationError: expected float, got int)
    crop_pct = CROP_PCT_SOURCES[source](tmp_path).crop_pct
    assert crop_pct == 1.0 and type(crop_pct) is float


def test_a_bool_crop_pct_is_still_refused():
    with pytest.raises(StrictDataclassFieldValidationError, match="crop_pct"):
        PoolFormerConfig(crop_pct=True)


def test_an_image_processor_made_with_an_int_crop_pct_uses_it():
    image = np.zeros((40, 50, 3), np.uint8)
    assert PoolFormerImageProcessor(crop_pct=1)(image, return_tensors="pt").pixel_values.shape[-2:] == (224, 224)


def test_an_int_crop_pct_given_to_the_image_processor_call_is_the_float_it_means():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    processor = PoolFormerImageProcessor()
    as_int = processor(image, crop_pct=1, return_tensors="pt")["pixel_values"]
    assert torch.equal(as_int, processor(image, crop_pct=1.0, return_tensors="pt")["pixel_values"])


# ----------------------------------------------------------------------------- 3. a config.json that is no config
NOT_A_CONFIG = {
    "a JSON array": ("[1, 2]", "holds a JSON array, not an object"),
    "a JSON string": ('"poolformer"', "holds a JSON string, not an object"),
    "JSON null": ("null", "holds a JSON null, not an object"),
    "a number": ("12", "holds a JSON number, not an object"),
    "nesting past the parser's recursion limit": ("[" * 100_000 + "]" * 100_000, "nests deeper than"),
    "objects nested past it": ('{"a":' * 100_000 + "1" + "}" * 100_000, "nests deeper than"),
    "a field nested past MAX_JSON_DEPTH": (
        json.dumps({"model_type": "poolformer_hf", "foo": json.loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))}),
        "nests deeper than",
    ),
}


@pytest.mark.parametrize("case", list(NOT_A_CONFIG))
@pytest.mark.parametrize("load", [PoolFormerConfig.from_pretrained, PoolFormerForImageClassification.from_pretrained])
def test_a_config_json_that_is_no_json_object_is_refused_naming_the_file(tmp_path, case, load):
    # before: AttributeError ('list' object has no attribute 'get'), TypeError (null) or RecursionError
    text, message = NOT_A_CONFIG[case]
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(OSError, match=rf"^{tmp_path / 'config.json'} {message}"):
        load(tmp_path)


# ------------------------------------------------------------------------- 4. a save with an unwritable attribute
UNWRITABLE = {"an object": object(), "a set": {1, 2}, "a tensor": torch.ones(2)}
MESSAGE = r"^config attribute\(s\) \['foo'\] cannot be written to config.json"


def _save_model(model, folder):
    model.save_pretrained(folder)


def _push_model(model, folder):
    model.save_pretrained(folder, push_to_hub=True, repo_id="someone/never-created")  # raises before any request


def _save_config(model, folder):
    model.config.save_pretrained(folder)


SAVES = {"model": _save_model, "model, push_to_hub": _push_model, "config alone": _save_config}


@pytest.mark.parametrize("value", list(UNWRITABLE))
@pytest.mark.parametrize("save", list(SAVES))
def test_an_unwritable_attribute_makes_no_fresh_folder(tmp_path, save, value):
    # before: the fresh folder was made and held the code files, without config or weights
    model = PoolFormerForImageClassification(tiny_config())
    model.config.foo = UNWRITABLE[value]
    with pytest.raises(TypeError, match=MESSAGE):
        SAVES[save](model, tmp_path / "fresh")
    assert os.listdir(tmp_path) == []
    (tmp_path / "empty").mkdir()
    with pytest.raises(TypeError, match=MESSAGE):
        SAVES[save](model, tmp_path / "empty")
    assert os.listdir(tmp_path / "empty") == []


@pytest.mark.parametrize("save", [_save_model, _save_config])
def test_an_unwritable_attribute_leaves_an_earlier_save_as_it_was(tmp_path, save):
    model = PoolFormerForImageClassification(tiny_config())
    save(model, tmp_path / "out")
    before = {name: (tmp_path / "out" / name).read_bytes() for name in os.listdir(tmp_path / "out")}
    model.config.foo = {1, 2}
    with pytest.raises(TypeError, match=MESSAGE):
        save(model, tmp_path / "out")
    assert {name: (tmp_path / "out" / name).read_bytes() for name in os.listdir(tmp_path / "out")} == before
    assert os.listdir(tmp_path) == ["out"]  # no staging folder left beside it


def test_a_model_save_onto_a_file_is_refused(tmp_path):
    # before: transformers logged an error and returned, saving nothing
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        PoolFormerForImageClassification(tiny_config()).save_pretrained(tmp_path / "file")


def test_an_unwritable_processor_attribute_makes_no_fresh_folder(tmp_path):
    processor = PoolFormerImageProcessor()
    processor.foo = object()
    with pytest.raises(TypeError, match="foo"):
        processor.save_pretrained(tmp_path / "fresh")
    assert os.listdir(tmp_path) == []
