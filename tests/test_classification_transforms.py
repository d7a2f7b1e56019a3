import numpy as np
import pytest
import torch
from PIL import Image
from transformers import PoolFormerImageProcessor

from poolformer_hf.tasks.classification.transforms import eval_transform, processor_at_size, processor_image_size, train_transform


@pytest.fixture
def image():
    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 52, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture
def processor():
    return processor_at_size(PoolFormerImageProcessor(crop_pct=0.9), 32)


def test_processor_at_size_changes_only_the_size(processor):
    assert processor_image_size(processor) == 32
    assert processor.crop_pct == 0.9
    assert list(processor.image_mean) == list(PoolFormerImageProcessor().image_mean)


def test_processor_at_size_rejects_non_positive_size():
    with pytest.raises(ValueError, match="positive"):
        processor_at_size(PoolFormerImageProcessor(), 0)


def test_eval_transform_is_the_processor(processor, image):
    expected = processor(image, return_tensors="pt")["pixel_values"][0]
    torch.testing.assert_close(eval_transform(processor)(image), expected)
    assert expected.shape == (3, 32, 32)


def test_train_transform_with_every_switch_off_equals_eval(processor, image):
    plain = train_transform(processor, random_resized_crop=False, horizontal_flip=False)
    torch.testing.assert_close(plain(image), eval_transform(processor)(image))


def test_train_transform_recipe_gives_the_training_size_and_varies(processor, image):
    recipe = train_transform(processor, horizontal_flip=True, rand_augment=True, random_erasing=0.25)
    torch.manual_seed(0)
    first, second = recipe(image), recipe(image)
    assert first.shape == second.shape == (3, 32, 32)
    assert not torch.equal(first, second)
    torch.manual_seed(0)
    torch.testing.assert_close(recipe(image), first)


def test_train_transform_normalises_with_the_processor_statistics(processor):
    gray = Image.new("RGB", (40, 40), (128, 128, 128))
    out = train_transform(processor, horizontal_flip=False)(gray)
    expected = (128 / 255 - torch.tensor(processor.image_mean)) / torch.tensor(processor.image_std)
    torch.testing.assert_close(out.mean(dim=(1, 2)), expected.float(), atol=1e-3, rtol=0)
