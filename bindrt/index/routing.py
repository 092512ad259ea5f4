"""Which modality a file is: by its type and content, with the path's words as hints.

The rules, first match wins (``--modality`` replaces them all):

1. The file's content type, sniffed from its first bytes (an extension can lie): JPEG, PNG,
   GIF, BMP, WebP, TIFF -> an image; RIFF/WAVE, FLAC, OGG, ID3/MP3 -> audio; MP4/MOV (``ftyp``),
   Matroska/WebM, AVI -> video; the npy magic -> an array. Otherwise the extension: ``.csv`` ->
   IMU, ``.txt`` -> text (one item per line), audio and video extensions as their type.
2. An image: 16-bit, 32-bit integer or float single-channel (Pillow modes ``I;16*``, ``I``,
   ``F``) -> depth; 8-bit single-channel -> thermal when the path names it (a folder or file
   called ``thermal``, ``infrared``, ``ir``), else vision; colour -> vision, depth or thermal
   only when the path says so.
3. An array: ``(6, N)`` or ``(N, 6)`` with N > 6 -> IMU; ``(H, W)``, ``(1, H, W)``, ``(H, W, 1)``
   -> depth (thermal when the path says so).

Only the header is read (Pillow's lazy open, the npy header): routing a million files
decodes none of them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bindrt.errors import UnknownModalityError
from bindrt.layouts import INPUT_KINDS

IMAGE_EXTS = frozenset(".jpg .jpeg .png .gif .bmp .webp .tif .tiff".split())
AUDIO_EXTS = frozenset(".wav .flac .ogg .oga .mp3 .m4a .aac .opus".split())
VIDEO_EXTS = frozenset(".mp4 .m4v .mov .webm .mkv .avi".split())
#: Path words that name a modality (whole words of folder or file names).
HINTS = {
    "depth": re.compile(r"(?:^|[^a-z])(depth|disparity)(?:[^a-z]|$)"),
    "thermal": re.compile(r"(?:^|[^a-z])(thermal|infrared|ir|flir)(?:[^a-z]|$)"),
}
_SNIFF = 16


def hinted(path: Path) -> str | None:
    """'depth' or 'thermal' when a folder or file name of ``path`` says so."""
    words = "/".join(p.lower() for p in path.parts[-4:])
    for modality, pattern in HINTS.items():
        if pattern.search(words):
            return modality
    return None


def sniff(head: bytes) -> str | None:
    """'image', 'audio', 'video' or 'npy' from a file's first bytes; None when they say nothing."""
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE" or head.startswith((b"fLaC", b"OggS", b"ID3")):
        return "audio"
    if head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3") or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return "video"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    return None


def route(path: "str | os.PathLike[str]", modality: str | None = None) -> str | None:
    """The input kind of the file at ``path`` ('vision', 'video', 'text', ...), or None if no rule fits.

    ``modality`` forces the kind (an unknown one is an UnknownModalityError). Unreadable
    files route by extension alone; decoding them later reports the problem.
    """
    if modality is not None:
        if modality not in INPUT_KINDS:
            raise UnknownModalityError(f"unknown modality {modality!r}; expected one of {', '.join(INPUT_KINDS)}")
        return modality
    path = Path(path)
    ext = path.suffix.lower()
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF)
    except OSError:
        head = b""
    kind = sniff(head)
    if kind is None:
        kind = (
            "image"
            if ext in IMAGE_EXTS
            else "audio"
            if ext in AUDIO_EXTS
            else "video"
            if ext in VIDEO_EXTS
            else "npy"
            if ext == ".npy"
            else None
        )
    if kind == "image":
        return _image_kind(path)
    if kind == "npy":
        return _array_kind(path)
    if kind in ("audio", "video"):
        return "audio" if kind == "audio" else "video"
    if ext == ".csv":
        return "imu"
    if ext == ".txt":
        return "text"
    return None


def _image_kind(path: Path) -> str:
    from PIL import Image, UnidentifiedImageError

    hint = hinted(path)
    try:
        with Image.open(path) as im:  # lazy: reads the header only
            mode = im.mode
    except (OSError, UnidentifiedImageError, ValueError):
        return hint or "vision"
    if mode.startswith("I") or mode == "F":
        return "thermal" if hint == "thermal" else "depth"
    return hint or "vision"


def _array_kind(path: Path) -> str:
    from bindrt.preprocess._inputs import npy_header

    hint = hinted(path)
    try:
        with open(path, "rb") as f:
            shape, _, _ = npy_header(f)
    except (OSError, ValueError):
        return hint or "depth"
    if len(shape) == 2 and 6 in shape and max(shape) > 6:
        return "imu"
    return "thermal" if hint == "thermal" else "depth"
