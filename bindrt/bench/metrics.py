"""How close two engines' embeddings of the same inputs are: the numbers the precision tiers are stated in."""

from __future__ import annotations

import numpy as np


def min_row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest cosine between matching rows of ``a`` and ``b`` (computed in float64)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return float(cos.min())


def max_row_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over each row, relative to that row's norm in the reference ``b``: the exact tier's metric."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float((np.abs(a - b).max(-1) / np.linalg.norm(b, axis=-1)).max())
