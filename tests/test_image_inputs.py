"""Every kind of image a user may hand in becomes an (H, W, 3) RGB array on the 0–255 scale, or a clear error."""

import http.server
import io
import threading

import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest
import torch

from poolformer_hf.image_inputs import flatten_images, load_image, to_pixel_array, to_rgb_array, to_rgb_pil


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, size=(5, 7), dtype=np.uint8)
WHITE = np.full((5, 7, 3), 255, dtype=np.uint8)


def as_gray_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


# PIL modes


def test_rgb_pil_is_kept_as_uint8():
    out = to_rgb_array(PIL.Image.fromarray(RGB))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, RGB)


def test_mode_1_maps_to_black_and_white():
    bits = GRAY > 127
    out = to_rgb_array(PIL.Image.fromarray(bits))
    assert PIL.Image.fromarray(bits).mode == "1"
    np.testing.assert_array_equal(out, as_gray_rgb(bits.astype(np.uint8) * 255))


def test_mode_l_is_repeated_into_three_channels():
    np.testing.assert_array_equal(to_rgb_array(PIL.Image.fromarray(GRAY, mode="L")), as_gray_rgb(GRAY))


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_transparent_pixels_become_white_and_opaque_ones_keep_their_colour(mode):
    alpha = np.zeros((5, 7), dtype=np.uint8)
    alpha[:, :3] = 255  # left three columns opaque, the rest fully transparent
    colour = GRAY if mode == "LA" else RGB
    stacked = np.dstack([colour, alpha])
    out = to_rgb_array(PIL.Image.fromarray(stacked, mode=mode))
    expected_colour = as_gray_rgb(GRAY) if mode == "LA" else RGB
    np.testing.assert_array_equal(out[:, :3], expected_colour[:, :3])
    np.testing.assert_array_equal(out[:, 3:], WHITE[:, 3:])


def test_half_transparent_pixels_blend_with_white():
    rgba = np.dstack([np.zeros((2, 2, 3), np.uint8), np.full((2, 2), 128, np.uint8)])
    out = to_rgb_array(PIL.Image.fromarray(rgba, mode="RGBA"))
    np.testing.assert_array_equal(out, np.full((2, 2, 3), round(255 * (1 - 128 / 255)), np.uint8))


def test_palette_image_with_transparency_index():
    palette_image = PIL.Image.fromarray(RGB).convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=8)
    transparent_index = int(np.array(palette_image)[0, 0])
    palette_image.info["transparency"] = transparent_index
    out = to_rgb_array(palette_image)
    is_transparent = np.array(palette_image) == transparent_index
    np.testing.assert_array_equal(out[is_transparent], WHITE[is_transparent])
    opaque_colours = np.array(palette_image.convert("RGB"))
    np.testing.assert_array_equal(out[~is_transparent], opaque_colours[~is_transparent])


def test_palette_image_without_transparency_uses_its_colours():
    palette_image = PIL.Image.fromarray(RGB).convert("P", palette=PIL.Image.Palette.ADAPTIVE, colors=8)
    np.testing.assert_array_equal(to_rgb_array(palette_image), np.array(palette_image.convert("RGB")))


def test_cmyk_uses_pillows_conversion():
    cmyk = PIL.Image.fromarray(RGB).convert("CMYK")
    np.testing.assert_array_equal(to_rgb_array(cmyk), np.array(cmyk.convert("RGB")))


def test_sixteen_bit_modes_are_scaled_by_their_range():
    values = np.array([[0, 257, 65535]], dtype=np.uint16)  # 257 = 65535 / 255: one 8-bit step
    for mode in ("I;16", "I"):
        image = PIL.Image.fromarray(values).convert(mode) if mode == "I" else PIL.Image.fromarray(values)
        assert image.mode == mode
        out = to_rgb_array(image)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, as_gray_rgb(np.array([[0.0, 1.0, 255.0]])), atol=1e-4)


def test_mode_i_outside_sixteen_bits_is_refused():
    image = PIL.Image.fromarray(np.array([[0, 70000]], dtype=np.int32))
    assert image.mode == "I"
    with pytest.raises(ValueError, match=r"\[0, 65535\]"):
        to_rgb_array(image)


def test_mode_f_in_unit_range_is_scaled_to_255():
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    out = to_rgb_array(PIL.Image.fromarray(values))
    np.testing.assert_allclose(out, as_gray_rgb(values * 255))


def test_mode_f_outside_unit_range_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_rgb_array(PIL.Image.fromarray(np.array([[0.0, 255.0]], dtype=np.float32)))


def test_exif_orientation_is_applied():
    # Orientation 6: the stored pixels must be turned 90° clockwise to display upright.
    stored = np.zeros((40, 60, 3), dtype=np.uint8)
    stored[:, :30] = (255, 0, 0)  # left half red, right half blue
    stored[:, 30:] = (0, 0, 255)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    PIL.Image.fromarray(stored).save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    jpeg = PIL.Image.open(io.BytesIO(buffer.getvalue()))
    assert jpeg.size == (60, 40)

    out = to_rgb_array(jpeg)
    assert out.shape == (60, 40, 3)
    assert out[5, 20, 0] > 200 and out[5, 20, 2] < 50  # top is red after the turn
    assert out[-5, 20, 2] > 200 and out[-5, 20, 0] < 50  # bottom is blue
    np.testing.assert_array_equal(out, np.rot90(np.array(jpeg), k=-1))


# Arrays and tensors


def test_channels_first_and_last_give_the_same_image():
    np.testing.assert_array_equal(to_rgb_array(RGB.transpose(2, 0, 1)), RGB)
    np.testing.assert_array_equal(to_rgb_array(torch.from_numpy(RGB)), RGB)
    np.testing.assert_array_equal(to_rgb_array(torch.from_numpy(RGB).permute(2, 0, 1)), RGB)


def test_two_dimensional_and_single_channel_arrays_are_grayscale():
    np.testing.assert_array_equal(to_rgb_array(GRAY), as_gray_rgb(GRAY))
    np.testing.assert_array_equal(to_rgb_array(GRAY[None]), as_gray_rgb(GRAY))
    np.testing.assert_array_equal(to_rgb_array(GRAY[:, :, None]), as_gray_rgb(GRAY))


def test_four_channel_array_is_rgba_over_white():
    rgba = np.dstack([RGB, np.zeros((5, 7), np.uint8)])
    np.testing.assert_array_equal(to_rgb_array(rgba), WHITE)
    np.testing.assert_array_equal(to_rgb_array(torch.from_numpy(rgba).permute(2, 0, 1)), WHITE)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_arrays_in_unit_range_are_scaled_to_255(dtype):
    out = to_rgb_array((RGB / 255).astype(dtype))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, RGB, atol=0.2 if dtype == np.float16 else 1e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_float_tensors_in_unit_range_are_scaled_to_255(dtype):
    out = to_rgb_array(torch.from_numpy(RGB / 255).to(dtype).permute(2, 0, 1))
    np.testing.assert_allclose(out, RGB, atol=1.0 if dtype == torch.bfloat16 else 0.2)


def test_uint16_and_bool_arrays():
    np.testing.assert_allclose(to_rgb_array(RGB.astype(np.uint16) * 257), RGB, atol=1e-3)
    np.testing.assert_array_equal(to_rgb_array(GRAY > 127), as_gray_rgb((GRAY > 127).astype(np.uint8) * 255))


def test_ambiguous_layout_needs_input_data_format():
    one_pixel = np.array([[[10, 20, 30]]], dtype=np.uint8)  # (1, 1, 3): 1×1 RGB, or 1-channel 1×3?
    with pytest.raises(ValueError, match="input_data_format"):
        to_rgb_array(one_pixel)
    np.testing.assert_array_equal(to_rgb_array(one_pixel, "channels_last"), one_pixel)
    np.testing.assert_array_equal(to_rgb_array(one_pixel, "channels_first"), as_gray_rgb(one_pixel[0]))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((5, 7, 2), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((5, 7, 5), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((0, 7, 3), np.uint8), "non-empty"),
        (np.zeros((5, 7, 3), np.int64), "dtype uint8, uint16, bool or float"),
        (np.zeros((5, 7, 3), np.complex64), "dtype uint8, uint16, bool or float"),
        (np.full((5, 7, 3), 255.0, np.float32), r"values in \[0, 1\]"),
        (np.full((5, 7, 3), -0.1, np.float32), r"values in \[0, 1\]"),
        (np.full((5, 7, 3), np.nan, np.float32), "NaN"),
        (torch.full((3, 5, 7), float("inf")), "NaN or infinity"),
        (np.zeros((2, 5, 7, 3), np.uint8), r"\(H, W\), \(H, W, C\) or \(C, H, W\)"),
    ],
)
def test_unsupported_inputs_raise_value_error(image, message):
    with pytest.raises(ValueError, match=message):
        to_rgb_array(image)


def test_what_is_no_image_raises_type_error():
    with pytest.raises(TypeError, match="Expected a PIL.Image.Image, numpy.ndarray or torch.Tensor, got list"):
        to_rgb_array([[1, 2], [3, 4]])


def test_lab_mode_is_refused_rather_than_converted_wrongly():
    with pytest.raises(ValueError, match="'LAB'.*ImageCms"):
        to_rgb_array(PIL.Image.new("LAB", (3, 3)))


def test_premultiplied_la_is_converted():
    la = PIL.Image.fromarray(np.dstack([GRAY, np.full((5, 7), 255, np.uint8)]), mode="LA").convert("La")
    np.testing.assert_array_equal(to_rgb_array(la), as_gray_rgb(GRAY))


@pytest.mark.parametrize("mode", ["YCbCr", "HSV", "RGBX", "I;16B"])
def test_other_modes_use_pillows_conversion(mode):
    image = PIL.Image.fromarray(RGB).convert(mode) if mode != "I;16B" else PIL.Image.new(mode, (7, 5), 257 * 9)
    expected = np.array(image.convert("RGB")) if mode != "I;16B" else np.full((5, 7, 3), 9.0)
    np.testing.assert_allclose(to_rgb_array(image), expected, atol=1e-4)


# Flattening batches


def test_flatten_images_accepts_single_images_batches_and_nested_lists():
    pil = PIL.Image.fromarray(RGB)
    batch = np.stack([RGB, RGB])
    flat = flatten_images([pil, [GRAY, batch], torch.zeros(3, 4, 4)])
    assert [type(image) for image in flat] == [PIL.Image.Image, np.ndarray, np.ndarray, np.ndarray, torch.Tensor]
    assert len(flatten_images(batch)) == 2


def test_flatten_images_reads_paths(tmp_path):
    path = tmp_path / "image.png"
    PIL.Image.fromarray(RGB).save(path)
    (image,) = flatten_images(str(path))
    np.testing.assert_array_equal(np.array(image), RGB)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([], "at least one image"),
        (torch.zeros(1, 2, 3, 8, 8), "5-D Tensor"),
        ([[], ()], "at least one image"),
        (np.zeros((0, 8, 8, 3), np.uint8), r"empty batch \(a ndarray of shape \(0, 8, 8, 3\)\)"),
        (torch.zeros(0, 3, 8, 8), "at least one image"),
        (torch.zeros(1, 2, 3, 8, 8), "5-D Tensor"),
        (np.zeros(8), "1-D ndarray"),
    ],
)
def test_flatten_images_refuses_what_is_no_image(images, message):
    with pytest.raises(ValueError, match=message):
        flatten_images(images)


def test_flatten_images_refuses_other_types():
    with pytest.raises(TypeError, match="got int"):
        flatten_images(42)


# Byte order and strides


def test_big_endian_uint16_reads_as_native_uint16():
    native = RGB.astype(np.uint16) * 257
    np.testing.assert_array_equal(to_rgb_array(native.astype(">u2")), to_rgb_array(native))
    np.testing.assert_array_equal(to_rgb_array(native.astype("<u2")), to_rgb_array(native))


def test_big_endian_float_reads_as_native_float():
    unit = RGB / 255.0
    np.testing.assert_array_equal(to_rgb_array(unit.astype(">f8")), to_rgb_array(unit))


# Keeping the channels (do_convert_rgb=False)


def test_without_rgb_conversion_channels_are_kept():
    rgba = np.dstack([RGB, np.zeros((5, 7), np.uint8)])  # fully transparent: would turn white with conversion
    np.testing.assert_array_equal(to_pixel_array(rgba, convert_rgb=False), rgba)
    np.testing.assert_array_equal(to_pixel_array(PIL.Image.fromarray(rgba, "RGBA"), convert_rgb=False), rgba)
    np.testing.assert_array_equal(to_pixel_array(PIL.Image.fromarray(GRAY), convert_rgb=False), GRAY[:, :, None])
    np.testing.assert_array_equal(to_pixel_array(GRAY, convert_rgb=False), GRAY[:, :, None])
    cmyk = PIL.Image.fromarray(RGB).convert("CMYK")
    np.testing.assert_array_equal(to_pixel_array(cmyk, convert_rgb=False), np.array(cmyk))
    five = RNG.integers(0, 256, size=(5, 4, 6), dtype=np.uint8)
    np.testing.assert_array_equal(
        to_pixel_array(five, "channels_first", convert_rgb=False), np.moveaxis(five, 0, -1)
    )


def test_without_rgb_conversion_palette_images_give_their_colours():
    palette = PIL.Image.fromarray(RGB).convert("P")
    np.testing.assert_array_equal(to_pixel_array(palette, convert_rgb=False), np.array(palette.convert("RGB")))


def test_without_rgb_conversion_other_channel_counts_need_input_data_format():
    with pytest.raises(ValueError, match=r"1, 3 or 4 channels .*\(pass input_data_format"):
        to_pixel_array(np.zeros((5, 6, 7), np.uint8), convert_rgb=False)
    with pytest.raises(ValueError, match="do_convert_rgb=False keeps other channel counts"):
        to_pixel_array(np.zeros((5, 6, 7), np.uint8), "channels_first", convert_rgb=True)


# Files and training's decode


def test_load_image_keeps_transparency_and_sixteen_bits(tmp_path):
    rgba_path, deep_path = tmp_path / "rgba.png", tmp_path / "deep.png"
    PIL.Image.fromarray(np.dstack([RGB, np.zeros((5, 7), np.uint8)]), "RGBA").save(rgba_path)
    PIL.Image.fromarray(np.full((5, 7), 32768, np.uint16)).save(deep_path)
    assert load_image(rgba_path).mode == "RGBA"
    np.testing.assert_array_equal(to_rgb_array(load_image(str(rgba_path))), WHITE)
    np.testing.assert_allclose(to_rgb_array(load_image(deep_path)), 32768 * 255 / 65535, rtol=1e-6)
    with open(deep_path, "rb") as file:
        np.testing.assert_allclose(to_rgb_array(load_image(file)), 32768 * 255 / 65535, rtol=1e-6)


def test_load_image_names_what_it_cannot_read(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_image(tmp_path / "missing.png")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=f"Cannot read {garbage} as an image"):
        load_image(garbage)


@pytest.fixture
def image_server(tmp_path):
    """A one-thread HTTP server on 127.0.0.1 serving `png` at /ok and a 503 at /busy (counting the requests)."""
    PIL.Image.fromarray(RGB).save(tmp_path / "ok.png")
    body = (tmp_path / "ok.png").read_bytes()
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            status = 200 if self.path == "/ok" else 503
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if status == 200 else 0))
            self.end_headers()
            if status == 200:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def test_load_image_downloads_urls_and_retries_a_server_error_once(image_server):
    url, requests = image_server
    np.testing.assert_array_equal(to_rgb_array(load_image(f"{url}/ok", timeout=5)), RGB)
    with pytest.raises(ValueError, match=r"Could not download the image .*/busy in 2 attempts of 5 s: HTTP 503"):
        load_image(f"{url}/busy", timeout=5)
    assert requests == ["/ok", "/busy", "/busy"]


def test_training_decode_is_the_processors_decode_in_eight_bits(tmp_path):
    deep = PIL.Image.fromarray(np.full((5, 7), 32768, np.uint16))  # mid-grey, 16 bits
    transparent = PIL.Image.fromarray(np.zeros((5, 7, 4), np.uint8), "RGBA")
    assert deep.convert("RGB").getpixel((0, 0)) == (255, 255, 255)  # what convert("RGB") made of it
    np.testing.assert_array_equal(np.array(to_rgb_pil(deep)), np.full((5, 7, 3), 128, np.uint8))
    np.testing.assert_array_equal(np.array(to_rgb_pil(transparent)), WHITE)
    assert to_rgb_pil(PIL.Image.fromarray(RGB)).mode == "RGB"
