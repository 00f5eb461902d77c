"""Images in, graph inputs out: decoding with Pillow and the published evaluation preprocessing.

`decode_image` turns bytes, a path or a PIL image into an RGB PIL image the way a user expects a
photo to look: the EXIF orientation applied (a phone's portrait JPEG stands upright), grayscale,
palette, RGBA (over white) and CMYK converted to RGB. `preprocessing_spec(h, w)` is the published
evaluation transform for one input size, as the bundle manifest records it, and `preprocess`
applies such a spec: below 384 resize the shorter side to int(size / 0.875) (bicubic), then
center-crop; at 384 and above resize to size x size (bicubic, no crop); then ImageNet mean and std.
The steps follow torchvision's Resize / CenterCrop / ToTensor / Normalize on PIL images, which the
published code uses (`classification/datasets.py`, `build_transform`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..artifacts import IMAGENET_MEAN, IMAGENET_STD
from ..errors import TransNeXtDeployError, one_line

CROP_PCT = 0.875  # 224 / 256, the published evaluation's crop ratio below 384
WARP_FROM = 384  # from this side on, the published evaluation warps to size x size (no crop)
FORMATS = ("JPEG", "PNG", "WEBP")  # what predict promises; Pillow may open more
RGBA_BACKGROUND = (255, 255, 255)


class ImageDecodeError(TransNeXtDeployError):
    """Bytes or a file that is not a readable image; str() is one line."""


def decode_image(source):
    """bytes | str | PathLike | PIL.Image -> an RGB PIL image, EXIF orientation applied.

    Raises ImageDecodeError (one line) for a missing file or data Pillow cannot decode."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, Image.Image):
        image, name = source, "image"
    else:
        if isinstance(source, (bytes, bytearray, memoryview)):
            stream, name = io.BytesIO(bytes(source)), "bytes"
        elif isinstance(source, (str, os.PathLike)):
            name = os.fspath(source)
            if not Path(name).is_file():
                raise ImageDecodeError(f"{name}: no such file")
            stream = name
        else:
            raise ImageDecodeError(f"cannot read an image from a {type(source).__name__}")
        try:
            image = Image.open(stream)
            image.load()  # decode now: a truncated file fails here, not later
        except UnidentifiedImageError:
            raise ImageDecodeError(f"{name}: not an image Pillow can read (JPEG, PNG, WebP)") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            detail = one_line(exc)
            raise ImageDecodeError(f"{name}: cannot decode the image: {detail}") from None
    try:
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except (OSError, ValueError) as exc:
        detail = one_line(exc)
        raise ImageDecodeError(f"{name}: cannot convert the image to RGB: {detail}") from None


def to_rgb(image):
    """Any Pillow mode -> RGB. Transparency (RGBA, LA, palette with a transparent index) is composed
    over white, not dropped: a dropped alpha shows whatever colour the transparent pixels stored."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, RGBA_BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale to 8 bits first
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV, F


def preprocessing_spec(height: int, width: int) -> dict:
    """The published evaluation transform for an (height, width) input, as the manifest records it."""
    side = min(height, width)
    common = {"interpolation": "bicubic", "scale": "1/255", "mean": [float(v) for v in IMAGENET_MEAN],
              "std": [float(v) for v in IMAGENET_STD], "channel_order": "RGB", "layout": "NCHW"}
    if side >= WARP_FROM:
        return {"method": "warp", "resize": [height, width], "center_crop": None, **common,
                "description": f"resize to {height}x{width} (bicubic, aspect ratio not kept), no crop"}
    shorter = int(side / CROP_PCT)
    return {"method": "resize_shorter_then_center_crop", "resize_shorter": shorter, "crop_pct": CROP_PCT,
            "center_crop": [height, width], **common,
            "description": f"resize the shorter side to {shorter} (bicubic, aspect ratio kept), "
                           f"center-crop {height}x{width}"}


def _resize_shorter(image, shorter: int):
    from PIL import Image

    w, h = image.size
    if w <= h:
        size = (shorter, int(shorter * h / w))  # torchvision: the long side is truncated, not rounded
    else:
        size = (int(shorter * w / h), shorter)
    return image if size == image.size else image.resize(size, Image.BICUBIC)


def _center_crop(image, height: int, width: int):
    from PIL import Image

    w, h = image.size
    if w < width or h < height:  # torchvision pads with zeros (black) before cropping
        padded = Image.new("RGB", (max(w, width), max(h, height)), (0, 0, 0))
        padded.paste(image, ((max(w, width) - w) // 2, (max(h, height) - h) // 2))
        image, (w, h) = padded, padded.size
    top = int(round((h - height) / 2.0))
    left = int(round((w - width) / 2.0))
    return image.crop((left, top, left + width, top + height))


def preprocess(image, spec: dict) -> np.ndarray:
    """An image (anything decode_image takes) -> the (3, H, W) float32 input `spec` describes."""
    from PIL import Image

    image = decode_image(image)
    if spec["method"] == "warp":
        height, width = spec["resize"]
        if image.size != (width, height):
            image = image.resize((width, height), Image.BICUBIC)
    elif spec["method"] == "resize_shorter_then_center_crop":
        height, width = spec["center_crop"]
        image = _center_crop(_resize_shorter(image, int(spec["resize_shorter"])), height, width)
    else:
        raise TransNeXtDeployError(f"unknown preprocessing method {spec['method']!r} in the manifest")
    rgb = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(spec["mean"], dtype=np.float32)
    std = np.asarray(spec["std"], dtype=np.float32)
    return ((rgb - mean) / std).transpose(2, 0, 1).astype(np.float32, copy=False).copy()


__all__ = ["CROP_PCT", "FORMATS", "WARP_FROM", "ImageDecodeError", "decode_image", "preprocess",
           "preprocessing_spec", "to_rgb"]
