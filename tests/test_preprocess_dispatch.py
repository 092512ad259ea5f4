"""The modality registry, input layouts, and the no-torch guarantee of bindrt.preprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bindrt.errors import InputError, UnknownModalityError
from bindrt.preprocess import INPUT_KINDS, INPUT_LAYOUTS, preprocess

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


def test_layouts_match_reference_sizes() -> None:
    # REFERENCE.md: vision 3x224x224 (video: 5 clips x 3 crops of 3x2x224x224), text 77 ids,
    # audio 3 clips of 1x128x204, depth/thermal 1x224x224, imu 6x2000.
    want = {
        "vision": ((3, 224, 224), "float32"),
        "text": ((77,), "int64"),
        "audio": ((3, 1, 128, 204), "float32"),
        "video": ((15, 3, 2, 224, 224), "float32"),
        "depth": ((1, 224, 224), "float32"),
        "thermal": ((1, 224, 224), "float32"),
        "imu": ((6, 2000), "float32"),
    }
    assert set(INPUT_KINDS) == set(INPUT_LAYOUTS) == set(want)
    for m, (shape, dtype) in want.items():
        assert INPUT_LAYOUTS[m].item_shape == shape and INPUT_LAYOUTS[m].dtype == dtype


def _samples() -> dict[str, object]:
    rng = np.random.default_rng(0)
    return {
        "vision": rng.integers(0, 256, (100, 130, 3), dtype=np.uint8),
        "text": "a photo of a dog",
        "audio": ((rng.standard_normal((2, 12000)) * 0.1).astype(np.float32), 24000),
        "depth": rng.uniform(0.5, 5, (90, 120)).astype(np.float32),
        "thermal": rng.integers(0, 65535, (90, 120), dtype=np.uint16),
        "imu": rng.standard_normal((6, 2100)).astype(np.float32),
    }


@pytest.mark.parametrize("modality", ["vision", "text", "audio", "depth", "thermal", "imu"])
def test_single_item_and_list_give_batches(modality: str) -> None:
    item = _samples()[modality]
    one = preprocess(modality, item)
    two = preprocess(modality, [item, item])
    layout = INPUT_LAYOUTS[modality]
    assert one.shape == (1, *layout.item_shape) and one.dtype == np.dtype(layout.dtype)
    assert two.shape == (2, *layout.item_shape) and two.dtype == np.dtype(layout.dtype)
    np.testing.assert_array_equal(two[1], one[0])


@pytest.mark.parametrize("name", ["image", "Vision", "", "smell"])
def test_unknown_modality(name: str) -> None:
    with pytest.raises(UnknownModalityError) as e:
        preprocess(name, ["x"])
    msg = str(e.value)
    assert repr(name) in msg and "expected one of" in msg and "vision" in msg and "imu" in msg
    assert isinstance(e.value, KeyError)


def test_non_string_modality_and_empty_batch() -> None:
    with pytest.raises(UnknownModalityError):
        preprocess(3, ["x"])  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"\[imu\] expected at least one item"):
        preprocess("imu", [])


NO_TORCH_SCRIPT = textwrap.dedent("""
    import importlib.abc, io, sys
    BLOCKED = ("torch", "torchaudio", "torchvision", "scipy")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError("blocked in this test: " + name)
            return None

    sys.meta_path.insert(0, Blocker())
    import numpy as np, av
    from bindrt.preprocess import preprocess, INPUT_LAYOUTS

    golden = sys.argv[1]
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(25):
            frame = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    items = {
        "vision": [golden + "/media/logo.png", rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)],
        "text": ["a dog", "a cat"],
        "audio": [golden + "/media/stereo22k.wav", (rng.standard_normal(9000).astype(np.float32) * 0.1, 16000)],
        "video": [buf.getvalue()],
        "depth": [rng.uniform(0.5, 5, (60, 80))],
        "thermal": [rng.integers(0, 256, (60, 80), dtype=np.uint8)],
        "imu": [rng.standard_normal((1500, 6))],
    }
    for modality, batch in items.items():
        out = preprocess(modality, batch)
        assert out.shape == (len(batch), *INPUT_LAYOUTS[modality].item_shape), (modality, out.shape)
        assert np.isfinite(out).all(), modality
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("NO_TORCH_OK")
""")


def test_preprocess_never_imports_torch_or_scipy() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH_SCRIPT, str(GOLDEN)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "NO_TORCH_OK" in proc.stdout, proc.stdout + proc.stderr
