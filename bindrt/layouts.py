"""Model input layouts per input kind: the contract between preprocessing, backends and exported graphs.

Shapes exclude the batch axis; ``clips`` marks the axis that multi-clip kinds
average over (the reference folds it into the batch and averages embeddings).

``max_abs`` bounds the values a preprocessed batch may hold. Preprocessing stays far
inside it; it exists because finite but absurd values (IMU readings of 1e30) overflow
float32 inside LayerNorm and come out as NaN embeddings with no error. The bounds are
generous for real data (``value_range`` says what the values are) and leave orders of
magnitude of float32 headroom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The text encoder's token contract (CLIP's BPE): one home, read by the tokenizer, the model,
#: the backends, the exporter's manifest and every random text batch.
CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
SOT_TOKEN = 49406
EOT_TOKEN = 49407
PAD_TOKEN = 0

#: Image-like inputs (vision, depth, thermal, video frames) are square crops of this side.
IMAGE_SIZE = 224
#: IMU input: accelerometer xyz + gyroscope xyz, 2000 samples (10 s at 200 Hz).
IMU_CHANNELS = 6
IMU_SAMPLES = 2000


@dataclass(frozen=True)
class InputLayout:
    kind: str
    encoder: str
    shape: tuple[int | str, ...]  # without batch; for multi-clip kinds, without clips; str: a symbolic axis
    dtype: str
    multi_clip: bool = False
    default_clips: int = 1
    max_abs: float = 1e3
    value_range: str = ""
    raw: bool = False  # raw media for graphs with in-graph preprocessing (``bindrt export --with-preprocessing``)
    based_on: str | None = None  # for raw kinds: the preprocessed kind the graph computes in-graph

    @property
    def item_shape(self) -> tuple[int, ...]:
        """One preprocessed item (no batch axis), clips at their default count."""
        return ((self.default_clips,) if self.multi_clip else ()) + self.shape

    def symbolic_shape(self) -> list[int | str]:
        return ["batch", *(["clips"] if self.multi_clip else []), *self.shape]

    def describe(self) -> str:
        return "(" + ", ".join(str(d) for d in self.symbolic_shape()) + f") {self.dtype}"


_PIXELS = "CLIP-normalised pixels lie within about +-3"
INPUT_LAYOUTS: dict[str, InputLayout] = {
    "vision": InputLayout("vision", "vision", (3, IMAGE_SIZE, IMAGE_SIZE), "float32", value_range=_PIXELS),
    "video": InputLayout(
        "video",
        "vision",
        (3, 2, IMAGE_SIZE, IMAGE_SIZE),
        "float32",
        multi_clip=True,
        default_clips=15,
        value_range=_PIXELS,
    ),
    "text": InputLayout("text", "text", (CONTEXT_LENGTH,), "int64", value_range="token ids"),
    "audio": InputLayout(
        "audio",
        "audio",
        (1, 128, 204),
        "float32",
        multi_clip=True,
        default_clips=3,
        value_range="normalised log-mel values lie within about +-10",
    ),
    "depth": InputLayout(
        "depth",
        "depth",
        (1, IMAGE_SIZE, IMAGE_SIZE),
        "float32",
        max_abs=1e6,
        value_range="disparity in pixels: 38.9 / depth in metres, 3.9e5 at 0.1 mm",
    ),
    "thermal": InputLayout(
        "thermal", "thermal", (1, IMAGE_SIZE, IMAGE_SIZE), "float32", value_range="intensities in [0, 1]"
    ),
    "imu": InputLayout(
        "imu",
        "imu",
        (IMU_CHANNELS, IMU_SAMPLES),
        "float32",
        max_abs=1e5,
        value_range="accelerometer m/s^2 and gyroscope rad/s; 1e5 is 10,000 g",
    ),
}


#: Raw-media kinds, run by graphs that preprocess in-graph (the ONNX Runtime backend with ``preprocessing=True``).
RAW_LAYOUTS: dict[str, InputLayout] = {
    "audio_waveform": InputLayout(
        "audio_waveform",
        "audio",
        ("samples",),
        "float32",
        multi_clip=True,
        default_clips=3,
        value_range="mono 16 kHz samples in [-1, 1], one row per 2 s clip",
        raw=True,
        based_on="audio",
    ),
    "vision_uint8": InputLayout(
        "vision_uint8",
        "vision",
        (IMAGE_SIZE, IMAGE_SIZE, 3),
        "uint8",
        max_abs=255,
        value_range="RGB bytes, already resized and centre-cropped",
        raw=True,
        based_on="vision",
    ),
}

#: Input kinds users give, each routed to one encoder (video -> vision, multi-clip).
INPUT_KINDS: dict[str, str] = {kind: layout.encoder for kind, layout in INPUT_LAYOUTS.items()}
#: Every kind a backend may run: the preprocessed kinds, then the raw-media kinds.
ALL_LAYOUTS: dict[str, InputLayout] = {**INPUT_LAYOUTS, **RAW_LAYOUTS}


def random_batch(kind: str, batch: int, seed: "int | np.random.Generator" = 0, clips: int | None = None) -> np.ndarray:
    """Fresh random inputs in ``kind``'s layout, the one generator for validation, benchmarks and tests.

    Float kinds are standard normal (well inside ``max_abs``); text rows are SOT, 1-75 random
    word ids, EOT, padding, so the pooled end-of-text position varies over the whole context.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    layout = INPUT_LAYOUTS[kind]
    if kind == "text":
        ids = np.full((batch, CONTEXT_LENGTH), PAD_TOKEN, np.int64)
        for row in ids:
            words = int(rng.integers(1, CONTEXT_LENGTH - 1))
            row[0], row[1 : 1 + words], row[1 + words] = SOT_TOKEN, rng.integers(1, SOT_TOKEN, words), EOT_TOKEN
        return ids
    shape = (batch, *((clips or layout.default_clips,) if layout.multi_clip else ()), *layout.shape)
    return rng.standard_normal(shape, dtype=np.float32)


def kinds_for(modality: str) -> list[str]:
    """Input kinds an encoder accepts (vision takes images and videos)."""
    return [k for k, layout in INPUT_LAYOUTS.items() if layout.encoder == modality]
