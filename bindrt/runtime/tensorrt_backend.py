"""TensorRT backend: runs the engines ``bindrt build`` wrote into the bundle. Torch-free.

``bindrt.load(bundle, backend="tensorrt", device="cuda:0", precision="fp16")`` deserialises,
per input kind, the engine recorded for that precision that this TensorRT and GPU can run
(:func:`bindrt.tensorrt.engines.select_engine` names what differs otherwise), sets the input
shape per call, and runs ``execute_async_v3`` on its own CUDA stream. Batches above the
profile's maximum are split by the Embedder (:meth:`max_batch_size`). Device memory and
streams go through cuda-python (:mod:`bindrt.tensorrt.cuda`), so neither torch nor pycuda is
needed. Inputs: numpy arrays (copied to the device), or GPU arrays exposing
``__cuda_array_interface__`` (torch, CuPy, pycuda), used in place.

Threads: one execution context per engine, guarded by a lock, so concurrent ``run`` calls
on one kind serialise; open one backend per thread for parallel streams.

**Never run**: TensorRT cannot be installed on any machine this project has reached. Written
from NVIDIA's TensorRT Python API reference (``ICudaEngine``, ``IExecutionContext``) and the
cuda-python samples; the engine selection it relies on is tested without TensorRT.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from bindrt.errors import BackendError
from bindrt.runtime.base import Backend, ModelSource
from bindrt.runtime.graphs import missing_kind_error
from bindrt.schema import RAW_KINDS, base_kinds


def _device_index(device: str) -> int:
    head, _, index = str(device).lower().partition(":")
    if head not in ("cuda", "gpu") or (index and not index.isdigit()):
        raise BackendError(f"the tensorrt backend runs on CUDA devices ('cuda' or 'cuda:N'), not {device!r}")
    return int(index or 0)


class _Engine:
    """One deserialised engine, its execution context, stream and device buffers (grown on demand)."""

    def __init__(self, trt: Any, rt: Any, runtime: Any, data: bytes, record: Any) -> None:
        from bindrt.tensorrt.cuda import check

        self.rt, self.record, self.check = rt, record, check
        self.engine = runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialise {record.file}; rebuild it with `bindrt build`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendError(f"{record.file}: expected one input and one output, got {inputs} -> {outputs}")
        self.input, self.output = inputs[0], outputs[0]
        self.in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input)))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output)))
        self.stream = check(rt.cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)
        self.lock = threading.Lock()

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self.check(self.rt.cudaFree(ptr), "cudaFree")
            ptr = self.check(self.rt.cudaMalloc(nbytes), f"cudaMalloc({nbytes})")
            self.buffers[name] = (int(ptr), nbytes)
        return int(self.buffers[name][0])

    def run(self, batch: Any) -> np.ndarray:
        rt, check = self.rt, self.check
        kind = rt.cudaMemcpyKind
        with self.lock:
            device_in = getattr(batch, "__cuda_array_interface__", None)
            shape = tuple(device_in["shape"]) if device_in else tuple(np.shape(batch))
            if not self.context.set_input_shape(self.input, shape):
                raise BackendError(f"{self.record.file}: input shape {shape} is outside the engine's profile")
            if device_in:  # a GPU array: used in place (its dtype must be the engine's)
                if np.dtype(device_in["typestr"]) != self.in_dtype or device_in.get("strides") not in (None,):
                    raise BackendError(f"GPU input must be a contiguous {self.in_dtype} array for {self.record.file}")
                in_ptr = int(device_in["data"][0])
            else:
                host = np.ascontiguousarray(batch, dtype=self.in_dtype)
                in_ptr = self._buffer(self.input, host.nbytes)
                check(
                    rt.cudaMemcpyAsync(in_ptr, host.ctypes.data, host.nbytes, kind.cudaMemcpyHostToDevice, self.stream),
                    "cudaMemcpyAsync (to device)",
                )
            out_shape = tuple(self.context.get_tensor_shape(self.output))
            out = np.empty(out_shape, dtype=self.out_dtype)
            out_ptr = self._buffer(self.output, out.nbytes)
            self.context.set_tensor_address(self.input, in_ptr)
            self.context.set_tensor_address(self.output, out_ptr)
            if not self.context.execute_async_v3(self.stream):
                raise BackendError(f"TensorRT failed running {self.record.file}")
            check(
                rt.cudaMemcpyAsync(out.ctypes.data, out_ptr, out.nbytes, kind.cudaMemcpyDeviceToHost, self.stream),
                "cudaMemcpyAsync (to host)",
            )
            check(rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return out.astype(np.float32, copy=False)

    def close(self) -> None:
        for ptr, _ in self.buffers.values():
            self.rt.cudaFree(ptr)
        self.buffers.clear()
        self.rt.cudaStreamDestroy(self.stream)


class TensorRtBackend(Backend):
    name = "tensorrt"
    precisions = ("fp32", "fp16", "bf16", "int8")
    accepts_device_arrays = True

    def __init__(self, config, modalities, device, precision, engines: dict[str, _Engine]) -> None:
        super().__init__(config, modalities, device, precision)
        self.engines = engines

    @classmethod
    def open(
        cls,
        source: ModelSource,
        *,
        modalities: tuple[str, ...],
        device: str = "cuda:0",
        precision: str = "fp16",
        preprocessing: bool = False,
        verify: bool = True,
        **options: Any,
    ) -> "TensorRtBackend":
        from bindrt.tensorrt.build import INSTALL_HINT, installed_version
        from bindrt.tensorrt.cuda import check, cudart, gpu_properties
        from bindrt.tensorrt.engines import engine_records, select_engine

        if options:
            raise BackendError(f"unknown option(s) for the tensorrt backend: {sorted(options)}")
        index = _device_index(device)
        version = installed_version()
        if version is None:
            raise BackendError(INSTALL_HINT)
        if source.bundle is None:
            raise BackendError(
                "the tensorrt backend runs engines from a bundle: convert the checkpoint, `bindrt export` it and "
                "`bindrt build` the engines first"
            )
        import tensorrt as trt

        rt = cudart()
        check(rt.cudaSetDevice(index), f"cudaSetDevice({index})")
        gpu, cc = gpu_properties(index)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        bundle = source.bundle
        engines: dict[str, _Engine] = {}
        try:
            for m in modalities:
                records = engine_records(bundle, m)
                kinds = [*base_kinds(m), *(RAW_KINDS.get(m, ()) if preprocessing else ())]
                for kind in kinds:
                    record = select_engine(
                        records,
                        kind,
                        precision,
                        tensorrt=version,
                        gpu=gpu,
                        compute_capability=cc,
                        where=str(bundle.path),
                    )
                    data = bundle.file(record.file, verify=verify).read_bytes()
                    engines[kind] = _Engine(trt, rt, runtime, data, record)
        except BaseException:
            for e in engines.values():
                e.close()
            raise
        return cls(source.config, modalities, f"cuda:{index}", precision, engines)

    @property
    def input_kinds(self) -> tuple[str, ...]:
        return tuple(self.engines)

    def max_batch_size(self, kind: str) -> int | None:
        engine = self.engines.get(kind)
        return None if engine is None else int(engine.record.shapes.max[0])

    def run(self, kind: str, batch: Any) -> np.ndarray:
        engine = self.engines.get(kind)
        if engine is None:
            raise missing_kind_error(kind, tuple(self.engines))
        return engine.run(batch)

    def describe(self) -> dict[str, Any]:
        from bindrt.tensorrt.engines import describe

        return super().describe() | {"engines": {k: describe(e.record) for k, e in self.engines.items()}}

    def close(self) -> None:
        for e in self.engines.values():
            e.close()
        self.engines.clear()
