import pytest
import torch
import transformers
from classification_helpers import parse

from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification
from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor
from poolformer_hf.tasks.classification.model import DEFAULT_SCRATCH_OVERRIDES, build_image_processor, build_model
from poolformer_hf.tasks.classification.transforms import processor_image_size

LABELS = ["cat", "dog", "eel"]


def model_args(*argv):
    return parse("--output_dir", "unused", *argv)[0]


def test_default_is_the_shrunk_s12_layout_with_our_labels():
    model = build_model(model_args(), LABELS)
    assert model.config.depths == DEFAULT_SCRATCH_OVERRIDES["depths"]
    assert model.config.hidden_sizes == DEFAULT_SCRATCH_OVERRIDES["hidden_sizes"]
    assert model.config.id2label == {0: "cat", 1: "dog", 2: "eel"} and model.config.label2id["eel"] == 2


def test_preset_with_overrides_and_drop_path():
    model = build_model(model_args("--preset", "poolformer_s24", "--depths", "1,1,2,1",
                                   "--hidden_sizes", "8,16,24,32", "--drop_path_rate", "0.2"), LABELS)  # fmt: skip
    reference = PoolFormerConfig.from_preset("poolformer_s24")
    assert model.config.depths == [1, 1, 2, 1] and model.config.hidden_sizes == [8, 16, 24, 32]
    assert model.config.drop_path_rate == 0.2 and model.config.crop_pct == reference.crop_pct


@pytest.mark.parametrize("value", ["1,1,1", "1,x,1,1", "0,1,1,1"])
def test_bad_stage_lists_are_rejected(value):
    with pytest.raises(ValueError, match="--depths"):
        build_model(model_args("--depths", value), LABELS)


def test_checkpoint_and_preset_do_not_combine(tmp_path):
    with pytest.raises(ValueError, match="do not combine"):
        build_model(model_args("--model_name_or_path", str(tmp_path), "--preset", "poolformer_s12"), LABELS)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    config = PoolFormerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=5)
    PoolFormerForImageClassification(config).save_pretrained(tmp_path / "ours")
    PoolFormerImageProcessor(crop_pct=0.95).save_pretrained(tmp_path / "ours")
    return tmp_path / "ours"


def test_new_label_set_needs_ignore_mismatched_sizes(tiny_checkpoint):
    with pytest.raises(Exception, match="ignore_mismatched_sizes"):
        build_model(model_args("--model_name_or_path", str(tiny_checkpoint)), LABELS)
    model = build_model(model_args("--model_name_or_path", str(tiny_checkpoint), "--ignore_mismatched_sizes"), LABELS)
    original = PoolFormerForImageClassification.from_pretrained(tiny_checkpoint)
    assert model.config.num_labels == 3 and model.classifier.out_features == 3
    torch.testing.assert_close(model.poolformer.stem.conv.weight, original.poolformer.stem.conv.weight)


def test_transformers_native_poolformer_checkpoint_fine_tunes(tmp_path):
    native = transformers.PoolFormerForImageClassification(
        transformers.PoolFormerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=4)
    )
    native.save_pretrained(tmp_path / "native")
    model = build_model(
        model_args("--model_name_or_path", str(tmp_path / "native"), "--ignore_mismatched_sizes"), LABELS
    )
    assert isinstance(model, PoolFormerForImageClassification) and model.config.num_labels == 3
    pixels = torch.randn(1, 3, 32, 32)
    native_features = native.poolformer(pixels).last_hidden_state
    ours_features = model.poolformer(pixels).last_hidden_state
    torch.testing.assert_close(ours_features, native_features, atol=1e-5, rtol=1e-5)


def test_processor_comes_from_the_checkpoint_and_takes_the_image_size(tiny_checkpoint):
    args = model_args("--model_name_or_path", str(tiny_checkpoint))
    processor = build_image_processor(args, None, image_size=48)
    assert processor.crop_pct == 0.95 and processor_image_size(processor) == 48
    assert processor_image_size(build_image_processor(args, None, image_size=None)) == 224


def test_scratch_processor_follows_the_model_crop_pct():
    model = build_model(
        model_args("--preset", "poolformer_m36", "--depths", "1,1,1,1", "--hidden_sizes", "8,16,24,32"), LABELS
    )
    processor = build_image_processor(model_args(), model, image_size=32)
    assert processor.crop_pct == model.config.crop_pct == 0.95 and processor_image_size(processor) == 32
