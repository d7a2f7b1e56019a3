"""PoolFormer image processor on transformers' PIL backend (Pillow resize, numpy arrays, CPU only)."""

import numpy as np
import PIL.Image
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import PILImageResampling, SizeDict, torch_pil_interpolation_mapping

from .image_inputs import to_rgb_array
from .image_processing_shared_poolformer import PoolFormerImageProcessingMixin


class PoolFormerImageProcessorPil(PoolFormerImageProcessingMixin, PilBackend):
    """ImageNet eval transform for PoolFormer / MetaFormer with Pillow's resize, as timm evaluates.

    Shortest edge to `int(224 / crop_pct)` (Pillow bicubic), center crop 224 × 224, rescale by 1/255, normalize
    with the ImageNet mean and std. With the same settings the output equals transformers'
    `PoolFormerImageProcessorPil` on RGB images. 8-bit images are resized as RGB images; 16-bit and float images
    are resized channel by channel as 32-bit float images (mode `F`), so they keep their precision.
    """

    def process_image(self, image, input_data_format=None, **kwargs) -> np.ndarray:
        """One input image as a (3, H, W) array on the 0–255 scale (uint8, or float32 for non-8-bit sources)."""
        # A channels-first view of the channels-last array: Pillow gets it back without a copy when resizing.
        return np.moveaxis(to_rgb_array(image, input_data_format), -1, 0)

    def resize(self, image: np.ndarray, size: SizeDict, resample=None, **kwargs) -> np.ndarray:
        """Resize a (C, H, W) array to `size.height` × `size.width`."""
        if image.dtype == np.uint8:
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

__all__ = ["PoolFormerImageProcessorPil"]
