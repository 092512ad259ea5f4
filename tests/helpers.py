"""Shared test constants and metrics (importable as ``helpers``: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GOLDEN_DIR = Path(__file__).parent / "golden"
MEDIA_DIR = GOLDEN_DIR / "media"

#: input kind -> key of the reference input in golden.npz; embeddings are emb_<kind>.
GOLDEN_INPUTS = {
    "vision": "pre_vision",
    "text": "pre_text",
    "audio": "pre_audio",
    "depth": "in_depth",
    "thermal": "in_thermal",
    "imu": "in_imu",
    "video": "in_video",
}


def row_relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |diff| per row relative to the reference row's L2 norm (the issues' tolerance)."""
    return float((np.abs(actual - expected).max(axis=-1) / np.linalg.norm(expected, axis=-1)).max())


def min_row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).min())


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of uint8 (H, W, 3) RGB, uint8 (H, W) grayscale or uint16 (H, W) 16-bit (depth in mm)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def wav_bytes(wave: np.ndarray, rate: int, subtype: str = "FLOAT") -> bytes:
    """WAV bytes of ``wave`` ((samples,) or (samples, channels)) at ``rate``, in soundfile's ``subtype``."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def write_collection(root: Path, seed: int = 0) -> dict[str, str]:
    """The golden media plus generated depth, thermal, IMU, video and caption files; name -> expected kind."""
    import shutil

    from bindrt.bench.raw_inputs import raw_items

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    kinds = {}
    for name, kind in [
        ("photo.jpg", "vision"),
        ("logo.png", "vision"),
        ("tone16k.wav", "audio"),
        ("stereo22k.wav", "audio"),
    ]:
        shutil.copy(MEDIA_DIR / name, root / name)
        kinds[name] = kind
    (root / "scans").mkdir()
    (root / "scans" / "room.png").write_bytes(png_bytes((rng.random((120, 160)) * 6000 + 500).astype(np.uint16)))
    kinds["scans/room.png"] = "depth"
    (root / "thermal").mkdir()
    (root / "thermal" / "cat.png").write_bytes(png_bytes((rng.random((96, 128)) * 255).astype(np.uint8)))
    kinds["thermal/cat.png"] = "thermal"
    np.save(root / "walk.npy", rng.standard_normal((6, 2000)).astype(np.float32))
    kinds["walk.npy"] = "imu"
    np.save(root / "disparity.npy", rng.random((100, 120)).astype(np.float32) + 0.5)
    kinds["disparity.npy"] = "depth"
    (root / "clip.mp4").write_bytes(raw_items("video", 1, seed=seed)[0])
    kinds["clip.mp4"] = "video"
    (root / "captions.txt").write_text("a dog barking in the park\n\nthe sound of rain on a roof\na red car\n")
    kinds["captions.txt"] = "text"
    return kinds
