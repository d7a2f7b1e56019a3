"""Joint transforms of an image and its label map: the same geometry for both, bilinear for the image, nearest for
the labels, padding with the ignore index.

Training follows mmsegmentation's ADE20K pipeline as the PoolFormer paper uses it: random rescale (ratio 0.5–2.0 of
the base size), random crop (`crop_size`, padded where the image is smaller), horizontal flip, normalization.
Evaluation is the image processor itself, so the numbers measured are those a user gets from the saved processor.
"""

import numpy as np
import torch
from torch.nn import functional as F

from ..common import open_image
from .data import open_label_map


def _as_tensors(image, label_map) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = torch.from_numpy(np.asarray(open_image(image), dtype=np.uint8).copy()).permute(2, 0, 1)
    labels = torch.from_numpy(np.asarray(open_label_map(label_map)).astype(np.int64))
    return pixels, labels


def reduce_labels(labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """ADE20K's convention: 0 ("other") becomes ignored, every class id k becomes k - 1."""
    return torch.where((labels == 0) | (labels == ignore_index), ignore_index, labels - 1)


class SegmentationTrainTransform:
    """Random rescale, random crop, flip, normalize; `(image, label_map, generator) -> (pixel_values, labels)`."""

    def __init__(self, image_processor, crop_size: int, base_size: int, scale_range=(0.5, 2.0), flip: bool = True,
                 do_reduce_labels: bool = False, ignore_index: int = 255):
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
        self.mean = torch.tensor(image_processor.image_mean).view(3, 1, 1)
        self.std = torch.tensor(image_processor.image_std).view(3, 1, 1)
        self.crop_size, self.base_size, self.scale_range = crop_size, base_size, scale_range
        self.flip, self.do_reduce_labels, self.ignore_index = flip, do_reduce_labels, ignore_index

    def __call__(self, image, label_map, generator: torch.Generator | None = None):
        pixels, labels = _as_tensors(image, label_map)
        if self.do_reduce_labels:
            labels = reduce_labels(labels, self.ignore_index)
        low, high = self.scale_range
        ratio = low + (high - low) * torch.rand((), generator=generator).item()
        height, width = labels.shape
        scale = self.base_size * ratio / min(height, width)  # the short side to base_size × ratio
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        pixels = F.interpolate(pixels[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        labels = F.interpolate(labels[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()

        pad_h, pad_w = max(0, self.crop_size - size[0]), max(0, self.crop_size - size[1])
        pixels = F.pad(pixels, (0, pad_w, 0, pad_h), value=0.0)
        labels = F.pad(labels, (0, pad_w, 0, pad_h), value=self.ignore_index)
        top = int(torch.randint(0, labels.shape[0] - self.crop_size + 1, (), generator=generator))
        left = int(torch.randint(0, labels.shape[1] - self.crop_size + 1, (), generator=generator))
        pixels = pixels[:, top : top + self.crop_size, left : left + self.crop_size]
        labels = labels[top : top + self.crop_size, left : left + self.crop_size]
        if self.flip and torch.rand((), generator=generator).item() < 0.5:
            pixels, labels = pixels.flip(-1), labels.flip(-1)
        pixel_values = (pixels.clamp(0, 255) / 255.0 - self.mean) / self.std
        return pixel_values.contiguous(), labels.contiguous()


class SegmentationEvalTransform:
    """The image processor on one pair (resize both to its size, nearest for the labels)."""

    def __init__(self, image_processor, do_reduce_labels: bool = False):
        self.image_processor, self.do_reduce_labels = image_processor, do_reduce_labels

    def __call__(self, image, label_map, generator=None):
        out = self.image_processor(
            open_image(image), segmentation_maps=open_label_map(label_map), do_reduce_labels=self.do_reduce_labels,
            return_tensors="pt",
        )
        return out.pixel_values[0], out.labels[0]
