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
