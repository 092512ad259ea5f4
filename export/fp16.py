"""fp32 -> fp16 or bf16 graph conversion with explicit, consistent types (TensorRT strongly-typed friendly).

Strategy (one pass over a topologically sorted graph; "low" is fp16 or bf16):

* graph inputs and outputs stay float32 (callers feed and read fp32);
* every node gets one compute type: **fp32** for the numerically sensitive parts
  (``LayerNormalization`` and ``Softmax`` -- their statistics / exponent sums --
  and the whole post-processing tail from the first ``ReduceL2`` on: L2
  normalisation, logit scale, the clip average), **low** for everything else
  (matmuls, convolutions, GELU, residual adds, reshapes...);
* a float input whose producer has the other type gets an explicit ``Cast``
  (one per tensor and target type, shared by all consumers); float initializers
  are stored once per type they are read in (no Cast of constants at run time);
* ``Cast(to=float)`` / ``Constant`` / ``ConstantOfShape`` values inside the low
  region are retyped, so no op ever sees mixed float types.

Because every type is explicit, TensorRT (10.12+, 11) can build the graph as a
strongly typed network (``--stronglyTyped``): it runs each layer in exactly the
precision the graph states, and there is no precision search. ONNX Runtime's CPU
EP runs the fp16 graph by inserting fp32 casts around ops it has no fp16 kernel
for, which is how validation runs on machines without a GPU.

ONNX Runtime's CPU EP has no bf16 kernels beyond ``Cast``, and no other CPU engine runs an
ONNX bf16 graph as written, so bf16 graphs are validated through :func:`emulate_in_fp32`:
the same graph with every bf16 tensor held as float32 values rounded to bf16 (each op
computes in fp32 on bf16 inputs and its output is rounded to bf16 by a Cast pair), which
is what a bf16 kernel that accumulates in fp32 computes, layer by layer.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FP32_OPS: tuple[str, ...] = ("LayerNormalization", "SkipLayerNormalization", "Softmax")
TAIL_FROM: tuple[str, ...] = ("ReduceL2",)
FLOAT, HALF, BF16 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16
#: bindrt precision -> the ONNX element type its low-precision region computes in
LOW_TYPES: dict[str, int] = {"fp16": HALF, "bf16": BF16}
_NAMES = {FLOAT: "fp32", HALF: "fp16", BF16: "bf16"}
#: ops whose outputs are some of their inputs' values, unchanged (no rounding to emulate)
VALUE_PRESERVING: frozenset[str] = frozenset(
    {
        "Reshape",
        "Transpose",
        "Concat",
        "Slice",
        "Gather",
        "Squeeze",
        "Unsqueeze",
        "Split",
        "Identity",
        "Flatten",
        "Expand",
    }
)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value, by ONNX shape inference on a data-free copy (works for >2 GB graphs)."""
    light = onnx.ModelProto()
    _copy_without_data(model, light)
    types: dict[str, int] = {}
    for init in light.graph.initializer:
        types[init.name] = init.data_type
    existing = {i.name for i in light.graph.input}
    for init in list(light.graph.initializer):
        if init.name not in existing:
            light.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    del light.graph.initializer[:]
    inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False)
    for vi in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if vi.type.HasField("tensor_type"):
            types.setdefault(vi.name, vi.type.tensor_type.elem_type)
    return types


def _copy_without_data(model: onnx.ModelProto, out: onnx.ModelProto) -> None:
    out.ir_version = model.ir_version
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    out.graph.name = model.graph.name
    out.graph.node.extend(model.graph.node)
    out.graph.input.extend(model.graph.input)
    out.graph.output.extend(model.graph.output)
    for init in model.graph.initializer:
        out.graph.initializer.append(TensorProto(name=init.name, dims=init.dims, data_type=init.data_type))


def _descendants(nodes: list[onnx.NodeProto], roots: Iterable[int]) -> set[int]:
    consumers: dict[str, list[int]] = defaultdict(list)
    for i, n in enumerate(nodes):
        for name in n.input:
            consumers[name].append(i)
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        for out in nodes[i].output:
            stack.extend(consumers.get(out, ()))
    return seen


def convert_to_fp16(
    model: onnx.ModelProto, *, fp32_ops: Iterable[str] = FP32_OPS, tail_from: Iterable[str] = TAIL_FROM
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Return the fp16 graph (fp32 I/O) and a summary for the manifest."""
    return convert_to_low_precision(model, "fp16", fp32_ops=fp32_ops, tail_from=tail_from)


def convert_to_low_precision(
    model: onnx.ModelProto,
    precision: str,
    *,
    fp32_ops: Iterable[str] = FP32_OPS,
    tail_from: Iterable[str] = TAIL_FROM,
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Return the ``precision`` (fp16 or bf16) graph, fp32 I/O, and a summary for the manifest."""
    if precision not in LOW_TYPES:
        raise ValueError(f"unknown low precision {precision!r}; expected one of {', '.join(LOW_TYPES)}")
    low = LOW_TYPES[precision]
    fp32_ops, tail_from = tuple(fp32_ops), tuple(tail_from)
    model = _constants_to_initializers(model)
    graph = model.graph
    nodes = list(graph.node)
    fp32_nodes = {i for i, n in enumerate(nodes) if n.op_type in fp32_ops or not _takes(n, low, _opset(model))}
    fp32_nodes |= _descendants(nodes, [i for i, n in enumerate(nodes) if n.op_type in tail_from])
    retyper = _Retyper(model, low)
    for i, node in enumerate(nodes):
        retyper.add(node, FLOAT if i in fp32_nodes else low)
    retyper.keep_outputs_fp32()
    retyper.write_into(graph)
    summary = {
        "io_dtype": "float32",
        "low_dtype": {HALF: "float16", BF16: "bfloat16"}[low],
        "fp32_ops": sorted({nodes[i].op_type for i in fp32_nodes}),
        "fp32_regions": {"ops": list(fp32_ops), "tail_from": list(tail_from)},
        "casts_inserted": retyper.counts["casts_inserted"],
        "low_nodes": retyper.counts["low_nodes"],
        "fp32_nodes": retyper.counts["fp32_nodes"],
        "low_initializers": sum(1 for t in graph.initializer if t.data_type == low),
        "fp32_initializers": sum(1 for t in graph.initializer if t.data_type == FLOAT),
        "strongly_typed": True,
    }
    return model, summary


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _takes(node: onnx.NodeProto, elem_type: int, opset: int) -> bool:
    """Whether the ONNX schema of ``node`` at ``opset`` lets its float inputs be ``elem_type``.

    E.g. ``Conv`` takes bf16 only from opset 22, so a bf16 graph at an older opset keeps its
    convolutions fp32. Ops outside the default domain are assumed to take it.
    """
    if node.domain not in ("", "ai.onnx"):
        return True
    try:
        schema = onnx.defs.get_schema(node.op_type, opset)
    except onnx.defs.SchemaError:
        return True
    wanted = f"tensor({helper.tensor_dtype_to_string(elem_type).removeprefix('TensorProto.').lower()})"
    float_params = {i.type_str for i in schema.inputs} & {c.type_param_str for c in schema.type_constraints}
    for constraint in schema.type_constraints:
        if constraint.type_param_str in float_params and "tensor(float)" in constraint.allowed_type_strs:
            if wanted not in constraint.allowed_type_strs:
                return False
    return True


class _Retyper:
    """Rebuilds a graph's node list node by node, each node computing in the type it is given.

    Every type change is an explicit ``Cast`` (one per tensor and target type); a float32
    initializer read in the low type gets one low copy, and one read only so is stored only so.
    """

    def __init__(self, model: onnx.ModelProto, low: int) -> None:
        graph = model.graph
        self.low = low
        self.types = _elem_types(model)
        self.inits = {t.name: t for t in graph.initializer}
        self.half_inits: dict[str, str] = {}  # fp32 initializer -> its low copy's name
        self.new_inits: list[TensorProto] = []
        self.current: dict[str, int] = {vi.name: vi.type.tensor_type.elem_type for vi in graph.input}
        self.cast_cache: dict[tuple[str, int], str] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.counts: Counter = Counter()
        self.used_names = {o for n in graph.node for o in n.output} | set(self.inits) | set(self.current)
        self.graph_outputs = list(graph.output)
        self.initializers = list(graph.initializer)

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self.used_names:
            k += 1
            name = f"{base}_{k}"
        self.used_names.add(name)
        return name

    def as_type(self, name: str, target: int) -> str:
        """``name`` as a tensor of ``target`` type: itself, its low initializer copy, or a (cached) Cast."""
        if name in self.inits and self.inits[name].data_type == FLOAT:
            if target == FLOAT:
                return name
            if name not in self.half_inits:
                half = numpy_helper.from_array(
                    to_low(numpy_helper.to_array(self.inits[name]), self.low),
                    self.fresh(f"{name}_{_NAMES[self.low]}"),
                )
                self.new_inits.append(half)
                self.half_inits[name] = half.name
            return self.half_inits[name]
        have = self.current.get(name, self.types.get(name))
        if have not in (FLOAT, self.low) or have == target:
            return name
        key = (name, target)
        if key not in self.cast_cache:
            cast_out = self.fresh(f"{name}_to_{_NAMES[target]}")
            self.nodes.append(
                helper.make_node("Cast", [name], [cast_out], name=self.fresh(f"Cast_{cast_out}"), to=target)
            )
            self.counts["casts_inserted"] += 1
            self.cast_cache[key] = cast_out
        return self.cast_cache[key]

    def add(self, node: onnx.NodeProto, target: int) -> None:
        """Append ``node`` computing in ``target``: its float inputs cast, its float outputs of that type."""
        self.counts["fp32_nodes" if target == FLOAT else "low_nodes"] += 1
        for j, name in enumerate(node.input):
            if name and self.types.get(name) in (FLOAT, self.low):
                node.input[j] = self.as_type(name, target)
        if target != FLOAT:
            _retype_attributes(node, target)
        for name in node.output:
            t = self.types.get(name)
            if t == FLOAT:
                self.current[name] = target
            elif t is not None:
                self.current[name] = t
        self.nodes.append(node)

    def keep_outputs_fp32(self) -> None:
        """Graph outputs stay float32: an output computed in the low type is renamed and cast back under its name."""
        for vi in self.graph_outputs:
            if self.types.get(vi.name) == FLOAT and self.current.get(vi.name) == self.low:
                internal = self.fresh(f"{vi.name}_{_NAMES[self.low]}")
                for n in self.nodes:
                    for j, o in enumerate(n.output):
                        if o == vi.name:
                            n.output[j] = internal
                    for j, o in enumerate(n.input):
                        if o == vi.name:
                            n.input[j] = internal
                self.nodes.append(
                    helper.make_node("Cast", [internal], [vi.name], name=self.fresh("Cast_output"), to=FLOAT)
                )
                self.counts["casts_inserted"] += 1

    def write_into(self, graph: onnx.GraphProto) -> None:
        """Replace the graph's nodes and initializers (only those still read, plus the low copies)."""
        read = {name for n in self.nodes for name in n.input}
        kept = [t for t in self.initializers if t.name in read]
        del graph.node[:]
        graph.node.extend(self.nodes)
        del graph.initializer[:]
        graph.initializer.extend(kept + self.new_inits)
        del graph.value_info[:]


def _retype_attributes(node: onnx.NodeProto, low: int) -> None:
    for attr in node.attribute:
        if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
            attr.i = low
        elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT:
            attr.t.CopyFrom(numpy_helper.from_array(to_low(numpy_helper.to_array(attr.t), low), attr.t.name))


def to_low(a: np.ndarray, low: int = HALF) -> np.ndarray:
    """fp16 or bf16 copy (round to nearest even). fp16: finite values beyond its range (e.g. -3.4e38
    mask fills) saturate at +-65504, not inf; bf16 has float32's range, and its largest finite value
    is below float32's, so those values saturate at its largest finite value, not inf."""
    finite = np.isfinite(a)
    if low == BF16:
        top = float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)
        return np.where(finite, np.clip(a, -top, top), a).astype(ml_dtypes.bfloat16)
    return np.where(finite, np.clip(a, -65504.0, 65504.0), a).astype(np.float16)


def _constants_to_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """``Constant`` nodes with a tensor value become initializers (so they are retyped per consumer)."""
    graph = model.graph
    keep = []
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if (
            node.op_type == "Constant"
            and node.domain in ("", "ai.onnx")
            and value is not None
            and len(node.attribute) == 1
        ):
            t = TensorProto()
            t.CopyFrom(value.t)
            t.name = node.output[0]
            graph.initializer.append(t)
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return model


def check_strongly_typed(model: onnx.ModelProto) -> list[str]:
    """Nodes whose float inputs mix float types (should be none; TensorRT strong typing rejects them)."""
    types = _elem_types(model)
    problems = []
    for node in model.graph.node:
        if node.op_type == "Cast":
            continue
        kinds = {types.get(n) for n in node.input if n and types.get(n) in (FLOAT, HALF, BF16)}
        if len(kinds) > 1:
            problems.append(f"{node.op_type} {node.name}")
    return problems


def emulate_in_fp32(model: onnx.ModelProto, low: int = BF16) -> tuple[onnx.ModelProto, dict[str, int]]:
    """The ``low`` (bf16) graph as a float32 graph computing the same values, for engines without bf16 kernels.

    Every ``low`` initializer and attribute becomes float32 (exactly: bf16 values are float32
    values); a ``Cast(to=low)`` keeps its rounding and is followed by a Cast back to float32;
    every other op computes in float32 and each of its ``low`` outputs is rounded through a
    ``Cast(to=low)``/``Cast(to=float)`` pair, except for ops that only move values
    (:data:`VALUE_PRESERVING`). So each tensor holds exactly the values it would hold in ``low``,
    computed by an fp32-accumulating kernel. TensorRT may fuse several ops into one kernel and
    round once, so this is, if anything, a little pessimistic. Returns the graph (a new
    proto) and counts for the validation record.
    """
    types = _elem_types(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    counts: Counter = Counter()
    for init in graph.initializer:
        if init.data_type == low:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
            counts["initializers_widened"] += 1
    used = (
        {o for n in graph.node for o in n.output} | {t.name for t in graph.initializer} | {i.name for i in graph.input}
    )
    nodes: list[onnx.NodeProto] = []

    def fresh(base: str) -> str:
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        return name

    def round_into(raw: str, name: str) -> None:
        rounded = fresh(f"{name}_{_NAMES[low]}")
        nodes.append(helper.make_node("Cast", [raw], [rounded], name=fresh(f"Cast_{rounded}"), to=low))
        nodes.append(helper.make_node("Cast", [rounded], [name], name=fresh(f"Cast_{name}_fp32"), to=FLOAT))
        counts["roundings"] += 1

    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == low:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float32), attr.t.name))
        if node.op_type == "Cast" and any(a.name == "to" and a.i == low for a in node.attribute):
            name = node.output[0]
            node.output[0] = fresh(f"{name}_{_NAMES[low]}")
            nodes.append(node)
            nodes.append(helper.make_node("Cast", [node.output[0]], [name], name=fresh(f"Cast_{name}_fp32"), to=FLOAT))
            counts["casts_widened"] += 1
            continue
        rounded = (
            [] if node.op_type in VALUE_PRESERVING else [j for j, o in enumerate(node.output) if types.get(o) == low]
        )
        pending = []
        for j in rounded:
            name = node.output[j]
            node.output[j] = fresh(f"{name}_raw")
            pending.append((node.output[j], name))
        nodes.append(node)
        for raw, name in pending:
            round_into(raw, name)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return out, dict(counts)
