"""PoolFormer image processor on transformers' PIL backend (Pillow resize, numpy arrays, CPU only)."""

import numpy as np
import PIL.Image
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import PILImageResampling, SizeDict, torch_pil_interpolation_mapping

from .image_inputs import to_rgb_array
from .image_processing_shared_poolformer import PoolFormerImageProcessingMixin, resize_plan


class PoolFormerImageProcessorPil(PoolFormerImageProcessingMixin, PilBackend):
    """ImageNet eval transform for PoolFormer / MetaFormer with Pillow's resize, as timm evaluates.

    Shortest edge to `int(224 / crop_pct)` (Pillow bicubic), center crop 224 × 224, rescale by 1/255, normalize
    with the ImageNet mean and std. With the same settings the output equals transformers'
    `PoolFormerImageProcessorPil` on RGB images. 8-bit images are resized as RGB images; 16-bit and float images
    are resized channel by channel as 32-bit float images (mode `F`), so they keep their precision.
    """

    def process_image(self, image, input_data_format=None, **kwargs) -> np.ndarray:
        """One input image as a (3, H, W) array on the 0–255 scale (uint8, or float32 for non-8-bit sources)."""
        return np.ascontiguousarray(np.moveaxis(to_rgb_array(image, input_data_format), -1, 0))

    def resize(self, image: np.ndarray, size: SizeDict, resample=None, **kwargs) -> np.ndarray:
        """Resize a (C, H, W) array to `size["height"]` × `size["width"]`."""
        if image.dtype == np.uint8:
            return super().resize(image, size, resample, **kwargs)
        resample = _pil_resample(resample)
        channels = [
            np.asarray(PIL.Image.fromarray(channel).resize((size.width, size.height), resample))
            for channel in image.astype(np.float32)
        ]
        return np.clip(np.stack(channels), 0.0, 255.0)  # bicubic overshoots; Pillow clamps 8-bit images too

    def _preprocess(
        self,
        images: list[np.ndarray],
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
        processed = []
        for image in images:
            if do_resize:
                rows, cols, (height, width) = resize_plan(
                    image.shape[1], image.shape[2], size, crop_pct, crop_size if do_center_crop else None
                )
                image = self.resize(image[:, rows, cols], SizeDict(height=height, width=width), resample)
            if do_center_crop:
                image = self.center_crop(image, crop_size)
            if do_rescale:
                image = self.rescale(image, rescale_factor)
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            processed.append(image)

        if do_pad:
            processed = self.pad(processed, pad_size=pad_size)
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)


def _pil_resample(resample) -> PILImageResampling:
    if resample is None:
        return PILImageResampling.BICUBIC
    if isinstance(resample, int):
        return PILImageResampling(resample)
    return torch_pil_interpolation_mapping[resample]  # a torchvision InterpolationMode


PoolFormerImageProcessorPil.register_for_auto_class()

__all__ = ["PoolFormerImageProcessorPil"]
