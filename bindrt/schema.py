"""The bundle manifest's schema, once: typed records that read, check and write ``manifest.json``.

Every stage that writes a manifest (convert/train, export, validate) builds these
records and stores ``to_dict()``; every reader (``Bundle.open``, the runtimes)
checks the JSON through ``from_dict``, which raises :class:`BundleError` naming the
field path (``manifest.json: modalities.depth.artifacts.onnx.graphs["depth.fp32"].opset:
expected int, got "18"``). The shipped JSON Schema (``bindrt/manifest.schema.json``,
draft 2020-12, for non-Python clients) is generated from the same records by
:func:`json_schema`; regenerate it with ``python -m bindrt.schema`` (``--check``
compares instead). Torch- and onnx-free.

Compatibility rules:

* ``schema_version`` and each artefact's ``version`` are integers this bindrt
  lists as supported; any other value fails, naming the field. Incompatible
  changes bump them; adding an optional field does not.
* Unknown keys are tolerated in every record (a newer bindrt may add optional
  fields) and kept on a round trip (``Record.extra``); only ``config`` is closed
  (an unknown architecture field is a different model). Enumerations
  (modalities, precisions, variants, dtypes) are closed within a version.
* ``artifacts`` is a registry keyed by artefact name: names registered with
  :func:`artifact` (``onnx`` today; TensorRT engines and Triton model
  repositories later) parse as their record; an unknown name parses as a generic
  :class:`Artifact` (``format`` + integer ``version``, the rest kept as is), so a
  bundle a newer bindrt extended still opens for what this one can run.
* Checks the JSON Schema cannot express (the weights file is listed under
  ``files``; a graph's key matches its kind, precision and variant; a graph's
  modality is its entry's; ``config`` heads divide widths; symlinks stay inside the
  bundle) are made by the records / ``Bundle.open`` only.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Sequence, TypeVar

from bindrt.config import MAX_FIELD, MODALITIES, ImageBindConfig
from bindrt.errors import BundleError
from bindrt.layouts import ALL_LAYOUTS
from bindrt.tiers import TIERS

MANIFEST = "manifest.json"
FORMAT = "bindrt-bundle"
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")

ONNX_FORMAT = "bindrt-onnx"
ONNX_FORMAT_VERSION = 1
ARTIFACT_KEY = "onnx"
TENSORRT_FORMAT = "bindrt-tensorrt"
TENSORRT_FORMAT_VERSION = 1
TENSORRT_KEY = "tensorrt"
TRITON_FORMAT = "bindrt-triton-repository"
TRITON_FORMAT_VERSION = 1
TRITON_KEY = "triton"
#: graph precisions (bf16: for TensorRT, validated in fp32 emulation; fp8: Q/DQ graphs from NVIDIA Model
#: Optimizer, ``export --modelopt``)
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8", "fp8")
#: plain; fused (ONNX Runtime com.microsoft ops); nncf (int8 Q/DQ by NNCF, for OpenVINO); modelopt
#: (int8 / fp8 Q/DQ by NVIDIA Model Optimizer, for TensorRT)
VARIANTS: tuple[str, ...] = ("plain", "fused", "nncf", "modelopt")
OUTPUT_NAME = "embedding"
DTYPES: tuple[str, ...] = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool")

R = TypeVar("R", bound="Record")


# ----------------------------------------------------------------------------- field paths and value kinds
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _show(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _regex(pattern: str) -> "re.Pattern[str]":
    """Python reading of a JSON Schema (ECMA) pattern: ``$`` is end of string, not before a final newline."""
    return re.compile(pattern.replace("$", r"\Z"))


@dataclass(frozen=True)
class Loc:
    """Where a value sits: the file (``where``) and the field path inside it."""

    where: str
    path: str = ""

    def key(self, key: Any) -> "Loc":
        if isinstance(key, str) and _IDENT.match(key):
            return Loc(self.where, f"{self.path}.{key}" if self.path else key)
        return Loc(self.where, f"{self.path}[{_show(key)}]")

    def index(self, i: int) -> "Loc":
        return Loc(self.where, f"{self.path}[{i}]")

    def fail(self, problem: str) -> NoReturn:
        raise BundleError(f"{self.where}: {self.path}: {problem}" if self.path else f"{self.where}: {problem}")


class Kind:
    """One JSON value type: ``parse`` checks and converts, ``dump`` writes back, ``schema`` describes it."""

    name = "value"

    def parse(self, value: Any, at: Loc) -> Any:
        return value

    def dump(self, value: Any) -> Any:
        return copy.deepcopy(value)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {}

    def wrong(self, value: Any, at: Loc) -> NoReturn:
        at.fail(f"expected {self.name}, got {_show(value)}")


class Obj(Kind):
    name = "object"

    def parse(self, value: Any, at: Loc) -> Any:
        if not isinstance(value, Mapping):
            self.wrong(value, at)
        for k in value:
            if not isinstance(k, str):
                at.fail(f"key {k!r} is a {type(k).__name__}, expected a string")
        return value

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object"}


class Bool(Kind):
    name = "bool"

    def parse(self, value: Any, at: Loc) -> Any:
        return value if isinstance(value, bool) else self.wrong(value, at)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": "boolean"}


class Num(Kind):
    name = "number"

    def parse(self, value: Any, at: Loc) -> Any:
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else self.wrong(value, at)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": "number"}


class Int(Kind):
    name = "int"

    def __init__(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.minimum, self.maximum = minimum, maximum

    def parse(self, value: Any, at: Loc) -> Any:
        if type(value) is not int:  # True == 1: compare the type
            self.wrong(value, at)
        if self.minimum is not None and value < self.minimum:
            at.fail(f"expected int >= {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            at.fail(f"expected int <= {self.maximum}, got {value}")
        return value

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


class Version(Int):
    """A format version: an integer this bindrt reads; anything else says which versions it reads."""

    def __init__(self, supported: Sequence[int], of: str, fix: str) -> None:
        super().__init__()
        self.supported, self.of, self.fix = tuple(supported), of, fix

    def parse(self, value: Any, at: Loc) -> Any:
        super().parse(value, at)
        if value not in self.supported:
            at.fail(
                f"unsupported version {value} of {self.of!r}; this bindrt reads version "
                f"{', '.join(map(str, self.supported))}; upgrade bindrt or {self.fix}"
            )
        return value

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": "integer", "enum": list(self.supported)}


class Str(Kind):
    name = "str"

    def __init__(
        self,
        *,
        enum: Sequence[str] = (),
        const: str | None = None,
        pattern: str | None = None,
        what: str | None = None,
        noun: str | None = None,
    ) -> None:
        self.enum, self.const, self.pattern, self.what, self.noun = tuple(enum), const, pattern, what, noun

    def parse(self, value: Any, at: Loc) -> Any:
        if not isinstance(value, str):
            self.wrong(value, at)
        if self.const is not None and value != self.const:
            at.fail(f"expected {_show(self.const)}, got {_show(value)}")
        if self.enum and value not in self.enum:
            if self.noun:
                at.fail(f"unknown {self.noun} {value!r}; expected one of {', '.join(self.enum)}")
            at.fail(f"expected one of {', '.join(map(_show, self.enum))}, got {_show(value)}")
        if self.pattern is not None and not _regex(self.pattern).search(value):
            at.fail(f"expected {self.what or 'a string matching ' + self.pattern}, got {_show(value)}")
        return value

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if self.const is not None:
            out["const"] = self.const
        if self.enum:
            out["enum"] = list(self.enum)
        if self.pattern is not None:
            out["pattern"] = self.pattern
        return out


#: (pattern, problem): a bundle path is relative, POSIX, and names a file inside the bundle. First match wins.
_PATH_RULES: tuple[tuple[str, str], ...] = (
    (r"\x00", "contains a NUL character"),
    (r"^$|^/|\\|(^|/)\.\.(/|$)|^(\.?/)*[^/]*:", "points outside the bundle directory; refusing to follow it"),
    (r"^(\./?)*$", "names the bundle directory itself, expected a file inside it"),
)


def relpath_problem(relpath: Any) -> str | None:
    """Why ``relpath`` cannot name a file inside a bundle, from its text alone (None when it can)."""
    if not isinstance(relpath, str):
        return f"is a {type(relpath).__name__}, expected a string"
    return next((problem for pattern, problem in _PATH_RULES if _regex(pattern).search(relpath)), None)


class RelPath(Str):
    """A file path inside the bundle (symlinks are checked against the directory by ``Bundle``)."""

    def parse(self, value: Any, at: Loc) -> Any:
        problem = relpath_problem(value) if isinstance(value, str) else None
        return super().parse(value, at) if problem is None else at.fail(problem)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return super().schema(defs) | {"not": {"anyOf": [{"pattern": p} for p, _ in _PATH_RULES]}}


class Nullable(Kind):
    def __init__(self, inner: Kind) -> None:
        self.inner = inner
        self.name = f"{inner.name} or null"

    def parse(self, value: Any, at: Loc) -> Any:
        return None if value is None else self.inner.parse(value, at)

    def dump(self, value: Any) -> Any:
        return None if value is None else self.inner.dump(value)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"anyOf": [self.inner.schema(defs), {"type": "null"}]}


class IntOrStr(Kind):
    """A tensor axis: a fixed size or a symbolic name (``"batch"``, ``"clips"``, ``"samples"``)."""

    name = "int or str"

    def parse(self, value: Any, at: Loc) -> Any:
        return value if isinstance(value, str) or (type(value) is int and value >= 0) else self.wrong(value, at)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]}


class ListOf(Kind):
    name = "list"

    def __init__(self, item: Kind) -> None:
        self.item = item

    def parse(self, value: Any, at: Loc) -> Any:
        if not isinstance(value, (list, tuple)):
            self.wrong(value, at)
        return tuple(self.item.parse(v, at.index(i)) for i, v in enumerate(value))

    def dump(self, value: Any) -> Any:
        return [self.item.dump(v) for v in value]

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema(defs)}


class MapOf(Obj):
    """A JSON object of one value kind; ``keys`` (a Str kind) checks the keys."""

    def __init__(self, value: Kind, keys: Str | None = None) -> None:
        self.value, self.keys = value, keys

    def parse(self, value: Any, at: Loc) -> Any:
        super().parse(value, at)
        if self.keys is not None:
            for k in value:
                self.keys.parse(k, at.key(k))
        return {k: self.value.parse(v, at.key(k)) for k, v in value.items()}

    def dump(self, value: Any) -> Any:
        return {k: self.value.dump(v) for k, v in value.items()}

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "object", "additionalProperties": self.value.schema(defs)}
        if self.keys is not None:
            out["propertyNames"] = self.keys.schema(defs)
        return out


class Rec(Kind):
    name = "object"

    def __init__(self, cls: "type[Record]") -> None:
        self.cls = cls

    def parse(self, value: Any, at: Loc) -> Any:
        return self.cls._parse(value, at)

    def dump(self, value: Any) -> Any:
        return value.to_dict()

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return self.cls._ref(defs)


def _field(kind: Kind, doc: str = "", *, required: bool = True) -> Any:
    """A record field: its JSON kind, whether it must be present, and a line for the JSON Schema.

    Absent optional fields are None, so a field that may hold JSON null must be required.
    """
    if isinstance(kind, Nullable) and not required:
        raise TypeError("a nullable field must be required (None means absent)")
    meta = {"kind": kind, "required": required, "doc": doc}
    return field(metadata=meta) if required else field(default=None, metadata=meta)


# ----------------------------------------------------------------------------- records
@dataclass(frozen=True, kw_only=True)
class Record:
    """Base of every manifest record; absent optional fields are None and are not written back."""

    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)  # unknown keys, kept as read

    @classmethod
    def json_fields(cls) -> tuple[dataclasses.Field, ...]:
        return tuple(f for f in dataclasses.fields(cls) if "kind" in f.metadata)

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str = MANIFEST) -> R:
        """Check ``data`` and build the record; BundleError names ``where`` and the field path."""
        return cls._parse(data, Loc(where))

    @classmethod
    def _parse(cls: type[R], data: Any, at: Loc) -> R:
        Obj().parse(data, at)
        values: dict[str, Any] = {}
        for f in cls.json_fields():
            if f.name in data:
                values[f.name] = f.metadata["kind"].parse(data[f.name], at.key(f.name))
            elif f.metadata["required"]:
                at.key(f.name).fail("required field is missing")
        names = {f.name for f in cls.json_fields()}
        record = cls(**values, extra={k: copy.deepcopy(v) for k, v in data.items() if k not in names})
        record._check(at)
        return record

    def _check(self, at: Loc) -> None:
        """Checks across fields (the JSON Schema cannot express them)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.json_fields():
            value = getattr(self, f.name)
            if value is not None or f.metadata["required"]:
                out[f.name] = f.metadata["kind"].dump(value)
        out.update(copy.deepcopy(dict(self.extra)))
        return out

    def replace(self: R, **changes: Any) -> R:
        return dataclasses.replace(self, **changes)

    @classmethod
    def _ref(cls, defs: dict[str, Any]) -> dict[str, Any]:
        if cls.__name__ not in defs:
            defs[cls.__name__] = {}  # placeholder: records may nest themselves
            defs[cls.__name__] = cls._schema(defs)
        return {"$ref": f"#/$defs/{cls.__name__}"}

    @classmethod
    def _schema(cls, defs: dict[str, Any]) -> dict[str, Any]:
        props = {}
        for f in cls.json_fields():
            doc = {"description": f.metadata["doc"]} if f.metadata["doc"] else {}
            props[f.name] = f.metadata["kind"].schema(defs) | doc
        out: dict[str, Any] = {"type": "object", "description": _first_paragraph(cls.__doc__), "properties": props}
        required = [f.name for f in cls.json_fields() if f.metadata["required"]]
        if required:
            out["required"] = required
        return out


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


_SHAPE = ListOf(IntOrStr())
_DTYPE = Str(enum=DTYPES)


@dataclass(frozen=True, kw_only=True)
class FileEntry(Record):
    """A file of the bundle, verified when a stage reads it."""

    sha256: str = _field(Str(pattern="^[0-9a-f]{64}$", what="64 lower-case hex digits"))
    bytes: int = _field(Int(minimum=0))


@dataclass(frozen=True, kw_only=True)
class TensorSpec(Record):
    """A model input or output of a modality (batch and clips are symbolic axes)."""

    shape: tuple[int | str, ...] = _field(_SHAPE)
    dtype: str = _field(_DTYPE)


@dataclass(frozen=True, kw_only=True)
class GraphTensor(Record):
    """An input or output an ONNX graph declares."""

    name: str = _field(Str())
    dtype: str = _field(_DTYPE)
    shape: tuple[int | str, ...] = _field(_SHAPE)


@dataclass(frozen=True, kw_only=True)
class HistoryEntry(Record):
    """One stage that wrote the bundle."""

    stage: str = _field(Str(), "convert, train, export, validate...")
    time: str | None = _field(Str(), "ISO 8601, UTC", required=False)
    source: str | None = _field(Str(), "what the stage read (checkpoint name, training run)", required=False)
    passed: bool | None = _field(Bool(), "validate: every graph within tolerance", required=False)
    graphs: tuple[str, ...] | None = _field(ListOf(Str()), "export/validate: <modality>/<graph key>", required=False)


# -- artefacts ------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Artifact(Record):
    """An artefact of one modality (``artifacts.<name>``); every artefact names its format and format version.

    Names this bindrt does not know parse as this generic record and are kept as they are.
    """

    format: str = _field(Str(), "what wrote the artefact and how to read it")
    version: int = _field(Int(minimum=1), "incompatible changes bump it")


ARTIFACTS: dict[str, type[Artifact]] = {}


def artifact(name: str) -> Callable[[type[Artifact]], type[Artifact]]:
    """Register an artefact record under its key in ``artifacts`` (``onnx``; later TensorRT, Triton)."""

    def register(cls: type[Artifact]) -> type[Artifact]:
        ARTIFACTS[name] = cls
        return cls

    return register


def read_artifact(bundle: Any, modality: str, key: str) -> "Artifact | None":
    """The ``artifacts[key]`` record of one modality of a bundle, parsed by its registered class; None if absent."""
    section = (bundle.manifest["modalities"][modality].get("artifacts") or {}).get(key)
    if section is None:
        return None
    return ARTIFACTS[key].from_dict(section, f"{bundle.path / 'manifest.json'}: modalities.{modality}.artifacts.{key}")


def write_artifact(bundle: Any, modality: str, key: str, section: Artifact) -> None:
    """Put ``section`` under ``artifacts[key]`` of one modality in the bundle's manifest (the caller saves)."""
    bundle.manifest["modalities"][modality].setdefault("artifacts", {})[key] = section.to_dict()


class Artifacts(Obj):
    """The artefact registry of a modality: registered names as their records, others generic."""

    def parse(self, value: Any, at: Loc) -> Any:
        super().parse(value, at)
        return {k: Rec(ARTIFACTS.get(k, Artifact)).parse(v, at.key(k)) for k, v in value.items()}

    def dump(self, value: Any) -> Any:
        return {k: v.to_dict() for k, v in value.items()}

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {k: c._ref(defs) for k, c in ARTIFACTS.items()},
            "additionalProperties": Artifact._ref(defs),
        }


@dataclass(frozen=True, kw_only=True)
class Tolerance(Record):
    """The bound a graph must meet against the torch fp32 encoder."""

    metric: str = _field(Str(enum=("max_rel_diff", "min_cosine")))
    bound: float = _field(Num())
    sense: str = _field(Str(enum=("max", "min")), "max: metric <= bound; min: metric >= bound")
    top1_agreement: float | None = _field(Num(), required=False)
    top1_tie_margin: float | None = _field(Num(), required=False)


@dataclass(frozen=True, kw_only=True)
class Validation(Record):
    """A graph's validation against the torch fp32 encoder (see bindrt.export.validate)."""

    passed: bool = _field(Bool())
    failures: tuple[str, ...] = _field(ListOf(Str()))
    tolerance: Tolerance = _field(Rec(Tolerance))
    reference: str | None = _field(Str(), required=False)
    suites: Mapping[str, Any] | None = _field(
        MapOf(Obj()), "per suite (random, real): batch_<n> metrics", required=False
    )
    worst: Mapping[str, float] | None = _field(MapOf(Num()), required=False)
    tier: str | None = _field(
        Str(enum=tuple(TIERS)), "strictest precision tier the worst metrics met (absent: none)", required=False
    )
    batch_sizes: tuple[int, ...] | None = _field(ListOf(Int(minimum=1)), required=False)
    runtime: Mapping[str, Any] | None = _field(Obj(), required=False)
    seconds: float | None = _field(Num(), required=False)
    time: str | None = _field(Str(), "when `bindrt validate` re-ran it", required=False)


@dataclass(frozen=True, kw_only=True)
class LowPrecisionSummary(Record):
    """How an fp16 or bf16 graph was converted: which ops stay fp32 and the casts between them."""

    io_dtype: str | None = _field(_DTYPE, required=False)
    low_dtype: str | None = _field(Str(enum=("float16", "bfloat16")), "the low-precision region's type", required=False)
    fp32_ops: tuple[str, ...] | None = _field(ListOf(Str()), required=False)
    fp32_regions: Mapping[str, Any] | None = _field(Obj(), required=False)
    casts_inserted: int | None = _field(Int(minimum=0), required=False)
    low_nodes: int | None = _field(Int(minimum=0), "nodes computing in low_dtype", required=False)
    fp32_nodes: int | None = _field(Int(minimum=0), required=False)
    low_initializers: int | None = _field(Int(minimum=0), required=False)
    fp32_initializers: int | None = _field(Int(minimum=0), required=False)
    strongly_typed: bool | None = _field(Bool(), required=False)
    fp16_nodes: int | None = _field(
        Int(minimum=0), "fp16 graphs exported before bf16 existed: low_nodes", required=False
    )
    fp16_initializers: int | None = _field(
        Int(minimum=0), "fp16 graphs exported before bf16 existed: low_initializers", required=False
    )


@dataclass(frozen=True, kw_only=True)
class Quantization(Record):
    """How an int8 graph was quantized (``batch_invariant``: whether batch-mates change an item's embedding)."""

    tool: str | None = _field(Str(), required=False)
    method: str = _field(Str(enum=("dynamic", "static")))
    recipe: str | None = _field(Str(), "NNCF graphs: which of bindrt.export.int8_nncf.RECIPES", required=False)
    format: str | None = _field(Str(), required=False)
    weights: str | None = _field(Str(), required=False)
    op_types: tuple[str, ...] | None = _field(ListOf(Str()), required=False)
    matmul_const_b_only: bool | None = _field(Bool(), required=False)
    quantized_nodes: int | None = _field(Int(minimum=0), required=False)
    kept_fp32: tuple[str, ...] | None = _field(ListOf(Str()), required=False)
    activations: str | None = _field(Str(), required=False)
    calibration: Mapping[str, Any] | None = _field(Nullable(Obj()), "static: what calibrated it; dynamic: null")
    batch_invariant: bool | None = _field(Bool(), required=False)


@dataclass(frozen=True, kw_only=True)
class Fusions(Record):
    """What the fused variant fused (ONNX Runtime transformer fusions and bindrt's own)."""

    tool: str | None = _field(Str(), required=False)
    model_type: str | None = _field(Str(), required=False)
    num_heads: int | None = _field(Int(minimum=1), required=False)
    hidden_size: int | None = _field(Int(minimum=1), required=False)
    attention: str | None = _field(Str(), required=False)
    fused_operator_statistics: Mapping[str, int] = _field(MapOf(Int(minimum=0)), "fused op type -> count")
    skip_layernorm: str | None = _field(Str(), required=False)
    gelu: str | None = _field(Str(), required=False)


@dataclass(frozen=True, kw_only=True)
class OnnxGraph(Record):
    """One exported ONNX graph: ``onnx/<modality>/<key>.onnx``, key ``<kind>.<precision>[.fused]``."""

    kind: str = _field(Str(), "graph kind: an input kind, or a raw-input kind (audio_waveform, vision_uint8)")
    modality: str = _field(Str(enum=MODALITIES))
    precision: str = _field(Str(enum=PRECISIONS))
    variant: str = _field(Str(enum=VARIANTS))
    file: str = _field(RelPath(), "listed under files")
    external_data: tuple[str, ...] = _field(ListOf(RelPath()), "ONNX external-data files, listed under files")
    opset: int = _field(Int(minimum=1), "default-domain opset")
    ir_version: int | None = _field(Int(minimum=1), required=False)
    domains: tuple[str, ...] | None = _field(ListOf(Str()), required=False)
    inputs: tuple[GraphTensor, ...] = _field(ListOf(Rec(GraphTensor)))
    outputs: tuple[GraphTensor, ...] = _field(ListOf(Rec(GraphTensor)))
    op_counts: Mapping[str, int] | None = _field(MapOf(Int(minimum=0)), required=False)
    nodes: int | None = _field(Int(minimum=0), required=False)
    exporter: str | None = _field(Str(), required=False)
    torch: str | None = _field(Str(), "torch version that exported it", required=False)
    onnx: str | None = _field(Str(), "onnx version that checked it", required=False)
    created: str | None = _field(Str(), "ISO 8601, UTC", required=False)
    pooled_last_block: bool | None = _field(Bool(), "last block computed for the pooled token only", required=False)
    preprocessing: Mapping[str, Any] | None = _field(
        Nullable(Obj()), "text: the tokenizer contract; raw kinds: the in-graph preprocessing; else null"
    )
    fp16: LowPrecisionSummary | None = _field(Rec(LowPrecisionSummary), required=False)
    bf16: LowPrecisionSummary | None = _field(Rec(LowPrecisionSummary), required=False)
    fusions: Fusions | None = _field(Rec(Fusions), required=False)
    quantization: Quantization | None = _field(Rec(Quantization), required=False)
    composed_from: str | None = _field(
        Str(), "raw kinds: the graph key the preprocessing was merged into", required=False
    )
    passes: tuple[str, ...] | None = _field(ListOf(Str()), required=False)
    validation: Validation | None = _field(Rec(Validation), required=False)
    tensorrt: Mapping[str, Any] | None = _field(
        Obj(), "export --target tensorrt: the ONNX-TensorRT operator check (bindrt.tensorrt.compat)", required=False
    )
    seconds: float | None = _field(Num(), required=False)

    @property
    def key(self) -> str:
        return graph_key(self.kind, self.precision, self.variant)


@artifact(ARTIFACT_KEY)
@dataclass(frozen=True, kw_only=True)
class OnnxArtifact(Artifact):
    """The ONNX graphs ``bindrt export`` wrote for a modality, keyed ``<kind>.<precision>[.fused]``."""

    format: str = _field(Str(const=ONNX_FORMAT))
    version: int = _field(Version((ONNX_FORMAT_VERSION,), of=ONNX_FORMAT, fix="re-export the graphs"))
    graphs: Mapping[str, OnnxGraph] = _field(MapOf(Rec(OnnxGraph)))

    def _check(self, at: Loc) -> None:
        for key, graph in self.graphs.items():
            if key != graph.key:
                at.key("graphs").key(key).fail(f"key does not match its kind, precision and variant ({graph.key!r})")

    def with_graph(self, graph: OnnxGraph) -> "OnnxArtifact":
        return self.replace(graphs={**self.graphs, graph.key: graph})


@dataclass(frozen=True, kw_only=True)
class ProfileShapes(Record):
    """One optimisation profile of an engine input."""

    min: tuple[int, ...] = _field(ListOf(Int(minimum=1)))
    opt: tuple[int, ...] = _field(ListOf(Int(minimum=1)))
    max: tuple[int, ...] = _field(ListOf(Int(minimum=1)))


@dataclass(frozen=True, kw_only=True)
class TensorRtEngine(Record):
    """One TensorRT engine ``bindrt build`` wrote: ``engines/tensorrt/<modality>/<kind>.<precision>.plan``."""

    kind: str = _field(Str())
    modality: str = _field(Str(enum=MODALITIES))
    precision: str = _field(Str(enum=("fp32", "fp16", "bf16", "int8", "fp8")))
    file: str = _field(RelPath(), "listed under files")
    graph: str = _field(RelPath(), "the ONNX graph it was built from")
    graph_sha256: str = _field(Str(pattern=r"^[0-9a-f]{64}$"))
    tensorrt: str = _field(Str(), "TensorRT version that built it")
    gpu: str = _field(Str(), "GPU name it was built on")
    compute_capability: tuple[int, ...] = _field(ListOf(Int(minimum=0)))
    input: str = _field(Str())
    shapes: ProfileShapes = _field(Rec(ProfileShapes))
    options: Mapping[str, Any] = _field(Obj(), "builder options (workspace, opt level, compatibility)")
    strongly_typed: bool = _field(Bool())
    cache_key: str = _field(Str(pattern=r"^[0-9a-f]{64}$"), "bindrt.tensorrt.plan.engine_cache_key")
    trtexec: str = _field(Str(), "the trtexec command line that builds the same engine")
    layers: str | None = _field(RelPath(), "engine inspector JSON, listed under files", required=False)
    log: str | None = _field(RelPath(), "the build log, listed under files", required=False)
    created: str | None = _field(Str(), "ISO 8601, UTC", required=False)
    seconds: float | None = _field(Num(), required=False)
    validation: Validation | None = _field(
        Rec(Validation), "bindrt validate: the engine's outputs against torch fp32", required=False
    )

    @property
    def key(self) -> str:
        return f"{self.kind}.{self.precision}"


@artifact(TENSORRT_KEY)
@dataclass(frozen=True, kw_only=True)
class TensorRtArtifact(Artifact):
    """The TensorRT engines ``bindrt build`` wrote for a modality, keyed ``<kind>.<precision>``."""

    format: str = _field(Str(const=TENSORRT_FORMAT))
    version: int = _field(Version((TENSORRT_FORMAT_VERSION,), of=TENSORRT_FORMAT, fix="rebuild the engines"))
    engines: Mapping[str, TensorRtEngine] = _field(MapOf(Rec(TensorRtEngine)))

    def _check(self, at: Loc) -> None:
        for key, engine in self.engines.items():
            if key != engine.key:
                at.key("engines").key(key).fail(f"key does not match its kind and precision ({engine.key!r})")

    def with_engine(self, engine: TensorRtEngine) -> "TensorRtArtifact":
        return self.replace(engines={**self.engines, engine.key: engine})


@dataclass(frozen=True, kw_only=True)
class TritonRepository(Record):
    """One Triton model repository ``bindrt triton-repo`` wrote from the bundle."""

    path: str = _field(Str(), "where it was written (absolute; it may have moved since)")
    platform: str = _field(Str(enum=("onnxruntime", "tensorrt", "python")), "what runs the encoders")
    precision: str = _field(Str(enum=PRECISIONS))
    ensemble: bool = _field(Bool(), "raw-media ensembles (Python preprocessing -> encoder) included")
    models: tuple[str, ...] = _field(ListOf(Str()), "the model names (bindrt.serving.protocol)")
    created: str | None = _field(Str(), "ISO 8601, UTC", required=False)


@artifact(TRITON_KEY)
@dataclass(frozen=True, kw_only=True)
class TritonRepositoryArtifact(Artifact):
    """The Triton model repositories ``bindrt triton-repo`` wrote serving this modality, keyed by path."""

    format: str = _field(Str(const=TRITON_FORMAT))
    version: int = _field(Version((TRITON_FORMAT_VERSION,), of=TRITON_FORMAT, fix="write the repository again"))
    repositories: Mapping[str, TritonRepository] = _field(MapOf(Rec(TritonRepository)))

    def with_repository(self, repo: TritonRepository) -> "TritonRepositoryArtifact":
        return self.replace(repositories={**self.repositories, repo.path: repo})


# -- the manifest ---------------------------------------------------------------
class Config(Obj):
    """The model configuration (``ImageBindConfig``: closed, positive integers, heads divide widths)."""

    def parse(self, value: Any, at: Loc) -> Any:
        super().parse(value, at)
        try:
            return ImageBindConfig.from_dict(value)
        except Exception as exc:  # ConfigError with its own message
            at.fail(f"invalid config: {exc}")

    def dump(self, value: Any) -> Any:
        return value.to_dict()

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        props = {
            f.name: {
                "type": "integer",
                "minimum": 1,
                "maximum": next(v for k, v in MAX_FIELD.items() if f.name.endswith(k)),
            }
            for f in dataclasses.fields(ImageBindConfig)
        }
        return {
            "type": "object",
            "description": "ImageBindConfig fields (absent: imagebind_huge's); "
            "<m>_embed_dim must be a multiple of <m>_num_heads",
            "properties": props,
            "additionalProperties": False,
        }


@dataclass(frozen=True, kw_only=True)
class ModalityEntry(Record):
    """One encoder of the bundle: its weights, input/output contract, preprocessing and artefacts."""

    weights: str = _field(RelPath(pattern=r"\.safetensors$", what="a .safetensors file"), "listed under files")
    inputs: Mapping[str, TensorSpec] = _field(MapOf(Rec(TensorSpec)), "input kind -> model input")
    output: TensorSpec = _field(Rec(TensorSpec))
    preprocessing: Mapping[str, Any] | None = _field(
        Obj(), "the preprocessing contract, for non-Python clients", required=False
    )
    artifacts: Mapping[str, Artifact] | None = _field(Artifacts(), "artefact name -> record (onnx...)", required=False)

    @property
    def onnx(self) -> OnnxArtifact | None:
        found = (self.artifacts or {}).get(ARTIFACT_KEY)
        return found if isinstance(found, OnnxArtifact) else None


@dataclass(frozen=True, kw_only=True)
class Manifest(Record):
    """``manifest.json`` of a bindrt bundle: the single schema every stage reads and writes."""

    format: str = _field(Str(const=FORMAT))
    schema_version: int = _field(Version((SCHEMA_VERSION,), of=FORMAT, fix="re-create the bundle"))
    config: ImageBindConfig = _field(Config())
    modalities: Mapping[str, ModalityEntry] = _field(
        MapOf(Rec(ModalityEntry), keys=Str(enum=MODALITIES, noun="modality"))
    )
    files: Mapping[str, FileEntry] = _field(MapOf(Rec(FileEntry), keys=RelPath()), "bundle path -> checksum")
    producer: Mapping[str, str] | None = _field(MapOf(Str()), "package -> version", required=False)
    history: tuple[HistoryEntry, ...] | None = _field(ListOf(Rec(HistoryEntry)), required=False)

    def _check(self, at: Loc) -> None:
        for name, entry in self.modalities.items():
            here = at.key("modalities").key(name)
            if entry.weights not in self.files:
                here.key("weights").fail(f"{_show(entry.weights)} is not listed under files")
            for key, graph in (entry.onnx.graphs if entry.onnx else {}).items():
                if graph.modality != name:
                    here.key("artifacts").key(ARTIFACT_KEY).key("graphs").key(key).key("modality").fail(
                        f"{graph.modality!r} is not the modality of its entry ({name!r})"
                    )


# ----------------------------------------------------------------------------- ONNX graph kinds (torch-free)
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


GRAPH_KINDS: dict[str, GraphKind] = {
    k: GraphKind(k, v.encoder, tuple(v.symbolic_shape()), v.dtype, v.multi_clip, v.raw, v.based_on)
    for k, v in ALL_LAYOUTS.items()
}
#: Raw kinds each modality gains with --with-preprocessing.
RAW_KINDS: dict[str, tuple[str, ...]] = {"audio": ("audio_waveform",), "vision": ("vision_uint8",)}


def base_kinds(modality: str) -> tuple[str, ...]:
    """The preprocessed-input graph kinds of one encoder (vision also takes video)."""
    return tuple(k for k, g in GRAPH_KINDS.items() if g.modality == modality and not g.raw)


def graph_key(kind: str, precision: str, variant: str = "plain") -> str:
    return f"{kind}.{precision}" + ("" if variant == "plain" else f".{variant}")


def graph_relpath(modality: str, key: str) -> str:
    return f"onnx/{modality}/{key}.onnx"


def onnx_section(modality_entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The raw ``artifacts.onnx`` section of one manifest modality entry (None when never exported)."""
    section = modality_entry.get("artifacts", {}).get(ARTIFACT_KEY)
    return section if isinstance(section, dict) else None


def onnx_graphs(
    modality_entry: Mapping[str, Any], where: str = MANIFEST, modality: str | None = None
) -> dict[str, OnnxGraph]:
    """The typed graph records of one manifest modality entry (empty when never exported)."""
    section = onnx_section(modality_entry)
    if section is None:
        return {}
    at = (Loc(where).key("modalities").key(modality) if modality else Loc(where)).key("artifacts").key(ARTIFACT_KEY)
    return dict(OnnxArtifact._parse(section, at).graphs)


def graph_records(modality_entry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The graph records of one modality entry as the manifest's JSON (for callers that index dicts)."""
    section = onnx_section(modality_entry)
    return dict(section.get("graphs", {})) if section else {}


def export_hint(bundle_path: Any, modality: str, precision: str, variant: str = "plain") -> str:
    flags = f" --modalities {modality} --precision {precision}" + {
        "fused": " --fused",
        "nncf": " --nncf",
        "modelopt": " --modelopt",
    }.get(variant, "")
    return f"run `bindrt export {bundle_path}{flags}` first"


# ----------------------------------------------------------------------------- JSON Schema
def json_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (draft 2020-12), generated from the records (shipped as ``SCHEMA_FILE``)."""
    defs: dict[str, Any] = {}
    Manifest._ref(defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:bindrt:manifest:{SCHEMA_VERSION}",
        "title": "bindrt bundle manifest.json",
        "description": "Generated by `python -m bindrt.schema` from bindrt/schema.py. Unknown keys are allowed "
        "(newer writers add optional fields); cross-field checks (weights and graph files listed under "
        "files, graph keys, symlinks) are the reader's.",
        "$ref": "#/$defs/Manifest",
        "$defs": dict(sorted(defs.items())),
    }


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=1) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bindrt.schema [--check] [PATH]``: (re)write the shipped JSON Schema, or check it is current."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    if any(a.startswith("-") for a in paths) or len(paths) > 1:
        print("usage: python -m bindrt.schema [--check] [PATH]", file=sys.stderr)
        return 2
    target = Path(paths[0]) if paths else SCHEMA_FILE
    text = json_schema_text()
    if check:
        current = target.read_text() if target.is_file() else None
        if current != text:
            print(f"{target} is out of date; run `python -m bindrt.schema`", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
