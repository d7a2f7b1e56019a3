"""The default dataset: scikit-learn's handwritten digits, shipped inside the scikit-learn wheel (no download).

1797 grayscale 8x8 images of the digits 0-9, upscaled to RGB PIL images and split deterministically
(stratified) into train, validation and a few held-out test images for the final classification demo.
"""

import numpy as np
from PIL import Image

from .splits import ImageClassificationData, ImageSplit, stratified_split

DIGITS_IMAGE_SIZE = 32
DIGITS_TEST_PER_CLASS = 1


def digits_images(image_size: int = DIGITS_IMAGE_SIZE) -> tuple[list[Image.Image], list[int]]:
    """All 1797 digits as RGB PIL images of `image_size` px (bicubic upscaling of the 8x8 originals)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are counts 0..16 (ink in a 4x4 block of the original scan); stretch them to 0..255.
    pixels = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images = [
        Image.fromarray(array).resize((image_size, image_size), Image.Resampling.BICUBIC).convert("RGB")
        for array in pixels
    ]
    return images, digits.target.astype(int).tolist()


def load_digits_data(
    validation_fraction: float = 0.15, seed: int = 0, image_size: int = DIGITS_IMAGE_SIZE
) -> ImageClassificationData:
    """Digits split into train / validation / test; the test split holds DIGITS_TEST_PER_CLASS images per class.

    The split depends only on `seed` (not on the training seed), so runs with different training seeds are
    evaluated on the same images.
    """
    images, labels = digits_images(image_size)
    everything = ImageSplit(images=images, labels=labels, name="digits")
    test_indices = _first_per_class(labels, DIGITS_TEST_PER_CLASS, seed)
    test_set = set(test_indices)
    rest = [i for i in range(len(labels)) if i not in test_set]
    kept, held_out = stratified_split([labels[i] for i in rest], validation_fraction, seed)
    return ImageClassificationData(
        train=everything.subset([rest[i] for i in kept], name="train"),
        validation=everything.subset([rest[i] for i in held_out], name="validation"),
        test=everything.subset(test_indices, name="test"),
        label_names=[str(digit) for digit in range(10)],
        description="scikit-learn handwritten digits (load_digits), upscaled to RGB",
        image_size=image_size,
        dataset_id="sklearn-digits",
    )


def _first_per_class(labels: list[int], per_class: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed + 1)
    labels_array = np.asarray(labels)
    chosen = [rng.permutation(np.flatnonzero(labels_array == c))[:per_class] for c in np.unique(labels_array)]
    return sorted(int(i) for i in np.concatenate(chosen))
