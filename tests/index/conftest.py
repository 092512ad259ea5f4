"""Media of every modality as real files (``helpers.write_collection``), in a fresh folder per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_collection


@pytest.fixture()
def collection(tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "media"
    return root, write_collection(root)
