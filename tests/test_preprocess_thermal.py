"""Thermal preprocessing against bindrt's documented convention, recomputed by hand with Pillow."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bindrt.errors import InputError, MediaDecodeError
from bindrt.preprocess import preprocess, preprocess_thermal, preprocess_thermals

skdata = pytest.importorskip("skimage.data")


def hand_reference(x01: np.ndarray) -> np.ndarray:
    """Shorter side 224 (bicubic on floats), longer int(224*long/short), centre crop, clip to [0, 1]."""
    h, w = x01.shape
    size = (224, int(224 * h / w)) if w <= h else (int(224 * w / h), 224)
    img = Image.fromarray(x01.astype(np.float32)).resize(size, Image.BICUBIC)
    left, top = int(round((size[0] - 224) / 2)), int(round((size[1] - 224) / 2))
    return np.clip(np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32), 0, 1)[None]


def test_8bit_real_image() -> None:
    cam = skdata.camera()  # 512x512 uint8 grey
    got = preprocess_thermal(cam)
    assert got.shape == (1, 224, 224) and got.dtype == np.float32
    assert got.min() >= 0 and got.max() <= 1
    np.testing.assert_allclose(got, hand_reference(cam / 255.0), atol=1e-6)


def test_16bit_matches_8bit_scaled(tmp_path: Path) -> None:
    cam = skdata.camera()[:, 40:450]  # non-square: 512 x 410
    cam16 = cam.astype(np.uint16) * 257  # 255 * 257 = 65535: same [0, 1] intensities
    want = preprocess_thermal(cam)
    np.testing.assert_allclose(preprocess_thermal(cam16), want, atol=1e-6)
    path = tmp_path / "t16.png"
    Image.fromarray(cam16).save(path)
    np.testing.assert_allclose(preprocess_thermal(path), want, atol=1e-6)
    np.testing.assert_allclose(hand_reference(cam / 255.0), want, atol=1e-6)


def test_colour_image_reduced_to_luma(tmp_path: Path) -> None:
    coffee = skdata.coffee()
    path = tmp_path / "false_colour.png"
    Image.fromarray(coffee).save(path)
    luma = np.asarray(Image.fromarray(coffee).convert("L"))
    np.testing.assert_allclose(preprocess_thermal(path), hand_reference(luma / 255.0), atol=1e-6)


def test_float_arrays_layouts_and_batch() -> None:
    x = np.random.default_rng(0).random((260, 300)).astype(np.float32)
    want = hand_reference(x)
    np.testing.assert_allclose(preprocess_thermal(x), want, atol=1e-6)
    np.testing.assert_array_equal(preprocess_thermal(x[None]), preprocess_thermal(x[..., None]))
    buf = io.BytesIO()
    np.save(buf, x)
    batch = preprocess("thermal", [x, buf.getvalue()])
    assert batch.shape == (2, 1, 224, 224)
    np.testing.assert_array_equal(batch[0], batch[1])
    assert preprocess_thermals([x]).shape == (1, 1, 224, 224)


# ------------------------------------------------------------------ bad input
def _check(exc: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(exc.value)
    assert "[thermal item 1]" in msg, msg
    for w in words:
        assert w in msg, msg


def test_bad_arrays() -> None:
    rng = np.random.default_rng(1)
    good = rng.random((64, 64)).astype(np.float32)
    nan, inf = good.copy(), good.copy()
    nan[1, 1], inf[2, 2] = np.nan, np.inf
    cases = [
        (nan, "NaN"),
        (inf, "Inf"),
        (good * 300, "float values in"),
        (good - 0.5, "float values in"),
        (rng.integers(0, 9, (64, 64), dtype=np.int32), "dtype int32"),
        (rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), "shape (64, 64, 3)"),
    ]
    for arr, word in cases:
        with pytest.raises(InputError) as e:
            preprocess_thermals([good, arr])
        _check(e, word, "expected")


def test_bad_files(tmp_path: Path) -> None:
    good = np.random.default_rng(2).random((64, 64)).astype(np.float32)
    png = io.BytesIO()
    Image.fromarray(skdata.camera()).save(png, format="PNG")
    with pytest.raises(MediaDecodeError) as e:
        preprocess_thermals([good, png.getvalue()[: len(png.getvalue()) // 2]])
    _check(e, "truncated", "expected a greyscale thermal image")
    junk = tmp_path / "junk.png"
    junk.write_bytes(np.random.default_rng(3).integers(0, 256, 700, dtype=np.uint8).tobytes())
    with pytest.raises(MediaDecodeError) as e:
        preprocess_thermals([good, junk])
    _check(e, "junk.png", "expected")
    with pytest.raises(InputError) as e:
        preprocess_thermals([good, tmp_path / "gone.png"])
    _check(e, "file not found")
    with pytest.raises(InputError, match=r"\[thermal\] expected at least one item"):
        preprocess_thermals([])
