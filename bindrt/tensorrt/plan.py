"""One engine's build plan: profile shapes, builder options, the equivalent trtexec line, the cache key.

Everything here is decided before TensorRT is touched, so it is the same on a laptop
without a GPU (``bindrt build --print-trtexec --tensorrt-version 10.13``) and on the build
machine, and every engine record can carry the ``trtexec`` command that rebuilds it
without Python.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass
from typing import Sequence

from bindrt.errors import ConfigError
from bindrt.tensorrt.adapter import BuildDecisions, check_hardware_compatibility

#: the symbolic axes of bindrt's graphs that an optimisation profile spans
PROFILE_AXES = ("batch", "clips")
DEFAULT_BATCH = (1, 8, 32)
DEFAULT_CLIPS = (1, 3, 5)
MAX_AXIS = 4096
DEFAULT_WORKSPACE_GIB = 4.0
DEFAULT_OPT_LEVEL = 3  # TensorRT's own default


def parse_range(text: "str | Sequence[int]", axis: str) -> tuple[int, int, int]:
    """'1:8:32' (min:opt:max) or '8' (fixed) -> (1, 8, 32); a ConfigError names the axis otherwise."""
    if isinstance(text, str):
        parts = text.split(":")
        if len(parts) not in (1, 3):
            raise ConfigError(f"--{axis} {text!r} is invalid; expected MIN:OPT:MAX (e.g. 1:8:32) or one size")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"--{axis} {text!r} is invalid; expected integers MIN:OPT:MAX") from None
    else:
        values = [int(v) for v in text]
    if len(values) == 1:
        values *= 3
    low, opt, high = values
    if not 1 <= low <= opt <= high <= MAX_AXIS:
        raise ConfigError(f"--{axis} {low}:{opt}:{high} is invalid; expected 1 <= MIN <= OPT <= MAX <= {MAX_AXIS}")
    return low, opt, high


@dataclass(frozen=True)
class Profile:
    """Ranges of the symbolic axes; every other axis of the graph input is fixed."""

    batch: tuple[int, int, int] = DEFAULT_BATCH
    clips: tuple[int, int, int] = DEFAULT_CLIPS

    def shapes(self, dims: Sequence["int | str | None"]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shapes of one graph input whose dims are ints or axis names ('batch', 'clips')."""
        out: list[list[int]] = [[], [], []]
        for d in dims:
            if isinstance(d, int) and not isinstance(d, bool):
                for s in out:
                    s.append(d)
            elif d in PROFILE_AXES:
                for s, v in zip(out, getattr(self, str(d))):
                    s.append(v)
            else:
                raise ConfigError(f"graph input axis {d!r} is neither fixed nor one of {', '.join(PROFILE_AXES)}")
        low, opt, high = out
        return tuple(low), tuple(opt), tuple(high)


@dataclass(frozen=True)
class BuildOptions:
    """Builder settings besides precision (each one changes the engine, so each is in the cache key)."""

    workspace_gib: float = DEFAULT_WORKSPACE_GIB
    opt_level: int = DEFAULT_OPT_LEVEL
    version_compatible: bool = False
    hardware_compatibility: str = "none"

    def __post_init__(self) -> None:
        if not (isinstance(self.workspace_gib, (int, float)) and 0 < self.workspace_gib <= 1024):
            raise ConfigError(f"--workspace {self.workspace_gib!r} is invalid; expected GiB in (0, 1024]")
        if isinstance(self.opt_level, bool) or self.opt_level not in range(6):
            raise ConfigError(f"--opt-level {self.opt_level!r} is invalid; expected 0-5")
        check_hardware_compatibility(self.hardware_compatibility)

    @property
    def workspace_bytes(self) -> int:
        return int(self.workspace_gib * (1 << 30))


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_command(
    onnx_path: str,
    engine_path: str,
    input_name: str,
    shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    decisions: BuildDecisions,
    options: BuildOptions,
    timing_cache: str | None = None,
) -> list[str]:
    """The ``trtexec`` argv that builds the same engine (flags spelled for ``decisions.version``)."""
    low, opt, high = shapes
    argv = [
        "trtexec",
        f"--onnx={onnx_path}",
        f"--saveEngine={engine_path}",
        f"--minShapes={input_name}:{_dims(low)}",
        f"--optShapes={input_name}:{_dims(opt)}",
        f"--maxShapes={input_name}:{_dims(high)}",
        f"--memPoolSize=workspace:{round(options.workspace_gib * 1024)}",  # MiB, read the same by 8.6-11
        f"--builderOptimizationLevel={options.opt_level}",
        *decisions.trtexec_precision_flags(),
    ]
    if options.version_compatible:
        argv.append("--versionCompatible")
    if options.hardware_compatibility != "none":
        argv.append(f"--hardwareCompatibilityLevel={check_hardware_compatibility(options.hardware_compatibility)[1]}")
    if timing_cache:
        argv.append(f"--timingCacheFile={timing_cache}")
    return argv


def command_line(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def engine_cache_key(
    *,
    onnx_sha256: str,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int],
    shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    precision: str,
    options: BuildOptions,
) -> str:
    """sha256 over everything that decides the engine's bytes: equal keys are a cache hit."""
    payload = {
        "onnx_sha256": onnx_sha256,
        "tensorrt": tensorrt_version,
        "gpu": gpu_name,
        "compute_capability": list(compute_capability),
        "shapes": [list(s) for s in shapes],
        "precision": precision,
        "options": asdict(options),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
