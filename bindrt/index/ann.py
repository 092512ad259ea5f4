"""Approximate nearest-neighbour search with FAISS, for collections where exact search is slow.

Exact search is one matrix-vector product over the memory-mapped rows: about 1 ms per
100,000 items of dimension 1024 on one core, so ``ann="auto"`` builds nothing below
:data:`AUTO_THRESHOLD` items. Above it (or with ``ann="faiss"``), the index type follows the
collection's size (inner product on unit rows, i.e. cosine):

* up to :data:`HNSW_MAX` items: ``HNSW32,Flat``, a graph over the full vectors (no training,
  recall near 1 at ``efSearch`` 128);
* beyond: ``IVF<4 sqrt(N)>,PQ<dim/8>x8`` (trained on a sample), a fraction of the memory.

``bindrt index --verify`` measures the built index's recall@k against exact search.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bindrt.errors import ConfigError

ANN_CHOICES = ("auto", "faiss", "none")
AUTO_THRESHOLD = 200_000
HNSW_MAX = 2_000_000
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
IVF_TRAIN_SAMPLE = 262_144


def import_faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ConfigError("approximate search needs FAISS: `pip install 'bindrt[search]'` (faiss-cpu)") from None
    return faiss


def factory_string(count: int, dim: int) -> str:
    """The FAISS index type for ``count`` unit vectors of ``dim`` (see the module docstring)."""
    if count <= HNSW_MAX:
        return f"HNSW{HNSW_M},Flat"
    return f"IVF{int(4 * math.sqrt(count))},PQ{max(1, dim // 8)}x8"


class AnnBuilder:
    """Builds the FAISS index from the rows as they stream into a new generation."""

    def __init__(self, count: int, dim: int) -> None:
        self.faiss = import_faiss()
        self.factory = factory_string(count, dim)
        self.count, self.dim = count, dim
        self.index = self.faiss.index_factory(dim, self.factory, self.faiss.METRIC_INNER_PRODUCT)
        if self.factory.startswith("HNSW"):
            self.index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        self._pending: list[np.ndarray] = []  # IVF: rows until the training sample is full

    def collect(self, rows: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass ``rows`` through, adding each chunk to the index."""
        for chunk in rows:
            self._add(chunk)
            yield chunk
        if self._pending:
            self._train_and_flush()

    def _add(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, np.float32)
        if self.index.is_trained:
            self.index.add(chunk)
            return
        self._pending.append(chunk)
        if sum(len(c) for c in self._pending) >= min(IVF_TRAIN_SAMPLE, self.count):
            self._train_and_flush()

    def _train_and_flush(self) -> None:
        sample = np.concatenate(self._pending)
        self.index.train(sample[:IVF_TRAIN_SAMPLE])
        self.index.add(sample)
        self._pending = []

    def save(self, path: "str | os.PathLike[str]") -> dict[str, Any]:
        """Write the index (temporary name, then rename) and return its record for the index state."""
        tmp = Path(f"{path}.tmp")
        self.faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)
        return {"engine": "faiss", "factory": self.factory, "file": Path(path).name, "count": int(self.index.ntotal)}


def plan_ann(ann: str, count: int, dim: int) -> AnnBuilder | None:
    """The builder ``ann`` asks for at this size, or None (exact search only)."""
    if ann not in ANN_CHOICES:
        raise ConfigError(f"ann={ann!r}; expected one of {', '.join(ANN_CHOICES)}")
    if ann == "none" or count == 0 or (ann == "auto" and count < AUTO_THRESHOLD):
        return None
    if ann == "auto":
        try:
            import_faiss()
        except ConfigError:
            return None  # auto never fails for want of the optional extra; exact search still works
    return AnnBuilder(count, dim)


def load_ann(path: "str | os.PathLike[str]", record: dict[str, Any]) -> Any:
    """The FAISS index of a committed generation, ready to search."""
    faiss = import_faiss()
    index = faiss.read_index(str(path))
    if record.get("factory", "").startswith("HNSW"):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif hasattr(index, "nprobe"):
        index.nprobe = 32
    return index
