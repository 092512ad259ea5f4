"""What ``bindrt.load`` returns: raw inputs in, embeddings out, on any backend."""

from __future__ import annotations

from typing import Any

import numpy as np

from bindrt.errors import BackendError, ConfigError, InputError, UnknownModalityError
from bindrt.layouts import ALL_LAYOUTS, VOCAB_SIZE
from bindrt.runtime.base import Backend


class Embedder:
    """Validates, preprocesses and batches inputs, then calls one backend.

    ``embed`` takes raw inputs (paths, bytes, images, arrays, strings);
    ``encode`` takes preprocessed batches in the reference layouts.
    """

    def __init__(self, backend: Backend, batch_size: int = 32) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.backend = backend
        self.batch_size = batch_size
        self.closed = False

    @property
    def config(self):
        return self.backend.config

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.backend.modalities

    @property
    def input_kinds(self) -> tuple[str, ...]:
        return self.backend.input_kinds

    def __repr__(self) -> str:
        d = self.backend.describe()
        return f"Embedder(backend={d['backend']!r}, device={d['device']!r}, precision={d['precision']!r}, modalities={list(self.modalities)})"

    # -- preprocessed batches ------------------------------------------------------
    def encode(self, kind: str, batch: Any, *, normalize: bool = False) -> np.ndarray:
        """Embed a preprocessed batch (reference layout) of input ``kind``; returns (B, out_dim) float32.

        Rows carry the reference's per-modality scale (unit norm times the encoder's logit scale:
        vision 1, text ~14, audio ~20 on imagebind_huge); ``normalize=True`` returns unit rows.

        Raw-media kinds (``audio_waveform``, ``vision_uint8``) run on backends that loaded
        graphs with in-graph preprocessing, with the same checks. GPU arrays (torch CUDA
        tensors, CuPy...) go to backends that bind device memory (``accepts_device_arrays``)
        without a host copy; only their shape is checked then, since checking values would
        need that copy. Either way the batch is split into backend batches.
        """
        if _on_device(batch) and self.backend.accepts_device_arrays:
            self._check_kind(kind)
            self._check_shape(kind, tuple(batch.shape))
            array = batch
        else:
            array = self.check_batch(kind, batch)
        step = min(self.batch_size, self.backend.max_batch_size(kind) or self.batch_size)
        parts = [self.backend.run(kind, array[i : i + step]) for i in range(0, int(array.shape[0]), step)]
        out = self._check_output(kind, np.concatenate(parts, axis=0).astype(np.float32, copy=False))
        return unit_rows(out) if normalize else out

    def _check_output(self, kind: str, out: np.ndarray) -> np.ndarray:
        """Finite inputs in range must give finite embeddings; NaN/Inf here means the weights or the precision failed."""
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if len(bad):
            d = self.backend.describe()
            raise BackendError(
                f"the {d['backend']} backend ({d['precision']}) produced NaN/Inf embeddings for {kind} item(s) "
                f"{bad[:8].tolist()} from finite inputs in range; the weights hold non-finite values or the precision "
                "overflowed (check the bundle with `bindrt info --verify`, or run fp32)"
            )
        return out

    def check_batch(self, kind: str, batch: Any) -> np.ndarray:
        self._check_kind(kind)
        layout = ALL_LAYOUTS[kind]
        if not isinstance(batch, np.ndarray):
            try:
                batch = np.asarray(batch)
            except Exception as exc:  # ragged lists etc.
                raise InputError(f"could not convert input to an array: {exc}", modality=kind) from None
        if kind == "audio" and batch.ndim == 4:  # single clip per item
            batch = batch[:, None]
        self._check_shape(kind, batch.shape)
        if layout.dtype == "int64":
            if not np.issubdtype(batch.dtype, np.integer):
                raise InputError(f"expected integer token ids (int64), got dtype {batch.dtype}", modality=kind)
            bad = np.argwhere((batch < 0) | (batch >= VOCAB_SIZE))
            if len(bad):
                raise InputError(
                    f"token id {batch[tuple(bad[0])]} out of range [0, {VOCAB_SIZE})",
                    modality=kind,
                    item=int(bad[0][0]),
                )
            return np.ascontiguousarray(batch, dtype=np.int64)
        if layout.dtype == "uint8":
            if batch.dtype != np.uint8:
                raise InputError(f"expected uint8 values, got dtype {batch.dtype}", modality=kind)
            return np.ascontiguousarray(batch)
        if not np.issubdtype(batch.dtype, np.floating):
            raise InputError(f"expected floating-point values (float32), got dtype {batch.dtype}", modality=kind)
        finite = np.isfinite(batch).reshape(len(batch), -1).all(axis=1)
        if not finite.all():
            raise InputError("contains NaN or Inf; expected finite values", modality=kind, item=int(np.argmin(finite)))
        peak = np.abs(batch).reshape(len(batch), -1).max(axis=1)
        if (peak > layout.max_abs).any():
            item = int(np.argmax(peak > layout.max_abs))
            raise InputError(
                f"holds a value of magnitude {peak[item]:.3g}, outside the {kind} encoder's input range "
                f"|x| <= {layout.max_abs:g} ({layout.value_range})",
                modality=kind,
                item=item,
            )
        return np.ascontiguousarray(batch, dtype=np.float32)

    # -- raw inputs ---------------------------------------------------------------------
    def embed(self, *, normalize: bool = False, **inputs: Any) -> dict[str, np.ndarray]:
        """Embed raw inputs: ``embed(text=[...], vision=[paths], audio=..., video=..., depth=..., thermal=..., imu=...)``.

        A single item is treated as a list of one. Preprocessing runs one batch at a
        time, so a long list never holds all decoded media in memory. ``normalize``: as in
        :meth:`encode` (unit rows instead of the reference's per-modality scale).
        """
        from bindrt.preprocess import as_items, preprocess

        if not inputs:
            raise InputError("no inputs given; expected keyword arguments such as text=[...], vision=[...]")
        out: dict[str, np.ndarray] = {}
        for kind, items in inputs.items():
            self._check_kind(kind)
            items = as_items(kind, items)
            if not items:
                raise InputError("empty input list; expected at least one item", modality=kind)
            parts = []
            for start in range(0, len(items), self.batch_size):
                chunk = items[start : start + self.batch_size]
                try:
                    batch = preprocess(kind, chunk)
                except InputError as exc:
                    raise exc.shifted(start) from None
                parts.append(self.encode(kind, batch, normalize=normalize))
            out[kind] = np.concatenate(parts, axis=0)
        return out

    def _check_shape(self, kind: str, shape: tuple[int, ...]) -> None:
        layout = ALL_LAYOUTS[kind]
        expected = tuple(layout.symbolic_shape())
        tail = tuple(shape[len(expected) - len(layout.shape) :])
        if len(shape) != len(expected) or any(isinstance(d, int) and d != t for d, t in zip(layout.shape, tail)):
            raise InputError(f"expected a batch of shape {expected}, got {tuple(shape)}", modality=kind)
        if shape[0] == 0 or (layout.multi_clip and shape[1] == 0):
            raise InputError(f"empty batch {tuple(shape)}; expected at least one item (and one clip)", modality=kind)

    def _check_kind(self, kind: str) -> None:
        if self.closed:
            raise BackendError("this model was closed (close() or the end of its `with` block); load it again to embed")
        if not isinstance(kind, str) or kind not in ALL_LAYOUTS:
            raise UnknownModalityError(f"unknown input kind {kind!r}; expected one of {', '.join(ALL_LAYOUTS)}")
        if kind not in self.input_kinds:
            layout = ALL_LAYOUTS[kind]
            if layout.raw and layout.encoder in self.modalities:
                raise BackendError(
                    f"the {kind!r} graph is not loaded; load with backend='onnxruntime', "
                    "preprocessing=True (after `bindrt export --with-preprocessing`)"
                )
            raise UnknownModalityError(
                f"this model was loaded without the {layout.encoder!r} encoder; it has {', '.join(self.modalities)}"
            )

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.backend.close()

    def __enter__(self) -> "Embedder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _on_device(batch: Any) -> bool:
    """True for GPU arrays: CUDA array interface, or a DLPack device other than the CPU (1)."""
    if isinstance(batch, np.ndarray):
        return False
    if hasattr(batch, "__cuda_array_interface__"):
        return True
    device = getattr(batch, "__dlpack_device__", None)
    try:
        return device is not None and device()[0] != 1
    except Exception:
        return False


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (the per-modality logit scale removed)."""
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32, copy=False)


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix between two sets of embeddings (scales removed)."""
    return unit_rows(a) @ unit_rows(b).T
