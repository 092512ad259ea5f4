"""Will the ONNX-TensorRT parser take this graph? A static check that needs no TensorRT.

An engine build is the first place TensorRT rejects a graph, and it only runs on
a machine with TensorRT and a GPU. This check reads the parser's operator support
matrix (``bindrt/data/onnx_tensorrt_operators.tsv``, copied from onnx-tensorrt's
``docs/operators.md``) and checks every node of a graph against it on any
machine: the node's domain (only the default ONNX domain is parsed; the fused
ONNX Runtime variants' ``com.microsoft`` ops are ORT-only), its operator, the
element types of the tensors it reads, and the model's default-domain opset.
Operators the docs list restrictions for are warnings: the matrix does not say
which restriction applies, an engine build does.

Torch-, TensorRT- and onnx-free at import (onnx is imported by the functions that read graphs).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from bindrt.errors import BundleError, ExportError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

MATRIX_FILE = "onnx_tensorrt_operators.tsv"
#: The default-domain opsets the matrix covers, as its header states ("TensorRT 10.0: opsets 9-20").
OPSET_RANGE: tuple[int, int] = (9, 20)
#: Domains the parser reads as standard ONNX operators.
DEFAULT_DOMAINS = ("", "ai.onnx")
ORT_CONTRIB_DOMAIN = "com.microsoft"
ORT_CONTRIB_DETAIL = "ONNX Runtime contrib op (com.microsoft): ORT-only; export without --fused for TensorRT"
RESTRICTIONS_NOTE = "the ONNX-TensorRT docs list restrictions"

#: ONNX element type (``TensorProto.DataType`` name) -> the matrix's type name.
ONNX_TO_MATRIX = {
    "FLOAT": "FP32",
    "FLOAT16": "FP16",
    "BFLOAT16": "BF16",
    "DOUBLE": "FP64",
    "INT4": "INT4",
    "UINT4": "UINT4",
    "INT8": "INT8",
    "UINT8": "UINT8",
    "INT16": "INT16",
    "UINT16": "UINT16",
    "INT32": "INT32",
    "UINT32": "UINT32",
    "INT64": "INT64",
    "UINT64": "UINT64",
    "BOOL": "BOOL",
    "FLOAT8E4M3FN": "FP8",  # TensorRT's FP8 is E4M3FN; the other FP8 formats keep distinct names
    "FLOAT8E4M3FNUZ": "FP8E4M3FNUZ",
    "FLOAT8E5M2": "FP8E5M2",
    "FLOAT8E5M2FNUZ": "FP8E5M2FNUZ",
    "FLOAT4E2M1": "FP4",
    "STRING": "STRING",
    "COMPLEX64": "COMPLEX64",
    "COMPLEX128": "COMPLEX128",
}
#: Type names the matrix may use (in its order); anything else in its types column is a typo to fix here.
MATRIX_TYPES = ("FP32", "FP16", "BF16", "FP8", "INT4", "INT8", "UINT8", "INT32", "INT64", "BOOL")
#: Misspellings in the upstream doc, kept verbatim in the copied TSV and corrected on load.
_TYPE_TYPOS = {"INF64": "INT64"}  # ConstantOfShape

#: Inputs whose element type the matrix's types column describes, for operators that also
#: take auxiliary inputs of another type (default: every input). Without this, e.g. a
#: DequantizeLinear's FP32 scale or a CumSum's INT64 axis would read as unsupported types.
_DATA_INPUTS: dict[str, tuple[int, ...]] = {
    "DequantizeLinear": (0, 2),  # x, zero_point; scale is the float output type
    "QuantizeLinear": (0, 1),  # x, scale; zero_point is the integer output type
    "Resize": (0,),  # roi/scales are float, sizes INT64
    "Upsample": (0,),
    "CumSum": (0,),  # axis is INT32/INT64
    "Dropout": (0, 1),  # training_mode is BOOL
    "RoiAlign": (0, 1),  # batch_indices is INT64
    "NonMaxSuppression": (0, 1, 3, 4),  # max_output_boxes_per_class is INT64
    "LSTM": (0, 1, 2, 3, 5, 6, 7),  # sequence_lens (4) is INT32
    "GRU": (0, 1, 2, 3, 5),
    "RNN": (0, 1, 2, 3, 5),
}


@dataclass(frozen=True)
class OperatorSupport:
    """One row of the matrix: whether the parser supports the operator, for which types, with restrictions."""

    name: str
    supported: bool
    types: frozenset[str]
    restrictions: bool


@dataclass(frozen=True)
class Problem:
    """One reason a graph will not parse. ``kind``: operator, domain, type or opset.

    ``group`` is the node-independent part (what the one-line error deduplicates on).
    """

    op_type: str
    node_name: str
    kind: str
    detail: str
    group: str = ""

    def line(self) -> str:
        if self.kind == "opset":
            return f"opset: {self.detail}"
        return f"{self.kind}: {self.op_type} (node {self.node_name!r}): {self.detail}"

    def to_dict(self) -> dict[str, str]:
        return {"op_type": self.op_type, "node": self.node_name, "kind": self.kind, "detail": self.detail}


@dataclass
class CompatReport:
    """The result of :func:`check_graph`; ``ok`` when nothing in ``problems`` (warnings never fail)."""

    ok: bool
    opset: int | None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    op_counts: dict[str, int] = field(default_factory=dict)
    opset_range: tuple[int, int] = OPSET_RANGE
    matrix: str = ""

    def summary(self) -> str:
        """One line per problem, naming the operator and the node."""
        return "\n".join(p.line() for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        """For the manifest (the graph record already holds ``op_counts``)."""
        return {
            "ok": self.ok,
            "opset": self.opset,
            "opset_range": list(self.opset_range),
            "matrix": self.matrix,
            "problems": [p.to_dict() for p in self.problems],
            "warnings": list(self.warnings),
        }


# ----------------------------------------------------------------------------- the matrix
def _matrix_text() -> str:
    return (resources.files("bindrt.data") / MATRIX_FILE).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def matrix_header() -> str:
    """The matrix's provenance line (its first comment line, without the ``#``)."""
    for line in _matrix_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def matrix_opset_range() -> tuple[int, int] | None:
    """The opset range the matrix's header states (``opsets 9-20``), to check :data:`OPSET_RANGE` against."""
    m = re.search(r"opsets (\d+)-(\d+)", matrix_header())
    return (int(m.group(1)), int(m.group(2))) if m else None


@lru_cache(maxsize=1)
def load_support_matrix() -> Mapping[str, OperatorSupport]:
    """Operator name -> :class:`OperatorSupport`, read once from the packaged TSV.

    Types are parsed as written (comma-separated, empty entries from trailing commas dropped);
    a known upstream misspelling is corrected and any other unknown name raises, so an edit
    of the TSV cannot silently drop a type.
    """
    rows: dict[str, OperatorSupport] = {}
    header_seen = False
    for n, raw in enumerate(_matrix_text().splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        if not header_seen:
            header_seen = True  # operator, supported, types, restrictions
            continue
        cells = (raw.split("\t") + ["", "", ""])[:4]
        name, supported, types_cell, restrictions = (c.strip() for c in cells)
        if supported not in ("Y", "N"):
            raise ValueError(f"{MATRIX_FILE} line {n}: supported must be Y or N, got {supported!r}")
        types = {_TYPE_TYPOS.get(t, t) for t in (t.strip() for t in types_cell.split(",")) if t}
        unknown = types - set(MATRIX_TYPES)
        if unknown:
            raise ValueError(f"{MATRIX_FILE} line {n}: unknown type name(s) {', '.join(sorted(unknown))}")
        rows[name] = OperatorSupport(name, supported == "Y", frozenset(types), restrictions.lower() == "yes")
    return MappingProxyType(rows)


# ----------------------------------------------------------------------------- one graph
def check_graph(
    model_or_path: "onnx.ModelProto | str | Path", *, opset_range: tuple[int, int] = OPSET_RANGE
) -> CompatReport:
    """Check every node (subgraphs and local functions included) against the matrix and the opset range.

    A path is read without its external data (types need no weights). Shape inference
    supplies the element types of intermediate tensors; when it fails, the failure is a
    warning and only the types the graph declares are checked.
    """
    import onnx

    if isinstance(model_or_path, (str, Path)):
        model = onnx.load(str(model_or_path), load_external_data=False)
    else:
        model = model_or_path
    matrix = load_support_matrix()
    problems: list[Problem] = []
    warnings: list[str] = []

    opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), None)
    lo, hi = opset_range
    if opset is None:
        problems.append(Problem("", "", "opset", "the model imports no default-domain (ai.onnx) opset", "no opset"))
    elif not lo <= opset <= hi:
        detail = f"default-domain opset {opset} is outside {lo}-{hi}, the opsets the ONNX-TensorRT matrix covers"
        problems.append(Problem("", "", "opset", detail, detail))

    if model.functions:
        try:
            import onnx.inliner

            model = onnx.inliner.inline_local_functions(model)
        except Exception as exc:  # report, do not crash
            warnings.append(
                f"inlining the model's local functions failed ({_first_line(exc)}); their bodies are unchecked"
            )
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # a graph shape inference rejects is reported, not raised
        warnings.append(
            f"ONNX shape inference failed ({_first_line(exc)}); only the element types the graph declares were checked"
        )
        inferred = model
    types = _element_types(inferred.graph)

    counts: Counter[str] = Counter()
    untyped = 0
    for node in _nodes(inferred.graph):
        domain = node.domain or ""
        op = node.op_type if domain in DEFAULT_DOMAINS else f"{domain}.{node.op_type}"
        counts[op] += 1
        name = node.name or f"<unnamed {node.op_type}>"
        if domain not in DEFAULT_DOMAINS:
            if domain == ORT_CONTRIB_DOMAIN:
                detail, group = ORT_CONTRIB_DETAIL, f"com.microsoft ops ({ORT_CONTRIB_DETAIL.split(': ', 1)[1]})"
            else:
                detail = f"domain {domain!r}: the ONNX-TensorRT parser reads only the default ONNX domain (or a registered plugin)"
                group = f"{domain} ops (not the default ONNX domain)"
            problems.append(Problem(node.op_type, name, "domain", detail, group))
            continue
        support = matrix.get(node.op_type)
        if support is None:
            problems.append(
                Problem(node.op_type, name, "operator", "not in the ONNX-TensorRT operator matrix", "unknown operators")
            )
            continue
        if not support.supported:
            problems.append(
                Problem(
                    node.op_type, name, "operator", "not supported by the ONNX-TensorRT parser", "unsupported operators"
                )
            )
            continue
        positions = _DATA_INPUTS.get(node.op_type, range(len(node.input)))
        for i in positions:
            if i >= len(node.input) or not node.input[i]:
                continue
            dtype = types.get(node.input[i])
            if dtype is None:
                untyped += 1
            elif dtype not in support.types:
                listed = ", ".join(t for t in MATRIX_TYPES if t in support.types) or "no types"
                detail = f"input {i} {node.input[i]!r} is {dtype}; the matrix lists {listed} for {node.op_type}"
                problems.append(
                    Problem(
                        node.op_type,
                        name,
                        "type",
                        detail,
                        f"{dtype} inputs (a type the matrix does not list for the op)",
                    )
                )
    for op, n in sorted(counts.items()):
        support = matrix.get(op)
        if support is not None and support.supported and support.restrictions:
            warnings.append(f"{op} ({n} node{'s' * (n != 1)}): {RESTRICTIONS_NOTE} (onnx-tensorrt docs/operators.md)")
    if untyped:
        warnings.append(f"{untyped} node input(s) have no known element type; their types were not checked")
    return CompatReport(
        ok=not problems,
        opset=opset,
        problems=problems,
        warnings=warnings,
        op_counts=dict(sorted(counts.items())),
        opset_range=(lo, hi),
        matrix=matrix_header(),
    )


def raise_if_incompatible(report: CompatReport, where: str) -> None:
    """Raise ExportError with one line naming each unsupported operator / type (deduplicated, with counts)."""
    if report.ok:
        return
    groups: dict[str, Counter[str]] = {}
    for p in report.problems:
        groups.setdefault(p.group or p.kind, Counter())[p.op_type] += 1
    parts = []
    for group, ops in groups.items():
        named = ", ".join(f"{op} x{n}" for op, n in sorted(ops.items()) if op)
        parts.append(f"{group}: {named}" if named else group)
    lo, hi = report.opset_range
    raise ExportError(
        f"{where} cannot be built with TensorRT (ONNX-TensorRT parser matrix, opsets {lo}-{hi}): {'; '.join(parts)}"
    )


# ----------------------------------------------------------------------------- a bundle
def check_bundle_graphs(
    bundle_path: "str | Path",
    modalities: Sequence[str] | None = None,
    *,
    variants: Sequence[str] | None = None,
    verify: bool = True,
) -> dict[str, CompatReport]:
    """``<modality>/<graph key>`` -> :class:`CompatReport` for every exported graph in the manifest.

    ``variants`` keeps only those (e.g. ``("plain", "nncf")``: the fused variants are ORT-only);
    ``verify`` checks each graph file's sha256 against the manifest first.
    """
    import onnx

    from bindrt.bundle import Bundle
    from bindrt.schema import onnx_graphs

    bundle = Bundle.open(bundle_path)
    reports: dict[str, CompatReport] = {}
    for m in modalities if modalities is not None else bundle.modalities:
        records = onnx_graphs(bundle.modality(m), str(bundle.path / "manifest.json"), m)
        for key, record in sorted(records.items()):
            if variants is not None and record.variant not in variants:
                continue
            path = bundle.file(record.file, verify=verify)
            try:
                model = onnx.load(str(path), load_external_data=False)
            except Exception as exc:  # protobuf's DecodeError, OSError...
                raise BundleError(f"bundle {bundle.path}: {record.file} is not a readable ONNX graph: {exc}") from exc
            reports[f"{m}/{key}"] = check_graph(model)
    return reports


# ----------------------------------------------------------------------------- helpers
def _nodes(graph: Any) -> Iterator[Any]:
    """Every node of ``graph`` and of the subgraphs its nodes hold (If/Loop/Scan bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _nodes(attr.g)
            for g in attr.graphs:
                yield from _nodes(g)


def _element_types(graph: Any) -> dict[str, str]:
    """Tensor name -> matrix type name, over inputs, initializers, value_info and outputs (subgraphs too)."""
    import onnx

    out: dict[str, str] = {}

    def add(name: str, elem_type: int) -> None:
        if name and elem_type:
            onnx_name = onnx.TensorProto.DataType.Name(elem_type)
            out[name] = ONNX_TO_MATRIX.get(onnx_name, onnx_name)

    def walk(g: Any) -> None:
        for vi in (*g.input, *g.value_info, *g.output):
            if vi.type.HasField("tensor_type"):
                add(vi.name, vi.type.tensor_type.elem_type)
        for init in g.initializer:
            add(init.name, init.data_type)
        for sparse in g.sparse_initializer:
            add(sparse.values.name, sparse.values.data_type)
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(graph)
    return out


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


__all__ = [
    "OPSET_RANGE",
    "OperatorSupport",
    "Problem",
    "CompatReport",
    "load_support_matrix",
    "matrix_header",
    "matrix_opset_range",
    "check_graph",
    "raise_if_incompatible",
    "check_bundle_graphs",
]
