"""The wire contract of bindrt's Triton models: names, tensors, dtypes, limits, error text. Torch-free.

One home for what ``bindrt serve`` (PyTriton), ``bindrt triton-repo`` (a model repository for a
stock Triton server) and :mod:`bindrt.client` must agree on:

* **raw models**, one per input kind a user embeds (``text``, ``vision``, ``video``, ``audio``,
  ``depth``, ``thermal``, ``imu``), named after the kind: text as UTF-8 ``BYTES``; encoded
  image/video/depth/thermal files as ``BYTES`` (the server never opens a path a request names);
  audio as an encoded file (``audio``, ``BYTES``) *or* a float32 waveform (``waveform``,
  ``(channels, samples)`` or ``(samples,)``) with its ``sample_rate`` (``INT32``); IMU as float32
  ``(6, samples)`` at 200 Hz. Each request row is one item; Triton's batch axis is the items.
* **encoder models**, one per preprocessed kind, named ``<kind>_encoder``: the reference layout
  of :mod:`bindrt.layouts` in, for clients that preprocess themselves.
* every model returns ``embedding``: float32 ``(out_dim,)`` per item, L2-normalised.

Errors travel as Triton error messages ``"<ErrorClass>: <message>"`` with a bindrt error class
name (:mod:`bindrt.errors`), which :func:`error_from_message` turns back into that type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bindrt import errors
from bindrt.errors import BindrtError
from bindrt.layouts import INPUT_KINDS, INPUT_LAYOUTS

#: The output tensor of every bindrt model.
OUTPUT_NAME = "embedding"
#: Suffix of the models that take preprocessed tensors.
ENCODER_SUFFIX = "_encoder"
#: Default cap on one request's input bytes (all tensors together), before anything is decoded.
MAX_REQUEST_BYTES = 64 << 20
#: Default cap on the items of one request.
MAX_REQUEST_ITEMS = 256
#: Default Triton ports and address: loopback unless the user says otherwise.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT, DEFAULT_GRPC_PORT, DEFAULT_METRICS_PORT = 8000, 8001, 8002


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as Triton describes it (dims without the batch axis; -1: any)."""

    name: str
    dtype: str  # Triton's name without the TYPE_ prefix: BYTES, FP32, INT32, INT64, UINT8
    dims: tuple[int, ...]
    optional: bool = False

    @property
    def numpy_dtype(self) -> str:
        return TRITON_TO_NUMPY[self.dtype]


@dataclass(frozen=True)
class ModelSpec:
    """One Triton model bindrt serves: its name, the input kind it embeds, inputs and output."""

    name: str
    kind: str  # input kind (bindrt.layouts.INPUT_KINDS)
    raw: bool  # raw media in (preprocessed on the server) or the reference layout
    inputs: tuple[TensorSpec, ...]
    output: TensorSpec

    @property
    def modality(self) -> str:
        return INPUT_KINDS[self.kind]


TRITON_TO_NUMPY = {"BYTES": "object", "FP32": "float32", "INT32": "int32", "INT64": "int64", "UINT8": "uint8"}
NUMPY_TO_TRITON = {v: k for k, v in TRITON_TO_NUMPY.items() if k != "BYTES"}

#: Raw inputs per input kind (BYTES dims (1,): one element per item).
RAW_INPUTS: dict[str, tuple[TensorSpec, ...]] = {
    "text": (TensorSpec("text", "BYTES", (1,)),),
    "vision": (TensorSpec("vision", "BYTES", (1,)),),
    "video": (TensorSpec("video", "BYTES", (1,)),),
    "depth": (TensorSpec("depth", "BYTES", (1,)),),
    "thermal": (TensorSpec("thermal", "BYTES", (1,)),),
    "audio": (
        TensorSpec("audio", "BYTES", (1,), optional=True),
        TensorSpec("waveform", "FP32", (-1, -1), optional=True),
        TensorSpec("sample_rate", "INT32", (1,), optional=True),
    ),
    "imu": (TensorSpec("imu", "FP32", (6, -1)),),
}


def encoder_input(kind: str) -> TensorSpec:
    """The preprocessed tensor of ``kind``: its reference layout, clips as -1 for multi-clip kinds."""
    layout = INPUT_LAYOUTS[kind]
    dims = ((-1,) if layout.multi_clip else ()) + tuple(int(d) for d in layout.shape)
    return TensorSpec(kind, NUMPY_TO_TRITON[layout.dtype], dims)


def raw_model(kind: str, out_dim: int) -> ModelSpec:
    return ModelSpec(kind, kind, True, RAW_INPUTS[kind], TensorSpec(OUTPUT_NAME, "FP32", (out_dim,)))


def encoder_model(kind: str, out_dim: int) -> ModelSpec:
    return ModelSpec(
        kind + ENCODER_SUFFIX, kind, False, (encoder_input(kind),), TensorSpec(OUTPUT_NAME, "FP32", (out_dim,))
    )


def models_for(kinds: "list[str] | tuple[str, ...]", out_dim: int) -> list[ModelSpec]:
    """Every model of these input kinds: the raw model, then the encoder model, per kind."""
    unknown = [k for k in kinds if k not in INPUT_KINDS]
    if unknown:
        raise errors.UnknownModalityError(f"unknown input kind(s) {unknown}; expected some of {', '.join(INPUT_KINDS)}")
    return [m for k in kinds for m in (raw_model(k, out_dim), encoder_model(k, out_dim))]


# ----------------------------------------------------------------------------- errors on the wire
_ERROR_TYPES: dict[str, type[BindrtError]] = {name: getattr(errors, name) for name in errors.__all__}
#: "<class>: <text>" inside Triton's and PyTriton's wrapping; the text ends at a blank line (PyTriton appends
#: "\n\nAt:\n  <stub frame>" after the quoted traceback)
_PREFIX = re.compile(
    r"(?:^|[\s:'\"\[(])(" + "|".join(sorted(_ERROR_TYPES, key=len, reverse=True)) + r"): (.*?)(?:\n\s*\n|\Z)", re.S
)


def error_message(exc: BaseException) -> str:
    """What a server sends for ``exc``: ``"<bindrt error class>: <message>"`` (others: ``BackendError``)."""
    name = type(exc).__name__ if type(exc).__name__ in _ERROR_TYPES else "BackendError"
    return f"{name}: {exc}"


def error_from_message(message: str, default: type[BindrtError] = errors.BackendError) -> BindrtError:
    """The bindrt error a server's message names (Triton wraps it in its own text), else ``default``."""
    return find_error(message) or default(message.strip())


def find_error(message: str) -> BindrtError | None:
    """The bindrt error a server's message names, or None when it names none."""
    match = _PREFIX.search(message)
    if not match:
        return None
    cls, text = _ERROR_TYPES[match.group(1)], " ".join(match.group(2).split())
    if issubclass(cls, errors.InputError):
        error = cls.__new__(cls)
        Exception.__init__(error, text)
        error.detail, error.modality, error.item = text, None, None
        return error
    return cls(text)
