"""Validation of exported graphs against the PyTorch fp32 model (at export and by ``bindrt validate``).

Each graph runs on ONNX Runtime's CPU EP on two input suites -- ``random``
(seeded, in the encoder's input layout) and ``real`` (bundled sample media,
scikit-image's sample images when installed, tokenised sentences, synthetic
sounds and motion through :mod:`bindrt.preprocess`) -- at batch sizes 1 and 5,
all from the same graph. Metrics per suite and batch size, against the torch
embeddings of the same inputs:

* ``max_rel_diff``: max over rows of ``max|onnx - torch| / ||torch row||``;
* ``min_cosine``: the smallest row cosine similarity;
* ``top1_agreement``: the gallery is the torch embeddings of the suite's five
  items; the fraction of queries whose nearest gallery item (cosine) is the same
  for the ONNX and the torch embedding. A different pick still agrees when it is
  a tie at the precision's resolution (its torch similarity is within
  ``tie_margin`` of the torch top-1: ``1e-5`` fp32, ``1 - min_cosine bound``
  otherwise); random-weight models map some real media to nearly one point, and
  retrieval among near-identical items is undefined. ``ambiguous_queries``
  counts the queries whose torch top-2 margin is below the tie margin.

Raw-input graphs (``audio_waveform``, ``vision_uint8``) are compared with the
torch model fed by the Python preprocessing of the same raw inputs
(:func:`bindrt.preprocess.waveform_to_melspec`, :func:`bindrt.preprocess.preprocess_images`).

Why not Polygraphy's comparator: its ``CompareFunc.simple`` checks elementwise
abs/rel tolerances between two *runners*; our reference is a torch module (its
``PytRunner`` would work) but our criteria are row-wise (error relative to the
row norm, cosine, retrieval), and raw-input graphs need different inputs for the
two sides. We use plain ONNX Runtime sessions and numpy metrics instead; the
results are the same numbers Polygraphy would print, in our units.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from importlib import resources
from typing import Any, Callable

import numpy as np

from bindrt.errors import ExportError
from bindrt.export.spec import GRAPH_KINDS
from bindrt.layouts import random_batch
from bindrt.loaders import OrtSessionOptions, SessionFromOnnx

#: precision -> (metric, bound, "max"|"min") for base graphs.
TOLERANCES: dict[str, tuple[str, float, str]] = {
    "fp32": ("max_rel_diff", 1e-5, "max"),
    "fp16": ("min_cosine", 0.999, "min"),
    "bf16": ("min_cosine", 0.999, "min"),
    "int8": ("min_cosine", 0.98, "min"),
    "fp8": ("min_cosine", 0.99, "min"),
}
#: raw-input fp32 graphs against the Python preprocessing path (float32 DFT vs FFT differ slightly)
RAW_FP32_TOLERANCE: tuple[str, float, str] = ("min_cosine", 0.9999, "min")
MIN_TOP1_AGREEMENT = 1.0
BATCH_SIZES = (1, 5)
SUITES = ("random", "real")
SUITE_SIZE = 5
CLIPS = 2
WAVEFORM_SAMPLES = 32000  # one 2 s clip at 16 kHz, as the reference's audio loader cuts them


def tolerance_for(kind: str, precision: str) -> tuple[str, float, str]:
    if GRAPH_KINDS[kind].raw and precision == "fp32":
        return RAW_FP32_TOLERANCE
    return TOLERANCES[precision]


# ----------------------------------------------------------------------------- inputs
def _rng(kind: str, suite: str) -> np.random.Generator:
    """Seeded per (kind, suite), stable across processes (no str hash randomisation)."""
    return np.random.default_rng([len(kind), sum(map(ord, kind + suite))])


@functools.lru_cache(maxsize=1)
def sample_images() -> tuple[np.ndarray, ...]:
    """Real RGB uint8 images: the bundled sample photo plus scikit-image's sample images when installed."""
    from PIL import Image

    images = []
    photo = resources.files("bindrt.data").joinpath("samples/photo.jpg")
    with photo.open("rb") as fh:
        images.append(np.asarray(Image.open(fh).convert("RGB")))
    try:
        from skimage import data as skdata

        for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
            img = getattr(skdata, name)()
            images.append(np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3])
    except Exception:  # scikit-image is optional: fall back to transformed copies of the photo
        base = images[0]
        images += [base[:, ::-1], base[::-1], np.ascontiguousarray(base.transpose(1, 0, 2)), 255 - base]
    return tuple(np.ascontiguousarray(i, dtype=np.uint8) for i in images[:SUITE_SIZE])


def _cropped_images() -> list[np.ndarray]:
    from PIL import Image

    from bindrt.preprocess.image import center_crop, resize_short_side

    return [
        np.asarray(center_crop(resize_short_side(Image.fromarray(i), 224, Image.Resampling.BICUBIC), 224))
        for i in sample_images()
    ]


@functools.lru_cache(maxsize=1)
def sample_waveforms() -> tuple[np.ndarray, ...]:
    """Real-ish 16 kHz mono sounds: the bundled tone file plus synthetic chirp, chord, noise burst, clicks."""
    from bindrt.preprocess.audio import load_audio, resample

    path = resources.files("bindrt.data").joinpath("samples/tone16k.wav")
    with resources.as_file(path) as p:
        wav, sr = load_audio(str(p))
    wav = resample(wav, sr, 16000)[0] if sr != 16000 else wav[0]
    t = np.arange(3 * 16000) / 16000.0
    rng = np.random.default_rng(11)
    chirp = 0.5 * np.sin(2 * np.pi * (100 * t + 600 * t**2))
    chord = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220, 277.2, 329.6)) * np.exp(-t)
    burst = rng.standard_normal(t.size) * np.where((t % 1.0) < 0.3, 0.3, 0.01)
    clicks = np.zeros_like(t)
    clicks[::1600] = 0.9
    return tuple(np.asarray(w, dtype=np.float32) for w in (wav, chirp, chord, burst, clicks))


def _clips_of(wav: np.ndarray, clips: int = 3, length: int = WAVEFORM_SAMPLES) -> np.ndarray:
    if wav.size < length:
        wav = np.pad(wav, (0, length - wav.size))
    starts = np.linspace(0, wav.size - length, clips).astype(int)
    return np.stack([wav[s : s + length] for s in starts])


def raw_audio_clips(suite: str, n: int = SUITE_SIZE) -> np.ndarray:
    """(n, 3, 32000) float32 mono clips."""
    if suite == "real":
        return np.stack([_clips_of(w) for w in sample_waveforms()[:n]]).astype(np.float32)
    rng = _rng("audio_waveform", suite)
    return (0.1 * rng.standard_normal((n, 3, WAVEFORM_SAMPLES))).astype(np.float32)


def melspec_of_clips(clips: np.ndarray) -> np.ndarray:
    """(B, S, samples) -> (B, S, 1, 128, 204) through the Python (numpy) Kaldi fbank path."""
    from bindrt.preprocess.audio import waveform_to_melspec

    return np.stack([np.stack([waveform_to_melspec(c[None]) for c in item]) for item in clips]).astype(np.float32)


REAL_TEXTS = (
    "a dog barking",
    "A photo of a car.",
    "the sound of rain on a tin roof",
    "a person walking up the stairs",
    "Ünïcödé tëxt &amp; symbols",
)


def _imu_motion(n: int) -> np.ndarray:
    t = np.arange(2000) / 200.0
    out = []
    for i in range(n):
        f = 1.0 + 0.5 * i
        acc = np.stack(
            [0.3 * np.sin(2 * np.pi * f * t), 0.2 * np.cos(2 * np.pi * f * t), 9.81 + 0.5 * np.sin(4 * np.pi * f * t)]
        )
        gyro = np.stack([0.1 * np.sin(2 * np.pi * f * t + k) for k in range(3)])
        out.append(np.concatenate([acc, gyro]))
    return np.stack(out).astype(np.float32)


def suite_inputs(kind: str, suite: str, n: int = SUITE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``(graph_input, torch_input)`` of one suite; they differ only for raw-input kinds."""
    if kind == "audio_waveform":
        raw = raw_audio_clips(suite, n)
        return raw, melspec_of_clips(raw)
    if kind == "vision_uint8":
        if suite == "real":
            imgs = np.stack(_cropped_images()[:n])
        else:
            imgs = _rng(kind, suite).integers(0, 256, size=(n, 224, 224, 3), dtype=np.uint8)
        from bindrt.preprocess.image import preprocess_images

        return imgs, preprocess_images(list(imgs))
    x = _base_inputs(kind, suite, n)
    return x, x


def _base_inputs(kind: str, suite: str, n: int) -> np.ndarray:
    rng = _rng(kind, suite)
    spec = GRAPH_KINDS[kind]
    if suite.startswith("random"):  # "random" (validation) or "random-calibration" (held out)
        if kind == "text":
            return random_batch("text", n, rng)
        shape = [n if d == "batch" else CLIPS if d == "clips" else d for d in spec.shape]
        return rng.standard_normal(shape).astype(np.float32)
    from bindrt import preprocess as pp

    if kind == "vision":
        return pp.preprocess_images(list(sample_images()[:n]))
    if kind == "video":  # clip c of item i: two real frames
        imgs = pp.preprocess_images(list(sample_images()[:n]))
        return np.stack(
            [
                np.stack([np.stack([imgs[(i + c) % n], imgs[(i + c + 1) % n]], axis=1) for c in range(CLIPS)])
                for i in range(n)
            ]
        ).astype(np.float32)
    if kind == "text":
        return pp.tokenize(list(REAL_TEXTS[:n]))
    if kind == "audio":
        return melspec_of_clips(raw_audio_clips("real", n))
    grey = [np.asarray(np.dot(i[..., :3].astype(np.float32), [0.299, 0.587, 0.114])) for i in sample_images()[:n]]
    if kind == "depth":  # luminance as a stand-in depth map in metres (0.5 .. 4.5 m)
        return pp.preprocess_depths([0.5 + 4.0 * g / 255.0 for g in grey])
    if kind == "thermal":
        return pp.preprocess_thermals([np.clip(g, 0, 255).astype(np.uint8) for g in grey])
    if kind == "imu":
        return _imu_motion(n)
    raise ExportError(f"no validation inputs for kind {kind!r}")


def calibration_feeds(kind: str, input_name: str, batches: int = 4) -> list[dict[str, np.ndarray]]:
    """Real inputs for static-quantization calibration (used by the benchmark's static variant)."""
    x, _ = suite_inputs(kind, "real")
    return [{input_name: x[i : i + 1]} for i in range(min(batches, len(x)))]


CALIBRATION_TEXTS = (
    "a cat sleeping on a sofa",
    "The engine of a truck starting.",
    "waves breaking on a rocky shore",
    "someone typing on a keyboard",
    "a bird singing in the morning",
    "a long caption, as search queries and alt texts often are: a red brick house with a green door, two "
    "windows, a chimney and a garden full of yellow flowers under a cloudy sky, seen from across a quiet street",
)


#: at most this many user calibration items per kind (NNCF's own default subset is 300)
MAX_CALIBRATION_ITEMS = 256


def calibration_inputs(kind: str, n: int = SUITE_SIZE, user: "np.ndarray | None" = None) -> list[np.ndarray]:
    """Single-item batches for calibrating static int8, held out from the validation suites.

    The real-media suite mirrored along its last axis (text: other sentences), or ``user``'s
    preprocessed batch where given, and layout-random inputs from another seed: the graph is
    calibrated for real media and for any input of its layout, and validated on items it never saw.
    """
    if user is not None:
        real = np.asarray(user)
    elif kind == "text":
        from bindrt import preprocess as pp

        real = pp.tokenize(list(CALIBRATION_TEXTS))
    else:
        real = np.ascontiguousarray(suite_inputs(kind, "real", n)[0][..., ::-1])
    random = _base_inputs(kind, "random-calibration", n) if not GRAPH_KINDS[kind].raw else None
    items = list(real) + (list(random) if random is not None else [])
    return [np.ascontiguousarray(x[None]) for x in items]


def calibration_from_media(kind: str, sources: "list[str]") -> np.ndarray:
    """A user's calibration inputs of ``kind``, preprocessed as ``embed`` does: files, directories
    (every file in them, sorted) or globs; text: ``.txt`` files of one caption per line.

    At most :data:`MAX_CALIBRATION_ITEMS` items; an unknown kind, a source matching nothing or a
    file that does not decode is a ConfigError / bindrt input error naming it.
    """
    import glob
    from pathlib import Path

    from bindrt import preprocess as pp
    from bindrt.errors import ConfigError

    if kind not in GRAPH_KINDS or GRAPH_KINDS[kind].raw:
        raise ConfigError(f"--calibrate {kind}=...: unknown input kind; expected one of {', '.join(pp.INPUT_KINDS)}")
    files: list[str] = []
    for source in sources:
        path = Path(source)
        found = sorted(str(f) for f in path.iterdir() if f.is_file()) if path.is_dir() else sorted(glob.glob(source))
        if not found:
            raise ConfigError(f"--calibrate {kind}={source}: no such file, directory or matching files")
        files += found
    if kind == "text":
        lines = [ln.strip() for f in files for ln in Path(f).read_text(encoding="utf-8").splitlines() if ln.strip()]
        items: list[Any] = lines
    else:
        items = files
    if not items:
        raise ConfigError(f"--calibrate {kind}: the sources hold no items")
    return pp.preprocess(kind, items[:MAX_CALIBRATION_ITEMS])


# ----------------------------------------------------------------------------- metrics
def tie_margin(metric: str, bound: float) -> float:
    return 1e-5 if metric == "max_rel_diff" else max(1.0 - bound, 1e-5)


def row_metrics(
    actual: np.ndarray, expected: np.ndarray, gallery: np.ndarray, margin: float = 1e-5
) -> dict[str, float]:
    actual = actual.astype(np.float64)
    expected = expected.astype(np.float64)
    norms = np.linalg.norm(expected, axis=-1)
    rel = np.abs(actual - expected).max(axis=-1) / np.maximum(norms, 1e-30)
    cos = (actual * expected).sum(-1) / np.maximum(np.linalg.norm(actual, axis=-1) * norms, 1e-30)
    g = gallery / np.linalg.norm(gallery, axis=-1, keepdims=True)
    sim_e = (expected / norms[:, None]) @ g.T
    top_a = np.argmax(actual @ g.T, axis=-1)
    top_e = np.argmax(sim_e, axis=-1)
    rows = np.arange(len(actual))
    agree = (top_a == top_e) | (sim_e[rows, top_e] - sim_e[rows, top_a] <= margin)
    ordered = np.sort(sim_e, axis=-1)
    ambiguous = (ordered[:, -1] - ordered[:, -2] <= margin) if g.shape[0] > 1 else np.zeros(len(actual), bool)
    return {
        "max_rel_diff": float(rel.max()),
        "min_cosine": float(cos.min()),
        "top1_agreement": float(agree.mean()),
        "ambiguous_queries": int(ambiguous.sum()),
    }


def _ok(value: float, bound: float, sense: str) -> bool:
    return bool(np.isfinite(value)) and (value <= bound if sense == "max" else value >= bound)


# ----------------------------------------------------------------------------- runner
class Reference:
    """Torch fp32 embeddings of every suite, computed once per (kind, suite) and shared by all precisions."""

    def __init__(self, encoders: dict[str, Any]) -> None:
        self.encoders = encoders
        self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def get(self, kind: str, suite: str) -> tuple[np.ndarray, np.ndarray]:
        """``(graph_input, torch_embeddings)`` for the suite's five items."""
        key = (kind, suite)
        if key not in self._cache:
            import torch

            graph_input, torch_input = suite_inputs(kind, suite)
            encoder = self.encoders[GRAPH_KINDS[kind].modality]
            with torch.inference_mode():
                emb = encoder(torch.from_numpy(np.ascontiguousarray(torch_input))).float().numpy()
            self._cache[key] = (graph_input, emb)
        return self._cache[key]


def make_session(path: str, threads: int | None = None) -> Any:
    return SessionFromOnnx(path, OrtSessionOptions(intra_op_num_threads=threads or None))()


#: ONNX protos above this are written out (with external data) before ONNX Runtime reads them
_PROTO_LIMIT = 1 << 30


def emulated_bf16_session(path: str, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session computing a bf16 graph's values in fp32 (:func:`bindrt.export.fp16.emulate_in_fp32`).

    ONNX Runtime's CPU EP has no bf16 kernels, and this is how a machine without a bf16 engine
    checks what TensorRT's bf16 engine of the graph will compute.
    """
    import onnx

    from bindrt.export.fp16 import emulate_in_fp32

    emulated, _ = emulate_in_fp32(onnx.load(path))
    options = OrtSessionOptions(intra_op_num_threads=threads or None)
    if emulated.ByteSize() < _PROTO_LIMIT:
        return SessionFromOnnx(emulated.SerializeToString(), options)()
    with tempfile.TemporaryDirectory(prefix="bindrt-bf16-") as scratch:  # ORT reads external data at load
        target = os.path.join(scratch, "emulated.onnx")
        onnx.save_model(emulated, target, save_as_external_data=True, location="emulated.onnx.data")
        return SessionFromOnnx(target, options)()


def emulated_bf16_runtime() -> dict[str, Any]:
    """``validate_graph``'s ``runtime`` record for bf16 graphs."""
    import onnxruntime as ort

    return {
        "onnxruntime": ort.__version__,
        "provider": "CPUExecutionProvider",
        "emulation": "bf16 in fp32: bf16 values, fp32 ops, every bf16 output rounded (bindrt.export.fp16.emulate_in_fp32)",
    }


def validate_graph(
    path: str,
    kind: str,
    precision: str,
    reference: Reference,
    *,
    where: str,
    session_factory: Callable[[str], Any] = make_session,
    runtime: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one graph on every suite and batch size; returns the manifest's validation record.

    Never raises on a tolerance miss: the record says ``passed: false`` and names the
    failing metric; :func:`raise_if_failed` turns that into an ExportError. ``tier`` is the
    strictest precision tier (:mod:`bindrt.tiers`) the worst metrics met. ``session_factory``
    and ``runtime`` name another engine to validate on (OpenVINO for the NNCF graphs).
    """
    import onnxruntime as ort

    from bindrt.tiers import tier_met

    metric, bound, sense = tolerance_for(kind, precision)
    start = time.perf_counter()
    try:
        session = session_factory(path)
    except Exception as exc:
        raise ExportError(f"[{where}] ONNX Runtime cannot load the graph: {str(exc).splitlines()[0][:300]}") from exc
    input_name = session.get_inputs()[0].name
    suites: dict[str, Any] = {}
    failures: list[str] = []
    worst = {"max_rel_diff": 0.0, "min_cosine": 1.0, "top1_agreement": 1.0}
    for suite in SUITES:
        graph_input, expected = reference.get(kind, suite)
        results = {}
        outputs = {}
        for bs in BATCH_SIZES:
            try:
                out = session.run(None, {input_name: graph_input[:bs]})[0]
            except Exception as exc:
                raise ExportError(
                    f"[{where}] ONNX Runtime failed at batch {bs} ({suite} inputs): {str(exc).splitlines()[0][:300]}"
                ) from exc
            if out.shape != expected[:bs].shape:
                raise ExportError(f"[{where}] output shape {out.shape} at batch {bs}, expected {expected[:bs].shape}")
            outputs[bs] = out
            m = row_metrics(out, expected[:bs], expected, tie_margin(metric, bound))
            results[f"batch_{bs}"] = m
            worst["max_rel_diff"] = max(worst["max_rel_diff"], m["max_rel_diff"])
            worst["min_cosine"] = min(worst["min_cosine"], m["min_cosine"])
            worst["top1_agreement"] = min(worst["top1_agreement"], m["top1_agreement"])
            if not _ok(m[metric], bound, sense):
                failures.append(
                    f"{metric}={m[metric]:.3g} on {suite} inputs at batch {bs} (tolerance {'<=' if sense == 'max' else '>='} {bound:g})"
                )
            if m["top1_agreement"] < MIN_TOP1_AGREEMENT:
                failures.append(
                    f"top1_agreement={m['top1_agreement']:.2f} on {suite} inputs at batch {bs} (tolerance >= {MIN_TOP1_AGREEMENT:g})"
                )
        first = outputs[min(BATCH_SIZES)]
        results["batch_consistency_max_rel_diff"] = row_metrics(
            first, outputs[max(BATCH_SIZES)][: len(first)], expected
        )["max_rel_diff"]
        suites[suite] = results
    return {
        "passed": not failures,
        "failures": failures,
        "tolerance": {
            "metric": metric,
            "bound": bound,
            "sense": sense,
            "top1_agreement": MIN_TOP1_AGREEMENT,
            "top1_tie_margin": tie_margin(metric, bound),
        },
        "reference": "bindrt torch fp32 encoder"
        + (" on the Python preprocessing of the same raw inputs" if GRAPH_KINDS[kind].raw else ""),
        "suites": suites,
        "worst": worst,
        "batch_sizes": list(BATCH_SIZES),
        **({"tier": tier} if (tier := tier_met(worst["max_rel_diff"], worst["min_cosine"])) else {}),
        "runtime": runtime or {"onnxruntime": ort.__version__, "provider": "CPUExecutionProvider"},
        "seconds": round(time.perf_counter() - start, 3),
    }


def raise_if_failed(record: dict[str, Any], where: str) -> None:
    if not record["passed"]:
        raise ExportError(f"[{where}] validation failed: " + "; ".join(record["failures"]))
