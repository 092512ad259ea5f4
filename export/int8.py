"""int8 graphs for CPU inference through ONNX Runtime quantization.

Choice: **dynamic quantization of the weight MatMuls** (``quantize_dynamic``,
signed int8 weights per output channel, uint8 activations quantized per tensor
at run time, ``MatMulConstBOnly``), everything else fp32:

* Most of the CPU time of these encoders (~60% in fp32) is the token-wise Linear layers (QKV, out
  projection, the two MLP layers); ONNX Runtime fuses each quantized MatMul into
  ``DynamicQuantizeMatMul`` (VNNI / AVX2 int8 GEMM), which is where the speed-up
  is. Attention score/value products (activation x activation), Softmax,
  LayerNorm and GELU stay fp32: quantizing them costs accuracy and buys little.
* Activation ranges in these transformers are dominated by per-token outliers
  after LayerNorm and GELU, and they differ by input (a silent audio clip and a
  chirp, a photo and a depth map). Dynamic quantization measures the range of
  every tensor on every call, so no calibration set can be unrepresentative.
  Static (calibrated) QDQ was measured as the alternative (``method="static"``:
  QDQ, per-channel, MinMax on real inputs; ``benchmarks/onnx/bench_cpu.py``
  compares both): on the imagebind_huge depth tower (random weights, one thread,
  CPU time per batch-1 call) static took 98 ms against 67 ms dynamic (the CPU EP
  runs the QDQ pairs around every LayerNorm/GELU/Softmax), at the same accuracy
  (min cosine vs torch 0.99984 static, 0.99982 dynamic, real inputs).
* The price: one activation range per tensor *per call*, measured over the whole
  batch, so an item's embedding depends slightly on what it is batched with (the
  manifest records ``batch_invariant: false``). In the trunk every quantized activation
  follows a LayerNorm (QKV, fc1) or is built from one (attention output, GELU), which
  bounds the shift. MatMuls before the first LayerNorm (IMU's Linear stem) read the raw
  signal, so they stay fp32 (:func:`stem_matmuls`; quantized, they moved IMU embeddings 5x
  more). The tests check the shift stays inside the int8 tolerance with batch-mates 4x
  the item's scale. A serving stack that needs bit-identical embeddings across
  batchings uses fp32/fp16, or ``method="static"``.
* Per-channel weight scales: one scale per output channel keeps each channel's
  weight error at its own resolution; measured on the same tower: min cosine
  0.99952 per-channel vs 0.99941 per-tensor, and no slower (67 vs 76 ms).
* In the fused graph the attention nodes (``com.microsoft.Attention``) become
  ``QAttention`` (int8 QKV projection inside the attention kernel): 64 ms against
  92 ms when only the MatMuls are quantized.
* Convolutions (one patch-embedding Conv per encoder) stay fp32: ONNX Runtime's
  ``ConvInteger`` has no optimised kernel and the stem is a small share of time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import onnx

DEFAULT_METHOD = "dynamic"


def quantize(
    model: onnx.ModelProto,
    *,
    method: str = DEFAULT_METHOD,
    per_channel: bool = True,
    calibration: Sequence[dict[str, np.ndarray]] | None = None,
    op_types: Iterable[str] = ("MatMul", "Attention"),
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Quantize an fp32 graph; returns the int8 graph and a summary for the manifest."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod

    op_types = list(op_types)
    # Only com.microsoft.Attention has a quantized form (QAttention); opset >= 23 graphs may hold the
    # standard ONNX Attention op, which the quantizer would otherwise mistake for it.
    excluded = [n for n in model.graph.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")]
    excluded += stem_matmuls(model)
    if any(not n.name for n in excluded):
        raise ValueError("unnamed ONNX Attention or stem MatMul nodes cannot be excluded from quantization")
    exclude = [n.name for n in excluded]
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bindrt-int8-") as tmp, contextlib.redirect_stdout(io.StringIO()):
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        large = sum(len(t.raw_data) for t in model.graph.initializer) > (1 << 30)
        onnx.save_model(model, str(src), save_as_external_data=large, location="fp32.onnx.data" if large else None)
        try:
            if method == "dynamic":
                quantize_dynamic(
                    src,
                    dst,
                    op_types_to_quantize=op_types,
                    per_channel=per_channel,
                    reduce_range=False,
                    weight_type=QuantType.QInt8,
                    use_external_data_format=large,
                    nodes_to_exclude=exclude,
                    extra_options={"MatMulConstBOnly": True},
                )
                # The range spans the whole batch, so batch-mates shift an item's embedding slightly.
                details = {
                    "activations": "uint8, per tensor, range measured at run time over the whole batch",
                    "calibration": None,
                    "batch_invariant": False,
                }
            elif method == "static":
                if not calibration:
                    raise ValueError("static quantization needs calibration inputs")

                class Reader(CalibrationDataReader):
                    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
                        self._it = iter(feeds)

                    def get_next(self):
                        return next(self._it, None)

                quantize_static(
                    src,
                    dst,
                    Reader(calibration),
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=op_types,
                    per_channel=per_channel,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    use_external_data_format=large,
                    nodes_to_exclude=exclude,
                    extra_options={"MatMulConstBOnly": True, "ActivationSymmetric": False},
                )
                details = {
                    "activations": "uint8, per tensor, calibrated (MinMax)",
                    "calibration": {"batches": len(calibration)},
                    "batch_invariant": True,
                }
            else:
                raise ValueError(f"unknown quantization method {method!r}; expected 'dynamic' or 'static'")
        finally:
            logger.setLevel(level)
        out = onnx.load(str(dst))
    quantized = sum(
        1
        for n in out.graph.node
        if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "QAttention")
    )
    quantized += sum(
        1
        for n in out.graph.node
        if n.op_type == "DequantizeLinear" and any("weight" in i or "val" in i for i in n.input[:1])
    )
    summary = {
        "tool": "onnxruntime.quantization",
        "method": method,
        "format": "QOperator (MatMulInteger)" if method == "dynamic" else "QDQ",
        "weights": "int8 symmetric, " + ("per output channel" if per_channel else "per tensor"),
        "op_types": op_types,
        "matmul_const_b_only": True,
        "quantized_nodes": quantized,
        "kept_fp32": sorted(exclude),
        **details,
    }
    return out, summary


def stem_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """MatMuls before the first LayerNorm: they read the raw signal (IMU's Linear patch stem).

    A per-tensor range over a raw batch lets one loud item coarsen every other item's
    quantization; after a LayerNorm the ranges are per-token bounded. They are a tiny share
    of the work, so they stay fp32.
    """
    nodes = list(model.graph.node)
    first_norm = next(
        (i for i, n in enumerate(nodes) if n.op_type in ("LayerNormalization", "SkipLayerNormalization")), 0
    )
    return [n for n in nodes[:first_norm] if n.op_type == "MatMul"]
