"""Turn whatever image a user hands in into the one form both PoolFormer image processors (and training) work on.

That form is an `(height, width, channels)` array on the 0–255 scale: `uint8` when the source has 8 bits per
channel (so the resize runs on exactly the data transformers' processors see), `float32` otherwise (so 16-bit
and float sources keep their precision). With `convert_rgb=True` (the processors' default) it has 3 RGB channels:

- PIL images are first turned upright by their EXIF orientation tag.
- Grayscale (modes `1`, `L`, `I;16*`, `I`, `F`, or one-channel arrays) is repeated into three channels.
- Anything with transparency (modes `LA`, `La`, `PA`, `RGBA`, `RGBa`, `P` or `RGB` with a transparency key,
  four-channel arrays) is composited on a white background.
- Other PIL modes (`CMYK`, `YCbCr`, `HSV`, ...) go through Pillow's own conversion to `RGB`; `LAB` is refused,
  since Pillow's `convert` does no colour conversion from it.

With `convert_rgb=False` (the processors' `do_convert_rgb=False`) the channels are kept as they are, as
transformers' processors keep them: a four-channel array stays four channels, a mode `L` image one, a `CMYK`
image its four ink channels. Only palette images (`P`, `PA`) are expanded to the colours (and alpha) they index.

Either way:

- 16-bit data (mode `I;16*`, `uint16` arrays of either byte order) is scaled by its range: value * 255 / 65535.
- Mode `I` holds 32-bit integers, but Pillow decodes 16-bit PNGs to it, so it is read as 16-bit data: its values
  must lie in [0, 65535].
- Float data (mode `F`, float arrays and tensors) must lie in [0, 1] and is multiplied by 255, so the processors'
  `rescale_factor` of 1/255 treats every input alike.
- Boolean arrays map False/True to 0/255.

Anything else raises a `ValueError` that says what was expected: other dtypes (e.g. signed integers, whose range
is unknown), NaN or infinite values, float values outside [0, 1], arrays with 2 or more than 4 channels (unless
`input_data_format` says where the channels are and `convert_rgb=False`), empty images, and arrays whose channel
axis cannot be told from the shape (both the first and the last axis have 1, 3 or 4 entries, e.g. a 3×3 RGB image
or a 1×1 image) unless `input_data_format` says where the channels are.

Paths and URLs are opened here too (`load_image`), without the `convert("RGB")` of transformers' `load_image`
(which drops transparency and clips 16-bit images), so a file decodes the same whether it is handed in by name
or as an opened image; training decodes through the same functions (`to_rgb_pil`).
"""

import io
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch
from transformers.image_utils import ChannelDimension


_CHANNEL_COUNTS = (1, 3, 4)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_EXIF_ORIENTATION = 0x0112
_WHITE = 255.0
_URL_PREFIXES = ("http://", "https://")
DOWNLOAD_TIMEOUT_S = 30.0
_DOWNLOAD_ATTEMPTS = 2  # a GET may be retried: one more try after a dropped connection or a 5xx


def flatten_images(images) -> list:
    """A single image, a 4-D batch, or (nested) lists and tuples of those, as a flat, non-empty list of images.

    A string or `pathlib.Path` is read as a local path or an http(s) URL (see `load_image`). 2-D and 3-D
    arrays/tensors are one image; a 4-D one is a batch along its first axis.
    """
    flat = _flatten(images)
    if not flat:
        raise ValueError(f"Expected at least one image, got an empty batch ({_describe(images)}).")
    return flat


def _flatten(images) -> list:
    if isinstance(images, (list, tuple)):
        return [image for item in images for image in _flatten(item)]
    if isinstance(images, (str, Path)):
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
    raise TypeError(
        "Expected a PIL.Image.Image, numpy.ndarray, torch.Tensor or a path/URL (or a list of them), "
        f"got {type(images).__name__}."
    )


def _describe(images) -> str:
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return f"a {type(images).__name__} of shape {tuple(images.shape)}"
    return f"an empty {type(images).__name__}" if isinstance(images, (list, tuple)) else type(images).__name__


def load_image(source, timeout: float = DOWNLOAD_TIMEOUT_S) -> PIL.Image.Image:
    """Open a local path, an http(s) URL or a binary file object as a PIL image, decoded but not converted.

    Unlike transformers' `load_image` this neither converts to RGB nor applies EXIF here: `to_pixel_array` does
    both, the same way for every kind of input. A URL is fetched with `timeout` seconds per attempt.
    """
    name = str(source) if isinstance(source, (str, Path)) else type(source).__name__
    if isinstance(source, str) and source.startswith(_URL_PREFIXES):
        source = io.BytesIO(_download(source, timeout))
    elif isinstance(source, (str, Path)) and not Path(source).is_file():
        raise ValueError(f"Expected a path to an image file or an http(s) URL, got {name!r}: no such file.")
    try:
        image = PIL.Image.open(source)
        image.load()
    except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as error:
        raise ValueError(f"Cannot read {name} as an image: {error}") from error
    return image


def _download(url: str, timeout: float) -> bytes:
    import urllib.error
    import urllib.request

    error = None
    for _ in range(_DOWNLOAD_ATTEMPTS):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as http_error:
            if http_error.code < 500:
                raise ValueError(f"Could not download the image {url}: HTTP {http_error.code}") from http_error
            error = f"HTTP {http_error.code}"
        except (urllib.error.URLError, OSError) as connection_error:  # refused, reset, timed out
            error = connection_error
    raise ValueError(f"Could not download the image {url} in {_DOWNLOAD_ATTEMPTS} attempts of {timeout} s: {error}")


def to_rgb_array(image, input_data_format: str | ChannelDimension | None = None) -> np.ndarray:
    """`to_pixel_array` with `convert_rgb=True`: an `(height, width, 3)` RGB array on the 0–255 scale."""
    return to_pixel_array(image, input_data_format, convert_rgb=True)


def to_pixel_array(
    image, input_data_format: str | ChannelDimension | None = None, convert_rgb: bool = True
) -> np.ndarray:
    """Convert one image to an `(height, width, channels)` array on the 0–255 scale (see the module docstring).

    Args:
        image: a `PIL.Image.Image`, or a `numpy.ndarray` / `torch.Tensor` of shape (H, W), (H, W, C) or (C, H, W).
        input_data_format: where the channels of an array are (`"channels_first"` or `"channels_last"`);
            needed only when the shape does not tell.
        convert_rgb: make 3 RGB channels (grayscale repeated, transparency on white); `False` keeps the channels.

    Returns:
        A `uint8` array for 8-bit sources, otherwise `float32` with values in [0, 255].
    """
    if isinstance(image, PIL.Image.Image):
        return _pil_to_array(image, convert_rgb)
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()  # numpy has no bfloat16
        image = tensor.numpy()
    if isinstance(image, np.ndarray):
        return _array_to_array(image, input_data_format, convert_rgb)
    raise TypeError(f"Expected a PIL.Image.Image, numpy.ndarray or torch.Tensor, got {type(image).__name__}.")


def to_rgb_pil(image) -> PIL.Image.Image:
    """The 8-bit RGB PIL image of `to_rgb_array` (16-bit and float sources rounded to 8 bits): what training uses."""
    array = to_rgb_array(image)
    if array.dtype != np.uint8:
        array = np.round(array).astype(np.uint8)
    return PIL.Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def load_rgb_array(source, timeout: float = DOWNLOAD_TIMEOUT_S) -> np.ndarray:
    """A path, URL or image decoded as the processors decode it, as an array they take back unchanged.

    `uint8` (H, W, 3) for 8-bit sources, else `float32` in [0, 1]. transformers' pipelines hand arrays to the
    processor as they are, but open paths, URLs and PIL images with their own `load_image`, which flattens
    transparency onto the stored colours and clips 16-bit images: `pipeline(...)(load_rgb_array(path))` gives what
    the processor gives for `path`.
    """
    image = source if isinstance(source, (PIL.Image.Image, np.ndarray, torch.Tensor)) else load_image(source, timeout)
    array = to_rgb_array(image)
    return array if array.dtype == np.uint8 else array / np.float32(255.0)


def _pil_to_array(image: PIL.Image.Image, convert_rgb: bool) -> np.ndarray:
    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = PIL.ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return _array_to_array(np.array(image).astype(np.uint16), ChannelDimension.LAST, convert_rgb)
    if mode == "I":
        values = np.array(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                "Expected a mode 'I' image to hold 16-bit values in [0, 65535] (as Pillow decodes 16-bit PNGs), "
                f"got values in [{values.min()}, {values.max()}]."
            )
        return _array_to_array(values.astype(np.uint16), ChannelDimension.LAST, convert_rgb)
    if mode in ("F", "1"):
        return _array_to_array(np.array(image), ChannelDimension.LAST, convert_rgb)
    # Premultiplied alpha is undone, and palette indices are replaced by the colours they stand for.
    if mode == "La":
        image = _convert(image, "LA")
    elif mode == "RGBa":
        image = _convert(image, "RGBA")
    elif mode in ("P", "PA"):
        image = _convert(image, "RGBA" if mode == "PA" or image.has_transparency_data else "RGB")
    if convert_rgb:
        if image.mode == "LAB":
            raise ValueError(
                "Cannot convert a PIL image of mode 'LAB' to RGB: Pillow's convert() does no colour conversion "
                "from LAB. Convert it with PIL.ImageCms first."
            )
        transparent = image.has_transparency_data or image.mode in ("LA", "RGBA")
        image = _convert(image, "RGBA" if transparent else "RGB")
    return _array_to_array(np.array(image), ChannelDimension.LAST, convert_rgb)


def _convert(image: PIL.Image.Image, mode: str) -> PIL.Image.Image:
    if image.mode == mode:
        return image
    try:
        return image.convert(mode)
    except (ValueError, OSError) as error:
        raise ValueError(f"Cannot convert a PIL image of mode {image.mode!r} to {mode}: {error}") from error


def _array_to_array(
    array: np.ndarray, input_data_format: str | ChannelDimension | None, convert_rgb: bool
) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3:
        array = _channels_last(array, input_data_format, convert_rgb)
    else:
        raise ValueError(
            f"Expected an image of shape (H, W), (H, W, C) or (C, H, W), got shape {tuple(array.shape)}."
        )
    if 0 in array.shape:
        raise ValueError(
            f"Expected a non-empty image, got height × width × channels {' × '.join(map(str, array.shape))}."
        )
    array = _to_255_scale(array)
    if not convert_rgb:
        return array
    channels = array.shape[2]
    if channels == 1:
        return np.repeat(array, 3, axis=2)
    if channels == 4:
        return _composite_on_white(array)
    return array


def _channels_last(
    array: np.ndarray, input_data_format: str | ChannelDimension | None, convert_rgb: bool
) -> np.ndarray:
    """Move the channel axis of a 3-D array last, refusing to guess when the shape allows both layouts."""
    if input_data_format is not None:
        try:
            layout = ChannelDimension(input_data_format)
        except ValueError:
            raise ValueError(
                f"Expected input_data_format 'channels_first' or 'channels_last', got {input_data_format!r}."
            ) from None
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
                f"shape {tuple(array.shape)} (pass input_data_format, and do_convert_rgb=False, for other channel "
                "counts)."
            )
        layout = ChannelDimension.FIRST if first else ChannelDimension.LAST
    if layout == ChannelDimension.FIRST:
        array = np.moveaxis(array, 0, -1)
    if convert_rgb and array.shape[-1] not in _CHANNEL_COUNTS:
        raise ValueError(
            f"Expected 1, 3 or 4 channels (grayscale, RGB, RGBA), got {array.shape[-1]} in an image of shape "
            f"{tuple(array.shape)} read as {layout.value} (do_convert_rgb=False keeps other channel counts)."
        )
    return array


def _to_255_scale(array: np.ndarray) -> np.ndarray:
    """uint8 stays as it is; bool, uint16 and floats in [0, 1] become float32 (bool: uint8) on the 0–255 scale."""
    if not array.dtype.isnative:  # e.g. big-endian uint16 read from a file
        array = array.astype(array.dtype.newbyteorder("="))
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
