"""What an exported ONNX graph is: names, files, manifest records. Torch-free.

The records and graph kinds live in :mod:`bindrt.schema` (the manifest's one
schema, which the ONNX Runtime backend reads without importing this package);
they are re-exported here for the exporter and existing callers. One graph per
*graph kind* (an input kind of :data:`bindrt.layouts.INPUT_LAYOUTS`, or a
raw-input kind), precision and variant, stored at ``onnx/<modality>/<key>.onnx``
with ``key = "<kind>.<precision>[.fused]"`` and recorded as
``manifest["modalities"][m]["artifacts"]["onnx"]`` =
``{"format": "bindrt-onnx", "version": 1, "graphs": {key: OnnxGraph}}`` (the
fields of :class:`bindrt.schema.OnnxGraph`; ``validation``: see
:func:`bindrt.export.validate.validate_graph`). ``history`` gains ``export`` and
``validate`` entries; the text tokenizer's vocabulary is copied to
``onnx/text/bpe_simple_vocab_16e6.txt.gz``. Only the exporter's own settings are
defined here.
"""

from __future__ import annotations

from bindrt.schema import (  # noqa: F401  (re-exported: one definition, in bindrt.schema)
    ARTIFACT_KEY,
    GRAPH_KINDS,
    ONNX_FORMAT,
    ONNX_FORMAT_VERSION,
    OUTPUT_NAME,
    PRECISIONS,
    RAW_KINDS,
    VARIANTS,
    GraphKind,
    OnnxArtifact,
    OnnxGraph,
    base_kinds,
    export_hint,
    graph_key,
    graph_records,
    graph_relpath,
    onnx_graphs,
    onnx_section,
)

DEFAULT_OPSET = 18
MIN_OPSET = 17  # LayerNormalization is an ONNX op from opset 17 on

#: Graphs larger than this are written with ONNX external data (protobuf's hard limit is 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
