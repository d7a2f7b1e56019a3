"""What PoolFormer's torchvision and PIL image processors share: defaults, input handling, the resize plan, saving.

The ImageNet eval transform: resize the shortest edge to `int(shortest_edge / crop_pct)` (bicubic), center-crop
`crop_size`, rescale by 1/255, normalize with the ImageNet mean and std. This file travels with the processors
when they are saved for `trust_remote_code`, so it imports only from transformers, numpy and sibling files.
"""

import math

from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling, SizeDict
from transformers.processing_utils import ImagesKwargs

from .image_inputs import flatten_images


# Past this many crop widths the resized image is mostly thrown away by the center crop; only the part of the
# input the crop can see is resized (see `resize_plan`).
MAX_RESIZED_CROPS = 8
# Extra context kept around that part: output pixels for the bicubic support when shrinking, input pixels when
# enlarging.
_MARGIN_OUTPUT_PIXELS = 8
_MARGIN_INPUT_PIXELS = 4


class PoolFormerImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    crop_pct (`float`, *optional*, defaults to `self.crop_pct`):
        Fraction of the resized image the center crop keeps: the shortest edge is resized to
        `int(size["shortest_edge"] / crop_pct)` before cropping `crop_size`. `None` resizes to `size` itself.
    """

    crop_pct: float | None


class PoolFormerImageProcessingMixin:
    """Defaults and behaviour common to `PoolFormerImageProcessor` (torchvision) and `PoolFormerImageProcessorPil`.

    Every input goes through `image_inputs.to_rgb_array` (so the output always has three RGB channels, whatever
    `do_convert_rgb` says), and a batch may mix sizes, kinds and dtypes.
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

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        check_crop_pct(self.crop_pct)

    def _prepare_images_structure(self, images, expected_ndims: int = 3) -> list:
        return flatten_images(images)

    def _validate_preprocess_kwargs(self, crop_pct: float | None = None, **kwargs):
        check_crop_pct(crop_pct)
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
        """Resize (see `resize_plan`), center-crop, rescale and normalize channels-first images of any sizes.

        The backend decides which images go through together (`_batches`) and splits the result (`_unbatch`).
        """
        processed = [None] * len(images)
        for indices, batch in self._batches(images):
            if do_resize:
                height, width = batch.shape[-2:]
                rows, cols, (new_height, new_width) = resize_plan(
                    height, width, size, crop_pct, crop_size if do_center_crop else None
                )
                batch = self.resize(batch[..., rows, cols], SizeDict(height=new_height, width=new_width), resample)
            if do_center_crop:
                batch = self.center_crop(batch, crop_size)
            batch = self.rescale_and_normalize(batch, do_rescale, rescale_factor, do_normalize, image_mean, image_std)
            for index, image in zip(indices, self._unbatch(batch)):
                processed[index] = image

        if do_pad:
            processed = self.pad(processed, pad_size=pad_size)
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)

    def to_dict(self) -> dict:
        # save_pretrained names only the class being saved in auto_map; name both backends (both files are copied
        # because `backend_classes` imports them) so `AutoImageProcessor.from_pretrained(..., backend=...)` can
        # choose between them with trust_remote_code.
        output = super().to_dict()
        auto_map = output.get("auto_map")
        if isinstance(auto_map, dict) and "AutoImageProcessor" in auto_map:
            output["auto_map"] = {
                **auto_map,
                "AutoImageProcessor": {
                    backend: f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"
                    for backend, cls in backend_classes().items()
                },
            }
        return output


def backend_classes() -> dict:
    """The processor class of each backend, keyed the way `AutoImageProcessor.register` expects."""
    # Imported here: both files import this one.
    from .image_processing_pil_poolformer import PoolFormerImageProcessorPil
    from .image_processing_poolformer import PoolFormerImageProcessor

    return {"torchvision": PoolFormerImageProcessor, "pil": PoolFormerImageProcessorPil}


def check_crop_pct(crop_pct: float | None) -> None:
    if crop_pct is not None and not (isinstance(crop_pct, (int, float)) and 0.0 < crop_pct <= 1.0):
        raise ValueError(f"Expected crop_pct in (0, 1] or None, got {crop_pct!r}.")


def resize_plan(
    height: int, width: int, size: SizeDict, crop_pct: float | None, crop_size: SizeDict | None
) -> tuple[slice, slice, tuple[int, int]]:
    """Where an image of `height` × `width` is resized to, and which part of it needs resizing.

    The target follows transformers' `PoolFormerImageProcessor`: with `crop_pct`, a `shortest_edge` (or a square
    `height` = `width`) becomes `int(edge / crop_pct)` for the shortest edge, and a non-square `height`/`width`
    becomes `int(height / crop_pct)` × `int(width / crop_pct)`; without it, `size` is used as it is.

    When a center crop follows (`crop_size` given) and the resized image would be more than `MAX_RESIZED_CROPS`
    crop widths long on an axis (extreme aspect ratios such as 1 × 500), only a centred window of the input that
    covers the crop plus a margin is resized, to the same scale (within rounding). The crop then sees the same
    pixels as after a full resize, up to sub-pixel differences, without resizing a 248 × 124000 image.

    Returns:
        `(rows, cols, (new_height, new_width))`: the input window to resize and its size after resizing.
    """
    if size.shortest_edge:
        target = size.shortest_edge if crop_pct is None else int(size.shortest_edge / crop_pct)
        new_height, new_width = _shortest_edge_size(height, width, target)
    elif size.height and size.width:
        if crop_pct is None:
            new_height, new_width = size.height, size.width
        elif size.height == size.width:
            new_height, new_width = _shortest_edge_size(height, width, int(size.height / crop_pct))
        else:
            new_height, new_width = int(size.height / crop_pct), int(size.width / crop_pct)
    else:
        raise ValueError(f"Expected size with 'shortest_edge', or with 'height' and 'width', got {dict(size)}.")
    crop_height = crop_size.height if crop_size is not None else None
    crop_width = crop_size.width if crop_size is not None else None
    rows, new_height = _window_for_crop(height, new_height, crop_height)
    cols, new_width = _window_for_crop(width, new_width, crop_width)
    return rows, cols, (new_height, new_width)


def _shortest_edge_size(height: int, width: int, shortest_edge: int) -> tuple[int, int]:
    # Same rounding as transformers' get_resize_output_image_size (and torchvision's Resize(int)).
    if width <= height:
        return int(shortest_edge * height / width), shortest_edge
    return shortest_edge, int(shortest_edge * width / height)


def _window_for_crop(length: int, new_length: int, crop: int | None) -> tuple[slice, int]:
    """The centred input window along one axis that the crop needs, and its length after resizing."""
    if crop is None or new_length <= MAX_RESIZED_CROPS * crop:
        return slice(None), new_length
    scale = new_length / length
    keep = min(length, math.ceil((crop + _MARGIN_OUTPUT_PIXELS) / scale) + _MARGIN_INPUT_PIXELS)
    keep += (length - keep) % 2  # an even remainder puts the window exactly in the middle
    start = (length - keep) // 2
    return slice(start, start + keep), max(crop, round(keep * scale))
