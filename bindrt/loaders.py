"""Loaders: small callables that build one thing when called, in Polygraphy's spirit.

A loader holds *how* to build a session or a model (paths, providers, threads...)
and builds it only when called, so the backends, export validation, benchmarks and
tests configure ONNX Runtime and load encoders the same way, in one place, and a
caller can pass a loader where a session is wanted without building it early.
Torch-free at import: ``onnxruntime``, ``openvino`` and ``torch`` are imported when a loader runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from bindrt.errors import BackendError, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from bindrt.runtime.base import ModelSource

#: ONNX Runtime graph optimisation levels by their bindrt names.
OPT_LEVELS = ("disable", "basic", "extended", "all")


def import_onnxruntime() -> Any:
    """``onnxruntime``, or a BackendError naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendError(
            "this needs the onnxruntime package (pip install 'bindrt[onnx]', or 'bindrt[onnx-gpu]' for CUDA/TensorRT)"
        ) from exc
    return onnxruntime


@dataclass(frozen=True)
class OrtSessionOptions:
    """What bindrt sets on ``onnxruntime.SessionOptions``; ``None`` keeps ONNX Runtime's default."""

    intra_op_num_threads: int | None = None
    inter_op_num_threads: int | None = None
    optimization_level: str = "all"
    sequential: bool = False
    config: Mapping[str, str] = field(default_factory=dict)
    profile_prefix: str | None = None
    log_severity_level: int = 3

    def __post_init__(self) -> None:
        if self.optimization_level not in OPT_LEVELS:
            raise ConfigError(
                f"unknown graph_optimization_level {self.optimization_level!r}; expected one of {', '.join(OPT_LEVELS)}"
            )
        for name in ("intra_op_num_threads", "inter_op_num_threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"{name}={value!r} is invalid; expected int >= 0")
        if not isinstance(self.config, Mapping):
            raise ConfigError(f"session_config={self.config!r} is invalid; expected dict")

    def build(self) -> Any:
        """A fresh ``onnxruntime.SessionOptions``."""
        ort = import_onnxruntime()
        so = ort.SessionOptions()
        so.log_severity_level = self.log_severity_level
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.optimization_level]
        if self.intra_op_num_threads is not None:
            so.intra_op_num_threads = self.intra_op_num_threads
        if self.inter_op_num_threads is not None:
            so.inter_op_num_threads = self.inter_op_num_threads
        if self.sequential:
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        for key, value in self.config.items():
            so.add_session_config_entry(str(key), str(value))
        if self.profile_prefix:
            so.enable_profiling = True
            so.profile_file_prefix = self.profile_prefix
        return so


@dataclass(frozen=True)
class SessionFromOnnx:
    """Loader of an ``onnxruntime.InferenceSession`` from a graph file, serialised bytes, or a loader of bytes.

    The last composes: ``SessionFromOnnx(lambda: model.SerializeToString(), options)`` builds
    the graph only when the session is built.
    """

    model: "str | os.PathLike[str] | bytes | Callable[[], bytes]"
    options: OrtSessionOptions = OrtSessionOptions()
    providers: Sequence[Any] = ("CPUExecutionProvider",)

    def __call__(self) -> Any:
        ort = import_onnxruntime()
        model = self.model() if callable(self.model) else self.model
        model = model if isinstance(model, bytes) else os.fspath(model)
        return ort.InferenceSession(model, self.options.build(), providers=list(self.providers))


def import_openvino() -> Any:
    """``openvino``, or a BackendError naming the extra that installs it."""
    try:
        import openvino
    except ImportError as exc:
        raise BackendError("this needs the openvino package (pip install 'bindrt[openvino]')") from exc
    return openvino


#: OpenVINO ``PERFORMANCE_HINT`` values bindrt passes through.
OV_PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT")
#: OpenVINO ``INFERENCE_PRECISION_HINT`` element types bindrt sets.
OV_INFERENCE_PRECISIONS = ("f32", "bf16", "f16")


@dataclass(frozen=True)
class OvCompileOptions:
    """What bindrt puts in OpenVINO's compile config; ``None`` keeps OpenVINO's default.

    ``inference_precision`` has no default on purpose: OpenVINO picks bf16 on CPUs
    with bf16 support unless told f32, so every caller states it.
    """

    inference_precision: str
    inference_num_threads: int | None = None
    num_streams: int | None = None
    performance_hint: str | None = None
    cache_dir: "str | os.PathLike[str] | None" = None

    def __post_init__(self) -> None:
        if self.inference_precision not in OV_INFERENCE_PRECISIONS:
            raise ConfigError(
                f"inference_precision={self.inference_precision!r} is invalid; "
                f"expected one of {', '.join(OV_INFERENCE_PRECISIONS)}"
            )
        for name, low in (("inference_num_threads", 0), ("num_streams", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ConfigError(f"{name}={value!r} is invalid; expected int >= {low}")
        if self.performance_hint is not None and self.performance_hint not in OV_PERFORMANCE_HINTS:
            raise ConfigError(
                f"performance_hint={self.performance_hint!r} is invalid; expected one of {', '.join(OV_PERFORMANCE_HINTS)}"
            )
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise ConfigError(f"cache_dir={self.cache_dir!r} is invalid; expected a path")

    def build(self) -> dict[str, Any]:
        """The ``compile_model`` config dict (property name -> value)."""
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.inference_precision}
        if self.inference_num_threads is not None:
            config["INFERENCE_NUM_THREADS"] = self.inference_num_threads
        if self.num_streams is not None:
            config["NUM_STREAMS"] = self.num_streams
        if self.performance_hint is not None:
            config["PERFORMANCE_HINT"] = self.performance_hint
        if self.cache_dir is not None:
            config["CACHE_DIR"] = os.fspath(self.cache_dir)
        return config


@dataclass(frozen=True)
class CompiledModelFromOnnx:
    """Loader of an ``openvino.CompiledModel`` from an ONNX graph file on one OpenVINO device.

    ``core`` shares one ``openvino.Core`` across graphs (a fresh one when None).
    """

    model: "str | os.PathLike[str]"
    device: str = "CPU"
    options: OvCompileOptions = OvCompileOptions("f32")
    core: Any = field(default=None, compare=False, repr=False)

    def __call__(self) -> Any:
        core = self.core if self.core is not None else import_openvino().Core()
        return core.compile_model(os.fspath(self.model), self.device, self.options.build())


@dataclass(frozen=True)
class EncodersFromSource:
    """Loader of eval-mode fp32 CPU torch encoders for ``modalities`` only (other towers are never read)."""

    source: "ModelSource"
    modalities: tuple[str, ...]
    verify: bool = True

    def __call__(self) -> dict[str, Any]:
        from bindrt.model.checkpoint import read_state_dict, split_state_dict
        from bindrt.model.imagebind import load_encoder

        source = self.source
        if source.bundle is not None:
            return {
                m: load_encoder(m, source.config, source.bundle.load_weights(m, verify=self.verify))
                for m in self.modalities
            }
        per_modality = split_state_dict(read_state_dict(source.checkpoint), source.config, self.modalities)
        return {m: load_encoder(m, source.config, per_modality[m]) for m in self.modalities}


__all__ = [
    "OPT_LEVELS",
    "OV_INFERENCE_PRECISIONS",
    "OV_PERFORMANCE_HINTS",
    "CompiledModelFromOnnx",
    "EncodersFromSource",
    "OrtSessionOptions",
    "OvCompileOptions",
    "SessionFromOnnx",
    "import_onnxruntime",
    "import_openvino",
]
