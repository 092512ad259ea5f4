"""IMU preprocessing: bindrt's own convention (the reference ships no IMU loader).

The IMU encoder takes 6 channels x 2000 samples. bindrt's convention:

* Channels, in order: accelerometer x, y, z (m/s^2), gyroscope x, y, z (rad/s),
  the Ego4D layout the paper trains on. Values are used as given (no scaling).
* Layout: ``(6, N)`` or ``(N, 6)``; a ``(6, 6)`` array is read as ``(6, N)``.
* Rate: the 2000 samples are taken to be at ``IMU_SAMPLE_RATE`` = 200 Hz (10 s),
  bindrt's assumption. With ``sample_rate=`` given, the signal is first
  linearly resampled from that rate to ``target_rate`` (default 200 Hz); without
  it, the samples are assumed to be at the target rate already.
* Length: the time scale is never changed to fit; a signal longer than 2000
  samples keeps its centre 2000 (offset ``(N - 2000) // 2``), a shorter one is
  zero-padded on the right.
* Items: a numpy array, a ``.npy`` file, or a ``.csv``/text file (comma or
  whitespace separated, optional one-line header), as a path or bytes.
  Output ``(6, 2000)`` float32.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np

from bindrt.errors import InputError
from bindrt.layouts import IMU_CHANNELS, IMU_SAMPLES

from ._inputs import check_array, decoding, describe, is_npy_item, load_npy, map_items, to_source
from .limits import check_max

IMU_SAMPLE_RATE = 200.0
_EXPECTED = "a (6, N) or (N, 6) array of accelerometer xyz + gyroscope xyz"


def _load_text(item: Any, index: int | None) -> np.ndarray:
    src = to_source(item, "imu", index, "a .csv/.npy file or a (6, N)/(N, 6) numpy array")
    size = os.path.getsize(src) if isinstance(src, str) else len(src.getbuffer())
    check_max("max_imu_csv_bytes", "the size of the CSV/text file in bytes", size, modality="imu", index=index)
    with decoding(item, "imu", index, f"a CSV/text table holding {_EXPECTED}"):
        text = open(src, encoding="utf-8").read() if isinstance(src, str) else src.getvalue().decode("utf-8")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if not lines:
            raise ValueError("no rows")
        delimiter = "," if "," in lines[-1] else None
        try:
            return np.loadtxt(lines, delimiter=delimiter, ndmin=2, dtype=np.float64)
        except ValueError:  # a header line
            return np.loadtxt(lines[1:], delimiter=delimiter, ndmin=2, dtype=np.float64)


def _check_samples(n: int, what: str, index: int | None) -> None:
    check_max(
        "max_imu_samples", " ".join(("the number of samples per channel", what)).strip(), n, modality="imu", index=index
    )


def load_imu(item: Any, *, index: int | None = None) -> np.ndarray:
    """One item -> (6, N) float32, N within max_imu_samples (a .npy file is checked from its header)."""
    if isinstance(item, np.ndarray):
        arr = item
    elif is_npy_item(item):
        arr = load_npy(
            item,
            "imu",
            index,
            _EXPECTED,
            lambda shape: _check_samples(-(-math.prod(shape) // IMU_CHANNELS), f"(shape {shape})", index),
        )
    else:
        arr = _load_text(item, index)
    a = check_array(arr, "imu", index, ndims=(2,), kinds="uif", expected=_EXPECTED)
    if a.shape[0] == IMU_CHANNELS:
        pass
    elif a.shape[1] == IMU_CHANNELS:
        a = a.T
    else:
        raise InputError(f"{describe(item)} has shape {a.shape} (expected {_EXPECTED})", modality="imu", item=index)
    _check_samples(a.shape[1], "", index)
    with np.errstate(over="ignore"):  # reported just below
        a32 = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a32).all():
        raise InputError(
            f"{describe(item)} has values that overflow float32 (max {np.finfo(np.float32).max:.3g}; "
            f"expected {_EXPECTED} in m/s^2 and rad/s)",
            modality="imu",
            item=index,
        )
    return a32


def resample_linear(x: np.ndarray, orig_rate: float, new_rate: float, *, index: int | None = None) -> np.ndarray:
    """Linear interpolation of (C, N) onto the new rate's grid, starting at t=0 and ending inside the signal."""
    n = x.shape[1]
    samples = (n - 1) * new_rate / orig_rate
    _check_samples(
        math.floor(samples) + 1 if math.isfinite(samples) else math.inf,
        f"after resampling {n} samples from {orig_rate:g} to {new_rate:g} Hz",
        index,
    )
    m = int(np.floor(samples + 1e-9)) + 1
    t = np.arange(m, dtype=np.float64) * (orig_rate / new_rate)
    src = np.arange(n, dtype=np.float64)
    return np.stack([np.interp(t, src, ch.astype(np.float64)) for ch in x]).astype(np.float32)


def fit_length(x: np.ndarray, length: int = IMU_SAMPLES) -> np.ndarray:
    """Centre-crop or right-zero-pad (C, N) to (C, length)."""
    n = x.shape[1]
    if n >= length:
        start = (n - length) // 2
        return x[:, start : start + length]
    return np.pad(x, ((0, 0), (0, length - n)))


def preprocess_imu(
    item: Any, *, sample_rate: float | None = None, target_rate: float = IMU_SAMPLE_RATE, index: int | None = None
) -> np.ndarray:
    """One IMU recording -> ``(6, 2000)`` float32."""
    x = load_imu(item, index=index)
    if sample_rate is not None:
        for name, rate in (("sample_rate", sample_rate), ("target_rate", target_rate)):
            if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 < rate < math.inf:
                raise InputError(f"{name}={rate!r} (expected a positive number of Hz)", modality="imu", item=index)
        if sample_rate != target_rate:
            x = resample_linear(x, float(sample_rate), float(target_rate), index=index)
    return np.ascontiguousarray(fit_length(x), dtype=np.float32)


def preprocess_imus(
    items: Any, *, sample_rate: float | None = None, target_rate: float = IMU_SAMPLE_RATE
) -> np.ndarray:
    """A list of IMU recordings -> ``(B, 6, 2000)`` float32."""
    return map_items(
        items, "imu", lambda it, i: preprocess_imu(it, sample_rate=sample_rate, target_rate=target_rate, index=i)
    )
