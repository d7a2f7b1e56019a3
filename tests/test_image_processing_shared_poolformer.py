"""The resize plan shared by both processors: transformers' target sizes, and bounded work for extreme shapes."""

import numpy as np
import pytest
from transformers.image_transforms import get_resize_output_image_size
from transformers.image_utils import ChannelDimension, SizeDict

from poolformer_hf.image_processing_shared_poolformer import MAX_RESIZED_CROPS, check_crop_pct, resize_plan


SHORTEST_224 = SizeDict(shortest_edge=224)
CROP_224 = SizeDict(height=224, width=224)


@pytest.mark.parametrize("crop_pct", [0.875, 0.9, 0.95, 1.0])
@pytest.mark.parametrize(("height", "width"), [(512, 512), (300, 451), (427, 640), (640, 427), (17, 5)])
def test_target_size_matches_transformers(height, width, crop_pct):
    expected = get_resize_output_image_size(
        np.zeros((3, height, width)), int(224 / crop_pct), default_to_square=False,
        input_data_format=ChannelDimension.FIRST,
    )
    rows, cols, new_size = resize_plan(height, width, SHORTEST_224, crop_pct, CROP_224)
    assert new_size == expected
    assert (rows, cols) == (slice(None), slice(None))


def test_height_width_size_with_and_without_crop_pct():
    assert resize_plan(100, 200, SizeDict(height=224, width=224), 0.9, None)[2] == (248, 496)  # square: shortest
    assert resize_plan(100, 200, SizeDict(height=224, width=112), 0.9, None)[2] == (248, 124)
    assert resize_plan(100, 200, SizeDict(height=30, width=40), None, None)[2] == (30, 40)
    assert resize_plan(100, 200, SHORTEST_224, None, None)[2] == (224, 448)


def test_size_without_usable_keys_is_refused():
    with pytest.raises(ValueError, match="shortest_edge"):
        resize_plan(10, 10, SizeDict(longest_edge=224), 0.9, CROP_224)


@pytest.mark.parametrize(("height", "width"), [(1, 500), (500, 1), (1, 100_000), (3, 1000), (50, 4000)])
def test_extreme_aspect_ratio_resizes_only_a_centred_window(height, width):
    rows, cols, (new_height, new_width) = resize_plan(height, width, SHORTEST_224, 0.9, CROP_224)
    assert min(new_height, new_width) == 248  # the short side is resized as usual
    assert 224 <= max(new_height, new_width) <= MAX_RESIZED_CROPS * 224
    window = cols if width > height else rows
    length = max(height, width)
    start, stop = window.indices(length)[:2]
    assert 0 <= start < stop <= length
    assert start == length - stop  # exactly centred
    # the window, resized, keeps the full image's scale
    full_scale = int(248 * length / min(height, width)) / length
    assert max(new_height, new_width) / (stop - start) == pytest.approx(full_scale, rel=0.02)


def test_no_window_without_center_crop():
    assert resize_plan(1, 500, SHORTEST_224, 0.9, None) == (slice(None), slice(None), (248, 124000))


@pytest.mark.parametrize("crop_pct", [0, -0.5, 1.5, "0.9"])
def test_crop_pct_outside_unit_interval_is_refused(crop_pct):
    with pytest.raises(ValueError, match=r"crop_pct in \(0, 1\]"):
        check_crop_pct(crop_pct)
