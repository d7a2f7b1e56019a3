"""The image processor of PoolFormer's segmentation models (Semantic FPN, UperNet on a PoolFormer backbone).

transformers' SegFormer processor already does what a segmentation model needs, so this one inherits it: images and
label maps through the same resize (bilinear for images, nearest for labels), ImageNet normalization,
`do_reduce_labels` (ADE20K: 0 = "other" becomes 255 = ignored, classes 1…150 become 0…149), and
`post_process_semantic_segmentation(outputs, target_sizes)` (logits resized bilinearly to each image's size, then
argmax). What is ours: the paper's 512×512 input, and label maps checked before they are resized, so a colour mask or
a float map fails with a clear error instead of silently becoming class ids. Training augmentation (random scale,
crop, flip) lives in `poolformer_hf.tasks.segmentation.transforms`.
"""

import numpy as np
from transformers.models.segformer.image_processing_segformer import SegformerImageProcessor


def check_segmentation_map(segmentation_map) -> None:
    """Raise a ValueError unless `segmentation_map` is a 2-D map of integer class ids (PIL mode L/P/I, or array)."""
    mode = getattr(segmentation_map, "mode", None)
    if mode is not None and mode not in ("L", "P", "I", "I;16"):
        raise ValueError(
            f"segmentation maps must hold one class id per pixel (PIL mode L, P or I), got a {mode} image; "
            "convert a colour-coded mask to class ids first"
        )
    array = np.asarray(segmentation_map)
    if array.ndim != 2:
        raise ValueError(f"a segmentation map must be 2-D (height, width), got shape {array.shape}")
    if array.dtype.kind not in "iub" and not (array.dtype.kind == "f" and np.array_equal(array, np.round(array))):
        raise ValueError(f"segmentation maps must hold integer class ids, got {array.dtype} values")


class PoolFormerSegmentationImageProcessor(SegformerImageProcessor):
    """Resize to 512×512, rescale by 1/255, normalize with the ImageNet mean and std; label maps resized by nearest
    neighbour into `labels` (int64), optionally with `do_reduce_labels`. See `SegformerImageProcessor`."""

    size = {"height": 512, "width": 512}

    def preprocess(self, images, segmentation_maps=None, **kwargs):
        if segmentation_maps is not None:
            for segmentation_map in _each_map(segmentation_maps):
                check_segmentation_map(segmentation_map)
        return super().preprocess(images, segmentation_maps, **kwargs)


def _each_map(segmentation_maps) -> list:
    """The maps of a batch given as a list, as one (batch, height, width) array or tensor, or as one map."""
    if isinstance(segmentation_maps, (list, tuple)) or getattr(segmentation_maps, "ndim", 2) == 3:
        return list(segmentation_maps)
    return [segmentation_maps]

PoolFormerSegmentationImageProcessor.register_for_auto_class()

__all__ = ["PoolFormerSegmentationImageProcessor"]
