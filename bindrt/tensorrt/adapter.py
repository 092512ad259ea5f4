"""What the installed TensorRT needs to build an engine: decisions by version, not by try/except.

TensorRT's build API changed under bindrt's feet three times, and the same request has to
become different calls (and different ``trtexec`` flags) on each:

* **8.6**: networks need ``EXPLICIT_BATCH`` for the ONNX parser; precision comes from
  builder flags (``FP16``, ``INT8``); no bf16, no strongly typed networks, no fp8 builds.
* **10.0 - 10.11**: explicit batch is the default (the flag is deprecated); builder flags
  still select precision (``FP16``, ``BF16``, ``INT8``, ``FP8``); ``STRONGLY_TYPED`` exists.
* **10.12+**: weak typing is deprecated; bindrt builds strongly typed networks, so the
  precision is the graph's own (fp16/bf16 graphs with explicit casts, Q/DQ int8/fp8 graphs).
* **11.x**: every network is strongly typed and the precision flags are gone; the
  ``STRONGLY_TYPED`` flag is accepted and ignored, ``trtexec --stronglyTyped`` is a no-op.

Volta (compute capability 7.0) is supported up to 10.4 and removed in 10.5. fp8 needs
Ada or Hopper (compute capability >= 8.9); int8 tensor cores start at Turing (7.5) for
bindrt's purposes (Ampere is the target the README documents).

Sources: NVIDIA's TensorRT 10.x-to-11.x migration guides (Python API, trtexec) and release
notes. Pure Python: this module runs, and is tested, where TensorRT is not installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bindrt.errors import BackendError, ConfigError

#: bindrt precisions a TensorRT engine can be built at -> the bundle graphs (precision, variant) it is built
#: from, preferred first. Reduced precisions come from graphs that carry their types (fp16 and bf16 with explicit
#: casts, Q/DQ int8 and fp8), which every TensorRT version builds, strongly typed or not.
ENGINE_PRECISIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "fp32": (("fp32", "plain"),),
    "fp16": (("fp16", "plain"),),
    "bf16": (("bf16", "plain"),),
    # Q/DQ graphs: Model Optimizer's (TensorRT's placement rules; export --modelopt), else NNCF's (--nncf)
    "int8": (("int8", "modelopt"), ("int8", "nncf")),
    "fp8": (("fp8", "modelopt"),),
}
#: builder flag per precision, for versions that still select precision by flags
_PRECISION_FLAGS: dict[str, tuple[str, ...]] = {
    "fp32": (),
    "fp16": ("FP16",),
    "bf16": ("BF16",),
    "int8": ("INT8",),
    "fp8": ("FP8",),
}
#: trtexec flag per builder flag
_TRTEXEC_FLAGS = {"FP16": "--fp16", "INT8": "--int8", "FP8": "--fp8", "BF16": "--bf16"}
#: ``--hardware-compatibility`` values -> TensorRT's HardwareCompatibilityLevel member and trtexec spelling
HARDWARE_COMPATIBILITY: dict[str, tuple[str, str]] = {
    "none": ("NONE", "none"),
    "ampere+": ("AMPERE_PLUS", "ampere+"),
}


@dataclass(frozen=True, order=True)
class TrtVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> "TrtVersion":
        """'10.12.0.36' -> TrtVersion(10, 12, 0); anything else is a ConfigError."""
        match = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)*(?:[.+-]?\w*)?\s*", str(text))
        if not match:
            raise ConfigError(f"TensorRT version {text!r} is not a version; expected e.g. 10.12 or 8.6.1")
        major, minor, patch = match.groups()
        return cls(int(major), int(minor), int(patch or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


#: the oldest TensorRT bindrt builds with, and the Volta cut-off
OLDEST = TrtVersion(8, 6)
LAST_WITH_VOLTA = TrtVersion(10, 4, 99)
STRONG_TYPING_DEFAULT = TrtVersion(10, 12)  # bindrt builds strongly typed from here on
STRONGLY_TYPED_FLAG = TrtVersion(10, 0)


@dataclass(frozen=True)
class BuildDecisions:
    """How one engine is built on one TensorRT version (what the builder and trtexec are told)."""

    version: TrtVersion
    precision: str
    explicit_batch_flag: bool  # create_network(1 << EXPLICIT_BATCH): 8.6 only
    strongly_typed: bool  # precision from the graph's types
    strongly_typed_flag: bool  # pass STRONGLY_TYPED when creating the network (10.12 - 10.x; ignored in 11)
    builder_flags: tuple[str, ...]  # BuilderFlag members to set
    clear_tf32: bool  # fp32 engines: no TF32 (bindrt's fp32 is the exact tier)
    notes: tuple[str, ...] = ()

    def network_flag_names(self) -> tuple[str, ...]:
        names = []
        if self.explicit_batch_flag:
            names.append("EXPLICIT_BATCH")
        if self.strongly_typed_flag:
            names.append("STRONGLY_TYPED")
        return tuple(names)

    def trtexec_precision_flags(self) -> tuple[str, ...]:
        flags = [_TRTEXEC_FLAGS[f] for f in self.builder_flags]
        if self.strongly_typed_flag:
            flags.append("--stronglyTyped")
        if self.clear_tf32:
            flags.append("--noTF32")
        return tuple(flags)


def decide(version: TrtVersion, precision: str) -> BuildDecisions:
    """The build decisions for ``precision`` on TensorRT ``version`` (ConfigError where it cannot build it)."""
    if precision not in ENGINE_PRECISIONS:
        raise ConfigError(f"unknown engine precision {precision!r}; expected one of {', '.join(ENGINE_PRECISIONS)}")
    if version < OLDEST:
        raise ConfigError(f"TensorRT {version} is older than bindrt supports ({OLDEST.major}.{OLDEST.minor})")
    if precision == "bf16" and version.major < 10:
        raise ConfigError(f"bf16 engines need TensorRT >= 10.0; this is TensorRT {version}")
    if precision == "fp8" and version.major < 10:
        raise ConfigError(f"fp8 engines need TensorRT >= 10.0 (Q/DQ fp8 graphs); this is TensorRT {version}")
    eleven = version.major >= 11
    strongly = version >= STRONG_TYPING_DEFAULT
    notes = []
    if eleven:
        notes.append("TensorRT 11: networks are always strongly typed; precision comes from the graph")
    elif strongly:
        notes.append("TensorRT >= 10.12: strongly typed network (weak typing is deprecated)")
    else:
        notes.append(f"TensorRT {version.major}.{version.minor}: weakly typed, precision from builder flags")
    return BuildDecisions(
        version=version,
        precision=precision,
        explicit_batch_flag=version.major < 10,
        strongly_typed=strongly,
        strongly_typed_flag=strongly and not eleven,
        builder_flags=() if strongly else _PRECISION_FLAGS[precision],
        clear_tf32=precision == "fp32" and not eleven,
        notes=tuple(notes),
    )


def check_gpu(version: TrtVersion, compute_capability: tuple[int, int], precision: str, gpu: str = "this GPU") -> None:
    """A BackendError when this TensorRT cannot build ``precision`` for this GPU (Volta after 10.4, fp8 before Ada)."""
    cc = tuple(compute_capability)
    if cc < (7, 0):
        raise BackendError(f"{gpu} (compute capability {cc[0]}.{cc[1]}) is older than TensorRT supports (7.0)")
    if cc < (7, 5) and version > LAST_WITH_VOLTA:
        raise BackendError(
            f"TensorRT {version} dropped Volta ({gpu}, compute capability {cc[0]}.{cc[1]}); "
            "use TensorRT 10.4 or older for V100"
        )
    if precision == "fp8" and cc < (8, 9):
        raise BackendError(
            f"fp8 engines need compute capability >= 8.9 (Ada, Hopper, Blackwell); {gpu} is {cc[0]}.{cc[1]}"
        )
    if precision == "bf16" and cc < (8, 0):
        raise BackendError(f"bf16 engines need compute capability >= 8.0 (Ampere or newer); {gpu} is {cc[0]}.{cc[1]}")
    if precision == "int8" and cc < (7, 5):
        raise BackendError(f"int8 engines need compute capability >= 7.5 (Turing or newer); {gpu} is {cc[0]}.{cc[1]}")


def check_hardware_compatibility(level: str) -> tuple[str, str]:
    """(TensorRT member name, trtexec spelling) of a ``--hardware-compatibility`` level."""
    if level not in HARDWARE_COMPATIBILITY:
        raise ConfigError(
            f"unknown hardware compatibility level {level!r}; expected one of {', '.join(HARDWARE_COMPATIBILITY)}"
        )
    return HARDWARE_COMPATIBILITY[level]
