import numpy as np

from poolformer_hf.tasks.classification.digits import DIGITS_IMAGE_SIZE, load_digits_data


def test_digits_splits_are_disjoint_stratified_and_complete():
    data = load_digits_data(validation_fraction=0.15, seed=0)
    sizes = (len(data.train), len(data.validation), len(data.test))
    assert sum(sizes) == 1797
    assert sorted(data.test.labels) == list(range(10))
    assert set(data.validation.labels) == set(range(10))
    ids = [set(map(id, split.images)) for split in (data.train, data.validation, data.test)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert data.label_names == [str(d) for d in range(10)]
    assert 0.14 < len(data.validation) / (len(data.train) + len(data.validation)) < 0.16


def test_digits_are_rgb_images_of_the_stated_size_and_deterministic():
    first, second = load_digits_data(seed=3), load_digits_data(seed=3)
    image = first.train.images[0]
    assert image.mode == "RGB" and image.size == (DIGITS_IMAGE_SIZE, DIGITS_IMAGE_SIZE)
    assert first.image_size == DIGITS_IMAGE_SIZE
    assert first.train.labels == second.train.labels
    assert np.array_equal(np.asarray(first.train.images[5]), np.asarray(second.train.images[5]))
    assert load_digits_data(seed=4).validation.labels != first.validation.labels


def test_digit_strokes_are_bright_on_a_dark_background():
    pixels = np.asarray(load_digits_data().train.images[0].convert("L"))
    assert pixels[0, 0] < 30 and pixels.max() > 200
