"""Thermal preprocessing: bindrt's own convention (the reference ships no thermal loader).

The thermal encoder takes one channel at 224x224 (the paper trains on LLVIP
infrared frames). bindrt's convention:

* Intensity scaling to [0, 1]: 8-bit images / uint8 arrays divide by 255;
  16-bit images (Pillow ``I;16*``, or ``I`` with values <= 65535) / uint16
  arrays divide by 65535; float images/arrays must already lie in [0, 1].
  Colour images (RGB, palette...: false-colour or 3-channel grey exports) are
  reduced with Pillow's ``convert("L")`` (ITU-R 601 luma) first.
* Geometry as for images: shorter side to 224 with bicubic (on the float map),
  longer side ``int(224*long/short)``, centre crop 224; bicubic overshoot is
  clipped back to [0, 1]. No mean/std normalisation.
* Items: a path or bytes of an image file, a Pillow image, a ``.npy`` file, or a
  numpy array ``(H, W)``, ``(1, H, W)`` or ``(H, W, 1)``. Output ``(1, 224, 224)`` float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from bindrt.errors import InputError

from ._inputs import decoding, describe, is_npy_item, map_items
from .depth import load_map_npy, resize_crop_float, single_channel
from .image import open_pil

_EXPECTED = "a greyscale thermal image (8- or 16-bit), or an (H, W) uint8/uint16 array or float array in [0, 1]"


def _scale_array(a: np.ndarray, item: Any, index: int | None) -> np.ndarray:
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255.0)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535.0)
    if a.dtype.kind == "f":
        if a.min() < 0 or a.max() > 1:
            raise InputError(
                f"{describe(item)} has float values in [{a.min():g}, {a.max():g}] (expected {_EXPECTED})",
                modality="thermal",
                item=index,
            )
        return a.astype(np.float32)
    raise InputError(f"{describe(item)} has dtype {a.dtype} (expected {_EXPECTED})", modality="thermal", item=index)


def load_thermal(item: Any, *, index: int | None = None) -> np.ndarray:
    """One item -> (H, W) float32 in [0, 1]."""
    modality = "thermal"
    if isinstance(item, np.ndarray) or is_npy_item(item):
        arr = item if isinstance(item, np.ndarray) else load_map_npy(item, modality, index, "an (H, W) thermal image")
        return _scale_array(single_channel(arr, modality, index, _EXPECTED), item, index)
    img = open_pil(item, modality, index, _EXPECTED)
    with decoding(item, modality, index, _EXPECTED):
        if img.mode.startswith("I;16"):
            a = np.asarray(img).astype(np.uint16)
        elif img.mode == "I":
            a = np.asarray(img)
            if a.min() < 0 or a.max() > 65535:
                raise ValueError("32-bit integer image with values outside 0..65535")
            a = a.astype(np.uint16)
        elif img.mode == "F":
            a = np.asarray(img, dtype=np.float32)
        else:
            a = np.asarray(img.convert("L"))
    return _scale_array(single_channel(a, modality, index, _EXPECTED), item, index)


def preprocess_thermal(item: Any, *, index: int | None = None) -> np.ndarray:
    """One thermal image -> ``(1, 224, 224)`` float32 in [0, 1]."""
    x = resize_crop_float(load_thermal(item, index=index), Image.Resampling.BICUBIC)
    return np.clip(x, 0.0, 1.0)[None]


def preprocess_thermals(items: Any) -> np.ndarray:
    """A list of thermal images -> ``(B, 1, 224, 224)`` float32."""
    return map_items(items, "thermal", lambda it, i: preprocess_thermal(it, index=i))
