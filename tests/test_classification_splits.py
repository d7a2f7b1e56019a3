"""Training decodes images as the processors do at inference (`open_image` goes through `image_inputs`)."""

import io

import numpy as np
import PIL.Image
import pytest
import torch

from poolformer_hf.image_processing_pil_poolformer import PoolFormerImageProcessorPil
from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor
from poolformer_hf.tasks.common import open_image


def pixels(processor, image) -> torch.Tensor:
    return processor(image, return_tensors="pt")["pixel_values"]


def awkward_files(tmp_path) -> dict[str, object]:
    """Files that `convert("RGB")` decodes differently from the processors, each as a path or a datasets dict."""
    grey16 = tmp_path / "grey16.png"
    PIL.Image.fromarray(np.full((40, 50), 32768, np.uint16)).save(grey16)  # mid-grey in 16 bits
    transparent = tmp_path / "transparent.png"
    PIL.Image.fromarray(np.zeros((40, 50, 4), np.uint8), "RGBA").save(transparent)
    turned = tmp_path / "turned.jpg"
    stored = np.zeros((60, 90, 3), dtype=np.uint8)
    stored[:, :45] = (255, 0, 0)
    stored[:, 45:] = (0, 0, 255)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # display turned 90° clockwise
    PIL.Image.fromarray(stored).save(turned, format="JPEG", exif=exif.tobytes(), quality=95)
    return {
        "16-bit grey": grey16,
        "transparent": str(transparent),
        "EXIF-turned": turned,
        "datasets bytes": {"bytes": transparent.read_bytes(), "path": None},
        "datasets path": {"bytes": None, "path": str(grey16)},
    }


@pytest.mark.parametrize("processor_class", [PoolFormerImageProcessor, PoolFormerImageProcessorPil])
def test_training_sees_what_inference_sees(tmp_path, processor_class):
    processor = processor_class(crop_pct=1.0)
    for name, source in awkward_files(tmp_path).items():
        image = open_image(source)
        assert image.mode == "RGB", name
        inference_source = source if not isinstance(source, dict) else source["path"] or io.BytesIO(source["bytes"])
        if isinstance(inference_source, io.BytesIO):
            inference_source = PIL.Image.open(inference_source)
        # 16-bit sources reach training in 8 bits: within half a level of 255 (0.0087 after normalization).
        difference = (pixels(processor, image) - pixels(processor, inference_source)).abs().max().item()
        assert difference <= 0.009, name


def test_the_decode_differs_from_convert_rgb_where_it_should(tmp_path):
    files = awkward_files(tmp_path)
    grey = np.array(open_image(files["16-bit grey"]))
    assert np.all(grey == 128)  # convert("RGB") made it 255 (the 2.44 vs 0.23 of issue 13 after normalization)
    assert np.all(np.array(open_image(files["transparent"])) == 255)  # convert("RGB") made it black
    turned = np.array(open_image(files["EXIF-turned"]))
    assert turned.shape == (90, 60, 3)  # upright: the stored 60 × 90 pixels turned
    assert turned[5, 30, 0] > 200 and turned[-5, 30, 2] > 200  # red on top, blue below


def test_what_is_no_image_is_refused():
    with pytest.raises(ValueError, match="not an image"):
        open_image(42)
    with pytest.raises(ValueError, match="Cannot read"):
        open_image({"bytes": b"garbage", "path": None})
