"""What both processors share: transformers' target sizes, bounded work for extreme shapes, settings checked."""

import math

import numpy as np
import pytest
from transformers.image_transforms import get_resize_output_image_size
from transformers.image_utils import ChannelDimension, SizeDict

from poolformer_hf.image_processing_shared_poolformer import (
    MAX_RESIZED_PIXELS,
    approximate_window,
    check_crop_pct,
    check_settings,
    resize_target,
)


SHORTEST_224 = SizeDict(shortest_edge=224)
CROP_224 = SizeDict(height=224, width=224)


@pytest.mark.parametrize("crop_pct", [0.875, 0.9, 0.95, 1.0])
@pytest.mark.parametrize(("height", "width"), [(512, 512), (300, 451), (427, 640), (640, 427), (17, 5), (60, 640)])
def test_target_size_matches_transformers(height, width, crop_pct):
    expected = get_resize_output_image_size(
        np.zeros((3, height, width)), int(224 / crop_pct), default_to_square=False,
        input_data_format=ChannelDimension.FIRST,
    )
    assert resize_target(height, width, SHORTEST_224, crop_pct) == expected


def test_height_width_size_with_and_without_crop_pct():
    assert resize_target(100, 200, SizeDict(height=224, width=224), 0.9) == (248, 496)  # square: shortest edge
    assert resize_target(100, 200, SizeDict(height=224, width=112), 0.9) == (248, 124)
    assert resize_target(100, 200, SizeDict(height=30, width=40), None) == (30, 40)
    assert resize_target(100, 200, SHORTEST_224, None) == (224, 448)


def test_size_without_usable_keys_is_refused():
    with pytest.raises(ValueError, match="shortest_edge"):
        resize_target(10, 10, SizeDict(longest_edge=224), 0.9)


@pytest.mark.parametrize(("height", "width"), [(1, 100_000), (3, 50_000), (100_000, 2)])
def test_past_the_pixel_budget_only_a_centred_window_is_resized(height, width):
    new_size = resize_target(height, width, SHORTEST_224, 0.9)
    assert new_size[0] * new_size[1] > MAX_RESIZED_PIXELS
    rows, cols, (new_height, new_width) = approximate_window(height, width, new_size, CROP_224)
    assert min(new_height, new_width) == 248  # the short side is resized as usual
    assert 224 <= max(new_height, new_width) <= 8 * 224  # a few input pixels around the crop
    window, length = (cols, width) if width > height else (rows, height)
    start, stop = window.indices(length)[:2]
    assert 0 <= start < stop <= length
    assert start == length - stop  # exactly centred
    # the window, resized, keeps the full image's scale
    assert max(new_height, new_width) / (stop - start) == pytest.approx(max(new_size) / length, rel=0.02)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"size": SizeDict(shortest_edge=-5)}, r"size\['shortest_edge'\] to be a positive integer, got -5"),
        ({"size": SizeDict(shortest_edge=0)}, r"size\['shortest_edge'\]"),
        ({"size": SizeDict(height=224, width=2.5)}, r"size\['width'\]"),
        ({"size": SizeDict(shortest_edge=True)}, r"size\['shortest_edge'\]"),
        ({"crop_size": SizeDict(height=0, width=224)}, r"crop_size\['height'\]"),
        ({"crop_size": SizeDict(height=224)}, "crop_size with 'height' and 'width'"),
        ({"image_std": 0}, "image_std to be positive"),
        ({"image_std": (0.2, 0.0, 0.2)}, "image_std to be positive"),
        ({"image_std": (0.2, -1.0, 0.2)}, "image_std to be positive"),
        ({"image_mean": (0.5, math.nan, 0.5)}, "image_mean to be a finite number"),
        ({"image_mean": "0.5"}, "image_mean to be a finite number"),
        ({"image_mean": ()}, "image_mean to be a finite number"),
        ({"image_mean": (0.5, 0.5)}, "image_mean with 3 values, one per channel"),
        ({"image_std": (0.5, 0.5, 0.5, 0.5)}, "image_std with 3 values, one per channel"),
        ({"image_mean": (0.5,) * 4, "image_std": (0.5,) * 3, "do_convert_rgb": False}, "4 and 3 values"),
        ({"rescale_factor": 0.0}, "rescale_factor to be a positive finite number"),
        ({"rescale_factor": math.inf}, "rescale_factor"),
        ({"rescale_factor": math.nan}, "rescale_factor"),
        ({"resample": 99}, "resample to be one of"),
        ({"resample": "bicubic"}, "resample to be one of"),
        ({"do_convert_rgb": "yes"}, "do_convert_rgb True, False or None"),
        ({"crop_pct": 1.5}, r"crop_pct in \(0, 1\]"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        check_settings(**settings)


def test_settings_for_other_channel_counts_pass_without_rgb_conversion():
    check_settings(image_mean=(0.5,) * 4, image_std=(0.25,) * 4, do_convert_rgb=False)
    check_settings(image_mean=0.5, image_std=0.25)  # one value for every channel
    check_settings(size=SHORTEST_224, crop_size=CROP_224, resample=3, rescale_factor=1 / 255, crop_pct=0.9)


@pytest.mark.parametrize("crop_pct", [0, -0.5, 1.5, "0.9", math.nan])
def test_crop_pct_outside_unit_interval_is_refused(crop_pct):
    with pytest.raises(ValueError, match=r"crop_pct in \(0, 1\]"):
        check_crop_pct(crop_pct)
