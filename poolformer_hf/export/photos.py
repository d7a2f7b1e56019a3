"""Real photos for parity checks and int8 calibration: the ones scikit-image ships (no download), through our
processor, so an exported program is checked on the inputs it will see."""

import numpy as np
import skimage.data
import torch

# Bundled with scikit-image (not fetched): colour photos and greyscale ones (the processor makes them RGB).
PHOTO_NAMES = (
    "astronaut", "chelsea", "coffee", "rocket", "retina", "hubble_deep_field", "immunohistochemistry", "camera",
    "brick", "grass", "gravel", "moon", "coins", "page",
)


def _photos(count: int) -> list[np.ndarray]:
    """The first `count` bundled photos (all of them if there are fewer), loaded only when needed."""
    photos = [getattr(skimage.data, name)() for name in PHOTO_NAMES[:count]]
    if count > len(PHOTO_NAMES):
        photos += list(skimage.data.stereo_motorcycle()[:2])
    return photos


def _views(photo: np.ndarray, count: int) -> list[np.ndarray]:
    """The photo, its mirror image and crops of its corners: distinct inputs from one photo."""
    height, width = photo.shape[:2]
    crops = [photo[: height * 3 // 4, : width * 3 // 4], photo[height // 4 :, width // 4 :],
             photo[: height * 3 // 4, width // 4 :], photo[height // 4 :, : width * 3 // 4]]
    views = [photo, photo[:, ::-1]] + crops + [crop[:, ::-1] for crop in crops]
    return [np.ascontiguousarray(view) for view in views[:count]]


def sample_photos(count: int = 16) -> list[np.ndarray]:
    """`count` distinct photos as uint8 arrays: each bundled photo, then mirrored and cropped views of them."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    photos = _photos(count)
    per_photo = -(-count // len(photos))
    views = [_views(photo, per_photo) for photo in photos]
    ordered = [photo_views[i] for i in range(per_photo) for photo_views in views if i < len(photo_views)]
    return ordered[:count]


def photo_pixels(processor, count: int = 16, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """`sample_photos(count)` through `processor`, as a (count, 3, H, W) batch."""
    return processor(sample_photos(count), return_tensors="pt")["pixel_values"].to(dtype)
