"""OpenVINO backend: runs the bundle's exported ONNX graphs on OpenVINO devices. Torch-free.

``bindrt.load(bundle, backend="openvino", device="CPU", precision=..., **options)``
compiles, for every requested modality, the plain ONNX graphs ``bindrt export``
recorded in the manifest (checksum-verified), one ``CompiledModel`` per input kind.

Devices: any OpenVINO device name (``"CPU"``, ``"GPU"``, ``"GPU.1"``, ``"NPU"``,
``"AUTO"``, ``"AUTO:GPU,CPU"``, ``"HETERO:..."``); case-insensitive, so the CLI's
default ``cpu`` works.

Precisions: the inference precision is always stated in the compile config, since
OpenVINO otherwise runs bf16 on CPUs that support it (AVX512-BF16, AMX):

* ``fp32``: the fp32 graph, ``INFERENCE_PRECISION_HINT=f32``;
* ``bf16``: the fp32 graph at ``bf16``, where the device reports BF16 in ``OPTIMIZATION_CAPABILITIES``;
* ``fp16``: the fp32 graph at ``f16``, where the device reports FP16;
* ``int8``: the int8 graph NNCF quantized for OpenVINO (``<kind>.int8.nncf``, ``bindrt export
  --nncf``) where the bundle has it, else the ONNX Runtime int8 graph (dynamic quantisation,
  which OpenVINO runs much slower); both compiled at ``f32``: the int8 is in the graph.

Options: ``inference_num_threads`` (int >= 0, 0: OpenVINO's choice), ``num_streams``
(int >= 1), ``performance_hint`` (``"LATENCY" | "THROUGHPUT"``), ``cache_dir``
(OpenVINO's model cache; default ``<bundle>/engines/openvino``, used only where it can be
created and written, ``False`` for none), ``variant`` (``"auto"``: for int8 the NNCF graph
when exported, else plain; ``"plain"``; ``"nncf"``, int8 only; ``"fused"`` is refused:
OpenVINO's ONNX frontend cannot convert all of ONNX Runtime's com.microsoft fused ops, e.g.
``QAttention``), ``preprocessing=True`` (also the raw-input graphs ``audio_waveform`` /
``vision_uint8``, run as ``model.encode("audio_waveform", x)``), ``verify`` (default True:
check every graph file's sha256 before loading), ``static_shapes`` (default True: each input
shape gets its own compiled model, up to 2 at a time, least recently used dropped; an int
sets how many, ``False`` one dynamic-batch model for every shape). Static shapes ran 4-11%
faster on OpenVINO's CPU kernels (imagebind_huge depth, batch 1 and 8); the price is a
compile (0.4-1.3 s for the audio tower) the first time a shape is seen, and each compiled
shape holds its own copy of the weights, hence the bound.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from bindrt.errors import BackendError, ConfigError
from bindrt.loaders import CompiledModelFromOnnx, OvCompileOptions, import_openvino
from bindrt.runtime.base import Backend, ModelSource
from bindrt.runtime.graphs import Declared, bundle_graphs, check_declared_io, graph_export_hint, missing_kind_error
from bindrt.schema import OUTPUT_NAME, OnnxGraph

#: bindrt precision -> (graph precision, INFERENCE_PRECISION_HINT, OPTIMIZATION_CAPABILITIES entry needed)
PRECISION_PLAN: dict[str, tuple[str, str, str | None]] = {
    "fp32": ("fp32", "f32", None),
    "bf16": ("fp32", "bf16", "BF16"),
    "fp16": ("fp32", "f16", "FP16"),
    "int8": ("int8", "f32", None),
}
NNCF = "nncf"  # the int8 graph variant quantized for OpenVINO (bindrt.export.int8_nncf)
VARIANT_CHOICES = ("auto", "plain", NNCF)
#: compiled shapes kept per kind with ``static_shapes=True``: the batch size and a remainder
DEFAULT_STATIC_SHAPES = 2
#: OpenVINO's virtual devices: they name (or pick from) physical devices after ``:``.
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
#: OpenVINO element type names -> numpy dtype names of the graph contract
_OV_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32", "u8": "uint8"}


class OpenVinoBackend(Backend):
    name = "openvino"
    precisions = ("fp32", "bf16", "fp16", "int8")

    def __init__(
        self,
        config,
        modalities,
        device,
        precision,
        models: dict[str, Any],
        graphs: dict[str, OnnxGraph],
        *,
        options: OvCompileOptions,
    ) -> None:
        super().__init__(config, modalities, device, precision)
        self.models = models
        self.graphs = graphs
        self.options = options
        self._outputs = {k: _output_index(m) for k, m in models.items()}
        self._requests = threading.local()  # per thread: (kind, shape) -> (compiled model, its infer request)

    # -- opening -----------------------------------------------------------------
    @classmethod
    def open(
        cls,
        source: ModelSource,
        *,
        modalities: tuple[str, ...],
        device: str = "CPU",
        precision: str = "fp32",
        variant: str = "auto",
        inference_num_threads: int | None = None,
        num_streams: int | None = None,
        performance_hint: str | None = None,
        cache_dir: "str | os.PathLike[str] | bool | None" = None,
        preprocessing: bool = False,
        verify: bool = True,
        static_shapes: "bool | int" = True,
        **options: Any,
    ) -> "OpenVinoBackend":
        if options:
            raise BackendError(f"unknown option(s) for the openvino backend: {sorted(options)}")
        if precision not in PRECISION_PLAN:
            raise BackendError(f"the openvino backend runs {', '.join(cls.precisions)}, not {precision!r}")
        if variant == "fused":
            raise BackendError(
                "the openvino backend runs the plain graphs: OpenVINO cannot convert all of ONNX Runtime's "
                "com.microsoft fused ops (e.g. QAttention), and it fuses the plain graph itself; use variant='plain'"
            )
        if variant not in VARIANT_CHOICES:
            raise BackendError(
                f"unknown variant {variant!r} for the openvino backend; expected one of {', '.join(VARIANT_CHOICES)}"
            )
        if variant == NNCF and precision != "int8":
            raise BackendError(f"variant='nncf' graphs are int8; got precision={precision!r}")
        for name, value in (("preprocessing", preprocessing), ("verify", verify)):
            if not isinstance(value, bool):
                raise ConfigError(f"{name}={value!r} is invalid; expected bool")
        shapes_kept = _check_static_shapes(static_shapes)
        bundle = source.bundle
        if bundle is None:
            raise BackendError(
                "the openvino backend runs exported graphs from a bundle; convert the checkpoint "
                "(`bindrt convert CKPT --config ... --out BUNDLE`) and run `bindrt export BUNDLE` first"
            )
        graph_precision, hint, capability = PRECISION_PLAN[precision]
        compile_options = OvCompileOptions(
            inference_precision=hint,
            inference_num_threads=inference_num_threads,
            num_streams=num_streams,
            performance_hint=performance_hint,
            cache_dir=_usable_cache(bundle.path, cache_dir),
        )
        ov = import_openvino()
        core = ov.Core()
        device = _check_device(core, str(device), precision, capability)

        models: dict[str, Any] = {}
        graphs: dict[str, OnnxGraph] = {}
        found = bundle_graphs(
            bundle,
            modalities,
            precision=graph_precision,
            variants=_variant_order(variant, precision),
            preprocessing=preprocessing,
            verify=verify,
        )
        for m, kind, record, path in found:
            try:
                if shapes_kept:
                    models[kind] = StaticShapes(
                        core.read_model(os.fspath(path)), core, device, compile_options, shapes_kept
                    )
                else:
                    models[kind] = CompiledModelFromOnnx(path, device, compile_options, core=core)()
            except RuntimeError as exc:
                raise BackendError(
                    f"OpenVINO cannot compile {record.file} ({kind}, {precision}) on {device}: {_ov_message(exc)}"
                ) from exc
            check_declared_io(
                [_declared(p) for p in models[kind].inputs],
                [_declared(p) for p in models[kind].outputs],
                kind,
                source.config.out_embed_dim,
                where=f"bundle {bundle.path}: {record.file}",
                hint=graph_export_hint(bundle.path, m, kind, graph_precision, record.variant),
                unknown_ok=True,
            )
            graphs[kind] = record
        return cls(source.config, modalities, device, precision, models, graphs, options=compile_options)

    # -- running -----------------------------------------------------------------
    @property
    def input_kinds(self) -> tuple[str, ...]:
        """The kinds with a compiled graph (raw-media kinds too, with ``preprocessing=True``)."""
        return tuple(self.models)

    def run(self, kind: str, batch: np.ndarray) -> np.ndarray:
        """Embed one batch -> float32 numpy.

        One infer request per thread and compiled model, reused: safe from several threads,
        which is how ``num_streams`` > 1 / ``performance_hint="THROUGHPUT"`` runs requests in
        parallel.
        """
        model = self.models.get(kind)
        if model is None:
            raise missing_kind_error(kind, tuple(self.models))
        batch = np.ascontiguousarray(batch)
        try:
            request = self._request(kind, model, batch.shape)
            request.infer({0: batch})
            out = request.get_output_tensor(self._outputs[kind]).data
        except RuntimeError as exc:
            raise BackendError(
                f"OpenVINO failed running {self.graphs[kind].file} ({kind}, {self.precision}) "
                f"on {self.device}: {_ov_message(exc)}"
            ) from exc
        if out.shape != (len(batch), self.config.out_embed_dim):  # an axis the compiled model left dynamic
            raise BackendError(
                f"{self.graphs[kind].file} ({kind}) returned shape {tuple(out.shape)}, "
                f"expected ({len(batch)}, {self.config.out_embed_dim}); re-export the bundle's graphs"
            )
        return np.array(out, dtype=np.float32)  # a copy: the request's buffer is not ours

    def _request(self, kind: str, model: Any, shape: tuple[int, ...]) -> Any:
        compiled = model.compiled(shape) if isinstance(model, StaticShapes) else model
        cache = self._requests.__dict__.setdefault("by_shape", {})
        held = cache.get((kind, shape))
        if held is None or held[0] is not compiled:  # new shape, or its model was dropped and recompiled
            if len(cache) > 4 * len(self.models) * max(DEFAULT_STATIC_SHAPES, 1):
                cache.clear()
            held = cache[(kind, shape)] = (compiled, compiled.create_infer_request())
        return held[1]

    # -- info --------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Device, the precision hint read back from the compiled models, threads, streams, versions."""
        ov = import_openvino()
        first = next(iter(self.models.values()), None)
        return super().describe() | {
            "openvino": ov.__version__,
            "inference_precision": _read_back(self.models, "INFERENCE_PRECISION_HINT"),
            "inference_precision_requested": self.options.inference_precision,
            "inference_num_threads": _property(first, "INFERENCE_NUM_THREADS"),
            "num_streams": _property(first, "NUM_STREAMS"),
            "performance_hint": _property(first, "PERFORMANCE_HINT"),
            "execution_devices": _property(first, "EXECUTION_DEVICES"),
            "cache_dir": None if self.options.cache_dir is None else os.fspath(self.options.cache_dir),
            "static_shapes": {k: m.shapes for k, m in self.models.items() if isinstance(m, StaticShapes)} or False,
            "graphs": {k: {"file": r.file, "variant": r.variant, "opset": r.opset} for k, r in self.graphs.items()},
        }

    def close(self) -> None:
        self.models.clear()
        self._outputs.clear()
        self._requests = threading.local()


class StaticShapes:
    """One compiled model per input shape, from one ``openvino.Model``, the least recently used dropped.

    Looks like a compiled model where the backend reads one (``inputs``, ``outputs``,
    ``get_property``), so the I/O checks and ``describe`` see the graph's declared (dynamic) ports.
    """

    def __init__(self, model: Any, core: Any, device: str, options: OvCompileOptions, keep: int) -> None:
        self.model, self.core, self.device, self.options, self.keep = model, core, device, options, keep
        self._compiled: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def inputs(self) -> Any:
        return self.model.inputs

    @property
    def outputs(self) -> Any:
        return self.model.outputs

    @property
    def shapes(self) -> list[list[int]]:
        """The shapes compiled now, least recently used first."""
        return [list(s) for s in self._compiled]

    def compiled(self, shape: tuple[int, ...]) -> Any:
        """The model compiled for ``shape`` (compiling it on first sight)."""
        with self._lock:
            found = self._compiled.get(shape)
            if found is not None:
                self._compiled.move_to_end(shape)
                return found
            specialised = self.model.clone()
            specialised.reshape({specialised.inputs[0].get_any_name(): list(shape)})
            found = self._compiled[shape] = self.core.compile_model(specialised, self.device, self.options.build())
            while len(self._compiled) > self.keep:
                self._compiled.popitem(last=False)
            return found

    def get_property(self, name: str) -> Any:
        """A property of the most recently compiled shape (compiling the smallest shape if none yet)."""
        with self._lock:
            latest = next(reversed(self._compiled.values()), None)
        if latest is None:
            smallest = tuple(d.get_length() if d.is_static else 1 for d in self.model.inputs[0].get_partial_shape())
            latest = self.compiled(smallest)
        return latest.get_property(name)


# ----------------------------------------------------------------------------- helpers
def _check_device(core: Any, device: str, precision: str, capability: str | None) -> str:
    """The OpenVINO device name, checked against ``Core().available_devices`` and ``precision``'s needs."""
    device = device.upper()
    available = list(core.available_devices)
    head, _, rest = device.partition(":")
    if head in VIRTUAL_DEVICES:
        targets = [t for t in rest.split(",") if t] or available
    else:
        targets = [device]
    known = set(available) | {a.split(".")[0] for a in available}
    unknown = [t for t in targets if t not in known]
    if unknown or not targets:
        raise BackendError(
            f"OpenVINO device {device!r} is not available here; this OpenVINO has {', '.join(available) or 'none'}"
        )
    if capability is not None:
        offers = {t: list(core.get_property(t, "OPTIMIZATION_CAPABILITIES")) for t in targets}
        lacking = {t: caps for t, caps in offers.items() if capability not in caps}
        if lacking:
            what = "; ".join(f"{t} offers {', '.join(caps)}" for t, caps in lacking.items())
            raise BackendError(
                f"precision {precision!r} needs {capability} in OPTIMIZATION_CAPABILITIES, and {what}; "
                "use precision='fp32' or another device"
            )
    return device


def _variant_order(variant: str, precision: str) -> tuple[str, ...]:
    """Which graph variants serve ``variant``, preferred first."""
    if variant != "auto":
        return (variant,)
    return (NNCF, "plain") if precision == "int8" else ("plain",)


def _usable_cache(bundle_path: Path, cache_dir: "str | os.PathLike[str] | bool | None") -> Path | None:
    """The model cache directory where it can be created and written, else None (no cache, never an error)."""
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        cache_dir = Path(bundle_path) / "engines" / "openvino"
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise ConfigError(f"cache_dir={cache_dir!r} is invalid; expected a path or False")
    path = Path(cache_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK | os.X_OK) else None


def _declared(port: Any) -> Declared:
    """(name, dtype, shape) of an OpenVINO port; dynamic axes are None."""
    names = port.get_names()
    name = OUTPUT_NAME if OUTPUT_NAME in names else port.get_any_name()
    type_name = port.get_element_type().get_type_name()
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return name, _OV_DTYPES.get(type_name, type_name), shape


def _output_index(model: Any) -> int:
    """Index of the ``embedding`` output (check_declared_io has made sure there is one)."""
    return next((i for i, p in enumerate(model.outputs) if OUTPUT_NAME in p.get_names()), 0)


def _check_static_shapes(value: "bool | int") -> int:
    """``static_shapes`` -> how many compiled shapes to keep per kind (0: one dynamic model)."""
    if value is True:
        return DEFAULT_STATIC_SHAPES
    if value is False:
        return 0
    if isinstance(value, int) and 1 <= value <= 64:
        return value
    raise ConfigError(f"static_shapes={value!r} is invalid; expected True, False or an int in 1..64")


def _property(model: Any, name: str) -> Any:
    """A compiled model's property as plain Python, or None where the device does not report it (AUTO...)."""
    if model is None:
        return None
    try:
        value = model.get_property(name)
    except RuntimeError:
        return None
    if hasattr(value, "get_type_name"):  # an element type
        return value.get_type_name()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return value if isinstance(value, (int, float, str, bool)) else str(value)


def _read_back(models: dict[str, Any], name: str) -> Any:
    """One value when every compiled model agrees, else kind -> value."""
    values = {k: _property(m, name) for k, m in models.items()}
    distinct = set(map(str, values.values()))
    return next(iter(values.values())) if len(distinct) == 1 else values


def _ov_message(exc: BaseException) -> str:
    """OpenVINO's message on one line, without its ``Exception from src/...`` location lines."""
    lines = [
        line.strip()
        for line in str(exc).splitlines()
        if line.strip() and not line.startswith(("Exception from ", "Check '"))
    ]
    return (" ".join(lines) or type(exc).__name__)[:300]
