"""What an exported ONNX graph is: names, files, manifest records. Torch-free.

The ONNX Runtime backend reads these records without torch; the exporter
(:mod:`bindrt.export.pipeline`) writes them. One graph per *graph kind* (an input
kind of :data:`bindrt.layouts.INPUT_LAYOUTS`, or one of the raw-input kinds
below), precision and variant, stored at ``onnx/<modality>/<key>.onnx`` with
``key = "<kind>.<precision>[.fused]"``.

Manifest additions (``manifest["modalities"][m]["artifacts"]["onnx"]``)::

    {"format": "bindrt-onnx", "version": 1, "graphs": {"<key>": GRAPH_RECORD, ...}}

``GRAPH_RECORD`` keys: ``kind``, ``modality``, ``precision`` (fp32|fp16|int8),
``variant`` (plain|fused), ``file`` and ``external_data`` (bundle paths, each also
listed with sha256/bytes under the manifest's ``files``), ``opset``,
``ir_version``, ``domains``, ``inputs`` / ``outputs`` (lists of ``name``,
``dtype``, ``shape`` with symbolic ``"batch"`` / ``"clips"`` / ``"samples"``),
``op_counts``, ``nodes``, ``exporter``, ``torch``, ``onnx``, ``created``,
``preprocessing`` (tokenizer contract for text, in-graph preprocessing for raw
kinds, else null), ``passes``, ``seconds``; per variant ``fp16`` (fp32 islands,
casts), ``quantization`` (method, format, weights, op types), ``fusions``
(``fused_operator_statistics``), ``composed_from`` (raw kinds); and
``validation`` (see :func:`bindrt.export.validate.validate_graph`: ``passed``,
``failures``, ``tolerance``, ``reference``, ``suites.{random,real}.batch_{1,5}``
metrics, ``worst``, ``runtime``, ``seconds``; ``time`` when re-run by
``bindrt validate``). ``history`` gains ``{"stage": "export", "graphs": [...]}``
and ``{"stage": "validate", "passed": ..., "graphs": [...]}`` entries; the text
tokenizer's vocabulary is copied to ``onnx/text/bpe_simple_vocab_16e6.txt.gz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bindrt.layouts import INPUT_LAYOUTS

ONNX_FORMAT = "bindrt-onnx"
ONNX_FORMAT_VERSION = 1
ARTIFACT_KEY = "onnx"

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
VARIANTS: tuple[str, ...] = ("plain", "fused")
OUTPUT_NAME = "embedding"
DEFAULT_OPSET = 18
MIN_OPSET = 17  # LayerNormalization is an ONNX op from opset 17 on

#: Graphs larger than this are written with ONNX external data (protobuf's hard limit is 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


@dataclass(frozen=True)
class GraphKind:
    """One graph input contract: the kind's name is also the graph input's name."""

    name: str
    modality: str
    shape: tuple[int | str, ...]  # with symbolic axes
    dtype: str
    multi_clip: bool = False
    raw: bool = False  # takes raw media (in-graph preprocessing)
    based_on: str | None = None  # the preprocessed kind a raw kind feeds

    @property
    def input_name(self) -> str:
        return self.name


def _from_layout(kind: str) -> GraphKind:
    layout = INPUT_LAYOUTS[kind]
    return GraphKind(kind, layout.encoder, tuple(layout.symbolic_shape()), layout.dtype, layout.multi_clip)


GRAPH_KINDS: dict[str, GraphKind] = {k: _from_layout(k) for k in INPUT_LAYOUTS}
#: Raw-input graphs (``bindrt export --with-preprocessing``).
GRAPH_KINDS["audio_waveform"] = GraphKind(
    "audio_waveform", "audio", ("batch", "clips", "samples"), "float32", multi_clip=True, raw=True, based_on="audio"
)
GRAPH_KINDS["vision_uint8"] = GraphKind(
    "vision_uint8", "vision", ("batch", 224, 224, 3), "uint8", raw=True, based_on="vision"
)

#: Raw kinds each modality gains with --with-preprocessing.
RAW_KINDS: dict[str, tuple[str, ...]] = {"audio": ("audio_waveform",), "vision": ("vision_uint8",)}


def base_kinds(modality: str) -> tuple[str, ...]:
    """The preprocessed-input graph kinds of one encoder (vision also takes video)."""
    return tuple(k for k, g in GRAPH_KINDS.items() if g.modality == modality and not g.raw)


def graph_key(kind: str, precision: str, variant: str = "plain") -> str:
    return f"{kind}.{precision}" + ("" if variant == "plain" else f".{variant}")


def graph_relpath(modality: str, key: str) -> str:
    return f"onnx/{modality}/{key}.onnx"


def onnx_section(modality_entry: dict[str, Any]) -> dict[str, Any] | None:
    """The ``artifacts.onnx`` section of one manifest modality entry (None when never exported)."""
    section = modality_entry.get("artifacts", {}).get(ARTIFACT_KEY)
    return section if isinstance(section, dict) else None


def graph_records(modality_entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    section = onnx_section(modality_entry)
    return dict(section.get("graphs", {})) if section else {}


def export_hint(bundle_path: Any, modality: str, precision: str, variant: str = "plain") -> str:
    flags = f" --modalities {modality} --precision {precision}" + (" --fused" if variant == "fused" else "")
    return f"run `bindrt export {bundle_path}{flags}` first"
