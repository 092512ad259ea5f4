"""Image preprocessing, bit-compatible with the reference (torchvision on Pillow images).

Pipeline (REFERENCE.md, "Preprocessing"): Pillow decode -> ``convert("RGB")``
(alpha dropped, not composited; grey/palette expanded) -> resize so the shorter
side is 224 with Pillow BICUBIC, the longer side ``int(224 * long / short)`` ->
centre crop 224 at offsets ``int(round((h - 224) / 2))``, ``int(round((w - 224) / 2))``
-> /255 float32 CHW -> ``(x - IMAGE_MEAN) / IMAGE_STD``.

Items: a path, raw file bytes, a Pillow image, or a numpy array. Arrays must be
``(H, W, 3)`` uint8 RGB (or ``(H, W)`` uint8 grey, expanded like Pillow's "L").
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
from PIL import Image

from bindrt.errors import InputError, LimitError
from bindrt.layouts import IMAGE_SIZE

from ._inputs import check_array, decoding, map_items, to_source
from .limits import check_frame, current_media_limits, exceeded

IMAGE_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

_MEAN = np.asarray(IMAGE_MEAN, np.float32)[:, None, None]
_STD = np.asarray(IMAGE_STD, np.float32)[:, None, None]

_EXPECTED = "an image file Pillow can read, a Pillow image, or an (H, W, 3) uint8 RGB array"


def open_pil(item: Any, modality: str, index: int | None, expected: str = _EXPECTED) -> Image.Image:
    """Open a path/bytes/Pillow item as a fully loaded Pillow image (truncation surfaces here).

    The header's size is checked against the limits before the pixels are decoded.
    Pillow's own decompression-bomb warning is left to that check; its error (over
    twice ``PIL.Image.MAX_IMAGE_PIXELS``, raised while opening) becomes a LimitError.
    """
    if isinstance(item, Image.Image):
        check_frame(*item.size, modality=modality, index=index)
        return item
    src = to_source(item, modality, index, expected)
    with decoding(item, modality, index, expected):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(src)
        except Image.DecompressionBombError as exc:
            pixels = _bomb_pixels(exc)
            if pixels > current_media_limits().max_pixels:
                raise exceeded("max_pixels", "the image's pixel count", pixels, modality=modality, index=index) from exc
            raise LimitError(
                f"{exc} (Pillow's own limit, twice PIL.Image.MAX_IMAGE_PIXELS; raise "
                "PIL.Image.MAX_IMAGE_PIXELS too to accept it)",
                modality=modality,
                item=index,
            ) from exc
        check_frame(*img.size, modality=modality, index=index)
        img.load()  # Pillow decodes lazily; force it so truncated files fail now
    return img


def _bomb_pixels(exc: Exception) -> int:
    """The pixel count Pillow's DecompressionBombError reports ("Image size (N pixels) exceeds ...")."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return int(found.group(1)) if found else 0


def resize_short_side(img: Image.Image, size: int, resample: int) -> Image.Image:
    """torchvision ``Resize(size)`` on a Pillow image: shorter side -> size, longer ``int(size*long/short)``."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), resample)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision ``CenterCrop(size)`` for an image at least ``size`` on both sides."""
    w, h = img.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def image_from_array(arr: Any, modality: str, index: int | None) -> Image.Image:
    a = check_array(
        arr, modality, index, ndims=(2, 3), kinds="u", expected="an (H, W, 3) uint8 RGB or (H, W) uint8 grey array"
    )
    if a.dtype != np.uint8 or (a.ndim == 3 and a.shape[2] != 3):
        raise InputError(
            f"array has shape {a.shape} dtype {a.dtype} (expected an (H, W, 3) uint8 RGB or (H, W) uint8 grey array)",
            modality=modality,
            item=index,
        )
    check_frame(a.shape[1], a.shape[0], modality=modality, index=index)
    return Image.fromarray(np.ascontiguousarray(a))


def preprocess_image(item: Any, *, index: int | None = None) -> np.ndarray:
    """One image -> ``(3, 224, 224)`` float32, normalised with IMAGE_MEAN / IMAGE_STD."""
    modality = "vision"
    img = image_from_array(item, modality, index) if isinstance(item, np.ndarray) else open_pil(item, modality, index)
    with decoding(item, modality, index, _EXPECTED):
        img = img.convert("RGB")
    img = center_crop(resize_short_side(img, IMAGE_SIZE, Image.Resampling.BICUBIC), IMAGE_SIZE)
    # ToTensor + Normalize's float32 ops (/255, -mean, /std), in place on one CHW buffer.
    x = np.empty((3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    np.copyto(x, np.asarray(img).transpose(2, 0, 1), casting="unsafe")
    np.divide(x, np.float32(255.0), out=x)
    np.subtract(x, _MEAN, out=x)
    np.divide(x, _STD, out=x)
    return x


def preprocess_images(items: Any) -> np.ndarray:
    """A list of images -> ``(B, 3, 224, 224)`` float32."""
    return map_items(items, "vision", lambda it, i: preprocess_image(it, index=i))
