"""torch.export with a dynamic batch and image size: the program gives the eager outputs at shapes other than the
example's, for every preset family (folded module) and every head (folded and the model itself), grad on or off."""

import pytest
import torch

from poolformer_hf import PoolFormerBackbone, PoolFormerForImageClassification, PoolFormerModel, fuse_for_inference
from poolformer_hf.export import export_program, pixel_dynamic_shapes
from tests.conftest import randomize_
from tests.test_inference import (FAMILIES, HEADS, SIZE, assert_same_outputs, family_config, pixels,
                                  relative_difference, semantic_fpn)

FIXED_SIZE = {"randformer_s12", "hybrid_pool_spatial_fc_s12"}


def other_shape(preset: str) -> torch.Tensor:
    """Another batch size and, where the mixers allow, another image size than the example's (2, 3, 64, 64)."""
    return pixels(batch=3, size=SIZE if preset in FIXED_SIZE else 96, seed=1)


def small_config(preset: str):
    return family_config(preset, depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 32, 32])  # attention: 32-wide heads


# Every family once, the heads and grad modes taking turns across them.
CASES = [(preset, HEADS[i % len(HEADS)], i % 2 == 0) for i, preset in enumerate(FAMILIES)]


@pytest.mark.parametrize("preset, head, grad", CASES,
                         ids=[f"{p}-{h.__name__}-grad_{g}" for p, h, g in CASES])
def test_exported_folded_module_gives_eager_outputs_at_other_shapes(preset, head, grad):
    model = randomize_(head(small_config(preset))).eval()
    with torch.set_grad_enabled(grad):
        program = export_program(fuse_for_inference(model), pixels())
    x = other_shape(preset)
    with torch.no_grad():
        assert_same_outputs(program.module()(pixel_values=x), model(x))


@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("head", HEADS, ids=lambda head: head.__name__)
def test_exported_model_gives_eager_outputs_at_other_shapes(head, grad):
    # The model itself: its lean kernels must step aside under torch.export, with grad enabled too (the default).
    model = randomize_(head(small_config("poolformer_s12"))).eval()
    with torch.set_grad_enabled(grad):
        program = export_program(model, pixels())
    x = other_shape("poolformer_s12")
    with torch.no_grad():
        expected = model(x)
        actual = program.module()(pixel_values=x)
    for key in ("last_hidden_state", "pooler_output", "logits"):
        if key in expected:
            assert (actual[key] - expected[key]).abs().max().item() < 1e-4, key
    if head is PoolFormerBackbone:
        for a, b in zip(actual.feature_maps, expected.feature_maps, strict=True):
            assert (a - b).abs().max().item() < 1e-4


def test_fixed_size_mixers_refuse_a_dynamic_image_size_and_say_why():
    config = small_config("randformer_s12")
    assert set(pixel_dynamic_shapes(config)) == {0}  # by default: dynamic batch, the config's image size
    with pytest.raises(ValueError, match=r"random_mixing.*sized for 64×64.*by design"):
        pixel_dynamic_shapes(config, dynamic_size=True)
    assert set(pixel_dynamic_shapes(small_config("poolformer_s12"))) == {0, 2, 3}


def test_export_program_wants_a_batch_of_images():
    model = PoolFormerModel(small_config("poolformer_s12")).eval()
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        export_program(model, torch.randn(3, SIZE, SIZE))


def test_the_classifier_program_keeps_the_models_output_type():
    model = randomize_(PoolFormerForImageClassification(small_config("poolformer_s12"))).eval()
    program = export_program(fuse_for_inference(model), pixels())
    assert type(program.module()(pixel_values=pixels())) is type(model(pixels()))


def test_exported_folded_semantic_fpn_gives_eager_logits_at_other_shapes():
    model = semantic_fpn("poolformer_s12")
    program = export_program(fuse_for_inference(model), pixels())
    x = pixels(batch=3, size=72, seed=1)  # the head resizes its odd-sized coarse levels to the finest one's size
    with torch.no_grad():
        actual, expected = program.module()(pixel_values=x), model(x)
    assert type(actual) is type(expected) and actual.logits.shape == expected.logits.shape == (3, 4, 18, 18)
    assert relative_difference(actual.logits, expected.logits) < 1e-5
