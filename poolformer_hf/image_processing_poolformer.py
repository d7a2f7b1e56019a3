"""PoolFormer image processor on transformers' torchvision backend (batched tensor ops, CPU or GPU)."""

import torch
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import SizeDict

from .image_inputs import to_rgb_array
from .image_processing_shared_poolformer import PoolFormerImageProcessingMixin, resize_plan


class PoolFormerImageProcessor(PoolFormerImageProcessingMixin, TorchvisionBackend):
    """ImageNet eval transform for PoolFormer / MetaFormer on torch tensors.

    Shortest edge to `int(224 / crop_pct)` (bicubic, antialiased), center crop 224 × 224, rescale by 1/255,
    normalize with the ImageNet mean and std. Images of one size and dtype are resized together as one batch.
    With the same settings the output equals transformers' `PoolFormerImageProcessor` on RGB images; unlike it,
    any PIL mode, uint16/float/bool arrays, EXIF-rotated JPEGs and extreme aspect ratios are handled (see
    `image_inputs`).
    """

    def process_image(self, image, input_data_format=None, device: torch.device | None = None, **kwargs):
        """One input image as a (3, H, W) tensor on the 0–255 scale (uint8, or float32 for non-8-bit sources)."""
        array = to_rgb_array(image, input_data_format)
        if not array.flags.writeable:  # torch.from_numpy warns on read-only arrays
            array = array.copy()
        tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        return tensor.to(device) if device is not None else tensor

    def _preprocess(
        self,
        images: list[torch.Tensor],
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
        # Group by shape and dtype: stacking uint8 with float32 would resize the uint8 images without the rounding
        # transformers applies to them.
        groups: dict[tuple, list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault((tuple(image.shape), image.dtype), []).append(index)

        processed: list[torch.Tensor | None] = [None] * len(images)
        for (shape, _), indices in groups.items():
            batch = torch.stack([images[i] for i in indices])
            if do_resize:
                rows, cols, (height, width) = resize_plan(
                    shape[1], shape[2], size, crop_pct, crop_size if do_center_crop else None
                )
                batch = self.resize(batch[..., rows, cols], SizeDict(height=height, width=width), resample)
                if batch.is_floating_point():
                    batch = batch.clamp(0.0, 255.0)  # bicubic overshoots; uint8 images are clamped the same way
            if do_center_crop:
                batch = self.center_crop(batch, crop_size)
            batch = self.rescale_and_normalize(batch, do_rescale, rescale_factor, do_normalize, image_mean, image_std)
            for i, image in zip(indices, batch):
                processed[i] = image

        if do_pad:
            processed = self.pad(processed, pad_size=pad_size)
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)


PoolFormerImageProcessor.register_for_auto_class()

__all__ = ["PoolFormerImageProcessor"]
