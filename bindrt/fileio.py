"""Atomic writes and checksums: nothing half-written is ever left under a final name."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from bindrt.errors import OutputError


def sha256_file(path: "str | os.PathLike[str]", chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(final: "str | os.PathLike[str]") -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``final`` only if the block succeeds."""
    final = Path(final)
    _check_writable_dir(final.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:
        raise OutputError(f"output directory {final.parent} is not writable: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(final: "str | os.PathLike[str]", data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_directory(final: "str | os.PathLike[str]", overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and move it into place at the end.

    An interrupted build leaves only a hidden ``.name.*.partial`` directory, never a
    directory under the final name.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise OutputError(f"{final} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {final.parent}: {exc.strerror or exc}") from None
    _check_writable_dir(final.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    except OSError as exc:
        raise OutputError(f"output directory {final.parent} is not writable: {exc.strerror or exc}") from None
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _check_writable_dir(directory: Path) -> None:
    if not directory.is_dir():
        raise OutputError(f"output directory {directory} does not exist or is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {directory} is not writable")
