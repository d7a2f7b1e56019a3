import numpy as np
import pytest
import torch
from PIL import Image

from poolformer_hf import PoolFormerSegmentationImageProcessor
from poolformer_hf.tasks.segmentation.transforms import SegmentationTrainTransform, reduce_labels

PROCESSOR = PoolFormerSegmentationImageProcessor(image_mean=[0, 0, 0], image_std=[1, 1, 1])


def coded_pair(size=32):
    """Label blocks, and an image whose grey level is 60 × the label: the image tells where labels should be."""
    labels = np.zeros((size, size), dtype=np.uint8)
    labels[: size // 2, size // 2 :] = 1
    labels[size // 2 :, : size // 2] = 2
    labels[size // 2 :, size // 2 :] = 3
    image = np.repeat((labels * 60)[..., None], 3, axis=2)
    return Image.fromarray(image), Image.fromarray(labels, mode="L")


@pytest.mark.parametrize("seed", range(4))
def test_image_and_labels_get_the_same_scale_crop_and_flip(seed):
    transform = SegmentationTrainTransform(PROCESSOR, crop_size=24, base_size=32, scale_range=(0.5, 2.0))
    pixel_values, labels = transform(*coded_pair(), torch.Generator().manual_seed(seed))
    assert pixel_values.shape == (3, 24, 24) and labels.shape == (24, 24)
    # Bilinear blends across block edges only: away from them (a pixel whose 8 neighbours share its label) the grey
    # level codes the label. A crop, scale or flip applied to one of the two would break that almost everywhere.
    padded = torch.nn.functional.pad(labels[None, None].float(), (1, 1, 1, 1), mode="replicate")[0, 0]
    neighbours = torch.stack([padded[1 + dy : 25 + dy, 1 + dx : 25 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    interior = (neighbours == labels).all(0) & (labels != 255)
    grey = (pixel_values[0] * 255).round()
    assert interior.sum() > 100
    assert ((grey[interior] - labels[interior] * 60).abs() < 1).all()


def test_small_images_are_padded_with_the_ignore_index():
    transform = SegmentationTrainTransform(PROCESSOR, crop_size=32, base_size=32, scale_range=(0.5, 0.5), flip=False)
    pixel_values, labels = transform(*coded_pair(), torch.Generator().manual_seed(0))
    assert (labels == 255).float().mean() == pytest.approx(0.75)
    assert (pixel_values[:, labels == 255] == 0).all()


def test_same_generator_state_gives_the_same_sample():
    transform = SegmentationTrainTransform(PROCESSOR, crop_size=24, base_size=32)
    first = transform(*coded_pair(), torch.Generator().manual_seed(5))
    again = transform(*coded_pair(), torch.Generator().manual_seed(5))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_reduce_labels_ignores_other_and_shifts_classes_down():
    assert reduce_labels(torch.tensor([0, 1, 2, 150, 255])).tolist() == [255, 0, 1, 149, 255]


def test_bad_scale_range_is_refused():
    with pytest.raises(ValueError, match="scale_range"):
        SegmentationTrainTransform(PROCESSOR, crop_size=24, base_size=32, scale_range=(2.0, 1.0))
