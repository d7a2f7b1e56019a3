"""Turn whatever image a user hands in into the one form both PoolFormer image processors work on.

That form is an `(height, width, 3)` RGB array on the 0–255 scale: `uint8` when the source has 8 bits per
channel (so the resize runs on exactly the data transformers' processors see), `float32` otherwise (so 16-bit
and float sources keep their precision). The rules:

- PIL images are first turned upright by their EXIF orientation tag.
- Grayscale (modes `1`, `L`, `I;16*`, `I`, `F`, or one-channel arrays) is repeated into three channels.
- Anything with transparency (modes `LA`, `La`, `PA`, `RGBA`, `RGBa`, `P` or `RGB` with a transparency key,
  four-channel arrays) is composited on a white background.
- Other PIL modes (`CMYK`, `YCbCr`, `HSV`, ...) go through Pillow's own conversion to `RGB`; `LAB` is refused,
  since Pillow's `convert` does no colour conversion from it.
- 16-bit data (mode `I;16*`, `uint16` arrays) is scaled by its range: value * 255 / 65535.
- Mode `I` holds 32-bit integers, but Pillow decodes 16-bit PNGs to it, so it is read as 16-bit data: its values
  must lie in [0, 65535].
- Float data (mode `F`, float arrays and tensors) must lie in [0, 1] and is multiplied by 255, so the processors'
  `rescale_factor` of 1/255 treats every input alike.
- Boolean arrays map False/True to 0/255.

Anything else raises a `ValueError` that says what was expected: other dtypes (e.g. signed integers, whose range
is unknown), NaN or infinite values, float values outside [0, 1], arrays with 2 or more than 4 channels, empty
images, and arrays whose channel axis cannot be told from the shape (both the first and the last axis have 1, 3
or 4 entries, e.g. a 3×3 RGB image or a 1×1 image) unless `input_data_format` says where the channels are.
"""

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from transformers.image_utils import ChannelDimension, load_image


_CHANNEL_COUNTS = (1, 3, 4)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_EXIF_ORIENTATION = 0x0112
_WHITE = 255.0


def flatten_images(images) -> list:
    """A single image, a 4-D batch, or (nested) lists and tuples of those, as a flat list of single images.

    A string is read as a local path or URL (and opened with PIL). 2-D and 3-D arrays/tensors are one image; a
    4-D one is a batch along its first axis.
    """
    if isinstance(images, (list, tuple)):
        flat = [image for item in images for image in flatten_images(item)]
        if not flat:
            raise ValueError("Expected at least one image, got an empty list.")
        return flat
    if isinstance(images, str):
        return [load_image(images)]
    if isinstance(images, PIL.Image.Image):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim in (2, 3):
            return [images]
        if images.ndim == 4:
            return list(images)
        raise ValueError(
            f"Expected an image array of 2 or 3 dimensions, or a batch of 4, got a {images.ndim}-D "
            f"{type(images).__name__} of shape {tuple(images.shape)}."
        )
    raise ValueError(
        "Expected a PIL.Image.Image, numpy.ndarray, torch.Tensor or a path/URL (or a list of them), "
        f"got {type(images).__name__}."
    )


def to_rgb_array(image, input_data_format: str | ChannelDimension | None = None) -> np.ndarray:
    """Convert one image to an `(height, width, 3)` RGB array on the 0–255 scale (see the module docstring).

    Args:
        image: a `PIL.Image.Image`, or a `numpy.ndarray` / `torch.Tensor` of shape (H, W), (H, W, C) or (C, H, W).
        input_data_format: where the channels of an array are (`"channels_first"` or `"channels_last"`);
            needed only when the shape does not tell.

    Returns:
        A `uint8` array for 8-bit sources, otherwise `float32` with values in [0, 255].
    """
    if isinstance(image, PIL.Image.Image):
        return _pil_to_rgb_array(image)
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()  # numpy has no bfloat16
        image = tensor.numpy()
    if isinstance(image, np.ndarray):
        return _array_to_rgb_array(image, input_data_format)
    raise ValueError(f"Expected a PIL.Image.Image, numpy.ndarray or torch.Tensor, got {type(image).__name__}.")


def _pil_to_rgb_array(image: PIL.Image.Image) -> np.ndarray:
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = PIL.ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _array_to_rgb_array(np.array(image).astype(np.uint16), ChannelDimension.LAST)
    if mode == "I":
        values = np.array(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                "Expected a mode 'I' image to hold 16-bit values in [0, 65535] (as Pillow decodes 16-bit PNGs), "
                f"got values in [{values.min()}, {values.max()}]."
            )
        return _array_to_rgb_array(values.astype(np.uint16), ChannelDimension.LAST)
    if mode == "F":
        return _array_to_rgb_array(np.array(image), ChannelDimension.LAST)
    if mode == "LAB":
        raise ValueError(
            "Cannot convert a PIL image of mode 'LAB' to RGB: Pillow's convert() does no colour conversion from "
            "LAB. Convert it with PIL.ImageCms first."
        )
    if mode == "La":
        image = image.convert("LA")  # Pillow converts premultiplied La to nothing but LA
    if image.has_transparency_data or mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        target = "RGBA"
    else:
        target = "RGB"
    if mode != target:
        try:
            image = image.convert(target)
        except (ValueError, OSError) as error:
            raise ValueError(f"Cannot convert a PIL image of mode {mode!r} to {target}: {error}") from error
    return _array_to_rgb_array(np.array(image), ChannelDimension.LAST)


def _array_to_rgb_array(array: np.ndarray, input_data_format: str | ChannelDimension | None) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3:
        array = _channels_last(array, input_data_format)
    else:
        raise ValueError(
            f"Expected an image of shape (H, W), (H, W, C) or (C, H, W), got shape {tuple(array.shape)}."
        )
    if 0 in array.shape[:2]:
        raise ValueError(f"Expected a non-empty image, got height × width {array.shape[0]} × {array.shape[1]}.")
    array = _to_255_scale(array)
    channels = array.shape[2]
    if channels == 1:
        return np.repeat(array, 3, axis=2)
    if channels == 4:
        return _composite_on_white(array)
    return array


def _channels_last(array: np.ndarray, input_data_format: str | ChannelDimension | None) -> np.ndarray:
    """Move the channel axis of a 3-D array last, refusing to guess when the shape allows both layouts."""
    if input_data_format is not None:
        layout = ChannelDimension(input_data_format)
    else:
        first, last = array.shape[0] in _CHANNEL_COUNTS, array.shape[-1] in _CHANNEL_COUNTS
        if first and last:
            raise ValueError(
                f"Cannot tell the channel axis of an image of shape {tuple(array.shape)}: both the first and the "
                "last axis could hold 1, 3 or 4 channels. Pass input_data_format='channels_first' or "
                "'channels_last'."
            )
        if not (first or last):
            raise ValueError(
                f"Expected an image with 1, 3 or 4 channels (grayscale, RGB, RGBA) on its first or last axis, got "
                f"shape {tuple(array.shape)}."
            )
        layout = ChannelDimension.FIRST if first else ChannelDimension.LAST
    if layout == ChannelDimension.FIRST:
        array = np.moveaxis(array, 0, -1)
    if array.shape[-1] not in _CHANNEL_COUNTS:
        raise ValueError(
            f"Expected 1, 3 or 4 channels (grayscale, RGB, RGBA), got {array.shape[-1]} in an image of shape "
            f"{tuple(array.shape)} read as {layout.value}."
        )
    return array


def _to_255_scale(array: np.ndarray) -> np.ndarray:
    """uint8 stays as it is; bool, uint16 and floats in [0, 1] become float32 (bool: uint8) on the 0–255 scale."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    if array.dtype == np.uint16:
        return array.astype(np.float32) * np.float32(255.0 / 65535.0)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("Expected finite pixel values, got NaN or infinity.")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"Expected a float image with values in [0, 1], got values in [{low}, {high}]. Divide 0–255 data "
                "by 255 (or pass it as uint8)."
            )
        return array.astype(np.float32) * np.float32(255.0)
    raise ValueError(
        f"Expected pixel values of dtype uint8, uint16, bool or float (in [0, 1]), got {array.dtype}. Convert "
        "the image to uint8 (0–255) or to float in [0, 1]."
    )


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Blend an (H, W, 4) image on the 0–255 scale over a white background; uint8 in, uint8 out."""
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:].astype(np.float32) / _WHITE
    blended = rgb * alpha + _WHITE * (1.0 - alpha)
    if rgba.dtype == np.uint8:
        return np.round(blended).astype(np.uint8)
    return blended
