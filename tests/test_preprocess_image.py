"""Image preprocessing against the reference's golden tensors and a hand-written Pillow recipe."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bindrt.errors import InputError, MediaDecodeError
from bindrt.preprocess import IMAGE_MEAN, IMAGE_STD, preprocess, preprocess_image, preprocess_images

GOLDEN = Path(__file__).parent / "golden"
# CLIP constants typed from the paper/reference, not imported from the code under test.
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def reference_pipeline(img: Image.Image) -> np.ndarray:
    """torchvision Resize(224, BICUBIC) + CenterCrop(224) + ToTensor + Normalize, written out by hand."""
    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        size = (224, int(224 * h / w))
    else:
        size = (int(224 * w / h), 224)
    img = img.resize(size, Image.BICUBIC)
    left, top = int(round((size[0] - 224) / 2.0)), int(round((size[1] - 224) / 2.0))
    img = img.crop((left, top, left + 224, top + 224))
    x = np.asarray(img, np.float32).transpose(2, 0, 1) / np.float32(255)
    return (x - CLIP_MEAN[:, None, None]) / CLIP_STD[:, None, None]


def test_constants_match_clip() -> None:
    np.testing.assert_array_equal(np.asarray(IMAGE_MEAN, np.float32), CLIP_MEAN)
    np.testing.assert_array_equal(np.asarray(IMAGE_STD, np.float32), CLIP_STD)


def test_golden_vision() -> None:
    names = json.loads((GOLDEN / "inputs.json").read_text())["images"]
    got = preprocess_images([GOLDEN / "media" / n for n in names])
    want = np.load(GOLDEN / "golden.npz")["pre_vision"]
    assert got.shape == want.shape == (2, 3, 224, 224) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-5


def test_golden_vision_from_bytes_and_pil() -> None:
    want = np.load(GOLDEN / "golden.npz")["pre_vision"]
    data = (GOLDEN / "media" / "logo.png").read_bytes()  # RGBA: alpha must be dropped, not composited
    assert np.abs(preprocess_image(data) - want[0]).max() <= 1e-5
    assert np.abs(preprocess_image(Image.open(io.BytesIO(data))) - want[0]).max() <= 1e-5


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee"])
def test_real_images_match_pillow_recipe(name: str) -> None:
    skdata = pytest.importorskip("skimage.data")
    arr = getattr(skdata, name)()
    got = preprocess_image(arr)
    want = reference_pipeline(Image.fromarray(arr))
    assert got.shape == (3, 224, 224) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-5
    if arr.ndim == 2:  # grey expands to three equal channels before normalisation
        raw = got * CLIP_STD[:, None, None] + CLIP_MEAN[:, None, None]
        assert np.abs(raw[0] - raw[1]).max() < 1e-5 and np.abs(raw[1] - raw[2]).max() < 1e-5


def test_centre_crop_region_of_wide_image() -> None:
    skdata = pytest.importorskip("skimage.data")
    arr = skdata.coffee()  # 400 x 600 -> resized 224 x 336 -> crop columns 56..280
    resized = np.asarray(Image.fromarray(arr).resize((336, 224), Image.BICUBIC), np.float32) / 255
    crop = resized[:, 56:280].transpose(2, 0, 1)
    got = preprocess_image(arr) * CLIP_STD[:, None, None] + CLIP_MEAN[:, None, None]
    assert np.abs(got - crop).max() < 1e-5


def test_path_bytes_array_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (190, 250, 3), dtype=np.uint8)
    path = tmp_path / "rand.png"
    Image.fromarray(arr).save(path)
    a, b, c = preprocess_image(arr), preprocess_image(path), preprocess_image(path.read_bytes())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    batch = preprocess("vision", [arr, str(path)])
    assert batch.shape == (2, 3, 224, 224)
    np.testing.assert_array_equal(batch[1], b)


# ------------------------------------------------------------------ bad input
def _good() -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, (230, 240, 3), dtype=np.uint8)


def _check(exc: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(exc.value)
    assert "[vision item 1]" in msg, msg
    for w in words:
        assert w in msg, msg


def test_nonexistent_path(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        preprocess_images([_good(), tmp_path / "missing.png"])
    _check(e, "file not found", "missing.png", "expected")


def test_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_bytes(np.random.default_rng(3).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(MediaDecodeError) as e:
        preprocess_images([_good(), bad])
    _check(e, "cannot decode", "notes.png", "expected an image file")


@pytest.mark.parametrize("name", ["logo.png", "photo.jpg"])
def test_truncated_file(name: str) -> None:
    data = (GOLDEN / "media" / name).read_bytes()
    with pytest.raises(MediaDecodeError) as e:
        preprocess_images([_good(), data[: len(data) // 2]])
    _check(e, "truncated", "expected an image file")


@pytest.mark.parametrize(
    "arr, word",
    [
        (np.random.default_rng(4).random((50, 60, 3)), "dtype float64"),
        (np.random.default_rng(5).integers(0, 256, (50, 60, 4), dtype=np.uint8), "shape (50, 60, 4)"),
        (np.random.default_rng(6).integers(0, 256, (2, 50, 60, 3), dtype=np.uint8), "shape (2, 50, 60, 3)"),
        (np.random.default_rng(7).integers(0, 1000, (50, 60, 3), dtype=np.uint16), "dtype uint16"),
    ],
)
def test_bad_arrays(arr: np.ndarray, word: str) -> None:
    with pytest.raises(InputError) as e:
        preprocess_images([_good(), arr])
    _check(e, word, "expected an (H, W, 3) uint8 RGB")


def test_nan_array_rejected() -> None:
    arr = np.random.default_rng(8).random((40, 40, 3)).astype(np.float32)
    arr[3, 4, 1] = np.nan
    with pytest.raises(InputError) as e:
        preprocess_images([_good(), arr])
    _check(e, "expected")


def test_bad_item_type_and_empty_list() -> None:
    with pytest.raises(InputError) as e:
        preprocess_images([_good(), 12345])
    _check(e, "unsupported item type int", "expected")
    with pytest.raises(InputError, match=r"\[vision\] expected at least one item"):
        preprocess_images([])
    with pytest.raises(InputError, match="empty bytes"):
        preprocess_image(b"", index=0)
