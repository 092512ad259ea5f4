"""Depth preprocessing against bindrt's documented convention, recomputed by hand with Pillow."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bindrt.errors import InputError, MediaDecodeError
from bindrt.preprocess import preprocess, preprocess_depth, preprocess_depths

FOCAL, BASELINE = 518.857901, 0.075  # documented defaults (Kinect-style, px and m)


def random_depth(h: int = 300, w: int = 400, seed: int = 0) -> np.ndarray:
    """A smooth random scene 0.5..8 m, not constant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    field = sum(
        rng.uniform(0.2, 1) * np.sin(rng.uniform(1, 6) * xx + rng.uniform(1, 6) * yy + rng.uniform(0, 6))
        for _ in range(4)
    )
    return (0.5 + 7.5 * (field - field.min()) / np.ptp(field)).astype(np.float32)


def hand_reference(disp: np.ndarray) -> np.ndarray:
    h, w = disp.shape
    size = (224, int(224 * h / w)) if w <= h else (int(224 * w / h), 224)
    img = Image.fromarray(disp.astype(np.float32)).resize(size, Image.BILINEAR)
    left, top = int(round((size[0] - 224) / 2)), int(round((size[1] - 224) / 2))
    return np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32)[None]


def test_metres_array_to_disparity() -> None:
    d = random_depth()
    got = preprocess_depth(d)
    assert got.shape == (1, 224, 224) and got.dtype == np.float32
    want = hand_reference(FOCAL * BASELINE / d.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # constant 2 m -> constant f*b/2 px everywhere
    np.testing.assert_allclose(preprocess_depth(np.full((120, 90), 2.0)), FOCAL * BASELINE / 2, rtol=1e-6)


def test_16bit_png_millimetres_matches_metres(tmp_path: Path) -> None:
    d = random_depth(seed=1)
    mm = np.round(d * 1000).astype(np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(mm).save(path)
    want = preprocess_depth(mm.astype(np.float32) / 1000)
    np.testing.assert_allclose(preprocess_depth(path), want, rtol=1e-5)
    np.testing.assert_allclose(preprocess_depth(path.read_bytes()), want, rtol=1e-5)


def test_missing_depth_gives_zero_disparity() -> None:
    d = random_depth(seed=2)
    d[100:200, 150:250] = 0  # a hole in the middle
    got = preprocess_depth(d)[0]
    # 400x300 -> 298x224 (scale 0.7467), crop x offset 37: hole maps to rows ~75..149, cols ~75..149
    assert (got[80:145, 80:145] == 0).all()
    assert (got[:60] > 0).all()


def test_disparity_kind_and_layouts(tmp_path: Path) -> None:
    disp = random_depth(seed=3) * 10
    want = hand_reference(disp)
    np.testing.assert_allclose(preprocess_depth(disp, kind="disparity"), want, rtol=1e-5, atol=1e-5)
    for arr in (disp[None], disp[..., None]):
        np.testing.assert_array_equal(preprocess_depth(arr, kind="disparity"), preprocess_depth(disp, kind="disparity"))
    path = tmp_path / "disp.npy"
    np.save(path, disp)
    buf = io.BytesIO()
    np.save(buf, disp)
    batch = preprocess("depth", [path, buf.getvalue(), disp], kind="disparity")
    assert batch.shape == (3, 1, 224, 224)
    np.testing.assert_array_equal(batch[0], batch[2])
    np.testing.assert_array_equal(batch[1], batch[2])
    assert preprocess_depths([disp, disp * 2], kind="disparity").shape == (2, 1, 224, 224)


def test_custom_camera() -> None:
    d = random_depth(seed=4)
    np.testing.assert_allclose(
        preprocess_depth(d, focal_length=1000.0, baseline=0.1),
        preprocess_depth(d) * (1000.0 * 0.1) / (FOCAL * BASELINE),
        rtol=1e-5,
    )


# ------------------------------------------------------------------ bad input
def _check(exc: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(exc.value)
    assert "[depth item 1]" in msg, msg
    for w in words:
        assert w in msg, msg


def test_bad_arrays() -> None:
    good = random_depth(seed=5)
    nan, inf, neg = good.copy(), good.copy(), good.copy()
    nan[5, 5], inf[6, 6], neg[7, 7] = np.nan, np.inf, -1.0
    cases = [
        (nan, "NaN"),
        (inf, "Inf"),
        (neg, "negative"),
        (np.stack([good] * 3), "shape (3, 300, 400)"),
        (good[0], "shape (400,)"),
        (good.astype(np.complex64), "dtype complex64"),
    ]
    for arr, word in cases:
        with pytest.raises(InputError) as e:
            preprocess_depths([good, arr])
        _check(e, word, "expected")


def test_bad_files(tmp_path: Path) -> None:
    good = random_depth(seed=6)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.random.default_rng(7).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(rgb)
    with pytest.raises(MediaDecodeError) as e:
        preprocess_depths([good, rgb])
    _check(e, "mode RGB", "expected a 16-bit PNG")
    png = io.BytesIO()
    Image.fromarray(np.round(good * 1000).astype(np.uint16)).save(png, format="PNG")
    with pytest.raises(MediaDecodeError) as e:
        preprocess_depths([good, png.getvalue()[: len(png.getvalue()) // 2]])
    _check(e, "truncated", "expected")
    with pytest.raises(InputError) as e:
        preprocess_depths([good, tmp_path / "nope.png"])
    _check(e, "file not found", "nope.png")
    with pytest.raises(InputError) as e:
        preprocess_depths([good, good], kind="inverse")  # type: ignore[arg-type]
    assert "expected 'depth' or 'disparity'" in str(e.value)
    with pytest.raises(InputError, match=r"\[depth\] expected at least one item"):
        preprocess_depths([])
