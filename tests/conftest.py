"""Shared fixtures: the reference golden set (copied from shared/reference/golden)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"
MEDIA_DIR = GOLDEN_DIR / "media"

#: input kind -> key of the reference input in golden.npz; embeddings are emb_<kind>.
GOLDEN_INPUTS = {
    "vision": "pre_vision",
    "text": "pre_text",
    "audio": "pre_audio",
    "depth": "in_depth",
    "thermal": "in_thermal",
    "imu": "in_imu",
    "video": "in_video",
}


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN_DIR / "golden.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def golden_inputs() -> dict:
    return json.loads((GOLDEN_DIR / "inputs.json").read_text())


@pytest.fixture(scope="session")
def golden_bundle(tmp_path_factory) -> Path:
    """The golden reference checkpoint converted once per session (read-only for tests)."""
    from bindrt.convert import convert_checkpoint

    out = tmp_path_factory.mktemp("golden") / "bundle"
    convert_checkpoint(GOLDEN_DIR / "weights.pth", GOLDEN_DIR / "config.json", out)
    return out


def row_relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |diff| per row relative to the reference row's L2 norm (the issues' tolerance)."""
    return float((np.abs(actual - expected).max(axis=-1) / np.linalg.norm(expected, axis=-1)).max())
