"""Fuzzing both image processors: every input either gives the same finite output on both backends, or raises a
ValueError/TypeError that says what was expected — never NaN, never an internal error, never one backend alone.

Inputs are drawn over kinds (numpy, torch, PIL), dtypes (also big-endian and out-of-range ones), shapes, channel
counts and layouts, strides (flipped and stepped views), and the settings a user passes (sizes, crop_pct, mean/std,
do_convert_rgb, input_data_format, resample). The example budget is fixed and derandomized, so CI runs the same
examples every time in a few seconds.
"""

import numpy as np
import PIL.Image
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from poolformer_hf.image_processing_pil_poolformer import PoolFormerImageProcessorPil
from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor


EXAMPLES = 200
# What an error message must mention: a setting, or what the input should have been.
NAMED = ("size", "crop_size", "crop_pct", "image_mean", "image_std", "rescale_factor", "resample",
         "do_convert_rgb", "input_data_format", "channel", "dtype", "values", "image", "Expected")
# bicubic, bilinear, lanczos: the filters both backends apply alike (nearest differs between torch and Pillow
# in transformers' own mapping too, box and Hamming are refused by the torchvision backend: tested elsewhere).
RESAMPLES = (3, 2, 1)
# The backends resize with different arithmetic (Pillow's and torch's bicubic round differently): on the 0–255
# scale their outputs stay within a few levels.
LEVELS_APART = 4.0


@st.composite
def arrays(draw) -> np.ndarray:
    height, width = draw(st.integers(1, 24)), draw(st.integers(5, 24))  # width 5+: most layouts can be told apart
    channels = pick(draw, [None, 1, 3, 4], [2, 5])
    shape = (height, width) if channels is None else (height, width, channels)
    dtype = pick(draw, ["uint8", "uint16", ">u2", "bool", "float32", "float64", ">f4", "float16"], ["int32", "int8"])
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype in ("uint8", "uint16", ">u2", "int32", "int8"):
        high = {"uint8": 256, "int8": 128}.get(dtype, 65536)
        array = rng.integers(0, high, shape).astype(dtype)
    elif dtype == "bool":
        array = rng.integers(0, 2, shape).astype(bool)
    else:
        array = rng.random(shape).astype(dtype)
        spoil = pick(draw, [None], ["nan", "big", "negative"])
        if spoil:
            array.flat[0] = {"nan": np.nan, "big": 2.0, "negative": -0.5}[spoil]
    if channels is not None and draw(st.booleans()):
        array = np.moveaxis(array, -1, 0)  # channels first
    view = draw(st.sampled_from(["plain", "flipped", "stepped", "copy"]))
    if view == "flipped":
        array = array[::-1, ::-1]
    elif view == "stepped" and min(array.shape[:2]) > 2:
        array = array[::2, ::2]
    elif view == "copy":
        array = np.ascontiguousarray(array)
    return array


@st.composite
def images(draw):
    array = draw(arrays())
    kind = draw(st.sampled_from(["numpy", "torch", "pil"]))
    if kind == "torch":
        if not array.dtype.isnative or array.dtype == np.uint16 and not hasattr(torch, "uint16"):
            return array
        return torch.from_numpy(array.copy())
    if kind == "pil":
        try:
            return PIL.Image.fromarray(array.copy())
        except (TypeError, ValueError, KeyError):
            return array  # a shape or dtype Pillow cannot hold: the array itself
    return array


def pick(draw, good: list, bad: list):
    """One of `good`, or now and then (1 in 8) one of `bad`: most examples then reach the processing itself.

    (Not on 0: hypothesis draws the simplest value, 0, far more often than 1 in 8.)
    """
    return draw(st.sampled_from(bad if bad and draw(st.integers(0, 7)) == 5 else good))


@st.composite
def call_settings(draw) -> dict:
    options = {
        "size": pick(draw, [{"shortest_edge": 14}, {"shortest_edge": 9}, {"height": 12, "width": 20}],
                     [{"shortest_edge": -5}, {"shortest_edge": 0}, {"width": 8}]),
        # small crops keep the examples fast; 40 pads the resized image
        "crop_size": pick(draw, [{"height": 12, "width": 12}, {"height": 8, "width": 6}, {"height": 40, "width": 40}],
                          [{"height": 0, "width": 8}]),
        "crop_pct": pick(draw, [0.9, None, 1.0, 0.95], [0.0, 1.5]),
        "do_convert_rgb": draw(st.sampled_from([None, True, False])),
        "resample": draw(st.sampled_from(RESAMPLES)),
        "do_resize": pick(draw, [True], [False]),
        "do_center_crop": pick(draw, [True], [False]),
    }
    count = draw(st.sampled_from([1, 3, 4] if options["do_convert_rgb"] is False else [3]))
    if draw(st.booleans()) or count != 3:
        options["image_mean"] = pick(draw, [[0.5] * count, [0.0] * count], [[float("nan")] * count, [0.5] * 2])
        options["image_std"] = pick(draw, [[0.25] * count, [1.0] * count], [[0.0] * count, [-1.0] * count])
    layout = pick(draw, [None], ["channels_first", "channels_last", "sideways"])
    if layout is not None:
        options["input_data_format"] = layout
    return options


def outcome(processor_class, image, options):
    """The (N, C, H, W) output on the 0–255 scale, or the exception the processor raised."""
    try:
        processor = processor_class(**{k: v for k, v in options.items() if k != "input_data_format"})
        output = processor(image, return_tensors="pt", input_data_format=options.get("input_data_format"))
    except (ValueError, TypeError) as error:
        return error
    values = output["pixel_values"]
    mean, std = processor.image_mean, processor.image_std
    shape = (1, -1, 1, 1)
    as_levels = (values * torch.tensor(std).reshape(shape) + torch.tensor(mean).reshape(shape)) * 255
    return values, as_levels


def check_error(error: Exception):
    message = str(error)
    assert any(word in message for word in NAMED), f"{type(error).__name__} names nothing: {message}"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(image=images(), options=call_settings())
def test_both_backends_give_the_same_output_or_a_clear_error(image, options):
    torchvision = outcome(PoolFormerImageProcessor, image, options)
    pil = outcome(PoolFormerImageProcessorPil, image, options)
    if isinstance(torchvision, Exception) or isinstance(pil, Exception):
        assert type(torchvision) is type(pil), f"only one backend refused: {torchvision!r} / {pil!r}"
        assert str(torchvision) == str(pil)
        check_error(torchvision)
        event(f"refused: {type(torchvision).__name__}: {str(torchvision)[:50]}")
        return
    event("processed")
    (values, levels), (pil_values, pil_levels) = torchvision, pil
    assert values.shape == pil_values.shape
    assert torch.isfinite(values).all() and torch.isfinite(pil_values).all()
    assert (levels - pil_levels).abs().max().item() <= LEVELS_APART


@pytest.mark.parametrize("processor_class", [PoolFormerImageProcessor, PoolFormerImageProcessorPil])
def test_the_fuzzer_reaches_both_outcomes(processor_class):
    # A fuzzer whose inputs all fail (or all pass) would test nothing: one example of each, from the strategies.
    assert not isinstance(outcome(processor_class, np.zeros((8, 8, 3), np.uint8), {"crop_size": {"height": 4,
                                                                                    "width": 4}}), Exception)
    assert isinstance(outcome(processor_class, np.zeros((8, 8, 3), np.int8), {}), ValueError)
