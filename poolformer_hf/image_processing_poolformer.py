"""PoolFormer image processor on transformers' torchvision backend (batched tensor ops, CPU or GPU)."""

import numpy as np
import torch
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import PILImageResampling, SizeDict

from .image_processing_shared_poolformer import PoolFormerImageProcessingMixin, PoolFormerImageProcessorKwargs


class PoolFormerImageProcessor(PoolFormerImageProcessingMixin, TorchvisionBackend):
    """ImageNet eval transform for PoolFormer / MetaFormer on torch tensors.

    Shortest edge to `int(224 / crop_pct)` (bicubic, antialiased), center crop 224 × 224, rescale by 1/255,
    normalize with the ImageNet mean and std. Images of one size and dtype are resized together as one batch.
    With the same settings the output equals transformers' `PoolFormerImageProcessor` on RGB images (and, with
    `do_convert_rgb=False`, on images of any channel count); unlike it, any PIL mode, uint16/float/bool arrays and
    EXIF-rotated JPEGs are handled (see `image_inputs`).
    """

    # torch's interpolate has no box or Hamming filter (transformers' torchvision backend fails inside it).
    unsupported_resamples = (PILImageResampling.BOX, PILImageResampling.HAMMING)

    def _from_channels_last(self, array: np.ndarray, device: torch.device | None = None, **kwargs) -> torch.Tensor:
        # A copy where torch cannot take the array as it is: negative strides (a flipped view, even of one pixel,
        # which numpy calls contiguous) and read-only arrays (torch.from_numpy warns on them).
        if not array.flags.writeable or any(stride < 0 for stride in array.strides):
            array = array.copy()
        tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        return tensor.to(device) if device is not None else tensor

    def resize(self, image: torch.Tensor, size: SizeDict, resample=None, **kwargs) -> torch.Tensor:
        resized = super().resize(image, size, resample, **kwargs)
        # Bicubic overshoots; torch rounds and clamps uint8 images, so clamp float ones to the same range.
        return resized.clamp(0.0, 255.0) if resized.is_floating_point() else resized

    @staticmethod
    def _batches(images: list[torch.Tensor]) -> list[tuple[list[int], torch.Tensor]]:
        # By shape and dtype: stacking uint8 with float32 would resize the uint8 images without the rounding
        # transformers applies to them.
        groups: dict[tuple, list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault((tuple(image.shape), image.dtype), []).append(index)
        return [(indices, torch.stack([images[i] for i in indices])) for indices in groups.values()]

    @staticmethod
    def _unbatch(batch: torch.Tensor) -> list[torch.Tensor]:
        return list(batch)


PoolFormerImageProcessor.register_for_auto_class()

__all__ = ["PoolFormerImageProcessor", "PoolFormerImageProcessorKwargs"]
