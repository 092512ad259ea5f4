"""Small sample media and a trained tiny model shipped with bindrt, so the demo runs with no downloads."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample(name: str) -> Path:
    """Path of a packaged sample file (photo.jpg, tone16k.wav)."""
    return Path(str(resources.files(__package__) / "samples" / name))


def tiny_bundle() -> Path:
    """The shipped tiny model (``bindrt train --preset tiny`` on the procedural world, fp16 weights; read-only).

    Copy it before exporting graphs into it (``bindrt demo`` does). How it was made and its
    evaluation on a held-out world seed: ``eval/`` inside it; regenerate with ``bindrt.training.ship``.
    """
    return Path(str(resources.files(__package__) / "tiny"))
