"""The few CUDA runtime calls bindrt's TensorRT path needs, through NVIDIA's cuda-python bindings.

Why cuda-python: NVIDIA's own TensorRT samples moved to it from pycuda, and it needs neither
torch nor a compiler. The module layout changed in cuda-python 12.6 (``cuda.bindings.runtime``;
before: ``cuda.cudart``); which one is used is decided by which exists. Never run against a
real GPU (see bindrt.tensorrt.build).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from bindrt.errors import BackendError

INSTALL_HINT = "the TensorRT path needs NVIDIA's cuda-python bindings (pip install cuda-python)"


def cudart() -> Any:
    """The CUDA runtime module of cuda-python (new layout first), or a BackendError saying how to install it."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError:  # the parent package is absent
            found = None
        if found is not None:
            return importlib.import_module(name)
    raise BackendError(INSTALL_HINT)


def check(result: Any, what: str) -> Any:
    """cuda-python returns (error, *values); raise on an error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA {what} failed: {err}")
    return values[0] if len(values) == 1 else tuple(values)


def gpu_properties(device: int = 0) -> tuple[str, tuple[int, int]]:
    """(name, (major, minor)) of CUDA device ``device``."""
    rt = cudart()
    props = check(rt.cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})")
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return name, (int(props.major), int(props.minor))
