"""Input plumbing shared by every modality: item kinds, list checks, array checks.

Every loader accepts an *item* that is a path (``str`` / ``os.PathLike``), raw
file bytes, or an in-memory object (numpy array, Pillow image, ...). Problems are
raised as :class:`~bindrt.errors.InputError` (or :class:`MediaDecodeError` for
files that exist but cannot be decoded) whose message names the modality, the
item's index in the caller's list and what was expected, so one bad file in a
batch of thousands is easy to find.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from bindrt.errors import InputError, LimitError, MediaDecodeError

from .limits import check_file_bytes

Source = str | io.BytesIO  # what decoders (Pillow, soundfile, PyAV) are handed


def describe(item: Any) -> str:
    """A short human description of an item for error messages (never its full bytes)."""
    if isinstance(item, (str, os.PathLike)):
        return repr(os.fspath(item))
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"<{len(item)} bytes>"
    if isinstance(item, np.ndarray):
        return f"<array shape={item.shape} dtype={item.dtype}>"
    return f"<{type(item).__name__}>"


def is_pathlike(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike))


def is_bytes(item: Any) -> bool:
    return isinstance(item, (bytes, bytearray, memoryview))


def to_source(item: Any, modality: str, index: int | None, expected: str) -> Source:
    """Turn a path or bytes item into something a decoder can open.

    Missing paths, empty buffers and files over ``max_file_bytes`` are caught here
    so decoders only ever see something that exists. Other item kinds are rejected.
    ``expected`` is a noun phrase with its article ("an audio file").
    """
    if is_pathlike(item):
        path = os.fspath(item)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not os.path.exists(path):
            raise InputError(f"file not found: {path!r} (expected {expected})", modality=modality, item=index)
        if not os.path.isfile(path):
            raise InputError(f"not a regular file: {path!r} (expected {expected})", modality=modality, item=index)
        check_file_bytes(os.path.getsize(path), repr(path), modality=modality, index=index)
        return path
    if is_bytes(item):
        data = bytes(item)
        if not data:
            raise InputError(f"empty bytes (expected the contents of {expected})", modality=modality, item=index)
        check_file_bytes(len(data), "the bytes item", modality=modality, index=index)
        return io.BytesIO(data)
    raise InputError(
        f"unsupported item type {type(item).__name__} (expected {expected})", modality=modality, item=index
    )


@contextmanager
def decoding(item: Any, modality: str, index: int | None, expected: str) -> Iterator[None]:
    """Re-raise any decoder failure as MediaDecodeError naming the item and the expectation."""
    try:
        yield
    except InputError:
        raise
    except MemoryError as exc:  # the limits bound what decoders allocate; this is a process that has less
        raise LimitError(
            f"ran out of memory decoding {describe(item)} (expected {expected}); lower the media "
            "limits (bindrt.preprocess.media_limits) or give the process more memory",
            modality=modality,
            item=index,
        ) from exc
    except Exception as exc:  # decoders raise OSError, ValueError, RuntimeError, their own types...
        reason = str(exc).strip() or type(exc).__name__
        raise MediaDecodeError(
            f"cannot decode {describe(item)}: {reason} (expected {expected})", modality=modality, item=index
        ) from exc


def as_item_list(items: Any, modality: str) -> list[Any]:
    """Validate a batch argument: a non-empty list or tuple of items."""
    if isinstance(items, (str, bytes, bytearray, np.ndarray)) or not isinstance(items, Sequence):
        raise InputError(f"expected a list of items, got {type(items).__name__}", modality=modality)
    if len(items) == 0:
        raise InputError("expected at least one item, got an empty list", modality=modality)
    return list(items)


def map_items(items: Any, modality: str, fn: Callable[[Any, int], np.ndarray]) -> np.ndarray:
    """Apply ``fn(item, index)`` to every item and stack the results into one batch."""
    seq = as_item_list(items, modality)
    return np.stack([fn(item, i) for i, item in enumerate(seq)])


def check_array(
    arr: Any, modality: str, index: int | None, *, ndims: Sequence[int], kinds: str, expected: str
) -> np.ndarray:
    """Check an array's rank, dtype kind ('u','i','f','b') and finiteness.

    ``expected`` is the human description used in every message (e.g.
    "an (H, W, 3) uint8 RGB array").
    """
    a = np.asarray(arr)
    if a.dtype.kind not in kinds:
        raise InputError(f"array has dtype {a.dtype} (expected {expected})", modality=modality, item=index)
    if a.ndim not in ndims:
        raise InputError(f"array has shape {a.shape} (expected {expected})", modality=modality, item=index)
    if a.size == 0:
        raise InputError(f"array is empty, shape {a.shape} (expected {expected})", modality=modality, item=index)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = "NaN" if np.isnan(a).any() else "Inf"
        raise InputError(
            f"array contains {bad} values (expected finite values: {expected})", modality=modality, item=index
        )
    return a


NPY_MAGIC = b"\x93NUMPY"


def is_npy_item(item: Any) -> bool:
    """A ``.npy`` path or bytes that start with the npy magic."""
    if is_pathlike(item):
        return os.fsdecode(os.fspath(item)).lower().endswith(".npy")
    return is_bytes(item) and bytes(item[:6]) == NPY_MAGIC


def npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of an open .npy file, read without loading the array."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"npy format version {version[0]}.{version[1]} is not supported (expected 1.0 or 2.0)")
    return tuple(int(d) for d in shape), dtype, f.tell()


def load_npy(
    item: Any,
    modality: str,
    index: int | None,
    expected: str,
    check_shape: Callable[[tuple[int, ...]], None] | None = None,
) -> np.ndarray:
    """Load a .npy path/bytes item (no pickles: arrays only).

    The header's shape goes to ``check_shape`` (the modality's limits) and is
    checked against the file's length before the array is allocated.
    """
    src = to_source(item, modality, index, "a .npy file")
    with decoding(item, modality, index, f"a .npy file holding {expected}"):
        with open(src, "rb") if isinstance(src, str) else nullcontext(src) as f:
            shape, dtype, offset = npy_header(f)
            if check_shape is not None:
                check_shape(shape)
            declared, held = math.prod(shape) * dtype.itemsize, f.seek(0, os.SEEK_END) - offset
            if not dtype.hasobject and declared > held:
                raise ValueError(
                    f"truncated: the header declares {declared} bytes of array data, the file holds {held}"
                )
            f.seek(0)
            arr = np.load(f, allow_pickle=False)
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{describe(item)} is not a single array (expected {expected})", modality=modality, item=index)
    return arr
