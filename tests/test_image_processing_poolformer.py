"""PoolFormer's image processors: parity with transformers and timm, every input kind, saving and loading."""

import io
import json

import numpy as np
import PIL.Image
import pytest
import skimage.data
import timm.data
import torch
from transformers import AutoImageProcessor
from transformers.models.poolformer.image_processing_pil_poolformer import (
    PoolFormerImageProcessorPil as TransformersPilProcessor,
)
from transformers.models.poolformer.image_processing_poolformer import (
    PoolFormerImageProcessor as TransformersProcessor,
)

import poolformer_hf.image_processing_shared_poolformer as shared
from isolated_python import run_isolated
from poolformer_hf import PoolFormerConfig
from poolformer_hf.image_processing_pil_poolformer import PoolFormerImageProcessorPil
from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor


BACKENDS = {"torchvision": PoolFormerImageProcessor, "pil": PoolFormerImageProcessorPil}
PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket")
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def photos() -> dict[str, PIL.Image.Image]:
    return {name: PIL.Image.fromarray(getattr(skimage.data, name)()) for name in PHOTO_NAMES}


def pixels(processor, images, **kwargs) -> torch.Tensor:
    return processor(images, return_tensors="pt", **kwargs)["pixel_values"]


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"{tuple(a.shape)} vs {tuple(b.shape)}"
    return (a - b).abs().max().item()


def normalized(rgb: tuple[float, float, float]) -> torch.Tensor:
    """The processors' output for a uniform image of this 0–255 colour, as a (3, 1, 1) tensor."""
    return ((torch.tensor(rgb) / 255 - IMAGENET_MEAN) / IMAGENET_STD)[:, None, None]


# Parity


@pytest.mark.parametrize("crop_pct", [0.9, 0.95, 1.0])
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(PoolFormerImageProcessor, TransformersProcessor), (PoolFormerImageProcessorPil, TransformersPilProcessor)],
)
def test_matches_transformers_on_photographs(photos, crop_pct, ours, theirs):
    # Measured max|Δ| = 0.0 for both backends (same resize, crop and normalization on RGB uint8 input).
    images = list(photos.values())
    expected = pixels(theirs(crop_pct=crop_pct), images)
    assert expected.shape == (4, 3, 224, 224)
    assert max_abs_diff(pixels(ours(crop_pct=crop_pct), images), expected) <= 1e-4


def timm_eval_pixels(image: PIL.Image.Image, crop_pct: float) -> torch.Tensor:
    config = timm.data.resolve_data_config(
        {"input_size": (3, 224, 224), "crop_pct": crop_pct, "interpolation": "bicubic"}
    )
    return timm.data.create_transform(**config)(image)


@pytest.mark.parametrize("crop_pct", [0.9, 0.95, 1.0])
def test_pil_backend_matches_timm_eval_transform(photos, crop_pct):
    # Pillow resizes identically in both, so wherever the crop offset (resized - 224) / 2 is whole the outputs are
    # equal (measured max|Δ| = 0.0). Where it is x.5, timm's CenterCrop rounds it half to even and transformers
    # (and we) floor it: a one-pixel shift, measured max|Δ| 2.6–4.1 and mean|Δ| 0.04–0.24 on these photographs
    # (astronaut and chelsea at 0.95 on both axes, coffee at 0.95 in height, rocket in width at every crop_pct).
    # The shifted crops are equal, which is what is checked there.
    processor = PoolFormerImageProcessorPil(crop_pct=crop_pct)
    for image in photos.values():
        ours, theirs = pixels(processor, image)[0], timm_eval_pixels(image, crop_pct)
        resized = shared.resize_target(image.height, image.width, processor.size, crop_pct)
        shift = [round((length - 224) / 2) - (length - 224) // 2 for length in resized]  # timm's offset - ours
        ours = ours[:, shift[0]:, shift[1]:]
        theirs = theirs[:, : 224 - shift[0], : 224 - shift[1]]
        assert max_abs_diff(ours, theirs) <= 1e-5, f"{image.size} at crop_pct {crop_pct}"


def test_torchvision_backend_is_close_to_timm_eval_transform(photos):
    # torch's antialiased bicubic differs from Pillow's by rounding only: measured max|Δ| = 0.0175, mean 6e-5
    # (crop_pct 0.9, astronaut, chelsea, coffee: the images whose crop offset is whole).
    processor = PoolFormerImageProcessor(crop_pct=0.9)
    for name in ("astronaut", "chelsea", "coffee"):
        ours, theirs = pixels(processor, photos[name])[0], timm_eval_pixels(photos[name], 0.9)
        assert max_abs_diff(ours, theirs) <= 0.02
        assert (ours - theirs).abs().mean().item() <= 1e-3


# Input kinds


def gray_pil(size=(37, 29)) -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(1).integers(0, 256, size[::-1], dtype=np.uint8), mode="L")


def input_kinds(photo: PIL.Image.Image) -> dict[str, tuple[object, object]]:
    """name -> (input, an RGB uint8 PIL image or HWC float array in [0, 1] that must give the same output)."""
    rgb = np.array(photo)
    gray = gray_pil()
    gray_rgb = gray.convert("RGB")
    sixteen = np.array(gray).astype(np.uint16) * 257
    unit_float = np.array(gray, dtype=np.float32)[:, :, None].repeat(3, axis=2) / 255
    rgba = photo.convert("RGBA")
    return {
        "RGB": (photo, photo),
        "RGBA opaque": (rgba, photo),
        "L": (gray, gray_rgb),
        "1": (gray.convert("1"), gray.convert("1").convert("RGB")),
        "LA opaque": (gray.convert("LA"), gray_rgb),
        "P": (photo.convert("P"), photo.convert("P").convert("RGB")),
        "CMYK": (photo.convert("CMYK"), photo.convert("CMYK").convert("RGB")),
        "I;16": (PIL.Image.fromarray(sixteen), unit_float),
        "I": (PIL.Image.fromarray(sixteen.astype(np.int32)), unit_float),
        "F": (PIL.Image.fromarray(np.array(gray, dtype=np.float32) / 255), unit_float),
        "numpy HWC uint8": (rgb, photo),
        "numpy CHW uint8": (rgb.transpose(2, 0, 1).copy(), photo),
        "numpy HW uint8": (np.array(gray), gray_rgb),
        "numpy HWC float": (unit_float, unit_float),
        "numpy CHW float64": (unit_float.transpose(2, 0, 1).astype(np.float64), unit_float),
        "numpy uint16": (sixteen, unit_float),
        "torch CHW uint8": (torch.from_numpy(rgb).permute(2, 0, 1), photo),
        "torch HWC uint8": (torch.from_numpy(rgb), photo),
        "torch CHW float": (torch.from_numpy(unit_float).permute(2, 0, 1), unit_float),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_input_kind_gives_the_output_of_its_rgb_equivalent(photos, backend):
    processor = BACKENDS[backend]()
    for name, (image, equivalent) in input_kinds(photos["chelsea"]).items():
        out = pixels(processor, image)
        assert out.shape == (1, 3, 224, 224), name
        assert torch.isfinite(out).all(), name
        assert max_abs_diff(out, pixels(processor, equivalent)) <= 1e-5, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_input_is_not_rescaled_twice(photos, backend):
    # 8-bit images are resized in 8 bits by Pillow and torch alike, rounding and clamping the bicubic overshoot
    # between the horizontal and the vertical pass; float ones are not. On the four photographs that moves
    # sharp edges by up to 5.8 levels of 255: measured max|Δ| 0.021–0.101 and mean|Δ| ≤ 0.0053 after
    # normalization, both backends. Rescaling float input twice would put the whole output near -2.
    processor = BACKENDS[backend]()
    for photo in photos.values():
        rgb = np.array(photo)
        difference = (pixels(processor, rgb / 255.0) - pixels(processor, rgb)).abs()
        assert difference.max().item() <= 0.15
        assert difference.mean().item() <= 0.01


@pytest.mark.parametrize("backend", BACKENDS)
def test_transparent_pixels_come_out_white(backend):
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)  # fully transparent black
    palette = PIL.Image.new("P", (40, 40), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    white = normalized((255, 255, 255))
    for image in (PIL.Image.fromarray(rgba, mode="RGBA"), PIL.Image.fromarray(rgba[..., [0, 3]], mode="LA"),
                  palette, rgba):
        out = pixels(BACKENDS[backend](), image)[0]
        assert max_abs_diff(out, white.expand_as(out)) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_transparent_png_given_by_path_comes_out_white(backend, tmp_path):
    # transformers' load_image would flatten it to its stored colour (black) with convert("RGB").
    path = tmp_path / "transparent.png"
    PIL.Image.fromarray(np.zeros((40, 40, 4), dtype=np.uint8), mode="RGBA").save(path)
    out = pixels(BACKENDS[backend](), str(path))[0]
    assert max_abs_diff(out, normalized((255, 255, 255)).expand_as(out)) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_exif_rotated_jpeg_comes_out_upright(backend, tmp_path):
    stored = np.zeros((60, 90, 3), dtype=np.uint8)
    stored[:, :45] = (255, 0, 0)
    stored[:, 45:] = (0, 0, 255)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display the stored pixels turned 90° clockwise
    path = tmp_path / "turned.jpg"
    PIL.Image.fromarray(stored).save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    jpeg = PIL.Image.open(path)
    upright = np.ascontiguousarray(np.rot90(np.array(jpeg), k=-1))

    processor = BACKENDS[backend](crop_pct=1.0)
    expected = pixels(processor, upright)
    for image in (jpeg, str(path), io.BytesIO(path.read_bytes())):
        image = PIL.Image.open(image) if isinstance(image, io.BytesIO) else image
        out = pixels(processor, image)
        assert max_abs_diff(out, expected) <= 1e-5
    top, bottom = expected[0, :, 10, 112], expected[0, :, -10, 112]
    assert top[0] > top[2] and bottom[2] > bottom[0]  # red on top, blue below


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_pixel_image_fills_the_crop_with_its_colour(backend):
    colour = (200, 30, 90)
    pil = PIL.Image.new("RGB", (1, 1), colour)
    numpy = np.array(colour, dtype=np.uint8)[None, None]
    for image, kwargs in ((pil, {}), (numpy, {"input_data_format": "channels_last"})):
        out = pixels(BACKENDS[backend](), image, **kwargs)[0]
        assert max_abs_diff(out, normalized(colour).expand_as(out)) <= 1e-5


TRANSFORMERS = {"torchvision": TransformersProcessor, "pil": TransformersPilProcessor}


def strips(photos) -> dict[str, np.ndarray]:
    """Images past 8 crop widths on one axis: random noise, and cuts of photographs."""
    rng = np.random.default_rng(2)
    noise = {f"noise {h}x{w}": rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
             for h, w in [(60, 640), (640, 60), (7, 1000), (1000, 7)]}
    astronaut, coffee = np.array(photos["astronaut"]), np.array(photos["coffee"])
    return {**noise, "astronaut 40x512": astronaut[200:240].copy(), "coffee 400x30": coffee[:, 100:130].copy()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("crop_pct", [0.9, 1.0])
def test_elongated_images_match_transformers_exactly(photos, backend, crop_pct):
    # Resized whole, as transformers' processors do (up to MAX_RESIZED_PIXELS): measured max|Δ| = 0.0 on every
    # strip, both backends. Resizing only a window around the crop used to differ by up to 0.29 on a 60×640 strip.
    ours, theirs = BACKENDS[backend](crop_pct=crop_pct), TRANSFORMERS[backend](crop_pct=crop_pct)
    for name, strip in strips(photos).items():
        image = PIL.Image.fromarray(strip)
        assert max_abs_diff(pixels(ours, image), pixels(theirs, image)) == 0.0, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_past_the_pixel_budget_a_window_is_resized_close_to_the_whole(backend, monkeypatch):
    # The window keeps the full resize's scale within rounding; on noise (the worst case for a sub-pixel shift) the
    # difference from a whole resize was measured at 0.0 (whole scales: 1×500, 2×3000) to 0.14 (10×6000) at the
    # real budget; here a budget of 1000 pixels forces the window on small images.
    monkeypatch.setattr(shared, "MAX_RESIZED_PIXELS", 1000)
    rng = np.random.default_rng(2)
    for shape, bound in (((1, 500), 0.0), ((3, 1000), 0.06)):
        image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        windowed = pixels(BACKENDS[backend](), image, input_data_format="channels_last")
        whole = pixels(TRANSFORMERS[backend](), PIL.Image.fromarray(image))
        assert max_abs_diff(windowed, whole) <= bound, shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_batch_equals_images_processed_one_by_one(photos, backend):
    rgb = np.array(photos["rocket"])
    batch = [
        photos["astronaut"],
        rgb,
        gray_pil(),
        torch.from_numpy(rgb).permute(2, 0, 1).float() / 255,  # same shape as `rgb`, other dtype
        photos["chelsea"].convert("RGBA"),
        np.array(photos["astronaut"]),  # same shape as the first, other kind
    ]
    processor = BACKENDS[backend]()
    out = pixels(processor, batch)
    assert out.shape == (len(batch), 3, 224, 224)
    for i, image in enumerate(batch):
        assert max_abs_diff(out[i : i + 1], pixels(processor, image)) == 0.0, i


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((16, 16, 2), np.uint8), "1, 3 or 4 channels"),
        (torch.zeros(1, 1, 3, 16, 16), "5-D Tensor"),
        (np.zeros((16, 16, 3), np.int32), "dtype uint8, uint16, bool or float"),
        (np.full((16, 16, 3), 2.0), r"values in \[0, 1\]"),
        (np.zeros((3, 3, 3), np.uint8), "input_data_format"),
        ([], "at least one image"),
        (np.zeros((0, 16, 16, 3), np.uint8), "at least one image"),
        (torch.zeros(0, 3, 16, 16), "at least one image"),
        ([[], []], "at least one image"),
    ],
)
def test_unsupported_inputs_raise_value_error(backend, images, message):
    with pytest.raises(ValueError, match=message):
        BACKENDS[backend]()(images)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"image_std": 0.0}, "image_std to be positive"),
        ({"image_mean": [0.5, 0.5]}, "image_mean with 3 values, one per channel"),
        ({"size": {"shortest_edge": -5}}, r"size\['shortest_edge'\] to be a positive integer, got -5"),
        ({"crop_size": {"height": 224, "width": 0}}, r"crop_size\['width'\]"),
        ({"rescale_factor": float("nan")}, "rescale_factor"),
    ],
)
def test_bad_settings_are_refused_at_construction_and_at_call(backend, settings, message):
    with pytest.raises(ValueError, match=message):
        BACKENDS[backend](**settings)
    with pytest.raises(ValueError, match=message):
        BACKENDS[backend]()(gray_pil(), **settings)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_setting_of_the_wrong_type_at_call_is_a_type_error_naming_it(backend):
    # transformers' own check raises huggingface_hub's StrictDataclassFieldValidationError, no TypeError.
    with pytest.raises(TypeError, match="image_std"):
        BACKENDS[backend]()(gray_pil(), image_std=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_negative_strides_and_big_endian_pixels_give_the_plain_arrays_output(photos, backend):
    rgb = np.array(photos["chelsea"])
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    deep = rgb.astype(np.uint16) * 257
    processor = BACKENDS[backend]()
    assert max_abs_diff(pixels(processor, bgr[..., ::-1]), pixels(processor, rgb)) == 0.0  # a BGR -> RGB view
    assert max_abs_diff(pixels(processor, rgb[::-1, ::-1]), pixels(processor, rgb[::-1, ::-1].copy())) == 0.0
    assert max_abs_diff(pixels(processor, deep.astype(">u2")), pixels(processor, deep)) == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_backends_accept_the_same_unusual_inputs(photos, backend):
    rgb = np.array(photos["coffee"])
    out = pixels(BACKENDS[backend](), [rgb[..., ::-1], (rgb.astype(np.uint16) * 257).astype(">u2"), rgb[::2, ::-3]])
    assert out.shape == (3, 3, 224, 224) and torch.isfinite(out).all()


# Other channel counts (do_convert_rgb=False)


def test_without_rgb_conversion_four_channels_stay_four_as_in_transformers():
    rng = np.random.default_rng(3)
    opaque = np.dstack([rng.integers(0, 256, (90, 700, 3), dtype=np.uint8), np.full((90, 700), 255, np.uint8)])
    varying = rng.integers(0, 256, (90, 700, 4), dtype=np.uint8)
    settings = {"do_convert_rgb": False, "image_mean": [0.5, 0.4, 0.3, 0.2], "image_std": [0.2, 0.3, 0.4, 0.5]}
    outputs = {backend: pixels(cls(**settings), [opaque, varying]) for backend, cls in BACKENDS.items()}
    assert outputs["pil"].shape == (2, 4, 224, 224)
    # transformers' torchvision backend resizes every channel on its own, as both of ours do: measured max|Δ| 0.0.
    assert max_abs_diff(outputs["torchvision"], pixels(TransformersProcessor(**settings), [opaque, varying])) == 0.0
    # transformers' PIL backend lets Pillow premultiply the colours by the 4th channel as if it were alpha; where
    # it is opaque that changes nothing (measured max|Δ| 0.0).
    assert max_abs_diff(outputs["pil"][:1], pixels(TransformersPilProcessor(**settings), opaque)) == 0.0
    # Our backends agree up to their resize rounding: measured max|Δ| 0.0196 (one level of 255 over std 0.2).
    assert max_abs_diff(outputs["pil"], outputs["torchvision"]) <= 0.05


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_rgb_conversion_mean_and_std_must_match_the_channels(backend):
    processor = BACKENDS[backend](do_convert_rgb=False)
    with pytest.raises(ValueError, match="image_mean with 4 values, one per channel of the images, got 3"):
        processor(np.zeros((16, 16, 4), np.uint8))
    with pytest.raises(ValueError, match=r"image_mean with 3 values, one per channel of the images \(do_convert_rgb makes RGB"):
        BACKENDS[backend](image_mean=[0.5] * 4, image_std=[0.5] * 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_one_channel_model_has_a_processor(backend, tmp_path):
    from poolformer_hf import PoolFormerForImageClassification

    config = PoolFormerConfig(num_channels=1, depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], num_labels=2)
    model = PoolFormerForImageClassification(config).eval()
    BACKENDS[backend](do_convert_rgb=False, image_mean=[0.5], image_std=[0.25]).save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path, backend=backend)
    values = pixels(processor, [gray_pil(), np.array(gray_pil((50, 60)))])
    assert values.shape == (2, 1, 224, 224)
    with torch.no_grad():
        assert model(values).logits.shape == (2, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_crop_pct_is_validated(backend):
    with pytest.raises(ValueError, match="crop_pct"):
        BACKENDS[backend](crop_pct=0.0)
    with pytest.raises(ValueError, match="crop_pct"):
        BACKENDS[backend]()(gray_pil(), crop_pct=1.5)


# Saving and loading


@pytest.mark.parametrize("saved_backend", BACKENDS)
def test_save_and_load_with_auto_image_processor(saved_backend, tmp_path, photos):
    PoolFormerConfig(crop_pct=0.95).save_pretrained(tmp_path)
    BACKENDS[saved_backend](crop_pct=0.95).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "PoolFormerImageProcessor"
    assert saved["auto_map"]["AutoImageProcessor"] == {
        "torchvision": "image_processing_poolformer.PoolFormerImageProcessor",
        "pil": "image_processing_pil_poolformer.PoolFormerImageProcessorPil",
    }
    for name in ("image_processing_poolformer.py", "image_processing_pil_poolformer.py",
                 "image_processing_shared_poolformer.py", "image_inputs.py"):
        assert (tmp_path / name).is_file(), name

    for (backend, cls), reference in zip(BACKENDS.items(), (TransformersProcessor, TransformersPilProcessor)):
        loaded = AutoImageProcessor.from_pretrained(tmp_path, backend=backend)
        assert type(loaded) is cls
        assert loaded.crop_pct == 0.95
        expected = pixels(reference(crop_pct=0.95), photos["coffee"])
        assert max_abs_diff(pixels(loaded, photos["coffee"]), expected) <= 1e-4


def test_loads_with_trust_remote_code_where_the_package_is_missing(tmp_path, photos):
    folder = tmp_path / "processor"
    PoolFormerImageProcessorPil(crop_pct=0.95).save_pretrained(folder)
    image = np.array(gray_pil()), np.array(photos["chelsea"].convert("RGBA"))
    np.savez(tmp_path / "images.npz", *image)
    stdout = run_isolated(
        f"""
import numpy as np
from transformers import AutoImageProcessor
images = list(np.load("images.npz").values())
for backend in ("torchvision", "pil"):
    processor = AutoImageProcessor.from_pretrained({str(folder)!r}, backend=backend, trust_remote_code=True)
    assert processor.crop_pct == 0.95
    print(backend, type(processor).__module__.split(".")[0], type(processor).__name__)
    np.save(backend + ".npy", processor(images, return_tensors="np")["pixel_values"])
""",
        tmp_path,
    )
    assert stdout.split("\n")[:2] == [
        "torchvision transformers_modules PoolFormerImageProcessor",
        "pil transformers_modules PoolFormerImageProcessorPil",
    ]
    for backend, cls in BACKENDS.items():
        expected = pixels(cls(crop_pct=0.95), list(image))
        assert max_abs_diff(torch.from_numpy(np.load(tmp_path / f"{backend}.npy")), expected) == 0.0
