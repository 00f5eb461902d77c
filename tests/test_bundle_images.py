"""Image decoding (Pillow: EXIF orientation, mode conversions, bad data) and the published
evaluation preprocessing (crop below 384, warp from 384), on images made here with Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from transnext_deploy.artifacts import IMAGENET_MEAN, IMAGENET_STD
from transnext_deploy.errors import TransNeXtDeployError
from transnext_deploy.bundle.images import ImageDecodeError, decode_image, preprocess, preprocessing_spec

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def halves(size=(40, 20), left=RED, right=BLUE) -> Image.Image:
    """A (width, height) RGB image: left half `left`, right half `right`."""
    image = Image.new("RGB", size, left)
    image.paste(Image.new("RGB", (size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return image


def pixel(image: Image.Image, xy) -> np.ndarray:
    return np.asarray(image, dtype=np.int32)[xy[1], xy[0]]


def close(a, b, tol: int = 12) -> bool:
    return bool(np.abs(np.asarray(a, np.int32) - np.asarray(b, np.int32)).max() <= tol)  # JPEG loss


# ------------------------------------------------------------------------------------------ decoding


@pytest.mark.parametrize("orientation, top_colour", [(6, RED), (8, BLUE), (3, None)])
def test_exif_orientation_is_applied(orientation, top_colour):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(halves(), "JPEG", quality=95, exif=exif.tobytes())
    image = decode_image(data)
    assert image.mode == "RGB"
    if orientation in (6, 8):  # 90 degrees: the 40x20 photo stands upright as 20x40
        assert image.size == (20, 40)
        assert close(pixel(image, (10, 5)), top_colour) and not close(pixel(image, (10, 34)), top_colour)
    else:  # 180 degrees: left and right swap
        assert image.size == (40, 20)
        assert close(pixel(image, (5, 10)), BLUE) and close(pixel(image, (34, 10)), RED)


def test_palette_png_with_and_without_transparency():
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    image.putpixel((0, 0), 0)
    decoded = decode_image(encode(image, "PNG"))
    assert decoded.mode == "RGB" and tuple(pixel(decoded, (3, 3))) == (10, 200, 30)
    assert tuple(pixel(decoded, (0, 0))) == (0, 0, 0)
    decoded = decode_image(encode(image, "PNG", transparency=0))  # index 0 transparent: over white
    assert tuple(pixel(decoded, (0, 0))) == WHITE and tuple(pixel(decoded, (3, 3))) == (10, 200, 30)


def test_rgba_is_composed_over_white():
    image = Image.new("RGBA", (4, 4), (0, 0, 255, 255))
    image.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red: must not show as red
    image.putpixel((1, 0), (0, 0, 0, 128))  # half transparent black: grey
    decoded = decode_image(encode(image, "PNG"))
    assert tuple(pixel(decoded, (0, 0))) == WHITE
    assert tuple(pixel(decoded, (2, 2))) == BLUE
    assert all(120 <= v <= 135 for v in pixel(decoded, (1, 0)))


def test_cmyk_jpeg_becomes_rgb():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    decoded = decode_image(data)
    assert decoded.mode == "RGB" and close(pixel(decoded, (8, 8)), RED)


@pytest.mark.parametrize("mode, value, expected", [("L", 77, 77), ("I;16", 65535, 255), ("I;16", 0, 0),
                                                   ("LA", 200, 200), ("1", 1, 255)])
def test_grayscale_modes_become_gray_rgb(mode, value, expected):
    image = Image.new(mode, (6, 6), value if mode != "LA" else (value, 255))
    decoded = decode_image(encode(image, "PNG"))
    assert decoded.mode == "RGB"
    assert tuple(pixel(decoded, (2, 2))) == (expected,) * 3


def test_webp_and_paths(tmp_path):
    source = halves((24, 12), GREEN, RED)
    path = tmp_path / "x.webp"
    source.save(path, "WEBP", lossless=True)
    for given in (path, str(path), path.read_bytes(), Image.open(path)):
        decoded = decode_image(given)
        assert decoded.size == (24, 12) and np.array_equal(np.asarray(decoded), np.asarray(source))


@pytest.mark.parametrize("data, expected", [
    (b"", "not an image Pillow can read"),
    (b"definitely not an image", "not an image Pillow can read"),
    (encode(halves((64, 64)), "JPEG")[:200], "cannot decode the image"),  # truncated
    (encode(halves((64, 64)), "PNG")[:60], "cannot decode the image"),
])
def test_bad_bytes_raise_one_line(data, expected):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data)
    text = str(info.value)
    assert expected in text and "\n" not in text
    assert isinstance(info.value, TransNeXtDeployError)


def test_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="no such file"):
        decode_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageDecodeError, match="cannot read an image from a int"):
        decode_image(3)


# ------------------------------------------------------------------------------------------ preprocessing


def test_spec_follows_the_published_evaluation():
    crop = preprocessing_spec(224, 224)
    assert crop["method"] == "resize_shorter_then_center_crop"
    assert crop["resize_shorter"] == 256 and crop["center_crop"] == [224, 224]  # int(224 / 0.875)
    assert preprocessing_spec(383, 383)["resize_shorter"] == 437  # int(383 / 0.875) = int(437.71)
    warp = preprocessing_spec(384, 384)
    assert warp["method"] == "warp" and warp["resize"] == [384, 384] and warp["center_crop"] is None
    assert preprocessing_spec(512, 512)["method"] == "warp"
    assert crop["interpolation"] == warp["interpolation"] == "bicubic"
    np.testing.assert_allclose(crop["mean"], [0.485, 0.456, 0.406])
    np.testing.assert_allclose(crop["std"], [0.229, 0.224, 0.225])


def thirds(size) -> Image.Image:
    """A (width, height) image: left third red, middle green, right third blue."""
    w, h = size
    image = Image.new("RGB", size, GREEN)
    image.paste(Image.new("RGB", (w // 3, h), RED), (0, 0))
    image.paste(Image.new("RGB", (w - 2 * (w // 3), h), BLUE), (2 * (w // 3), 0))
    return image


def normalised(rgb) -> np.ndarray:
    return (np.asarray(rgb, np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def test_crop_keeps_the_centre_and_warp_keeps_everything():
    image = thirds((1200, 300))  # 4:1 -> 1024x256 below 384: the 224 crop lies in the green third
    x = preprocess(image, preprocessing_spec(224, 224))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    np.testing.assert_allclose(x[:, 0, 0], normalised(GREEN), atol=1e-5)
    np.testing.assert_allclose(x[:, -1, -1], normalised(GREEN), atol=1e-5)
    y = preprocess(image, preprocessing_spec(384, 384))  # warped whole: red left, blue right
    assert y.shape == (3, 384, 384)
    np.testing.assert_allclose(y[:, 200, 0], normalised(RED), atol=1e-5)
    np.testing.assert_allclose(y[:, 200, 191], normalised(GREEN), atol=1e-5)
    np.testing.assert_allclose(y[:, 200, -1], normalised(BLUE), atol=1e-5)


def test_crop_matches_torchvision_arithmetic():
    """torchvision's Resize(256) on a 400x300 PIL image gives 341x256 (the long side truncated),
    CenterCrop(224) then starts at int(round((341 - 224) / 2)) = 58, int(round(16.0)) = 16."""
    g = np.random.default_rng(0)
    image = Image.fromarray((g.random((300, 400, 3)) * 255).astype(np.uint8))
    expected = image.resize((341, 256), Image.BICUBIC).crop((58, 16, 58 + 224, 16 + 224))
    got = preprocess(image, preprocessing_spec(224, 224))
    np.testing.assert_allclose(got, normalised(expected).transpose(2, 0, 1), atol=1e-6)
    portrait = image.transpose(Image.Transpose.TRANSPOSE)  # 300x400: 256x341, crop at 16, 58
    expected = portrait.resize((256, 341), Image.BICUBIC).crop((16, 58, 16 + 224, 58 + 224))
    np.testing.assert_allclose(preprocess(portrait, preprocessing_spec(224, 224)),
                               normalised(expected).transpose(2, 0, 1), atol=1e-6)


def test_exif_orientation_reaches_the_model_input():
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(thirds((600, 400)), "JPEG", quality=95, exif=exif.tobytes())  # upright: 400 wide, 600 tall
    x = preprocess(data, preprocessing_spec(384, 384))
    assert np.abs(x[:, 5, 192] - normalised(RED)).max() < 0.2  # the red third is now on top
    assert np.abs(x[:, -5, 192] - normalised(BLUE)).max() < 0.2
