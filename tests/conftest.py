"""Shared fixtures: the reference golden set (copied from shared/reference/golden)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import GOLDEN_DIR


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
