"""Shared helpers for the Triton kernels: environment detection and input checks.

Nothing here imports triton, so :func:`available` can answer "no" (instead of
raising ``ImportError``) on a machine without triton.
"""

from __future__ import annotations

import os
from typing import Iterable

from bindrt.errors import BackendError, InputError


def interpreting() -> bool:
    """True when Triton runs in its CPU interpreter (``TRITON_INTERPRET=1``).

    Triton reads the variable when a kernel is *decorated* (i.e. when the kernel
    modules are imported), so it must be set before importing ``bindrt.kernels``
    submodules; setting it later has no effect on kernels already defined.
    """
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def available() -> tuple[bool, str]:
    """Whether the Triton kernels can run here, and why (not).

    Returns ``(True, reason)`` when a CUDA device is present (and triton imports)
    or when ``TRITON_INTERPRET=1`` (numpy-emulated, slow: tests only), else
    ``(False, reason)``. Never raises.
    """
    try:
        import torch
    except Exception as exc:  # pragma: no cover - torch is a hard dep of the extra
        return False, f"torch is not importable: {exc}"
    try:
        import triton  # noqa: F401
    except Exception as exc:
        return False, f"triton is not importable ({exc}); install bindrt[kernels]"
    if interpreting():
        return True, f"TRITON_INTERPRET=1: Triton CPU interpreter (triton {triton.__version__}); slow, for tests"
    try:
        has_cuda = torch.cuda.is_available()
    except Exception as exc:  # pragma: no cover - broken driver
        return False, f"torch.cuda.is_available() failed: {exc}"
    if not has_cuda:
        return False, "no CUDA device (set TRITON_INTERPRET=1 before importing bindrt.kernels to emulate on CPU)"
    try:
        name = torch.cuda.get_device_name(0)
    except Exception:  # pragma: no cover
        name = "CUDA device"
    return True, f"{name} (triton {triton.__version__})"


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def check_dtype(t, name: str, allowed=None):
    import torch

    allowed = allowed or (torch.float16, torch.bfloat16, torch.float32)
    if t.dtype not in allowed:
        raise InputError(f"{name} has dtype {t.dtype}; the Triton kernels support {', '.join(str(d) for d in allowed)}")


def check_same(ref, ref_name: str, others: Iterable[tuple[object, str]]):
    """Every tensor in ``others`` must share ``ref``'s dtype and device."""
    for t, name in others:
        if t is None:
            continue
        if t.device != ref.device:
            raise InputError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; move both to one device")
        if t.dtype != ref.dtype:
            raise InputError(
                f"{name} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}; "
                f"cast them to one dtype (the kernels never mix dtypes silently)"
            )


def check_runnable(t, name: str):
    """Raise :class:`BackendError` when ``t`` lives where the kernels cannot run.

    Tensors on a CUDA device are fine; CPU tensors only under the interpreter.
    Fake / meta tensors (torch.compile / torch.export tracing) never reach this:
    the ops' fake implementations handle them.
    """
    dev = t.device.type
    if dev == "cuda":
        return
    if dev == "cpu" and interpreting():
        return
    if dev == "cpu":
        raise BackendError(
            f"{name} is on the CPU: the Triton kernels need a CUDA device "
            f"(or TRITON_INTERPRET=1 set before importing bindrt.kernels, for tests)"
        )
    raise BackendError(f"{name} is on device type {dev!r}; the Triton kernels run on CUDA only")


def check_finite_param(value: float, name: str):
    import math

    if not math.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a finite positive number, got {value!r}")
