"""ONNX Runtime backend: runs the bundle's exported graphs on CPU, CUDA or TensorRT. Torch-free.

``bindrt.load(bundle, backend="onnxruntime", device=..., precision=..., **options)``
loads, for every requested modality, the graphs ``bindrt export`` recorded in the
manifest (checksum-verified) and creates one ``InferenceSession`` per input kind
(vision and video are separate graphs of the vision encoder).

Devices: ``"cpu"``; ``"cuda[:N]"`` (CUDA EP, CPU fallback); ``"tensorrt[:N]"``
(TensorRT EP, then CUDA, then CPU). Options:

* ``variant``: ``"auto"`` (default: the fused graph when exported, else plain),
  ``"plain"``, ``"fused"`` or ``"nncf"`` (the int8 QDQ graph quantized for OpenVINO; it runs, slower);
* ``intra_op_num_threads`` / ``inter_op_num_threads``; ``graph_optimization_level``
  (``"disable" | "basic" | "extended" | "all"``, default ``"all"``);
* ``session_config``: extra ``SessionOptions.add_session_config_entry`` pairs;
* CUDA: ``cuda_options`` (provider options dict); ``io_binding`` (default True on
  CUDA/TensorRT): inputs that already live on the GPU (torch CUDA tensors, CuPy
  arrays -- anything with ``__cuda_array_interface__`` or ``__dlpack__``) are bound
  in place, outputs are allocated on the device and copied to numpy by ``run``;
  :meth:`OnnxRuntimeBackend.run_on_device` returns the device-resident ``OrtValue`` instead;
* TensorRT: ``trt_cache_dir`` (default ``<bundle>/engines/onnxruntime-trt``: engine
  and timing caches live inside the bundle), ``trt_fp16`` (default: precision is
  fp16), ``trt_options`` (extra TensorRT provider options);
* ``preprocessing=True``: also load the raw-input graphs (``audio_waveform``:
  ``(B, clips, samples)`` float32 16 kHz; ``vision_uint8``: ``(B, 224, 224, 3)``
  uint8), run like any kind: ``model.encode("audio_waveform", x)``;
* ``verify`` (default True): check every graph file's sha256 before loading.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from bindrt.errors import BackendError, InputError
from bindrt.loaders import OrtSessionOptions, SessionFromOnnx, import_onnxruntime
from bindrt.runtime.base import Backend, ModelSource
from bindrt.runtime.graphs import bundle_graphs, check_graph_io, missing_kind_error
from bindrt.runtime.graphs import first_line as _first_line
from bindrt.runtime.graphs import graph_export_hint as _export_hint
from bindrt.schema import OUTPUT_NAME, OnnxGraph

VARIANT_CHOICES = ("auto", "plain", "fused", "nncf")


def parse_device(device: str) -> tuple[str, int]:
    name, _, index = str(device).partition(":")
    if name not in ("cpu", "cuda", "tensorrt") or (index and not index.isdigit()):
        raise BackendError(
            f"unsupported device {device!r} for the onnxruntime backend; expected 'cpu', 'cuda[:N]' or 'tensorrt[:N]'"
        )
    return name, int(index or 0)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = ("fp32", "fp16", "int8")

    def __init__(
        self,
        config,
        modalities,
        device,
        precision,
        sessions: dict[str, Any],
        graphs: dict[str, OnnxGraph],
        providers: list[Any],
        *,
        io_binding: bool,
        device_id: int,
    ) -> None:
        super().__init__(config, modalities, device, precision)
        self.sessions = sessions
        self.graphs = graphs
        self.providers = providers
        self.io_binding = io_binding
        self.accepts_device_arrays = io_binding
        self.device_id = device_id
        self.bind_device = "cpu" if device.split(":")[0] == "cpu" else "cuda"
        self._input_names = {k: s.get_inputs()[0].name for k, s in sessions.items()}

    # -- opening -----------------------------------------------------------------
    @classmethod
    def open(
        cls,
        source: ModelSource,
        *,
        modalities: tuple[str, ...],
        device: str = "cpu",
        precision: str = "fp32",
        variant: str = "auto",
        intra_op_num_threads: int | None = None,
        inter_op_num_threads: int | None = None,
        graph_optimization_level: str = "all",
        session_config: dict[str, str] | None = None,
        cuda_options: dict[str, Any] | None = None,
        trt_cache_dir: "str | os.PathLike[str] | None" = None,
        trt_fp16: bool | None = None,
        trt_options: dict[str, Any] | None = None,
        io_binding: bool | None = None,
        preprocessing: bool = False,
        verify: bool = True,
        **options: Any,
    ) -> "OnnxRuntimeBackend":
        if options:
            raise BackendError(f"unknown option(s) for the onnxruntime backend: {sorted(options)}")
        if precision not in cls.precisions:
            raise BackendError(f"the onnxruntime backend runs {', '.join(cls.precisions)}, not {precision!r}")
        if variant not in VARIANT_CHOICES:
            raise BackendError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANT_CHOICES)}")
        bundle = source.bundle
        if bundle is None:
            raise BackendError(
                "the onnxruntime backend runs exported graphs from a bundle; convert the checkpoint "
                "(`bindrt convert CKPT --config ... --out BUNDLE`) and run `bindrt export BUNDLE` first"
            )
        ort = import_onnxruntime()
        dev, device_id = parse_device(device)
        providers = cls._providers(
            ort, dev, device_id, precision, bundle.path, cuda_options, trt_cache_dir, trt_fp16, trt_options
        )

        options = OrtSessionOptions(
            intra_op_num_threads=intra_op_num_threads,
            inter_op_num_threads=inter_op_num_threads,
            optimization_level=graph_optimization_level,
            config=session_config or {},
        )
        sessions: dict[str, Any] = {}
        graphs: dict[str, OnnxGraph] = {}
        order = ("fused", "plain") if variant == "auto" else (variant,)
        graphs_found = bundle_graphs(
            bundle, modalities, precision=precision, variants=order, preprocessing=preprocessing, verify=verify
        )
        for m, kind, record, path in graphs_found:
            try:
                sessions[kind] = SessionFromOnnx(path, options, tuple(providers))()
            except Exception as exc:
                raise BackendError(
                    f"ONNX Runtime cannot load {record.file} ({kind}, {precision}) on {device}: {_first_line(exc)}"
                ) from exc
            check_graph_io(
                sessions[kind],
                kind,
                source.config.out_embed_dim,
                where=f"bundle {bundle.path}: {record.file}",
                hint=_export_hint(bundle.path, m, kind, precision, record.variant),
            )
            graphs[kind] = record
        return cls(
            source.config,
            modalities,
            device,
            precision,
            sessions,
            graphs,
            providers,
            io_binding=(dev != "cpu") if io_binding is None else bool(io_binding),
            device_id=device_id,
        )

    @staticmethod
    def _providers(
        ort,
        dev: str,
        device_id: int,
        precision: str,
        bundle_path: Path,
        cuda_options,
        trt_cache_dir,
        trt_fp16,
        trt_options,
    ) -> list[Any]:
        available = ort.get_available_providers()
        if dev == "cpu":
            return ["CPUExecutionProvider"]
        cuda = ("CUDAExecutionProvider", {"device_id": device_id, **(cuda_options or {})})
        if "CUDAExecutionProvider" not in available:
            raise BackendError(
                f"device {dev!r} needs onnxruntime's CUDA execution provider (pip install onnxruntime-gpu); "
                f"this onnxruntime has {', '.join(available)}"
            )
        if dev == "cuda":
            return [cuda, "CPUExecutionProvider"]
        if "TensorrtExecutionProvider" not in available:
            raise BackendError(
                f"device 'tensorrt' needs onnxruntime's TensorRT execution provider; this onnxruntime has {', '.join(available)}"
            )
        cache = Path(trt_cache_dir) if trt_cache_dir is not None else Path(bundle_path) / "engines" / "onnxruntime-trt"
        cache.mkdir(parents=True, exist_ok=True)
        trt = {
            "device_id": device_id,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_fp16_enable": bool(precision == "fp16" if trt_fp16 is None else trt_fp16),
            **(trt_options or {}),
        }
        return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]

    # -- running -----------------------------------------------------------------
    @property
    def input_kinds(self) -> tuple[str, ...]:
        """The kinds with a loaded graph (raw-media kinds too, with ``preprocessing=True``)."""
        return tuple(self.sessions)

    def run(self, kind: str, batch: Any) -> np.ndarray:
        """Embed one batch; always a float32 numpy array (device outputs are copied to the host)."""
        out = self._run(kind, batch, on_device=False)
        return out.astype(np.float32, copy=False)

    def run_on_device(self, kind: str, batch: Any) -> Any:
        """Embed one batch and leave the output on the device: an ``onnxruntime.OrtValue`` (IO binding only).

        For pipelines that hand embeddings to further GPU work without a host round trip;
        ``OrtValue.numpy()`` copies it out. The batch is not validated or split here: use
        ``Embedder.check_batch`` / slice to ``max_batch_size`` first.
        """
        if not self.io_binding:
            raise BackendError("run_on_device needs IO binding (device 'cuda' or 'tensorrt', io_binding=True)")
        return self._run(kind, batch, on_device=True)

    def _run(self, kind: str, batch: Any, *, on_device: bool) -> Any:
        session = self.sessions.get(kind)
        if session is None:
            raise missing_kind_error(kind, tuple(self.sessions))
        name = self._input_names[kind]
        if not self.io_binding and not isinstance(batch, np.ndarray):
            batch = _to_host(batch)
        try:
            if self.io_binding:
                return self._run_bound(session, name, batch, on_device)
            return session.run([OUTPUT_NAME], {name: batch})[0]
        except _ort_failures() as exc:
            raise BackendError(
                f"ONNX Runtime failed running {self.graphs[kind].file} ({kind}, {self.precision}) "
                f"on {self.device}: {_first_line(exc)}"
            ) from exc

    def _run_bound(self, session: Any, name: str, batch: Any, on_device: bool) -> Any:
        binding = session.io_binding()
        device = self.bind_device
        keep_alive = None
        if isinstance(batch, np.ndarray):
            binding.bind_cpu_input(name, np.ascontiguousarray(batch))
        else:
            buf = device_buffer(batch) if device == "cuda" else None
            if buf is None:  # a host object that is not numpy (lists, CPU DLPack...)
                binding.bind_cpu_input(name, _to_host(batch))
            else:
                ptr, shape, dtype, keep_alive = buf
                binding.bind_input(name, device, self.device_id, dtype, list(shape), ptr)
        binding.bind_output(OUTPUT_NAME, device, self.device_id)
        session.run_with_iobinding(binding)
        del keep_alive
        return binding.get_outputs()[0] if on_device else binding.copy_outputs_to_cpu()[0]

    # -- info --------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        ort = import_onnxruntime()
        return super().describe() | {
            "onnxruntime": ort.__version__,
            "providers": {k: s.get_providers() for k, s in self.sessions.items()},
            "graphs": {k: {"file": r.file, "variant": r.variant, "opset": r.opset} for k, r in self.graphs.items()},
            "io_binding": self.io_binding,
        }

    def close(self) -> None:
        self.sessions.clear()


@functools.lru_cache(maxsize=1)
def _ort_failures() -> tuple[type[BaseException], ...]:
    """ONNX Runtime's exception classes (its pybind11 state module), plus the RuntimeError its bindings raise."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    own = tuple(c for c in vars(state).values() if isinstance(c, type) and issubclass(c, Exception))
    return own + (RuntimeError,)


# ----------------------------------------------------------------------------- device buffers
def _to_host(batch: Any) -> np.ndarray:
    try:
        if hasattr(batch, "__dlpack__"):
            return np.ascontiguousarray(np.from_dlpack(batch))
        return np.ascontiguousarray(np.asarray(batch))
    except Exception as exc:
        raise InputError(f"cannot read a {type(batch).__name__} as a host array: {exc}") from None


_TYPESTR = {"<f4": np.float32, "<f2": np.float16, "<i8": np.int64, "|u1": np.uint8, "<i4": np.int32}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_DL_CODES = {(2, 32): np.float32, (2, 16): np.float16, (0, 64): np.int64, (1, 8): np.uint8, (0, 32): np.int32}
_DL_CUDA = (2, 13)  # kDLCUDA, kDLCUDAManaged


def device_buffer(obj: Any) -> tuple[int, tuple[int, ...], Any, Any] | None:
    """(device pointer, shape, numpy dtype, keep-alive) of a C-contiguous GPU array, or None for host objects.

    Reads ``__cuda_array_interface__`` (torch CUDA tensors, CuPy, Numba) or a DLPack
    capsule (``__dlpack__``), so no torch import is needed.
    """
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        shape = tuple(int(d) for d in cai["shape"])
        dtype = np.dtype(cai["typestr"])
        strides = cai.get("strides")
        if strides is not None and tuple(strides) != _contiguous_strides(shape, dtype.itemsize):
            raise InputError("GPU input must be C-contiguous (call .contiguous() first)")
        return int(cai["data"][0]), shape, dtype.type, obj
    if hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__"):
        dev_type, _ = obj.__dlpack_device__()
        if int(dev_type) not in _DL_CUDA:
            return None
        capsule = obj.__dlpack__()
        tensor = dlpack_tensor(capsule)
        shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
        dtype = _DL_CODES.get((tensor.dtype.code, tensor.dtype.bits))
        if dtype is None or tensor.dtype.lanes != 1:
            raise InputError(f"unsupported DLPack dtype code={tensor.dtype.code} bits={tensor.dtype.bits}")
        if tensor.strides and tuple(tensor.strides[i] for i in range(tensor.ndim)) != _contiguous_strides(shape, 1):
            raise InputError("GPU input must be C-contiguous (call .contiguous() first)")
        return int(tensor.data or 0) + int(tensor.byte_offset), shape, dtype, (obj, capsule)
    return None


def dlpack_tensor(capsule: Any) -> _DLTensor:
    """The DLTensor inside a ``dltensor`` capsule (DLManagedTensor starts with it); the capsule keeps it alive."""
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    ptr = get(capsule, b"dltensor")
    if not ptr:
        raise InputError("invalid DLPack capsule")
    return _DLTensor.from_address(ptr)


def _contiguous_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, acc = [], itemsize
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(strides))
