"""The one interface every backend implements (torch, onnxruntime, triton).

A backend runs *preprocessed* batches in the reference layouts and returns
float32 embeddings; validation, batching and raw-input preprocessing live once,
in :class:`bindrt.runtime.embedder.Embedder`, above every backend. Torch-free.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bindrt.bundle import Bundle
from bindrt.config import ImageBindConfig
from bindrt.layouts import INPUT_KINDS

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: a bundle, or a reference checkpoint plus its config."""

    config: ImageBindConfig
    bundle: Bundle | None = None
    checkpoint: Path | None = None

    @property
    def available_modalities(self) -> tuple[str, ...]:
        from bindrt.config import MODALITIES

        return self.bundle.modalities if self.bundle is not None else MODALITIES


class Backend(ABC):
    """Runs encoders on preprocessed numpy batches.

    Subclasses set ``name``, implement :meth:`open` and :meth:`run`, and may
    override :meth:`max_batch_size` (fixed-shape engines) and :meth:`close`.
    """

    name: ClassVar[str]
    #: precisions this backend can run
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    #: whether ``run`` takes GPU arrays (``__cuda_array_interface__`` / DLPack) without a host copy
    accepts_device_arrays: bool = False

    def __init__(self, config: ImageBindConfig, modalities: tuple[str, ...], device: str, precision: str) -> None:
        self.config = config
        self.modalities = modalities
        self.device = device
        self.precision = precision

    @classmethod
    @abstractmethod
    def open(
        cls,
        source: ModelSource,
        *,
        modalities: tuple[str, ...],
        device: str,
        precision: str,
        **options: Any,
    ) -> "Backend":
        """Load the requested modalities from ``source``; raise BackendError if impossible here."""

    @abstractmethod
    def run(self, kind: str, batch: np.ndarray) -> np.ndarray:
        """Embed one validated batch of input ``kind`` ('vision', 'video', 'text', ...) -> (B, out_dim) float32."""

    @property
    def input_kinds(self) -> tuple[str, ...]:
        return tuple(k for k, m in INPUT_KINDS.items() if m in self.modalities)

    def max_batch_size(self, kind: str) -> int | None:
        """Largest batch one ``run`` call accepts (None: unlimited)."""
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": self.device,
            "precision": self.precision,
            "modalities": list(self.modalities),
        }

    def close(self) -> None:
        """Release device memory / sessions."""
