"""ONNX-level plumbing shared by every variant: I/O signatures, saving (external data), checks, records."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from bindrt.errors import ExportError
from bindrt.export.spec import GRAPH_KINDS, OUTPUT_NAME

DTYPE_NAMES = {
    TensorProto.FLOAT: "float32",
    TensorProto.FLOAT16: "float16",
    TensorProto.INT64: "int64",
    TensorProto.UINT8: "uint8",
    TensorProto.INT8: "int8",
    TensorProto.INT32: "int32",
}
ONNX_DTYPES = {v: k for k, v in DTYPE_NAMES.items()}


def max_supported_opset() -> int:
    return onnx.defs.onnx_opset_version()


def opset_of(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def set_io_signature(model: onnx.ModelProto, kind: str, out_dim: int) -> None:
    """Name the symbolic axes exactly as the manifest does (``batch``, ``clips``, ``samples``)."""
    spec = GRAPH_KINDS[kind]
    graph = model.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ExportError(f"[{kind}] expected one input and one output, got {len(graph.input)} / {len(graph.output)}")
    _set_dims(graph.input[0], spec.shape)
    graph.output[0].CopyFrom(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", out_dim]))


def _set_dims(vi: onnx.ValueInfoProto, shape: tuple[int | str, ...]) -> None:
    dims = vi.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ExportError(f"input {vi.name!r} has rank {len(dims)}, expected {len(shape)} ({shape})")
    for d, want in zip(dims, shape):
        if isinstance(want, str):
            d.ClearField("dim_value")
            d.dim_param = want
        else:
            d.ClearField("dim_param")
            d.dim_value = want


def data_bytes(model: onnx.ModelProto) -> int:
    """Bytes of tensor data held in the proto (initializers and constant attributes)."""
    total = 0
    for t in model.graph.initializer:
        total += len(t.raw_data) or (t.ByteSize())
    return total


def save(model: onnx.ModelProto, path: "str | os.PathLike[str]", *, threshold: int) -> list[str]:
    """Write ``model``; graphs over ``threshold`` bytes keep their tensors in ``<name>.data`` beside it.

    Returns the file names written next to ``path`` for external data ([] when inline).
    """
    path = Path(path)
    if data_bytes(model) > threshold:
        location = path.name + ".data"
        (path.parent / location).unlink(missing_ok=True)
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=location,
            size_threshold=1024,
            convert_attribute=False,
        )
        # save_model moved the tensors out of the in-memory proto; read them back so callers can keep using it
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(path.parent))
        return [location] if (path.parent / location).exists() else []
    onnx.save_model(model, str(path))
    return []


def check_and_infer(path: "str | os.PathLike[str]", *, where: str) -> onnx.ModelProto:
    """Strict ONNX shape inference (written back into the file) and ``check_model(full_check=True)``.

    Path-based, so graphs with external data over 2 GB are checked too. Returns the
    model without tensor data (for records).
    """
    path = str(path)
    try:
        onnx.shape_inference.infer_shapes_path(path, path, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(path, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, Exception) as exc:
        raise ExportError(f"[{where}] the exported graph fails ONNX checks: {str(exc).splitlines()[0][:400]}") from exc
    return onnx.load(path, load_external_data=False)


def io_records(model: onnx.ModelProto) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def rec(vi: onnx.ValueInfoProto) -> dict[str, Any]:
        tt = vi.type.tensor_type
        shape = [d.dim_param if d.dim_param else d.dim_value for d in tt.shape.dim]
        return {"name": vi.name, "dtype": DTYPE_NAMES.get(tt.elem_type, str(tt.elem_type)), "shape": shape}

    inits = {t.name for t in model.graph.initializer}
    return [rec(i) for i in model.graph.input if i.name not in inits], [rec(o) for o in model.graph.output]


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts = Counter((f"{n.domain}." if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in model.graph.node)
    return dict(sorted(counts.items()))


def strip_value_info(model: onnx.ModelProto) -> None:
    del model.graph.value_info[:]


_REDUCE_AXES_INPUT_SINCE_18 = (
    "ReduceMean",
    "ReduceL2",
    "ReduceL1",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceSumSquare",
    "ReduceLogSum",
    "ReduceLogSumExp",
)


def downgrade_to_opset17(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite an opset-18 graph as opset 17 (onnx's version converter has no 18->17 Split adapter).

    The only opset-18 changes these graphs use: ``Split(num_outputs=...)`` becomes Split
    with explicit sizes (from shape inference), and ``Reduce*`` ops take their constant
    ``axes`` input as the attribute again. Anything else opset-18 specific is refused.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}

    def const_value(name: str):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(next(a.t for a in consts[name].attribute if a.name == "value"))
        raise ExportError(f"opset 17 needs a constant for {name!r}")

    shapes: dict[str, list[int]] = {}
    if any(n.op_type == "Split" for n in graph.node):
        light = onnx.ModelProto()
        light.CopyFrom(model)
        for t in light.graph.initializer:
            if t.raw_data and len(t.raw_data) > (1 << 20):
                t.ClearField("raw_data")  # shape inference needs dims only
        inferred = onnx.shape_inference.infer_shapes(light)
        for vi in (*inferred.graph.value_info, *inferred.graph.input):
            dims = vi.type.tensor_type.shape.dim
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    for node in graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "Split":
            num = next((a.i for a in node.attribute if a.name == "num_outputs"), None)
            if num is None:
                continue
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            shape = shapes.get(node.input[0])
            size = shape[axis] if shape and -len(shape) <= axis < len(shape) else -1
            if size <= 0 or size % num:
                raise ExportError(
                    f"opset 17: cannot give Split {node.name!r} static sizes (axis size {size}, {num} outputs)"
                )
            name = f"{node.name or node.output[0]}_split_sizes"
            graph.initializer.append(numpy_helper.from_array(np.full(num, size // num, dtype=np.int64), name))
            kept = [a for a in node.attribute if a.name != "num_outputs"]
            del node.attribute[:]
            node.attribute.extend(kept)
            del node.input[1:]
            node.input.append(name)
        elif node.op_type in _REDUCE_AXES_INPUT_SINCE_18 and len(node.input) > 1 and node.input[1]:
            axes = [int(a) for a in np.asarray(const_value(node.input[1])).reshape(-1)]
            del node.input[1:]
            node.attribute.append(helper.make_attribute("axes", axes))
            noop = next((a for a in node.attribute if a.name == "noop_with_empty_axes"), None)
            if noop is not None:
                node.attribute.remove(noop)
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = 17
    model.ir_version = min(model.ir_version, 8)
    return model
