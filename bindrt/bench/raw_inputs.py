"""Fresh raw inputs as users hand them to ``embed``: captions, encoded images, WAV clips, video files, IMU CSVs.

Preprocessing is timed on these, per item, beside the encoder: each call gets items it has
not seen (new words for the tokenizer's cache, new pixels for the decoders), generated
before the timer starts. Media are synthetic but non-trivial: noise plus structure at real
sizes (640x480 photos, 16-bit depth maps, 5 s of 44.1 kHz audio, 2 s of 320x240 video).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from bindrt.errors import UnknownModalityError
from bindrt.layouts import INPUT_LAYOUTS

_ONSETS = "b c d f g h j k l m n p r s t v w z br cr dr fl gr pl pr sk sl sn st str th tr ch sh qu".split()
_VOWELS = "a e i o u a e i o y ai ea ee ia io oo ou".split()
_CODAS = [""] * 6 + "n r s t l m nd nt rk st ck ng x".split()
_ACCENTED = "é è ü ö ñ ø å ç".split()


class FreshWords:
    """Word-like strings, each new to the run (so no BPE cache on either side can know it)."""

    def __init__(self, seed: int, accented: bool = False):
        self.rng = np.random.default_rng(seed)
        self.seen: set[str] = set()
        self.accented = accented  # one word of each caption gets a non-ASCII letter

    def word(self, accent: bool = False) -> str:
        r = self.rng
        while True:
            parts = []
            for _ in range(int(r.integers(1, 5))):
                parts.append(_ONSETS[r.integers(len(_ONSETS))] if r.random() < 0.8 else "")
                parts.append(_VOWELS[r.integers(len(_VOWELS))])
                parts.append(_CODAS[r.integers(len(_CODAS))])
            w = "".join(parts)
            if accent:
                i = int(r.integers(len(w)))
                w = w[:i] + _ACCENTED[r.integers(len(_ACCENTED))] + w[i + 1 :]
            if r.random() < 0.15:
                w = w.capitalize()
            if w.lower() not in self.seen and len(w) > 2:
                self.seen.add(w.lower())
                return w

    def captions(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            k = int(self.rng.integers(6, 17))
            accent_at = int(self.rng.integers(k)) if self.accented else -1
            words = [self.word(i == accent_at) for i in range(k)]
            out.append(" ".join(words).capitalize() + ".")
        return out


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _smooth(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random field in [0, 1] (low-frequency structure, so encoders and codecs see an image, not noise)."""
    coarse = rng.random((h // 32 + 2, w // 32 + 2))
    rows = np.interp(np.linspace(0, coarse.shape[0] - 1, h), np.arange(coarse.shape[0]), np.arange(coarse.shape[0]))
    cols = np.linspace(0, coarse.shape[1] - 1, w)
    field = np.stack([np.interp(cols, np.arange(coarse.shape[1]), coarse[int(r)]) for r in rows])
    return np.clip(field + 0.05 * rng.standard_normal((h, w)), 0, 1)


def _photo(rng: np.random.Generator, h: int = 480, w: int = 640) -> np.ndarray:
    return (np.stack([_smooth(rng, h, w) for _ in range(3)], -1) * 255).astype(np.uint8)


def _wav(rng: np.random.Generator, seconds: float = 5.0, rate: int = 44100) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * rng.uniform(80, 4000) * t) + 0.05 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _video(rng: np.random.Generator, seconds: float = 2.0, fps: int = 15, h: int = 240, w: int = 320) -> bytes:
    """An MPEG-4 file (the codec every FFmpeg build has) of a drifting random scene."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        scene = _photo(rng, h, w + int(seconds * fps) * 4)
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:, 4 * i : 4 * i + w]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _imu_csv(rng: np.random.Generator, samples: int = 2000) -> bytes:
    t = np.arange(samples)[:, None] / 200
    signal = np.sin(2 * np.pi * rng.uniform(0.5, 3, 6) * t) + 0.1 * rng.standard_normal((samples, 6))
    return ("ax,ay,az,gx,gy,gz\n" + "\n".join(",".join(f"{v:.5f}" for v in row) for row in signal)).encode()


def raw_items(kind: str, n: int, seed: int = 0, words: FreshWords | None = None) -> list[Any]:
    """``n`` fresh raw items of input ``kind`` in the form ``preprocess(kind, items)`` takes.

    Kinds whose input is already the encoder's (raw-media graph inputs) have no preprocessing:
    UnknownModalityError. ``words`` keeps captions fresh across calls (one generator per run).
    """
    if kind not in INPUT_LAYOUTS:
        raise UnknownModalityError(f"no raw inputs for input kind {kind!r}; expected one of {', '.join(INPUT_LAYOUTS)}")
    rng = np.random.default_rng(seed)
    if kind == "text":
        return (words or FreshWords(seed)).captions(n)
    make = {
        "vision": lambda: _jpeg(_photo(rng)),
        "depth": lambda: _png((_smooth(rng, 480, 640) * 8000 + 300).astype(np.uint16)),  # millimetres
        "thermal": lambda: _png((_smooth(rng, 480, 640) * 255).astype(np.uint8)),
        "audio": lambda: _wav(rng),
        "video": lambda: _video(rng),
        "imu": lambda: _imu_csv(rng),
    }[kind]
    return [make() for _ in range(n)]
