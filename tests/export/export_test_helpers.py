"""Shared constants and helpers of the ONNX export tests (imported by name; no clash with tests/conftest.py)."""

from __future__ import annotations

import numpy as np
from helpers import GOLDEN_DIR, GOLDEN_INPUTS, MEDIA_DIR, row_relative_error  # noqa: F401  (one definition)

KINDS = tuple(GOLDEN_INPUTS)
MODALITY = {k: ("vision" if k == "video" else k) for k in KINDS}


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).min())


def batch_of(x: np.ndarray, n: int) -> np.ndarray:
    """n items cycling through x (batch 5 from a golden batch of 2 or 3)."""
    return np.concatenate([x] * (n // len(x) + 1))[:n]


def session(path, threads: int = 2):
    from bindrt.loaders import OrtSessionOptions, SessionFromOnnx

    return SessionFromOnnx(path, OrtSessionOptions(intra_op_num_threads=threads))()


#: Prelude of a child-process script in which importing torch fails: proves a runtime path is torch-free.
NO_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith(("torch.", "torchaudio", "torchvision")):
            raise ImportError(f"{name} is blocked in this test (torch-free runtime)")
        return None

sys.meta_path.insert(0, NoTorch())
"""
