"""What PoolFormer's torchvision and PIL image processors share: defaults, input handling, the resize plan, saving.

The ImageNet eval transform: resize the shortest edge to `int(shortest_edge / crop_pct)` (bicubic), center-crop
`crop_size`, rescale by 1/255, normalize with the ImageNet mean and std, at the sizes and offsets transformers'
`PoolFormerImageProcessor` uses. This file travels with the processors
when they are saved for `trust_remote_code`, so it imports only from transformers, numpy and sibling files.
"""

import json
import math
from numbers import Real

from huggingface_hub.errors import StrictDataclassError
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    PILImageResampling,
    SizeDict,
    torch_pil_interpolation_mapping,
)
from transformers.processing_utils import ImagesKwargs

from .files import ship_code
from .image_inputs import flatten_images, to_pixel_array


# Images are resized whole, as transformers' processors do, up to this many pixels per resized image (a 1 × 270
# strip at the default 248-pixel short side; resizing it whole takes about a second); past it only a centred window
# of the input is resized (see `approximate_window`), so that a 1 × 100000 strip does not make a 248 × 24.8M image.
MAX_RESIZED_PIXELS = 2**24
# Extra context kept around that window: output pixels for the bicubic support when shrinking, input pixels when
# enlarging.
_MARGIN_OUTPUT_PIXELS = 8
_MARGIN_INPUT_PIXELS = 4
_SIZE_KEYS = ("shortest_edge", "longest_edge", "height", "width", "max_height", "max_width")


class PoolFormerImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    crop_pct (`float`, *optional*, defaults to `self.crop_pct`):
        Fraction of the resized image the center crop keeps: the shortest edge is resized to
        `int(size["shortest_edge"] / crop_pct)` before cropping `crop_size`. `None` resizes to `size` itself.
    """

    crop_pct: float | int | None


class PoolFormerImageProcessingMixin:
    """Defaults and behaviour common to `PoolFormerImageProcessor` (torchvision) and `PoolFormerImageProcessorPil`.

    Every input goes through `image_inputs.to_pixel_array`: with `do_convert_rgb` unset or `True` the output has
    three RGB channels; `do_convert_rgb=False` keeps the input's channels (then `image_mean` and `image_std` need
    one value per channel). A batch may mix sizes, kinds and dtypes. Bad settings raise a `ValueError` naming the
    setting, at construction and at call time.

    The resize goes to transformers' sizes and the crop to its offsets, so the output equals that of transformers'
    processor of the same backend. Only past `MAX_RESIZED_PIXELS` resized pixels (aspect ratios beyond about 270:1)
    is a window of the input resized instead (`approximate_window`), which shifts the sampling grid by a fraction
    of a pixel.
    """

    valid_kwargs = PoolFormerImageProcessorKwargs

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 224}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    crop_pct = 0.9
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = None
    # Resampling filters the backend cannot apply (refused up front rather than failing inside the resize).
    unsupported_resamples: tuple = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._check_settings(**{name: getattr(self, name, None) for name in _CHECKED_SETTINGS})

    def _check_settings(self, **settings) -> None:
        check_settings(**settings)
        resample = settings["resample"]
        if resample is not None and pil_resample(resample) in self.unsupported_resamples:
            raise ValueError(
                f"Expected a resample filter the {self.backend} backend supports, got {pil_resample(resample).name}: "
                f"it cannot apply {[r.name for r in self.unsupported_resamples]}. Use the PIL backend for those."
            )

    @classmethod
    def get_image_processor_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict, dict]:
        """`ImageProcessingMixin.get_image_processor_dict`; a timm MetaFormer folder, which has no processor file,
        gets the processor its `config.json`'s `pretrained_cfg` describes (see `timm_processor_dict`)."""
        try:
            return super().get_image_processor_dict(pretrained_model_name_or_path, **kwargs)
        except OSError:
            from transformers.configuration_utils import PreTrainedConfig

            try:
                config_dict, unused = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **kwargs)
            except OSError:
                config_dict = {}
            processor_dict = timm_processor_dict(config_dict)
            if processor_dict is None:
                raise
            return processor_dict, unused

    def preprocess(self, images, *args, **kwargs) -> BatchFeature:
        try:
            return super().preprocess(images, *args, **kwargs)
        except StrictDataclassError as error:  # transformers' type check of the call's settings
            raise TypeError(str(error)) from error

    def _prepare_images_structure(self, images, expected_ndims: int = 3) -> list:
        return flatten_images(images)

    def process_image(self, image, do_convert_rgb: bool | None = None, input_data_format=None, **kwargs):
        """One input image, channels first, on the 0–255 scale (uint8, or float32 for non-8-bit sources)."""
        array = to_pixel_array(image, input_data_format, convert_rgb=do_convert_rgb is not False)
        return self._from_channels_last(array, **kwargs)

    def _validate_preprocess_kwargs(self, **kwargs):
        self._check_settings(**{name: kwargs.get(name) for name in _CHECKED_SETTINGS})
        super()._validate_preprocess_kwargs(**kwargs)

    def _preprocess(
        self,
        images: list,
        do_resize: bool,
        size: SizeDict,
        resample,
        do_center_crop: bool,
        crop_size: SizeDict,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean,
        image_std,
        do_pad: bool | None,
        pad_size: SizeDict | None,
        return_tensors=None,
        crop_pct: float | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Resize (to transformers' sizes), center-crop, rescale and normalize channels-first images of any sizes.

        The backend decides which images go through together (`_batches`) and splits the result (`_unbatch`).
        """
        if do_normalize:
            for image in images:
                check_channels(image.shape[0], image_mean, image_std)
        processed = [None] * len(images)
        for indices, batch in self._batches(images):
            if do_resize:
                height, width = batch.shape[-2:]
                target = resize_target(height, width, size, crop_pct)
                batch = self._resize_for_crop(batch, target, resample, crop_size if do_center_crop else None)
            if do_center_crop:
                batch = self.center_crop(batch, crop_size)
            batch = self.rescale_and_normalize(batch, do_rescale, rescale_factor, do_normalize, image_mean, image_std)
            for index, image in zip(indices, self._unbatch(batch)):
                processed[index] = image

        if do_pad:
            processed = self.pad(processed, pad_size=pad_size)
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)

    def _resize_for_crop(self, batch, new_size: tuple[int, int], resample, crop_size: SizeDict | None):
        """The batch resized to `new_size`, as transformers does; past the pixel budget, a window of it."""
        if crop_size is not None and new_size[0] * new_size[1] > MAX_RESIZED_PIXELS:
            rows, cols, new_size = approximate_window(*batch.shape[-2:], new_size, crop_size)
            batch = batch[..., rows, cols]
        return self.resize(batch, SizeDict(height=new_size[0], width=new_size[1]), resample)

    def to_dict(self) -> dict:
        # save_pretrained names only the class being saved in auto_map; name both backends so
        # `AutoImageProcessor.from_pretrained(..., backend=...)` can choose between them with trust_remote_code.
        output = super().to_dict()
        auto_map = output.get("auto_map")
        if isinstance(auto_map, dict) and "AutoImageProcessor" in auto_map:
            output["auto_map"] = {**auto_map, "AutoImageProcessor": dict(BACKEND_CLASS_REFERENCES)}
        return output

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save, with the code files of both backends (auto_map names both; transformers copies only
        the saved class's file and what it imports). An attribute JSON cannot hold is refused, naming it, before
        anything is written."""
        self._check_saveable()
        saved = super().save_pretrained(save_directory, *args, **kwargs)
        if self._auto_class is not None:
            ship_code(save_directory, "image processor")
        return saved

    def _check_saveable(self) -> None:
        try:
            self.to_json_string()
        except (TypeError, ValueError):
            bad = []
            for name, value in self.to_dict().items():
                try:
                    json.dumps(value.tolist() if hasattr(value, "tolist") else value)
                except (TypeError, ValueError):
                    bad.append(name)
            raise TypeError(
                f"image processor attribute(s) {bad} cannot be written to preprocessor_config.json (not JSON: "
                f"{', '.join(type(self.to_dict()[name]).__name__ for name in bad)}); delete or convert them first"
            ) from None

    def _upload_modified_files(self, working_dir, *args, **kwargs):
        if self._auto_class is not None:  # save_pretrained(push_to_hub=True) uploads before it returns
            ship_code(working_dir, "image processor")
        return super()._upload_modified_files(working_dir, *args, **kwargs)


# The processor class of each backend, as `auto_map` references it (file stem and class name).
BACKEND_CLASS_REFERENCES = {
    "torchvision": "image_processing_poolformer.PoolFormerImageProcessor",
    "pil": "image_processing_pil_poolformer.PoolFormerImageProcessorPil",
}


# Settings

_CHECKED_SETTINGS = (
    "size", "crop_size", "crop_pct", "image_mean", "image_std", "rescale_factor", "do_convert_rgb", "resample",
)


# timm's MetaFormer architectures (`config.json`'s `architecture`, before the size).
TIMM_FAMILIES = ("poolformer", "poolformerv2", "convformer", "caformer")
_TIMM_INTERPOLATIONS = {
    "bicubic": PILImageResampling.BICUBIC, "bilinear": PILImageResampling.BILINEAR,
    "nearest": PILImageResampling.NEAREST, "lanczos": PILImageResampling.LANCZOS,
}  # fmt: skip


def timm_processor_dict(config_dict: dict) -> dict | None:
    """Processor settings for the eval transform of a timm MetaFormer `config.json` (its `pretrained_cfg`: input size,
    crop_pct, interpolation, mean, std), or None for a config of any other model."""
    architecture = str(config_dict.get("architecture", "")).split(".")[0]
    pretrained_cfg = config_dict.get("pretrained_cfg")
    if architecture.rsplit("_", 1)[0] not in TIMM_FAMILIES or not isinstance(pretrained_cfg, dict):
        return None
    _, height, width = pretrained_cfg.get("input_size", (3, 224, 224))
    interpolation = pretrained_cfg.get("interpolation", "bicubic")
    crop_mode = pretrained_cfg.get("crop_mode", "center")
    if interpolation not in _TIMM_INTERPOLATIONS or crop_mode != "center":
        raise ValueError(
            f"{architecture}: timm's pretrained_cfg asks for interpolation {interpolation!r} and crop_mode "
            f"{crop_mode!r}; expected one of {sorted(_TIMM_INTERPOLATIONS)} and 'center'"
        )
    return {
        "size": {"shortest_edge": min(height, width)},
        "crop_size": {"height": height, "width": width},
        "crop_pct": pretrained_cfg.get("crop_pct", 0.875),
        "resample": _TIMM_INTERPOLATIONS[interpolation],
        "image_mean": list(pretrained_cfg.get("mean", IMAGENET_DEFAULT_MEAN)),
        "image_std": list(pretrained_cfg.get("std", IMAGENET_DEFAULT_STD)),
    }


def check_settings(
    size=None, crop_size=None, crop_pct=None, image_mean=None, image_std=None, rescale_factor=None,
    do_convert_rgb=None, resample=None,
) -> None:
    """Refuse settings that would fail later with an internal error, or give NaN or infinite pixels."""
    check_crop_pct(crop_pct)
    _check_size("size", size)
    _check_size("crop_size", crop_size)
    if crop_size is not None and not (crop_size.get("height") and crop_size.get("width")):
        raise ValueError(f"Expected crop_size with 'height' and 'width', got {dict(crop_size)}.")
    for name, values, positive in (("image_mean", image_mean, False), ("image_std", image_std, True)):
        _check_per_channel(name, values, positive)
    if do_convert_rgb is not False:
        check_channels(3, image_mean, image_std, because=" (do_convert_rgb makes RGB images)")
    if image_mean is not None and image_std is not None:
        mean_count, std_count = _count(image_mean), _count(image_std)
        if None not in (mean_count, std_count) and mean_count != std_count:
            raise ValueError(
                f"Expected image_mean and image_std with one value per channel each, got {mean_count} and "
                f"{std_count} values."
            )
    if rescale_factor is not None and not (_is_number(rescale_factor) and 0.0 < rescale_factor < math.inf):
        raise ValueError(f"Expected rescale_factor to be a positive finite number, got {rescale_factor!r}.")
    if do_convert_rgb is not None and not isinstance(do_convert_rgb, bool):
        raise ValueError(f"Expected do_convert_rgb True, False or None, got {do_convert_rgb!r}.")
    if resample is not None:
        _check_resample(resample)


def check_crop_pct(crop_pct: float | None) -> None:
    if crop_pct is not None and not (_is_number(crop_pct) and 0.0 < crop_pct <= 1.0):
        raise ValueError(f"Expected crop_pct in (0, 1] or None, got {crop_pct!r}.")


def check_channels(channels: int, image_mean, image_std, because: str = "") -> None:
    """`image_mean` and `image_std`, where they are sequences, must hold one value per channel."""
    for name, values in (("image_mean", image_mean), ("image_std", image_std)):
        count = _count(values)
        if count is not None and count != channels:
            raise ValueError(
                f"Expected {name} with {channels} values, one per channel of the images{because}, got {count}: "
                f"{list(values)}."
            )


def _check_size(name: str, size) -> None:
    if size is None:
        return
    for key in _SIZE_KEYS:
        value = size.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise ValueError(f"Expected {name}[{key!r}] to be a positive integer, got {value!r}.")


def _check_per_channel(name: str, values, positive: bool) -> None:
    if values is None:
        return
    items = [values] if _is_number(values) else list(values) if isinstance(values, (list, tuple)) else None
    if not items or not all(_is_number(v) and math.isfinite(v) for v in items):
        raise ValueError(f"Expected {name} to be a finite number or a non-empty list of them, got {values!r}.")
    if positive and not all(v > 0 for v in items):
        raise ValueError(f"Expected {name} to be positive (pixels are divided by it), got {values!r}.")


def _check_resample(resample) -> None:
    if isinstance(resample, bool) or not (
        (isinstance(resample, int) and resample in set(PILImageResampling)) or resample in torch_pil_interpolation_mapping
    ):
        raise ValueError(
            f"Expected resample to be one of PIL.Image.Resampling {[m.name for m in PILImageResampling]} (or a "
            f"torchvision InterpolationMode), got {resample!r}."
        )


def pil_resample(resample) -> PILImageResampling:
    """A resample setting (None, a PIL filter or its number, a torchvision InterpolationMode) as a PIL filter."""
    if resample is None:
        return PILImageResampling.BICUBIC
    if isinstance(resample, int):
        return PILImageResampling(resample)
    return torch_pil_interpolation_mapping[resample]


def _count(values) -> int | None:
    return len(values) if isinstance(values, (list, tuple)) else None


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


# Resize geometry


def resize_target(height: int, width: int, size: SizeDict, crop_pct: float | None) -> tuple[int, int]:
    """The size transformers' `PoolFormerImageProcessor` resizes an image of `height` × `width` to.

    With `crop_pct`, a `shortest_edge` (or a square `height` = `width`) becomes `int(edge / crop_pct)` for the
    shortest edge, and a non-square `height`/`width` becomes `int(height / crop_pct)` × `int(width / crop_pct)`;
    without it, `size` is used as it is.
    """
    if size.shortest_edge:
        target = size.shortest_edge if crop_pct is None else int(size.shortest_edge / crop_pct)
        return _shortest_edge_size(height, width, target)
    if size.height and size.width:
        if crop_pct is None:
            return size.height, size.width
        if size.height == size.width:
            return _shortest_edge_size(height, width, int(size.height / crop_pct))
        return int(size.height / crop_pct), int(size.width / crop_pct)
    raise ValueError(f"Expected size with 'shortest_edge', or with 'height' and 'width', got {dict(size)}.")


def _shortest_edge_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    # Same rounding as transformers' get_resize_output_image_size (and torchvision's Resize(int)).
    if width <= height:
        return int(shortest_edge * height / width), shortest_edge
    return shortest_edge, int(shortest_edge * width / height)


def approximate_window(
    height: int, width: int, new_size: tuple[int, int], crop_size: SizeDict
) -> tuple[slice, slice, tuple[int, int]]:
    """A centred input window covering the center crop plus a margin, and its size when resized to the same scale.

    Used past `MAX_RESIZED_PIXELS` only: the window's scale equals the full image's
    within rounding, so the crop sees the same pixels up to sub-pixel shifts.
    """
    rows, new_height = _window_for_crop(height, new_size[0], crop_size.height)
    cols, new_width = _window_for_crop(width, new_size[1], crop_size.width)
    return rows, cols, (new_height, new_width)


def _window_for_crop(length: int, new_length: int, crop: int) -> tuple[slice, int]:
    """The centred input window along one axis that the crop needs, and its length after resizing."""
    scale = new_length / length
    keep = min(length, math.ceil((crop + _MARGIN_OUTPUT_PIXELS) / scale) + _MARGIN_INPUT_PIXELS)
    if keep == length:
        return slice(None), new_length
    keep += (length - keep) % 2  # an even remainder puts the window exactly in the middle
    start = (length - keep) // 2
    return slice(start, start + keep), max(crop, round(keep * scale))
