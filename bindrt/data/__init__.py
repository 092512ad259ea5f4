"""Small sample media shipped with bindrt so the demo runs with no downloads."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample(name: str) -> Path:
    """Path of a packaged sample file (photo.jpg, tone16k.wav)."""
    return Path(str(resources.files(__package__) / "samples" / name))
