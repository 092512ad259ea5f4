"""Depth preprocessing: bindrt's own convention (the reference ships no depth loader).

The depth encoder takes one channel of *disparity* at 224x224 (the paper
converts depth to disparity for scale normalisation). bindrt's convention:

* Input values, chosen by ``kind``:
  - ``kind="depth"`` (default): distance along the optical axis. Integer images
    (16-bit PNG, Pillow modes ``I;16*`` / ``I``) hold **millimetres** (the
    Kinect / SUN RGB-D / NYU convention); float images (mode ``F``, e.g. TIFF),
    ``.npy`` files and numpy arrays hold **metres**. 0 means "no measurement".
  - ``kind="disparity"``: values are already disparity and are used as given.
* Depth -> disparity: ``disparity = focal_length * baseline / depth_m`` (pixels),
  with defaults ``DEPTH_FOCAL_LENGTH`` = 518.8579 px and ``DEPTH_BASELINE`` =
  0.075 m (Kinect-style sensor as in SUN RGB-D); missing depth (0) -> disparity 0.
  Pass your sensor's values for other cameras.
* Geometry: shorter side to 224 (bilinear on the float map, longer side
  ``int(224*long/short)``), centre crop 224 as for images. No further scaling.
* Accepted arrays: ``(H, W)``, ``(1, H, W)`` or ``(H, W, 1)``, any real dtype,
  finite, >= 0. Output: ``(1, 224, 224)`` float32.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

import numpy as np
from PIL import Image

from bindrt.errors import InputError

from ._inputs import check_array, decoding, describe, is_npy_item, load_npy, map_items
from .image import IMAGE_SIZE, center_crop, open_pil, resize_short_side
from .limits import check_frame, check_max

DEPTH_FOCAL_LENGTH = 518.857901  # px
DEPTH_BASELINE = 0.075  # m
DepthKind = Literal["depth", "disparity"]
_EXPECTED = (
    "a 16-bit PNG of depth in millimetres, a float image/.npy/array of depth in metres "
    "(or of disparity with kind='disparity'), shaped (H, W), (1, H, W) or (H, W, 1)"
)


def single_channel(arr: Any, modality: str, index: int | None, expected: str, kinds: str = "uif") -> np.ndarray:
    """Accept (H, W), (1, H, W) or (H, W, 1) and return (H, W), its size within the limits."""
    a = check_array(arr, modality, index, ndims=(2, 3), kinds=kinds, expected=expected)
    if a.ndim == 3:
        if a.shape[0] == 1:
            a = a[0]
        elif a.shape[2] == 1:
            a = a[..., 0]
        else:
            raise InputError(f"array has shape {a.shape} (expected {expected})", modality=modality, item=index)
    check_frame(a.shape[1], a.shape[0], modality=modality, index=index)
    return a


def load_map_npy(item: Any, modality: str, index: int | None, expected: str) -> np.ndarray:
    """A .npy single-channel map, its header's element count checked against max_pixels before loading."""

    def check(shape: tuple[int, ...]) -> None:
        check_max(
            "max_pixels", f"the array's element count (shape {shape})", math.prod(shape), modality=modality, index=index
        )

    return load_npy(item, modality, index, expected, check)


def resize_crop_float(x: np.ndarray, resample: int, size: int = IMAGE_SIZE) -> np.ndarray:
    """Shorter side -> size, centre crop, on a float32 map (Pillow mode "F", no quantisation)."""
    img = Image.fromarray(np.ascontiguousarray(x, dtype=np.float32))
    return np.asarray(center_crop(resize_short_side(img, size, resample), size), dtype=np.float32)


def _check_finite(a: np.ndarray, item: Any, index: int | None, what: str, cause: str) -> None:
    """float32 overflow (to Inf) while converting: say which value overflowed and why."""
    if not np.isfinite(a).all():
        raise InputError(
            f"{describe(item)}: {what} overflows float32 (max {np.finfo(np.float32).max:.3g}); {cause}",
            modality="depth",
            item=index,
        )


def load_depth(item: Any, *, kind: DepthKind = "depth", index: int | None = None) -> np.ndarray:
    """One item -> (H, W) float32: depth in metres (kind="depth") or disparity (kind="disparity")."""
    modality = "depth"
    if kind not in ("depth", "disparity"):
        raise InputError(f"kind={kind!r} (expected 'depth' or 'disparity')", modality=modality, item=index)
    if isinstance(item, np.ndarray) or is_npy_item(item):
        arr = item if isinstance(item, np.ndarray) else load_map_npy(item, modality, index, "an (H, W) depth map")
        a = single_channel(arr, modality, index, _EXPECTED, kinds="uif")
        with np.errstate(over="ignore"):  # reported just below
            a = a.astype(np.float32)
        _check_finite(
            a,
            item,
            index,
            f"a {kind} value",
            f"expected {'metres' if kind == 'depth' else 'disparity in pixels'} within float32 range",
        )
    else:
        img = open_pil(item, modality, index, _EXPECTED)
        with decoding(item, modality, index, _EXPECTED):
            if img.mode.startswith("I;16") or img.mode == "I":
                a = np.asarray(img).astype(np.float32)
                scale = 1e-3 if kind == "depth" else 1.0  # integer images hold millimetres
            elif img.mode == "F":
                a, scale = np.asarray(img, dtype=np.float32), 1.0
            else:
                raise ValueError(f"image mode {img.mode} is not a depth map")
        if img.mode != "F" and (a.min() < 0 or a.max() > 65535):
            unit = "depth in millimetres" if kind == "depth" else "disparity"
            raise InputError(
                f"{describe(item)} has {kind} values in [{a.min():.0f}, {a.max():.0f}], outside 0..65535 "
                f"(an integer image holds 16-bit {unit}; expected {_EXPECTED})",
                modality=modality,
                item=index,
            )
        a = single_channel(a * np.float32(scale), modality, index, _EXPECTED)
    if a.min() < 0:
        raise InputError(
            f"{describe(item)} has negative values (expected {kind} >= 0, 0 = missing)", modality=modality, item=index
        )
    return a


def depth_to_disparity(
    depth_m: np.ndarray, focal_length: float = DEPTH_FOCAL_LENGTH, baseline: float = DEPTH_BASELINE
) -> np.ndarray:
    """``focal_length * baseline / depth``; missing (<= 0) depth gives 0."""
    d = np.asarray(depth_m, dtype=np.float32)
    out = np.zeros_like(d)
    valid = d > 0
    with np.errstate(over="ignore"):  # tiny depths overflow to Inf; preprocess_depth reports them
        out[valid] = np.float32(focal_length * baseline) / d[valid]
    return out


def preprocess_depth(
    item: Any,
    *,
    kind: DepthKind = "depth",
    focal_length: float = DEPTH_FOCAL_LENGTH,
    baseline: float = DEPTH_BASELINE,
    index: int | None = None,
) -> np.ndarray:
    """One depth/disparity map -> ``(1, 224, 224)`` float32 disparity."""
    for name, value in (("focal_length", focal_length), ("baseline", baseline)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
            raise InputError(f"{name}={value!r} (expected a positive finite number)", modality="depth", item=index)
    a = load_depth(item, kind=kind, index=index)
    if kind == "depth":
        disp = depth_to_disparity(a, focal_length, baseline)
        _check_finite(
            disp,
            item,
            index,
            "the disparity (focal_length * baseline / depth)",
            f"the smallest depth is {a[a > 0].min() if (a > 0).any() else 0:.3g} m; "
            "expected depth in metres (0 = missing)",
        )
    else:
        disp = a
    return resize_crop_float(disp, Image.Resampling.BILINEAR)[None]


def preprocess_depths(
    items: Any, *, kind: DepthKind = "depth", focal_length: float = DEPTH_FOCAL_LENGTH, baseline: float = DEPTH_BASELINE
) -> np.ndarray:
    """A list of depth maps -> ``(B, 1, 224, 224)`` float32."""
    return map_items(
        items,
        "depth",
        lambda it, i: preprocess_depth(it, kind=kind, focal_length=focal_length, baseline=baseline, index=i),
    )
