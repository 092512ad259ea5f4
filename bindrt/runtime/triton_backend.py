"""The ``triton`` backend: the torch encoders with bindrt's Triton kernels swapped in.

Swaps, per encoder, through the model's hooks (:mod:`bindrt.model.hooks`): the
attention core (fused attention on the packed projection, bias_kv folded in), the
patch stem (GEMM + LayerNorm + CLS + position in one pass), and each block's
LayerNorm, residual add + LayerNorm and bias + GELU. On CUDA,
``cuda_graphs=True`` captures fixed batch buckets as CUDA graphs so small batches
pay one launch instead of hundreds. It is opt-in: on an H200 (Triton 3.6) graph
replays disagreed with eager now and then while the same kernels without a graph
did not (benchmarks/results/2026-11-28-nvidia-h200/kernels/README.md).

Without a CUDA device the kernels cannot run natively: the backend then either
runs them through Triton's CPU interpreter (``interpret=True``; slow, for tests),
or falls back to the plain torch encoders with a warning (``fallback=True``,
the default), or refuses (``fallback=False``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

# lazy: the kernel modules (and triton) load on first use, after _prepare_kernels
from bindrt.config import ImageBindConfig
from bindrt.errors import BackendError
from bindrt.layouts import EOT_TOKEN
from bindrt.model.encoders import (
    ModalityEncoder,
    conv_patch_embed,
    imu_patch_embed,
    vision_patch_embed,
)
from bindrt.model.hooks import install_hooks
from bindrt.model.layers import add_layer_norm, layer_norm, linear_gelu, sdpa_attention
from bindrt.runtime.base import ModelSource
from bindrt.runtime.torch_backend import TorchBackend, load_encoders

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
FUSIONS = ("attention", "patch_embed", "norms")


def _kernels():
    """``bindrt.kernels``, imported when a kernel is first needed: the runtime never imports it at module level."""
    from bindrt import kernels

    return kernels


class TritonKernelFallbackWarning(UserWarning):
    """The triton backend is running plain torch encoders (no CUDA, no interpreter)."""


def _prepare_kernels(device: str, interpret: bool, fallback: bool) -> str | None:
    """Return None when kernels can run, else the reason they cannot (fallback mode)."""
    if interpret:
        if device != "cpu":
            raise BackendError("interpret=True runs Triton's CPU interpreter; use device='cpu' with it")
        os.environ.setdefault("TRITON_INTERPRET", "1")
    if interpret and not _kernels().interpreting():
        raise BackendError("interpret=True but TRITON_INTERPRET is set to a false value in the environment")
    ok, reason = _kernels().available()
    if interpret and ok:
        return None
    if device.startswith("cuda") and torch.cuda.is_available() and ok:
        return None
    if not ok:
        why = reason
    elif not torch.cuda.is_available():
        why = "torch sees no CUDA device"
    else:
        why = f"device {device!r} is not a CUDA device"
    if not fallback:
        raise BackendError(
            f"the triton backend cannot run its kernels here: {why}. Use a CUDA device, pass interpret=True "
            "(Triton's CPU interpreter, slow), or use backend='torch'"
        )
    return why


def _vision_embed(x, weight, stride, cls_token, pos_embed, norm_weight, norm_bias, eps):
    """Images through the fused kernel; real two-frame clips stay on the torch reference."""
    if x.ndim != 4 or tuple(stride) != tuple(weight.shape[2:]):
        return vision_patch_embed(x, weight, stride, cls_token, pos_embed, norm_weight, norm_bias, eps)
    return _kernels().patch_embed_vision(x, weight, cls_token, pos_embed, norm_weight, norm_bias, eps)


def _conv_embed(x, weight, stride, cls_token, pos_embed, norm_weight, norm_bias, eps):
    return _kernels().patch_embed_conv(x, weight, cls_token, pos_embed, norm_weight, norm_bias, eps, stride)


def _imu_embed(x, weight, stride, cls_token, pos_embed, norm_weight, norm_bias, eps):
    (window,) = stride
    return _kernels().patch_embed_imu(x, weight, cls_token, pos_embed, norm_weight, norm_bias, eps, window)


def kernel_hooks(fusion: str) -> dict[Callable, Callable]:
    """The model's reference hook implementations that ``fusion`` replaces, mapped to kernel-backed ones."""
    return {
        "attention": {sdpa_attention: _kernels().fused_attention},
        "patch_embed": {vision_patch_embed: _vision_embed, conv_patch_embed: _conv_embed, imu_patch_embed: _imu_embed},
        "norms": {
            layer_norm: _kernels().layer_norm,
            add_layer_norm: _kernels().add_layer_norm,
            linear_gelu: _kernels().linear_gelu,
        },
    }[fusion]


def capture_cuda_graph(fn, static_in: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, Any]:
    """Capture ``fn(static_in)``; replaying the graph recomputes the returned output in place.

    Two warm-up calls on a side stream first, so Triton compiles its kernels outside
    the capture. The one capture routine the backend, its benchmark and
    ``benchmarks/kernels/diagnose_gpu.py`` share.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = fn(static_in)
    return graph, static_out


def patch_with_kernels(encoder: ModalityEncoder, fusions: tuple[str, ...] = FUSIONS) -> dict[str, int]:
    """Swap kernels into one encoder's hooks in place; per fusion, how many places it went into.

    A place is an attention layer, a patch stem, or a block (its LayerNorm, residual add +
    LayerNorm and bias + GELU): the most hooks any one replaced function was installed in.
    """
    return {f: max(install_hooks(encoder, kernel_hooks(f)).values(), default=0) for f in fusions}


class TritonBackend(TorchBackend):
    name = "triton"
    precisions = ("fp32", "fp16", "bf16")

    def __init__(
        self,
        encoders: dict[str, ModalityEncoder],
        config: ImageBindConfig,
        device: str = "cuda",
        precision: str = "fp32",
        *,
        kernels_off_reason: str | None = None,
        fusions: tuple[str, ...] = FUSIONS,
        cuda_graphs: bool = False,
        buckets: tuple[int, ...] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(encoders, config, device, precision)
        self.kernels_off_reason = kernels_off_reason
        self.fusion_counts: dict[str, dict[str, int]] = {}
        if kernels_off_reason is None:
            if "attention" in fusions:  # unsupported head dims fail here, not at the first call
                for m in self.encoders:
                    _kernels().head_dim_parts(config.head_dim(m))
            self.fusion_counts = {m: patch_with_kernels(e, fusions) for m, e in self.encoders.items()}
        self.buckets = tuple(sorted(set(buckets)))
        self.use_graphs = cuda_graphs and kernels_off_reason is None and self.torch_device.type == "cuda"
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def open(
        cls,
        source: ModelSource,
        *,
        modalities: tuple[str, ...],
        device: str = "cuda",
        precision: str = "fp32",
        interpret: bool = False,
        fallback: bool = True,
        fusions: tuple[str, ...] | list[str] = FUSIONS,
        cuda_graphs: bool = False,
        buckets: tuple[int, ...] = DEFAULT_BUCKETS,
        verify: bool = True,
        **options: Any,
    ) -> "TritonBackend":
        if options:
            raise BackendError(f"unknown option(s) for the triton backend: {sorted(options)}")
        unknown = sorted(set(fusions) - set(FUSIONS))
        if unknown:
            raise BackendError(f"unknown fusion(s) {unknown}; expected a subset of {list(FUSIONS)}")
        reason = _prepare_kernels(device, interpret, fallback)
        if reason is not None:
            warnings.warn(
                f"triton backend: kernels are off ({reason}); running the plain torch encoders",
                TritonKernelFallbackWarning,
                stacklevel=3,
            )
            if device.startswith("cuda") and not torch.cuda.is_available():
                device = "cpu"
        encoders = load_encoders(source, modalities, verify)
        return cls(
            encoders,
            source.config,
            device,
            precision,
            kernels_off_reason=reason,
            fusions=tuple(fusions),
            cuda_graphs=cuda_graphs,
            buckets=tuple(buckets),
        )

    def max_batch_size(self, kind: str) -> int | None:
        return self.buckets[-1] if self.use_graphs else None

    @torch.inference_mode()
    def run(self, kind: str, batch: np.ndarray) -> np.ndarray:
        if not self.use_graphs:
            return super().run(kind, batch)
        n = len(batch)
        bucket = next(b for b in self.buckets if b >= n)
        graph, static_in, static_out = self._graph_for(kind, bucket, batch.shape[1:])
        static_in[:n].copy_(self.to_tensor(kind, batch))
        if n < bucket:  # replicate a real row: padding must be valid input (e.g. text ids with an EOT)
            static_in[n:].copy_(static_in[:1].expand(bucket - n, *static_in.shape[1:]))
        graph.replay()
        return static_out[:n].float().cpu().numpy()

    def _graph_for(self, kind: str, bucket: int, item_shape: tuple[int, ...]):
        key = (kind, bucket, item_shape)
        if key not in self._graphs:
            encoder = self.encoder_for(kind)
            dtype = torch.int64 if kind == "text" else self.dtype
            static_in = torch.zeros((bucket, *item_shape), dtype=dtype, device=self.torch_device)
            if kind == "text":
                static_in[:, 0] = EOT_TOKEN  # a valid end-of-text position for the warm-up runs
            graph, static_out = capture_cuda_graph(encoder, static_in)
            self._graphs[key] = (graph, static_in, static_out)
        return self._graphs[key]

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["kernels"] = "off: " + self.kernels_off_reason if self.kernels_off_reason else "on"
        info["fusions"] = self.fusion_counts
        info["cuda_graphs"] = self.use_graphs
        return info

    def close(self) -> None:
        self._graphs.clear()
        super().close()
