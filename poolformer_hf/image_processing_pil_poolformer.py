"""PoolFormer image processor on transformers' PIL backend (Pillow resize, numpy arrays, CPU only)."""

import numpy as np
import PIL.Image
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import SizeDict

from .image_processing_shared_poolformer import (
    PoolFormerImageProcessingMixin,
    PoolFormerImageProcessorKwargs,
    pil_resample,
)


class PoolFormerImageProcessorPil(PoolFormerImageProcessingMixin, PilBackend):
    """ImageNet eval transform for PoolFormer / MetaFormer with Pillow's resize, as timm evaluates.

    Shortest edge to `int(224 / crop_pct)` (Pillow bicubic), center crop 224 × 224, rescale by 1/255, normalize
    with the ImageNet mean and std. With the same settings the output equals transformers'
    `PoolFormerImageProcessorPil` on 8-bit images (see `PoolFormerImageProcessingMixin` for extreme aspect ratios).
    8-bit grayscale and RGB images are resized as Pillow images; others channel by channel (see `resize`).
    """

    def _from_channels_last(self, array: np.ndarray, **kwargs) -> np.ndarray:
        # A channels-first view of the channels-last array: Pillow gets it back without a copy when resizing.
        return np.moveaxis(array, -1, 0)

    def resize(self, image: np.ndarray, size: SizeDict, resample=None, **kwargs) -> np.ndarray:
        """Resize a (C, H, W) array to `size.height` × `size.width`."""
        if image.dtype == np.uint8 and image.shape[0] in (1, 3):
            return super().resize(image, size, resample, **kwargs)  # as transformers' PIL backend does
        # Channel by channel: 16-bit and float data in 32-bit float (mode F), keeping its precision; 8-bit data of
        # 2, 4 or more channels in 8 bits (mode L), each channel on its own as the torchvision backend resizes it
        # (Pillow would premultiply a 2- or 4-channel image by its last channel, as if it were alpha).
        resample = pil_resample(resample)
        dtype = np.uint8 if image.dtype == np.uint8 else np.float32
        channels = np.stack([
            np.asarray(PIL.Image.fromarray(channel).resize((size.width, size.height), resample))
            for channel in image.astype(dtype)
        ])
        return channels if dtype == np.uint8 else np.clip(channels, 0.0, 255.0)  # bicubic overshoots

    def center_crop(self, image: np.ndarray, size: SizeDict, **kwargs) -> np.ndarray:
        """transformers' center crop; where the crop is larger than the image, padded as the torchvision backend pads.

        (transformers' numpy crop puts an odd padding pixel before the image, torchvision's after it: padding here
        first keeps the two backends equal.)
        """
        height, width = image.shape[-2:]
        pad_height, pad_width = max(0, size.height - height), max(0, size.width - width)
        if pad_height or pad_width:
            padding = ((0, 0), (pad_height // 2, (pad_height + 1) // 2), (pad_width // 2, (pad_width + 1) // 2))
            image = np.pad(image, padding)
        return super().center_crop(image, size, **kwargs)

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


PoolFormerImageProcessorPil.register_for_auto_class()

__all__ = ["PoolFormerImageProcessorPil", "PoolFormerImageProcessorKwargs"]
