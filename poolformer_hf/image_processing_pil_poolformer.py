"""PoolFormer image processor on transformers' PIL backend (Pillow resize, numpy arrays, CPU only)."""

import numpy as np
import PIL.Image
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import PILImageResampling, SizeDict, torch_pil_interpolation_mapping

from .image_processing_shared_poolformer import (
    PoolFormerImageProcessingMixin,
    PoolFormerImageProcessorKwargs,
)


# Channel counts Pillow holds as one 8-bit image (L, LA, RGB, RGBA), as transformers' PIL backend hands them over.
_PIL_CHANNELS = (1, 2, 3, 4)


class PoolFormerImageProcessorPil(PoolFormerImageProcessingMixin, PilBackend):
    """ImageNet eval transform for PoolFormer / MetaFormer with Pillow's resize, as timm evaluates.

    Shortest edge to `int(224 / crop_pct)` (Pillow bicubic), center crop 224 × 224, rescale by 1/255, normalize
    with the ImageNet mean and std. With the same settings the output equals transformers'
    `PoolFormerImageProcessorPil` on 8-bit images (see `PoolFormerImageProcessingMixin` for extreme aspect ratios).
    8-bit images are resized as Pillow images; 16-bit and float images (and 8-bit ones of more than 4 channels) are
    resized channel by channel as 32-bit float images (mode `F`), so they keep their precision.
    """

    def _from_channels_last(self, array: np.ndarray, **kwargs) -> np.ndarray:
        # A channels-first view of the channels-last array: Pillow gets it back without a copy when resizing.
        return np.moveaxis(array, -1, 0)

    def resize(self, image: np.ndarray, size: SizeDict, resample=None, **kwargs) -> np.ndarray:
        """Resize a (C, H, W) array to `size.height` × `size.width`."""
        if image.dtype == np.uint8 and image.shape[0] in _PIL_CHANNELS:
            return super().resize(image, size, resample, **kwargs)
        resample = _pil_resample(resample)
        channels = [
            np.asarray(PIL.Image.fromarray(channel).resize((size.width, size.height), resample))
            for channel in image.astype(np.float32)
        ]
        return np.clip(np.stack(channels), 0.0, 255.0)  # bicubic overshoots; Pillow clamps 8-bit images too

    def rescale_and_normalize(
        self, image: np.ndarray, do_rescale: bool, rescale_factor: float, do_normalize: bool, image_mean, image_std
    ) -> np.ndarray:
        if do_rescale:
            image = self.rescale(image, rescale_factor)
        if do_normalize:
            image = self.normalize(image, image_mean, image_std)
        return image

    @staticmethod
    def _batches(images: list[np.ndarray]) -> list[tuple[list[int], np.ndarray]]:
        return [([index], image) for index, image in enumerate(images)]  # Pillow resizes one image at a time

    @staticmethod
    def _unbatch(image: np.ndarray) -> list[np.ndarray]:
        return [image]


def _pil_resample(resample) -> PILImageResampling:
    if resample is None:
        return PILImageResampling.BICUBIC
    if isinstance(resample, int):
        return PILImageResampling(resample)
    return torch_pil_interpolation_mapping[resample]  # a torchvision InterpolationMode


PoolFormerImageProcessorPil.register_for_auto_class()

__all__ = ["PoolFormerImageProcessorPil", "PoolFormerImageProcessorKwargs"]
