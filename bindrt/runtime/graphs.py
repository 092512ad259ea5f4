"""The bundle's ONNX graphs as every graph-running backend sees them (onnxruntime, openvino).

One place for what the backends share: which manifest record serves a kind at a
precision and variant, the checksum-verified files, the I/O contract each graph
must declare, and the wording of the errors. Torch-, onnxruntime- and openvino-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from bindrt.bundle import Bundle
from bindrt.errors import BackendError, BundleError, UnknownModalityError
from bindrt.schema import (
    GRAPH_KINDS,
    OUTPUT_NAME,
    RAW_KINDS,
    OnnxGraph,
    base_kinds,
    export_hint,
    graph_key,
    onnx_graphs,
)

#: (name, dtype, shape) of one graph input or output; symbolic or unknown axes are non-integers.
Declared = tuple[str, str, tuple[Any, ...]]


def graph_export_hint(bundle_path: Path, modality: str, kind: str, precision: str, variant: str) -> str:
    """The ``bindrt export`` command that writes this graph (raw kinds need ``--with-preprocessing``)."""
    hint = export_hint(bundle_path, modality, precision, variant)
    return hint.replace("` first", " --with-preprocessing` first") if GRAPH_KINDS[kind].raw else hint


def pick_graph(
    records: dict[str, OnnxGraph],
    kind: str,
    precision: str,
    variants: Sequence[str],
    bundle_path: Path,
    modality: str,
) -> OnnxGraph:
    """The first of ``variants`` exported for ``kind`` at ``precision``, or a BackendError naming the export."""
    for v in variants:
        record = records.get(graph_key(kind, precision, v))
        if record is not None:
            return record
    have = ", ".join(sorted(records)) or "none"
    wanted = graph_key(kind, precision, variants[-1])
    hint = graph_export_hint(bundle_path, modality, kind, precision, variants[-1])
    raise BackendError(f"bundle {bundle_path} has no exported ONNX graph {modality}/{wanted} (it has: {have}); {hint}")


def bundle_graphs(
    bundle: Bundle,
    modalities: Sequence[str],
    *,
    precision: str,
    variants: Sequence[str],
    preprocessing: bool,
    verify: bool,
) -> Iterator[tuple[str, str, OnnxGraph, Path]]:
    """(modality, kind, record, verified graph path) for every kind the backend loads.

    External-data files are verified too, so a backend only has to open the path.
    """
    for m in modalities:
        records = onnx_graphs(bundle.modality(m), str(bundle.path / "manifest.json"), m)
        kinds = list(base_kinds(m)) + (list(RAW_KINDS.get(m, ())) if preprocessing else [])
        for kind in kinds:
            record = pick_graph(records, kind, precision, variants, bundle.path, m)
            path = bundle.file(record.file, verify=verify)
            for rel in record.external_data:
                bundle.file(rel, verify=verify)
            yield m, kind, record, path


def missing_kind_error(kind: str, loaded: Sequence[str]) -> Exception:
    """What ``run`` raises for a kind without a loaded graph (raw kinds: how to load them)."""
    if kind in GRAPH_KINDS and GRAPH_KINDS[kind].raw:
        return BackendError(
            f"the {kind!r} graph is not loaded; pass preprocessing=True to bindrt.load "
            "(and export with --with-preprocessing)"
        )
    return UnknownModalityError(f"input kind {kind!r} is not loaded; this backend has {', '.join(loaded)}")


def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


# ----------------------------------------------------------------------------- graph contract
#: ONNX Runtime's type strings of the dtypes graphs take or return
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
}


def check_graph_io(session: Any, kind: str, out_dim: int, *, where: str, hint: str) -> None:
    """:func:`check_declared_io` on an ONNX Runtime session (anything with ``get_inputs``/``get_outputs``)."""
    inputs = [_declared(a) for a in session.get_inputs()]
    outputs = [_declared(a) for a in session.get_outputs()]
    check_declared_io(inputs, outputs, kind, out_dim, where=where, hint=hint)


def check_declared_io(
    inputs: Sequence[Declared],
    outputs: Sequence[Declared],
    kind: str,
    out_dim: int,
    *,
    where: str,
    hint: str,
    unknown_ok: bool = False,
) -> None:
    """Raise BundleError unless the graph takes ``kind``'s input and returns ``(batch, out_dim)`` float32.

    Checksums prove a file is the one the manifest lists, not that it is the right
    graph: one swapped for another modality's (checksums updated) would load and
    fail at ``embed`` with a raw runtime error. BundleError, not BackendError:
    the bundle's contents are wrong, and re-exporting them is the fix.
    ``unknown_ok``: an unknown axis (None) may stand for a fixed one, for runtimes whose
    shape inference leaves some fixed axes dynamic (OpenVINO on the video graph).
    """
    spec = GRAPH_KINDS[kind]
    expected_in = (spec.input_name, spec.dtype, spec.shape)
    expected_out = (OUTPUT_NAME, "float32", ("batch", out_dim))
    if len(inputs) != 1 or not _matches(inputs[0], expected_in, unknown_ok):
        raise BundleError(
            f"{where} ({kind} graph) declares input(s) {', '.join(map(_signature, inputs)) or 'none'}, "
            f"expected {_signature(expected_in)}; to re-export it, {hint}"
        )
    if not any(_matches(o, expected_out, unknown_ok) for o in outputs):
        raise BundleError(
            f"{where} ({kind} graph) declares output(s) {', '.join(map(_signature, outputs)) or 'none'}, "
            f"expected {_signature(expected_out)}; to re-export it, {hint}"
        )


def _declared(arg: Any) -> Declared:
    """(name, dtype, shape) of an ONNX Runtime NodeArg."""
    return arg.name, _ORT_DTYPES.get(arg.type, arg.type), tuple(arg.shape or ())


def _matches(declared: Declared, expected: Declared, unknown_ok: bool = False) -> bool:
    """Same name, dtype and rank; equal fixed axes; symbolic where the contract is symbolic (any batch size)."""
    (name, dtype, shape), (want_name, want_dtype, want_shape) = declared, expected
    if (name, dtype, len(shape)) != (want_name, want_dtype, len(want_shape)):
        return False
    return all(
        (d == w or (unknown_ok and d is None)) if isinstance(w, int) else not isinstance(d, int)
        for d, w in zip(shape, want_shape)
    )


def _signature(declared: Declared) -> str:
    name, dtype, shape = declared
    return f"{name!r} ({', '.join('?' if d is None else str(d) for d in shape)}) {dtype}"
