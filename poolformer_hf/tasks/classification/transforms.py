"""Train and eval transforms built from an image processor.

Eval is the processor itself (resize the shortest edge to int(size / crop_pct), center-crop, rescale, normalize), so
the numbers measured here are those a user gets from the saved processor. Train follows the paper's recipe
(RandomResizedCrop, flip, RandAugment, random erasing), each part switchable; mixup/cutmix act on batches
(see mixup.py).
"""

from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms as T

_INTERPOLATION = {
    int(Image.Resampling.NEAREST): T.InterpolationMode.NEAREST,
    int(Image.Resampling.BILINEAR): T.InterpolationMode.BILINEAR,
    int(Image.Resampling.BICUBIC): T.InterpolationMode.BICUBIC,
    int(Image.Resampling.LANCZOS): T.InterpolationMode.LANCZOS,
    int(Image.Resampling.BOX): T.InterpolationMode.BOX,
    int(Image.Resampling.HAMMING): T.InterpolationMode.HAMMING,
}


def _size_value(size, key: str) -> int | None:
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def processor_image_size(image_processor) -> int:
    """The side of the square images the processor produces (its crop size, else its target size)."""
    for size in (getattr(image_processor, "crop_size", None), getattr(image_processor, "size", None)):
        if size is None:
            continue
        for key in ("height", "shortest_edge"):
            value = _size_value(size, key)
            if value:
                return int(value)
    raise ValueError(f"cannot tell the output size of {type(image_processor).__name__}: size={image_processor.size}")


def processor_at_size(image_processor, image_size: int):
    """A copy of the processor that produces `image_size` px images (crop_pct and normalisation unchanged)."""
    if image_size < 1:
        raise ValueError(f"image size must be positive, got {image_size}")
    config = image_processor.to_dict()
    size = config.get("size") or {}
    config["size"] = {"height": image_size, "width": image_size} if "height" in size else {"shortest_edge": image_size}
    if config.get("crop_size") is not None:
        config["crop_size"] = {"height": image_size, "width": image_size}
    return type(image_processor).from_dict(config)


def eval_transform(image_processor) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> normalised [3, H, W] tensor, exactly as the processor does at inference."""

    def transform(image: Image.Image) -> torch.Tensor:
        return image_processor(image, return_tensors="pt")["pixel_values"][0]

    return transform


def train_transform(
    image_processor,
    random_resized_crop: bool = True,
    min_crop_scale: float = 0.08,
    horizontal_flip: bool = True,
    rand_augment: bool = False,
    random_erasing: float = 0.0,
) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> augmented, normalised [3, H, W] tensor at the processor's output size.

    Without random_resized_crop the geometry is the processor's own (resize by crop_pct, center crop), so with every
    switch off this equals `eval_transform`.
    """
    interpolation = _INTERPOLATION.get(int(getattr(image_processor, "resample", 3)), T.InterpolationMode.BICUBIC)
    image_steps = []
    if random_resized_crop:
        image_size = processor_image_size(image_processor)
        image_steps.append(T.RandomResizedCrop(image_size, scale=(min_crop_scale, 1.0), interpolation=interpolation))
    if horizontal_flip:
        image_steps.append(T.RandomHorizontalFlip())
    if rand_augment:
        image_steps.append(T.RandAugment(num_ops=2, magnitude=9, interpolation=interpolation))
    if random_resized_crop:
        to_tensor = T.Compose(
            [T.ToTensor(), T.Normalize(mean=image_processor.image_mean, std=image_processor.image_std)]
        )
    else:
        to_tensor = eval_transform(image_processor)
    tensor_steps = [T.RandomErasing(p=random_erasing, value="random")] if random_erasing > 0 else []
    return T.Compose([*image_steps, to_tensor, *tensor_steps])
