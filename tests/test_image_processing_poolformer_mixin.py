"""transformers' own image-processor test mixin (`ImageProcessingTestMixin`) run against both of our processors.

The mixin is not copied into this repository: it comes from the source distribution of the installed transformers
version, fetched and cached by `tests/transformers_tests.py` (as for the model mixins). Where it cannot be fetched
(offline and not cached) the module is skipped, saying so.

What differs from transformers' in-tree use, in one place:
- the processor classes are ours (the tester's lookup goes by the test folder's name, which here is `tests`);
- `fetch_hub_objects_for_ci` (a CI helper outside the sdist) is stood in for there, and the COCO cats photograph that
  `test_backends_equivalence` downloads is replaced by scikit-image's cat photograph (`chelsea`): no network;
- numpy's global generator is seeded, so the mixin's random images are the same on every run, and the backends
  may differ by 0.12 (the mixin's default is 0.1: see `backend_equivalence_atol`);
- the tests marked `@slow` or needing an accelerator are skipped by transformers' own decorators, as in its CI;
  the two that skip themselves say why (our processors validate `preprocess` kwargs through `valid_kwargs`, not
  `_valid_processor_keys`; `size` is a `SizeDict`, not a dict).
"""

import unittest

import numpy as np
import PIL.Image
import skimage.data

from poolformer_hf.image_processing_pil_poolformer import PoolFormerImageProcessorPil
from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor
from transformers_tests import load_or_skip


def load_common_module():
    module = load_or_skip("test_image_processing_common")
    module.load_test_image = lambda url: PIL.Image.fromarray(skimage.data.chelsea())
    return module


common = load_common_module()


class PoolFormerImageProcessingTester(common.ImageProcessingTester):
    """As transformers' PoolFormer tester: 30-px crops of random 30–400 px images, crop_pct 0.9."""

    def __init__(self, parent, **kwargs):
        kwargs.setdefault("size", {"shortest_edge": 30})
        kwargs.setdefault("crop_size", {"height": 30, "width": 30})
        kwargs.setdefault("crop_pct", 0.9)
        kwargs.setdefault("do_resize_and_center_crop", True)
        kwargs.setdefault("do_normalize", True)
        kwargs.setdefault("image_mean", [0.5, 0.5, 0.5])
        kwargs.setdefault("image_std", [0.5, 0.5, 0.5])
        super().__init__(parent, **kwargs)

    def _get_image_processing_classes(self) -> dict:
        return {"torchvision": PoolFormerImageProcessor, "pil": PoolFormerImageProcessorPil}


class TestPoolFormerImageProcessing(common.ImageProcessingTestMixin, unittest.TestCase):
    image_processor_tester_class = PoolFormerImageProcessingTester
    # On random noise torch's and Pillow's bicubic resizes differ by up to 14 levels of 255 (0.11 at std 0.5), for
    # transformers' own PoolFormer processors exactly as for ours (both measured max|Δ| 0.094 over 20 random
    # batches like the mixin's, 0.110 on one of them); the mixin's default allows 0.1.
    backend_equivalence_atol = 0.12

    def setUp(self):
        np.random.seed(0)  # the mixin draws its random images from numpy's global generator
        super().setUp()

    def test_both_of_our_processors_are_under_test(self):
        # The mixin loops over these classes: an empty dict would make every test pass without testing anything.
        assert set(self.image_processing_classes.values()) == {PoolFormerImageProcessor, PoolFormerImageProcessorPil}
