"""int8 and fp8 Q/DQ graphs for TensorRT: NVIDIA Model Optimizer's ONNX post-training quantization.

TensorRT builds explicitly quantized engines from QuantizeLinear/DequantizeLinear graphs: int8
on Ampere and later, float8 (E4M3) on Hopper and Blackwell. Model Optimizer
(``nvidia-modelopt``, :func:`modelopt.onnx.quantization.quantize`) writes such graphs with
TensorRT's placement rules (inputs of MatMul/Gemm/Conv and of residual Adds, weights per output
channel, no output quantization) and calibrates them on ONNX Runtime's CPU EP, so a CPU machine
exports them; ONNX Runtime's CPU EP also runs them (float8 QuantizeLinear/DequantizeLinear from
opset 19, which Model Optimizer upgrades every graph to), and that is where they are validated
against torch fp32 like every other graph.

Recipe (measured on the golden model, ``tests/golden``, Model Optimizer 0.47, ONNX Runtime 1.32
CPU; worst min cosine over the random and real suites at batch 1 and 5):

* ``high_precision_dtype="fp32"``: the non-quantized part stays fp32, and TensorRT lowers it when
  built with fp16 allowed; the CPU validation then measures the quantization alone. Model
  Optimizer's default fp16 cost little once attention stays fp32 at int8 (0.9963-0.9993) but
  compounds with other losses (int8 depth, ``entropy``, attention quantized: 0.950 -> 0.943);
* int8 keeps attention's activation-by-activation MatMuls fp32 (``disable_mha_qdq``). With
  Model Optimizer's defaults (attention and stems quantized, ``max``) the worst were audio 0.924,
  depth 0.931, imu 0.944, thermal 0.966 and vision 0.975; keeping the stems fp32 alone changed
  little (audio 0.924, thermal 0.962); with attention fp32 as well every tower met 0.9959 or better.
  fp8 keeps them quantized (Model Optimizer's default, for TensorRT's fp8 fused attention):
  keeping them fp32 did not help there (thermal 0.9897 against 0.9909);
* the patch-embedding stems (every ``Conv``; IMU's Linear stem,
  :func:`bindrt.export.int8.stem_matmuls`) stay fp32, as in :mod:`bindrt.export.int8_nncf`: they
  read the raw signal, whose range differs from input to input (int8, attention fp32: depth 0.979
  with the stem quantized, 0.9975 without);
* calibration: int8 ``max`` (``entropy``, which clips the ranges: audio 0.987, imu 0.984), fp8
  ``entropy`` (``max``: audio 0.9895, thermal 0.9892); on the held-out inputs of
  :func:`bindrt.export.validate.calibration_inputs` (the real-media suite mirrored plus
  layout-random inputs from another seed);
* int8 also keeps the first block's attention out-projection and MLP fc2 fp32
  (:data:`FIRST_BLOCK_OUT`, :func:`matmul_groups`): the only weight MatMuls that read activations
  no LayerNorm bounds (the GELU output, attention's output) in the block that reads the stem's
  output. The golden towers met the tolerance without it (0.9959 or better), a real-size one did
  not: on imagebind_huge depth (12 blocks, random weights, ``benchmarks/onnx/qdq_tolerances.py``,
  ``benchmarks/results/2026-12-01-epyc/export/2026-12-01-qdq-depth.md``) the recipes above met
  the real suite (0.9996) and missed the layout-random one (``max`` 0.9376, ``entropy`` 0.9519).
  Quantizing one group at a time (the rest fp32; random / real suite): qkv 0.9999 / 1.0, MLP fc1
  0.9997 / 1.0, attention out-projection 0.9841 / 0.9999, MLP fc2 0.9385 / 0.9998, and fc2 of
  block 0 alone 0.9379 (of blocks 1-11: 0.9988-1.0). Kept fp32 on top of the recipes above,
  ``max``: block 0's fc2 0.9781, blocks 0-1's fc2 0.9801, block 0's out-projection 0.9347, both of
  block 0's 0.9965 / 0.9997 (47 of the 49 weight MatMuls the recipes above quantize still
  quantized), all of block 0 0.9967, every fc2 0.9818, every fc2 and out-projection 0.9996 (25
  quantized); ``entropy``: block 0's fc2 0.9840, both of block 0's 0.9968 / 0.9998. Model
  Optimizer 0.47's int8 offers no other calibration (``max`` or ``entropy``; no percentile, no
  SmoothQuant in its ONNX path).

Measured worst min cosine of the first recipes (int8 >= 0.98 and fp8 >= 0.99 required):

========  ======  ======  ======  ======  ======  =======  ======
mode      vision  video   text    audio   depth   thermal  imu
========  ======  ======  ======  ======  ======  =======  ======
int8      0.9998  0.9999  0.9994  0.9993  0.9997  0.9993   0.9993
fp8       0.9970  0.9973  0.9957  0.9935  0.9951  0.9909   0.9934
========  ======  ======  ======  ======  ======  =======  ======

(int8 before the first block's projections were kept fp32: vision 0.9994, video 0.9996, text
0.9984, audio 0.9992, depth 0.9975, thermal 0.9959, imu 0.9976; with them, ``entropy``:
0.9837-0.9994, worst imu and audio.) Each took 0.2-0.8 s to quantize on 2 CPU cores
(imagebind_huge depth: 5-9 s). fp8 loses more than int8 (E4M3 keeps 3 mantissa bits: a relative
step of 1/16-1/8 at every magnitude) and thermal's margin is thin; :data:`RECIPES` lists the
fall-backs an export tries in order, as the NNCF stage does.

Installing Model Optimizer without its ``[onnx]`` extra keeps the CPU stack: the extra pins
``onnxruntime-gpu`` and ``cupy-cuda12x`` on Linux x86_64, which replace the CPU ``onnxruntime``.
Beyond bindrt's ``[onnx]`` extra and torch, :mod:`modelopt.onnx.quantization` imports
onnx-graphsurgeon, onnxslim, lief and nvidia-ml-py; the rest are Model Optimizer's base
requirements, pinned so that ``pip check`` stays clean and nothing else is resolved::

    pip install --no-deps nvidia-modelopt==0.47.0 onnx-graphsurgeon==0.6.1 onnxslim==0.1.98 \\
        lief==1.0.0 nvidia-ml-py==13.615.71 colorama==0.4.6 PyYAML==6.0.4 omegaconf==2.4.0 \\
        PuLP==3.3.2 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5

Model Optimizer patches ONNX Runtime's quantization module when it quantizes (calibrator
methods, the QDQ and QLinear operator registries); :func:`quantize_modelopt` restores them
afterwards, so ONNX Runtime's own int8 (:mod:`bindrt.export.int8`) in the same process is
unchanged.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import onnx

from bindrt.errors import ExportError
from bindrt.export.int8 import stem_matmuls

VARIANT = "modelopt"
MODES = ("int8", "fp8")
#: mode -> worst min cosine against torch fp32 that a graph must meet (``validate.TOLERANCES`` knows int8 only)
MIN_COSINE = {"int8": 0.98, "fp8": 0.99}
#: inputs larger than this go to ONNX external data in the scratch directory Model Optimizer works in
EXTERNAL_DATA_BYTES = 1 << 30


@dataclass(frozen=True)
class Recipe:
    calibration_method: str  # "max" or "entropy"
    attention_qdq: bool  # quantize attention's activation-by-activation MatMuls (False: disable_mha_qdq)
    fp32_stem: bool = True  # keep every Conv and the stem MatMuls fp32
    #: more weight MatMuls kept fp32: a group of :data:`GROUPS` (every block's), or ``group[i]``: the group's
    #: i-th MatMul in graph order, block i's (negative: from the last; qkv has two in a pooled last block),
    #: e.g. ``("mlp_out[0]",)``; see :func:`matmul_groups`
    fp32_groups: tuple[str, ...] = ()


#: the first block's attention out-projection and MLP fc2: they read activations no LayerNorm bounds
FIRST_BLOCK_OUT = ("attn_out[0]", "mlp_out[0]")
#: mode -> recipes tried in order until one validates, the best measured first (module docstring).
RECIPES: dict[str, dict[str, Recipe]] = {
    "int8": {
        "max-fp32-attention-first-block-out": Recipe("max", attention_qdq=False, fp32_groups=FIRST_BLOCK_OUT),
        "entropy-fp32-attention-first-block-out": Recipe("entropy", attention_qdq=False, fp32_groups=FIRST_BLOCK_OUT),
        "max-fp32-attention": Recipe("max", attention_qdq=False),
        "entropy-fp32-attention": Recipe("entropy", attention_qdq=False),
    },
    "fp8": {
        "entropy": Recipe("entropy", attention_qdq=True),
        "entropy-fp32-attention": Recipe("entropy", attention_qdq=False),
        "max": Recipe("max", attention_qdq=True),
    },
}
_FORMATS = {
    "int8": ("int8", "int8 symmetric, per output channel (Q/DQ pairs on the fp32 weights)"),
    "fp8": ("float8 e4m3fn", "float8 e4m3fn, per output channel (Q/DQ pairs on the fp32 weights)"),
}
_COMPUTE_OPS = ("MatMul", "Gemm", "Conv")


def quantize_modelopt(
    model: "onnx.ModelProto | str | os.PathLike[str]",
    calibration: Sequence[dict[str, np.ndarray]],
    *,
    mode: str,
    where: str,
    recipe: str | None = None,
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The fp32 graph quantized by Model Optimizer -> (Q/DQ graph, the manifest's quantization record).

    ``calibration``: single-input feeds ``{input_name: batch}``, one calibration step each (their
    shapes may differ). ``recipe``: a key of ``RECIPES[mode]`` (default: the first).
    """
    if mode not in MODES:
        raise ValueError(f"unknown Model Optimizer mode {mode!r}; expected one of {', '.join(MODES)}")
    recipe = recipe or next(iter(RECIPES[mode]))
    if recipe not in RECIPES[mode]:
        raise ValueError(f"unknown {mode} recipe {recipe!r}; expected one of {', '.join(RECIPES[mode])}")
    plan = RECIPES[mode][recipe]
    try:
        import modelopt
        from modelopt.onnx.quantization import quantize
        from onnxruntime.quantization import CalibrationDataReader
    except ImportError as exc:
        raise ExportError(
            f"[{where}] {mode} Q/DQ needs NVIDIA Model Optimizer (pip install --no-deps nvidia-modelopt plus its "
            f"ONNX dependencies, see bindrt.export.qdq_modelopt): {exc}"
        ) from exc
    if not calibration:
        raise ExportError(f"[{where}] {mode} Q/DQ needs calibration inputs")
    source = onnx.load(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else model
    inputs = [i.name for i in source.graph.input]
    if any(set(feed) != set(inputs) for feed in calibration):
        raise ExportError(f"[{where}] calibration feeds must name the graph's inputs {inputs}")
    kept = ([n for n in source.graph.node if n.op_type == "Conv"] + stem_matmuls(source)) if plan.fp32_stem else []
    if plan.fp32_groups:
        kept += [n for n in grouped_matmuls(source, plan.fp32_groups) if n not in kept]
    if any(not n.name for n in kept):
        raise ExportError(f"[{where}] unnamed stem nodes cannot be kept fp32")

    class Feeds(CalibrationDataReader):  # Model Optimizer reads it more than once (rewind, get_first)
        def __init__(self) -> None:
            self.items = [dict(feed) for feed in calibration]
            self.rewind()

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.iterator, None)

        def get_first(self) -> dict[str, np.ndarray]:
            return self.items[0]

        def rewind(self) -> None:
            self.iterator = iter(self.items)

    large = sum(len(t.raw_data) for t in source.graph.initializer) > EXTERNAL_DATA_BYTES
    with tempfile.TemporaryDirectory(prefix="bindrt-modelopt-") as scratch:
        src = os.path.join(scratch, "model.onnx")
        out = os.path.join(scratch, f"model.{mode}.onnx")
        if large and source is model:  # saving as external data rewrites the proto's tensors
            source = onnx.ModelProto()
            source.CopyFrom(model)
        onnx.save_model(source, src, save_as_external_data=large, location="model.onnx.data")
        log = io.StringIO()
        logger = logging.getLogger("modelopt.onnx")
        level = logger.level
        try:
            with _ort_quantization_restored(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                quantize(
                    src,
                    quantize_mode=mode,
                    calibration_data_reader=Feeds(),
                    calibration_method=plan.calibration_method,
                    calibration_eps=["cpu"],
                    high_precision_dtype="fp32",
                    disable_mha_qdq=not plan.attention_qdq,
                    nodes_to_exclude=[f"^{re.escape(n.name)}$" for n in kept],  # regular expressions
                    use_external_data_format=large,
                    output_path=out,
                    log_level="CRITICAL",
                )
        except Exception as exc:  # Model Optimizer raises plain exceptions of many kinds
            raise ExportError(
                f"[{where}] Model Optimizer could not quantize the graph ({mode}, {recipe}): "
                f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}"
            ) from exc
        finally:  # Model Optimizer re-configures its logger on every call, here onto the captured streams
            for handler in list(logger.handlers):
                if getattr(handler, "stream", None) is log:
                    logger.removeHandler(handler)
            logger.setLevel(level)
        quantized = onnx.load(out)
    activations, weights = _FORMATS[mode]
    summary = {
        "tool": f"nvidia-modelopt {modelopt.__version__}",
        "method": "static",
        "recipe": recipe,
        "format": "QDQ",
        "weights": weights,
        "op_types": sorted({n.op_type for n in quantized_nodes(quantized)}),
        "quantized_nodes": sum(1 for n in quantized.graph.node if n.op_type == "QuantizeLinear"),
        "kept_fp32": sorted(n.name for n in fp32_nodes(quantized)),
        "activations": (
            f"{activations}, per tensor, symmetric, calibrated "
            f"(modelopt.onnx.quantization, {plan.calibration_method}, on ONNX Runtime CPU); "
            f"attention MatMuls {'quantized' if plan.attention_qdq else 'fp32'}; "
            + (f"{', '.join(plan.fp32_groups)} MatMuls fp32; " if plan.fp32_groups else "")
            + "the rest fp32"
        ),
        "calibration": {
            "items": len(calibration),
            "inputs": "real-media suite mirrored + layout-random (held out)",
            "method": plan.calibration_method,
        },
        "batch_invariant": True,
    }
    return quantized, summary


#: weight-MatMul groups a recipe can keep fp32 (:func:`matmul_groups`)
GROUPS = ("qkv", "attn_out", "mlp_in", "mlp_out", "head")
_GELU_OPS = frozenset({"Erf", "Gelu", "FastGelu", "Tanh"})
_BOUNDARY_OPS = frozenset({*_COMPUTE_OPS, "LayerNormalization", "SkipLayerNormalization"})


def matmul_groups(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """The weight MatMuls/Gemms after the stem, by the role their place in a transformer block gives them.

    Read from the graph's structure, not its node names (which depend on the exporter):
    ``mlp_out`` reads a GELU (fc2: the GELU output's outliers set its activation range), ``attn_out``
    reads attention's output (an activation-by-activation MatMul after a Softmax), the MatMuls that read
    a LayerNorm's output are ``mlp_in`` where their output reaches a GELU, ``qkv`` where it reaches a
    Softmax, ``head`` otherwise (the projection head after the last LayerNorm).
    """
    graph = model.graph
    constant = {i.name for i in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def weighted(n: onnx.NodeProto) -> bool:
        return n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in constant

    def upstream(n: onnx.NodeProto) -> set[str]:  # op types up to the previous compute node or LayerNorm
        seen, ops, todo = set(), set(), [n.input[0]]
        while todo:
            p = producer.get(todo.pop())
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            ops.add(p.op_type if not weighted(p) else "weighted")
            if p.op_type not in _BOUNDARY_OPS:
                todo += [i for i in p.input if i not in constant]
        return ops

    def downstream(n: onnx.NodeProto) -> set[str]:  # op types down to the next weight MatMul or LayerNorm
        seen, ops, todo = set(), set(), list(n.output)
        while todo:
            for c in consumers.get(todo.pop(), []):
                if id(c) in seen:
                    continue
                seen.add(id(c))
                ops.add(c.op_type)
                if not weighted(c) and c.op_type not in _BOUNDARY_OPS - {"MatMul"}:
                    todo += list(c.output)
        return ops

    stems = {id(n) for n in stem_matmuls(model)}
    groups: dict[str, list[onnx.NodeProto]] = {g: [] for g in GROUPS}
    for n in graph.node:
        if not weighted(n) or id(n) in stems:
            continue
        up = upstream(n)
        if up & _GELU_OPS:
            group = "mlp_out"
        elif "Softmax" in up or "MatMul" in up:  # attention's output (activation-by-activation MatMul)
            group = "attn_out"
        else:
            down = downstream(n)
            group = "mlp_in" if down & _GELU_OPS else "qkv" if "Softmax" in down else "head"
        groups[group].append(n)
    return groups


def grouped_matmuls(model: onnx.ModelProto, selectors: Sequence[str]) -> list[onnx.NodeProto]:
    """The weight MatMuls that ``selectors`` (:attr:`Recipe.fp32_groups`) name, in graph order."""
    groups = matmul_groups(model)
    chosen: list[onnx.NodeProto] = []
    for selector in selectors:
        match = re.fullmatch(r"(\w+)(?:\[(-?\d+)\])?", selector)
        if not match or match[1] not in groups:
            raise ValueError(f"unknown MatMul group {selector!r}; expected one of {', '.join(GROUPS)}, optionally [i]")
        nodes = groups[match[1]]
        if match[2] is not None:
            i = int(match[2])
            nodes = [nodes[i]] if -len(nodes) <= i < len(nodes) else []
        chosen += [n for n in nodes if n not in chosen]
    return chosen


def _reads_dequantized(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, bool]]:
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [(n, any(i in dequantized for i in n.input)) for n in model.graph.node if n.op_type in _COMPUTE_OPS]


def quantized_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The MatMul/Gemm/Conv nodes that read a DequantizeLinear output."""
    return [n for n, q in _reads_dequantized(model) if q]


def fp32_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The MatMul/Gemm/Conv nodes left unquantized."""
    return [n for n, q in _reads_dequantized(model) if not q]


@contextlib.contextmanager
def _ort_quantization_restored() -> Iterator[None]:
    """Undo what Model Optimizer patches into ``onnxruntime.quantization`` while it quantizes."""
    from onnxruntime.quantization import calibrate, registry
    from onnxruntime.quantization.base_quantizer import BaseQuantizer
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    classes = [
        calibrate.CalibraterBase,
        calibrate.MinMaxCalibrater,
        calibrate.HistogramCalibrater,
        calibrate.HistogramCollector,
        QDQQuantizer,
        BaseQuantizer,
    ]
    saved_classes = [(cls, dict(vars(cls))) for cls in classes]
    registries = [getattr(registry, name) for name in ("QDQRegistry", "QLinearOpsRegistry", "IntegerOpsRegistry")]
    saved_registries = [(r, dict(r)) for r in registries]
    create_calibrator = calibrate.create_calibrator
    try:
        yield
    finally:
        for cls, attrs in saved_classes:
            for name in set(vars(cls)) - set(attrs):
                delattr(cls, name)
            for name, value in attrs.items():
                if vars(cls).get(name) is not value and name not in ("__dict__", "__weakref__", "__doc__"):
                    setattr(cls, name, value)
        for r, entries in saved_registries:
            r.clear()
            r.update(entries)
        calibrate.create_calibrator = create_calibrator


def make_session(path: str, mode: str, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for a Model Optimizer graph: fp8 with graph optimizations off.

    ONNX Runtime's QDQ fusions are written for int8; with them off the float8 Q/DQ pairs run as
    the reference QuantizeLinear/DequantizeLinear kernels, which is what TensorRT's arithmetic is
    validated against. (ONNX Runtime 1.32 also ran these fp8 graphs at its default level, with
    the same cosines, on the golden model.)
    """
    from bindrt.loaders import OrtSessionOptions, SessionFromOnnx

    level = "disable" if mode == "fp8" else "all"
    return SessionFromOnnx(path, OrtSessionOptions(intra_op_num_threads=threads or None, optimization_level=level))()


def session_factory(mode: str, threads: int | None = None) -> Any:
    """``validate_graph``'s ``session_factory`` for one mode."""
    return lambda path: make_session(path, mode, threads)


def runtime(mode: str) -> dict[str, Any]:
    """``validate_graph``'s ``runtime`` record for one mode."""
    import onnxruntime as ort

    return {
        "onnxruntime": ort.__version__,
        "provider": "CPUExecutionProvider",
        "graph_optimization_level": "disable" if mode == "fp8" else "all",
    }
