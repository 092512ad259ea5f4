"""The roofline: analytic FLOPs per item of each encoder, the machine's measured peaks, and the two side by side.

A benchmark row's items/s says little on its own; against the FLOPs an item costs and the
rate this machine's matmul units and memory actually reach, it says how far the backend is
from what the hardware can do. Everything here is torch-free (numpy only): torch is imported
only to measure bf16/fp16 or CUDA peaks, when asked.

FLOPs count multiply-adds x2 of the GEMMs and convolutions the encoder runs, as
``torch.utils.flop_counter`` does (``tests/test_roofline.py`` checks the two agree exactly).
Neither counts LayerNorm, GELU, softmax, the residual and bias adds, the position add, the
token embedding lookup, the clip mean or the output normalisation: at imagebind_huge's widths they
are of the order of 1 % of the FLOPs (they matter for time, far less for the FLOP count).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from bindrt.config import ImageBindConfig, resolve_config
from bindrt.errors import ConfigError
from bindrt.layouts import ALL_LAYOUTS, CONTEXT_LENGTH, IMAGE_SIZE, IMU_CHANNELS, IMU_SAMPLES

#: Square matmul sizes tried for a CPU peak (the best of them counts).
CPU_MATMUL_SIZES = (1024, 2048, 3072)
#: Samples per IMU token (``bindrt.model.encoders.IMU_WINDOW``).
IMU_WINDOW = 8


@dataclass(frozen=True)
class Stem:
    in_channels: int
    extent: tuple[int, ...]  # spatial (and temporal) size the kernel slides over
    kernel: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def patches(self) -> int:
        return math.prod((n - k) // s + 1 for n, k, s in zip(self.extent, self.kernel, self.stride))

    @property
    def macs_per_patch_channel(self) -> int:
        """Multiply-adds of one patch into one output channel (no bias, no padding)."""
        return self.in_channels * math.prod(self.kernel)


#: The stems of ``bindrt.model.encoders.build_tokenizer``, restated here to stay torch-free (the test checks
#: them against the torch model). Vision repeats an image to two frames, so images and video clips share the
#: 3D stem.
STEMS: dict[str, Stem] = {
    "vision": Stem(3, (2, IMAGE_SIZE, IMAGE_SIZE), (2, 14, 14), (2, 14, 14)),
    "audio": Stem(1, (128, 204), (16, 16), (10, 10)),  # 12 x 19 patches
    "depth": Stem(1, (IMAGE_SIZE, IMAGE_SIZE), (16, 16), (16, 16)),
    "thermal": Stem(1, (IMAGE_SIZE, IMAGE_SIZE), (16, 16), (16, 16)),
    # windows of 8 samples x 6 channels through a Linear: a 1D "convolution" of kernel = stride = 8
    "imu": Stem(IMU_CHANNELS, (IMU_SAMPLES,), (IMU_WINDOW,), (IMU_WINDOW,)),
}
#: Towers whose attention appends a learned bias_k/bias_v key (``add_bias_kv``): keys = tokens + 1.
BIAS_KV = frozenset({"audio", "depth", "thermal", "imu"})


@dataclass(frozen=True)
class TowerShape:
    """What the FLOP count needs of one tower: width, depth, sequence length, keys per query, clips per item."""

    modality: str
    dim: int
    blocks: int
    heads: int
    out_dim: int
    tokens: int  # incl. CLS (text: the 77 context positions)
    keys: int  # tokens + 1 where bias_k/bias_v add a key
    clips: int  # sequences per input item


def tower_shape(
    config: "ImageBindConfig | str | PathLike[str] | Mapping[str, Any]", kind: str, clips: int | None = None
) -> TowerShape:
    """The shape of ``kind``'s tower; ``clips`` defaults to the layout's (audio 3, video 15), 1 elsewhere.

    Raw-media kinds (``audio_waveform``, ``vision_uint8``) count as the kind they preprocess to;
    the in-graph preprocessing is not counted.
    """
    cfg = resolve_config(config)
    if kind not in ALL_LAYOUTS:
        raise ConfigError(f"unknown input kind {kind!r}; expected one of {', '.join(ALL_LAYOUTS)}")
    layout = ALL_LAYOUTS[kind]
    modality = layout.encoder
    if clips is None:
        clips = layout.default_clips if layout.multi_clip else 1
    elif not isinstance(clips, int) or clips < 1 or (clips > 1 and not layout.multi_clip):
        raise ConfigError(f"clips={clips!r} for {kind!r}; expected a positive integer, and 1 for single-clip kinds")
    tokens = CONTEXT_LENGTH if modality == "text" else STEMS[modality].patches + 1
    return TowerShape(
        modality=modality,
        dim=cfg.embed_dim(modality),
        blocks=cfg.num_blocks(modality),
        heads=cfg.num_heads(modality),
        out_dim=cfg.out_embed_dim,
        tokens=tokens,
        keys=tokens + (modality in BIAS_KV),
        clips=clips,
    )


def trunk_flops(dim: int, tokens: int, keys: int, blocks: int, pooled_last_block: bool) -> dict[str, float]:
    """Multiply-add FLOPs (x2) per sequence of the transformer blocks, by weight GEMM and attention core.

    ``keys`` counts the appended bias_k/bias_v key where the modality has one; text's causal
    attention is counted over the full score matrix, as SDPA computes it. With the pooled last
    block (``ModalityEncoder.embed_pooled``, what the ONNX exports run) only the pooled row is
    projected to Q and goes through the attention, out_proj and the MLP; K and V are still
    projected for every row.
    """
    full = blocks - 1 if pooled_last_block and blocks else blocks
    flops = {
        "qkv": full * 2 * tokens * dim * 3 * dim,
        "out_proj": full * 2 * tokens * dim * dim,
        "fc1": full * 2 * tokens * dim * 4 * dim,
        "fc2": full * 2 * tokens * 4 * dim * dim,
        "attention_core": full * 4 * tokens * keys * dim,  # Q K^T and P V, 2 * tokens * keys * dim each
    }
    if pooled_last_block and blocks:
        flops["qkv"] += 2 * tokens * dim * 2 * dim + 2 * dim * dim
        flops["out_proj"] += 2 * dim * dim
        flops["fc1"] += 2 * dim * 4 * dim
        flops["fc2"] += 2 * 4 * dim * dim
        flops["attention_core"] += 4 * keys * dim
    return {k: float(v) for k, v in flops.items()}


def encoder_flops(
    config: "ImageBindConfig | str | PathLike[str] | Mapping[str, Any]",
    kind: str,
    *,
    clips: int | None = None,
    pooled_last_block: bool = False,
) -> dict[str, float]:
    """FLOPs (multiply-adds x2) per input item of ``kind``'s encoder, by part, all clips included.

    Keys: ``stem`` (patch convolution / IMU linear; 0 for text's embedding lookup), the
    attention's ``qkv``, ``scores`` (Q K^T), ``context`` (P V), ``out_proj`` and their sum
    ``attention``, the MLP's ``fc1``, ``fc2`` and their sum ``mlp``, ``head`` (final projection of
    the pooled token; its LayerNorm is not counted) and ``total``. ``pooled_last_block=False`` is
    the reference forward (the torch backend); True is the ONNX graphs', whose last block
    computes the pooled row only.
    """
    s = tower_shape(config, kind, clips)
    trunk = trunk_flops(s.dim, s.tokens, s.keys, s.blocks, pooled_last_block)
    stem = (
        0.0
        if s.modality == "text"
        else 2.0 * STEMS[s.modality].patches * s.dim * STEMS[s.modality].macs_per_patch_channel
    )
    per_sequence = {
        "stem": stem,
        "qkv": trunk["qkv"],
        "scores": trunk["attention_core"] / 2,
        "context": trunk["attention_core"] / 2,
        "out_proj": trunk["out_proj"],
        "fc1": trunk["fc1"],
        "fc2": trunk["fc2"],
        "head": 2.0 * s.dim * s.out_dim,
    }
    out = {k: s.clips * v for k, v in per_sequence.items()}
    out["attention"] = out["qkv"] + out["scores"] + out["context"] + out["out_proj"]
    out["mlp"] = out["fc1"] + out["fc2"]
    out["total"] = out["stem"] + out["attention"] + out["mlp"] + out["head"]
    return out


def _best_rate(fn: Callable[[], object], work: float, seconds: float, sync: Callable[[], None]) -> float:
    """``work`` per second of ``fn``'s fastest burst within ``seconds`` (after one warm-up call).

    A peak is the best the machine does: other load only ever slows a burst, so the fastest one
    is the estimate least inflated by a shared machine. Bursts grow until each lasts ~10 ms,
    so the timer and the CUDA sync are noise.
    """
    fn()
    sync()
    burst, best, deadline = 1, 0.0, time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        for _ in range(burst):
            fn()
        sync()
        elapsed = time.perf_counter() - start
        best = max(best, work * burst / max(elapsed, 1e-9))
        if time.perf_counter() >= deadline:
            return best
        if elapsed < 0.01:
            burst *= 2


def measure_peaks(
    seconds: float = 1.0,
    *,
    device: str = "cpu",
    precisions: tuple[str, ...] = ("fp32",),
    matmul_n: int | None = None,
    copy_bytes: int | None = None,
) -> dict[str, Any]:
    """This machine's peaks, measured now: one large square matmul per precision, one large copy.

    ``seconds`` is spent on each measurement. CPU fp32 is the fastest of numpy's BLAS, ONNX
    Runtime's MLAS and torch's, where installed: on an AMD EPYC (AVX-512, 2 cores) MLAS reached
    436 GFLOP/s where numpy and torch reached 250 and 200, and a "peak" the engines' own GEMMs
    exceed would not be one. bf16/fp16 and every CUDA measurement use torch. The copy's GB/s counts bytes read plus bytes written. Defaults: an 8192^2 matmul
    and a 1 GiB copy on CUDA; on CPU the best of ``CPU_MATMUL_SIZES`` and a 256 MiB copy (past the caches).
    Returns ``{"device", "matmul_gflops": {precision: GFLOP/s}, "copy_gbs", "matmul_n", "copy_bytes"}``.
    """
    unknown = sorted(set(precisions) - {"fp32", "bf16", "fp16"})
    if unknown or device not in ("cpu", "cuda"):
        raise ConfigError(
            f"measure_peaks: device {device!r}, precisions {list(precisions)}; expected cpu|cuda, fp32|bf16|fp16"
        )
    cuda = device == "cuda"
    n = matmul_n or (8192 if cuda else CPU_MATMUL_SIZES[-1])
    sizes = (n,) if matmul_n or cuda else CPU_MATMUL_SIZES
    nbytes = copy_bytes or ((1 << 30) if cuda else (256 << 20))

    def nothing() -> None:
        return None

    gflops: dict[str, float] = {}
    by_library: dict[str, float] = {}
    if not cuda and "fp32" in precisions:
        rng = np.random.default_rng(0)
        for size in sizes:  # a library's best square size varies with its blocking: keep the best of each
            a, b = (
                rng.standard_normal((size, size), dtype=np.float32),
                rng.standard_normal((size, size), dtype=np.float32),
            )
            c = np.empty_like(a)
            rates = {"numpy": _best_rate(lambda: np.matmul(a, b, out=c), 2.0 * size**3, seconds, nothing) / 1e9}
            ort_matmul = _onnxruntime_matmul(size)
            if ort_matmul is not None:
                rates["onnxruntime"] = _best_rate(lambda: ort_matmul(a, b), 2.0 * size**3, seconds, nothing) / 1e9
            for lib, rate in rates.items():
                by_library[lib] = max(rate, by_library.get(lib, 0.0))
            del a, b, c
        gflops["fp32"] = max(by_library.values())
    torch = _torch_if_installed(cuda or any(p != "fp32" for p in precisions))
    if torch is not None:
        sync = torch.cuda.synchronize if cuda else nothing
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        for p in precisions:
            for size in sizes:
                x = torch.randn(size, size, device=device, dtype=dtypes[p])
                y = torch.randn(size, size, device=device, dtype=dtypes[p])
                rate = _best_rate(lambda: torch.matmul(x, y), 2.0 * size**3, seconds, sync) / 1e9
                if p == "fp32" and not cuda:
                    by_library["torch"] = max(rate, by_library.get("torch", 0.0))
                gflops[p] = max(rate, gflops.get(p, 0.0))  # CPU fp32: the fastest GEMM library here
                del x, y
    if cuda:
        src_t = torch.ones(nbytes // 4, device=device, dtype=torch.float32)
        dst_t = torch.empty_like(src_t)
        copy_gbs = _best_rate(lambda: dst_t.copy_(src_t), 2.0 * src_t.numel() * 4, seconds, sync) / 1e9
        del src_t, dst_t
    else:
        src = np.ones(nbytes // 4, np.float32)
        dst = np.empty_like(src)
        copy_gbs = _best_rate(lambda: np.copyto(dst, src), 2.0 * src.nbytes, seconds, nothing) / 1e9
    return {
        "device": device,
        "matmul_gflops": {p: gflops[p] for p in precisions},
        "fp32_matmul_gflops_by_library": by_library,
        "copy_gbs": copy_gbs,
        "matmul_n": n if len(sizes) == 1 else list(sizes),
        "copy_bytes": (nbytes // 4) * 4,
    }


def _onnxruntime_matmul(n: int) -> "Callable[[np.ndarray, np.ndarray], object] | None":
    """An ONNX Runtime session running one (n, n) x (n, n) MatMul, or None without onnx/onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    spec = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "abc"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "peak", spec[:2], spec[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda a, b: session.run(None, {"a": a, "b": b})


def _torch_if_installed(required: bool):
    """torch, if installed (needed for bf16/fp16 and CUDA peaks: ``required``); None without it on CPU fp32."""
    try:
        import torch
    except ImportError:
        if required:
            raise
        return None
    return torch


def roofline_row(
    flops_per_item: "float | Mapping[str, float]", items_per_s: float, peaks: Mapping[str, Any], precision: str = "fp32"
) -> dict[str, float | None]:
    """A benchmark row's place under the roofline: achieved GFLOP/s and its percent of the measured peak.

    ``flops_per_item`` is a number or :func:`encoder_flops`'s dict (its ``total``); ``peaks``
    is :func:`measure_peaks`'s result. ``percent_of_peak`` is None where no peak was measured
    for ``precision`` (int8, say): a percent of another precision's peak would mislead.
    """
    flops = float(flops_per_item["total"] if isinstance(flops_per_item, Mapping) else flops_per_item)
    achieved = flops * float(items_per_s) / 1e9
    peak = peaks.get("matmul_gflops", {}).get(precision)
    return {
        "gflop_per_item": flops / 1e9,
        "achieved_gflops": achieved,
        "achieved_tflops": achieved / 1e3,
        "peak_gflops": float(peak) if peak else None,
        "percent_of_peak": 100.0 * achieved / float(peak) if peak else None,
    }
