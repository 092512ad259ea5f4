"""int8 graphs for OpenVINO: NNCF post-training quantization (``<kind>.int8.nncf``).

Why a second int8 graph beside ONNX Runtime's dynamic one (:mod:`bindrt.export.int8`):
OpenVINO runs statically quantized graphs (fixed activation ranges, QDQ pairs it folds
into its own int8 kernels) on VNNI and AMX; measured on an AMD EPYC with AVX512-VNNI
(imagebind_huge depth, 2 threads, batch 8) the NNCF graph ran at 53-58 ms against
83 ms for OpenVINO bf16 and 92 ms for ONNX Runtime's dynamic int8
(``benchmarks/README.md``). ONNX Runtime's CPU EP runs the same QDQ graph slower than its
own dynamic int8, so ``backend="onnxruntime"`` never picks it unless asked (``variant="nncf"``).

Recipe (``nncf.quantize`` on the ONNX graph, written back as QDQ ONNX so it is one more
checksummed graph of the bundle, readable by OpenVINO, ONNX Runtime and TensorRT):

* ``model_type=TRANSFORMER`` (SmoothQuant, the transformer ignored patterns, fast bias
  correction), symmetric int8 weights per output channel, activations per tensor;
* attention's activation-by-activation MatMuls are quantized too (unlike ONNX Runtime's
  int8) unless the recipe keeps them fp32 (:data:`RECIPES`, tried in order until one
  validates);
* the text tower gets no NNCF graph (:data:`SKIPPED_KINDS`): its static ranges do not hold
  across sequence lengths (the golden 77-token input reached cosine 0.9795 against the int8
  tier's 0.98 under every recipe tried); OpenVINO runs ONNX Runtime's dynamic int8 graph
  for it, and text is the cheapest tower;
* the patch-embedding stems (every ``Conv``; IMU's Linear stem, :func:`stem_matmuls`) stay
  fp32: they read the raw signal, whose range differs from input to input (a depth map in
  metres against a standardised one); quantized, the first ranges decided everything and a
  calibration-free input lost its embedding entirely (cosine 0.63 vs 0.9896 kept fp32);
* calibration on held-out inputs (:func:`bindrt.export.validate.calibration_inputs`): the
  real-media suite mirrored plus layout-random inputs from another seed, so the
  validation's own items are never the calibration set.

The price of static ranges: inputs far outside what calibrated them lose more accuracy
than with dynamic ranges. The validation (random and real suites, through OpenVINO) records
how much, and the graph's tier says what it met.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import onnx

from bindrt.errors import ExportError
from bindrt.export.int8 import stem_matmuls

VARIANT = "nncf"


@dataclass(frozen=True)
class Recipe:
    smooth_quant: bool  # NNCF's SmoothQuant (moves activation outliers into the weights)
    fp32_attention: bool  # keep attention's activation-by-activation MatMuls fp32, as ONNX Runtime's int8 does


#: Tried in order until one meets the int8 tolerance, fastest first. No one recipe is best for every
#: tower: on the golden model SmoothQuant helps the vision towers and hurts text (worst cosine 0.969
#: with it, 0.986 without); fp32 attention costs speed (depth, batch 8: 81 ms against 68 ms) and buys
#: accuracy where softmax outputs quantize badly.
RECIPES: dict[str, Recipe] = {
    "transformer": Recipe(smooth_quant=True, fp32_attention=False),
    "transformer-no-smoothquant": Recipe(smooth_quant=False, fp32_attention=False),
    "transformer-no-smoothquant-fp32-attention": Recipe(smooth_quant=False, fp32_attention=True),
}
SKIPPED_KINDS = frozenset({"text"})


def quantize_nncf(
    model: onnx.ModelProto,
    calibration: Sequence[dict[str, np.ndarray]],
    *,
    where: str,
    recipe: str = next(iter(RECIPES)),
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The fp32 graph quantized by NNCF -> (QDQ int8 graph, the manifest's quantization record)."""
    try:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    except ImportError as exc:
        raise ExportError(f"[{where}] NNCF int8 needs the nncf package (pip install 'bindrt[openvino]')") from exc
    if recipe not in RECIPES:
        raise ValueError(f"unknown NNCF recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    plan = RECIPES[recipe]
    advanced = (
        None
        if plan.smooth_quant
        else AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=-1))
    )
    if not calibration:
        raise ExportError(f"[{where}] NNCF int8 needs calibration inputs")
    kept = [n.name for n in stem_matmuls(model)] + (activation_matmuls(model) if plan.fp32_attention else [])
    if any(not name for name in kept):
        raise ExportError(f"[{where}] unnamed stem MatMul nodes cannot be kept fp32")
    ignored = nncf.IgnoredScope(names=kept, types=["Conv"], validate=False)
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.ERROR)
    try:
        quantized = nncf.quantize(
            model,
            nncf.Dataset(list(calibration)),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),
            ignored_scope=ignored,
            advanced_parameters=advanced,
        )
    except Exception as exc:  # NNCF's own errors are plain exceptions of many kinds
        raise ExportError(f"[{where}] NNCF could not quantize the graph: {str(exc).splitlines()[0][:300]}") from exc
    finally:
        nncf_logger.setLevel(level)
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    summary = {
        "tool": f"nncf {nncf.__version__}",
        "method": "static",
        "recipe": recipe,
        "format": "QDQ",
        "weights": "int8 symmetric, per output channel",
        "op_types": sorted({n.op_type for n in quantized.graph.node if n.op_type in ("MatMul", "Gemm")}),
        "quantized_nodes": sum(1 for n in quantized.graph.node if n.op_type == "QuantizeLinear"),
        "kept_fp32": sorted(kept + convs),
        "activations": "int8/uint8, per tensor, calibrated (nncf.quantize, model_type=TRANSFORMER)",
        "calibration": {"items": len(calibration), "inputs": "real-media suite mirrored + layout-random (held out)"},
        "batch_invariant": True,
    }
    return quantized, summary


def activation_matmuls(model: onnx.ModelProto) -> list[str]:
    """MatMuls of two activations (attention's scores and values), which no weight feeds."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)]


class OpenVinoSession:
    """An OpenVINO CPU model at f32 behind the two calls validation makes of an ONNX Runtime session.

    The NNCF graph is validated where it runs: OpenVINO folds the QDQ pairs into int8
    kernels, and ONNX Runtime's arithmetic on the same graph differs slightly.
    """

    def __init__(self, path: str) -> None:
        from bindrt.loaders import CompiledModelFromOnnx, OvCompileOptions

        self.model = CompiledModelFromOnnx(path, "CPU", OvCompileOptions(inference_precision="f32"))()

    def get_inputs(self) -> list[Any]:
        return [SimpleNamespace(name=self.model.inputs[0].get_any_name())]

    def run(self, _outputs: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = self.model.create_infer_request()
        request.infer({0: np.ascontiguousarray(next(iter(feed.values())))})
        return [np.array(request.get_output_tensor(0).data, dtype=np.float32)]

    @staticmethod
    def runtime() -> dict[str, Any]:
        import openvino

        return {"openvino": openvino.__version__, "device": "CPU", "inference_precision": "f32"}
