"""Atomic, guarded writes and checksums: nothing half-written under a final name, nothing foreign deleted.

Every destructive write goes through :func:`ensure_replaceable`: a path that
exists is replaced only when the caller's ``is_ours`` recognises it as
something bindrt wrote (a bundle, a run directory), and never when it is the
current directory or one of its parents.

Outputs honour the process umask like any ``open``/``mkdir`` (0644/0755 under
umask 022): temporary directories are created with mode 0777 for the kernel to
mask, and a finished file gets ``0666 & ~umask`` before it is renamed into place,
whatever its writer did (``tempfile.mkstemp``/``mkdtemp`` and safetensors' own
temporary file force 0600/0700, which a serving account cannot read).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterator

from bindrt.errors import OutputError

_ATTEMPTS = 100  # unique-name retries before giving up (each collides with chance 2**-48)


def sha256_file(path: "str | os.PathLike[str]", chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- the guard
def ensure_replaceable(path: "str | os.PathLike[str]", *, is_ours: Callable[[Path], bool], what: str) -> None:
    """Raise OutputError unless ``path`` is absent or ``is_ours(path)``; never the cwd or one of its parents.

    ``what`` names the expected thing in the message ("bundle", "training log"...).
    """
    path = _absolute(path)
    _refuse_cwd(path, what)
    if os.path.lexists(path) and not is_ours(path):
        kind = "a symlink" if path.is_symlink() else "a directory" if path.is_dir() else "a file"
        raise OutputError(
            f"{path} exists and is {kind}, not a {what}; refusing to replace it "
            "(move it away or choose another output path)"
        )


def remove_replaceable(path: "str | os.PathLike[str]", *, is_ours: Callable[[Path], bool], what: str) -> None:
    """Delete ``path`` (a tree, a file or a link) after :func:`ensure_replaceable` accepted it."""
    ensure_replaceable(path, is_ours=is_ours, what=what)
    path = _absolute(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def check_output(
    path: "str | os.PathLike[str]", *, overwrite: bool, is_ours: Callable[[Path], bool], what: str
) -> None:
    """Fail early (before expensive work) if ``path`` cannot receive a new ``what``."""
    _refuse_cwd(_absolute(path), what)
    if os.path.lexists(_absolute(path)) and not overwrite:
        raise OutputError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    ensure_replaceable(path, is_ours=is_ours, what=what)


def is_writable_dir(directory: "str | os.PathLike[str]") -> bool:
    """Whether new entries can be created in ``directory``: permissions, then a probe entry.

    The probe catches what ``os.access`` misses for root (read-only or special
    filesystems such as /proc).
    """
    directory = _absolute(directory)
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:
        probe = _create_unique(directory / "write-probe", "", _create_dir)
    except OutputError:
        return False
    probe.rmdir()
    return True


# ----------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(final: "str | os.PathLike[str]") -> Iterator[Path]:
    """Yield a temporary sibling file; rename it onto ``final`` only if the block succeeds.

    An existing *file* at ``final`` is replaced (atomically); a directory is refused.
    """
    final = _absolute(final)
    if final.is_dir():
        raise OutputError(f"{final} is a directory; expected a file path to write")
    _check_writable_dir(final.parent)
    tmp = _create_unique(final, ".tmp", _create_file)
    try:
        yield tmp
        try:
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, final)
        except OSError as exc:
            raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from None
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


def atomic_write_bytes(final: "str | os.PathLike[str]", data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_directory(
    final: "str | os.PathLike[str]",
    overwrite: bool = False,
    *,
    is_ours: Callable[[Path], bool] | None = None,
    what: str = "directory",
) -> Iterator[Path]:
    """Build a directory under a hidden temporary name and move it into place at the end.

    An interrupted build leaves nothing under the final name (and no temporary
    directory). With ``overwrite``, an existing target is replaced only if
    ``is_ours`` accepts it (None: only an absent target); the old tree is removed
    only once the new one is in place, and put back if moving the new one in fails.
    """
    final = _absolute(final)
    ours = is_ours or _nothing
    check_output(final, overwrite=overwrite, is_ours=ours, what=what)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {final.parent}: {exc.strerror or exc}") from None
    _check_writable_dir(final.parent)
    tmp = _create_unique(final, ".partial", _create_dir)
    try:
        yield tmp
        ensure_replaceable(final, is_ours=ours, what=what)  # again: the build may have taken minutes
        if os.path.lexists(final):
            _swap_directory(tmp, final)
        else:
            _rename(tmp, final)
    finally:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_directory(new: Path, final: Path) -> None:
    """Replace ``final`` by ``new``: old tree aside (unique hidden name), new in, old removed."""
    aside = _create_unique(final, ".old", _create_dir)
    held = aside / final.name
    try:
        _rename(final, held)
    except BaseException:
        aside.rmdir()
        raise
    try:
        _rename(new, final)
    except BaseException:
        try:
            os.rename(held, final)  # put the old one back; it is the only copy
        except OSError as exc:
            raise OutputError(
                f"cannot put {final} back after a failed replace ({exc.strerror or exc}); "
                f"the previous version is kept at {held}"
            ) from None
        aside.rmdir()
        raise
    shutil.rmtree(aside, ignore_errors=True)


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (other threads may be creating files)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: the set-and-restore dance (briefly racy)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- helpers
def _absolute(path: "str | os.PathLike[str]") -> Path:
    """Absolute and normalised ('.', '..', trailing '/' resolved), symlinks kept as links."""
    return Path(os.path.abspath(path))


def _refuse_cwd(path: Path, what: str) -> None:
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the working directory was deleted: nothing left to protect
        return
    target = path.resolve()
    if target == cwd or target in cwd.parents:
        raise OutputError(f"refusing to write a {what} at {path}: it is the current directory or one of its parents")


def _nothing(path: Path) -> bool:
    return False


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _create_dir(path: Path) -> None:
    os.mkdir(path, 0o777)


def _create_unique(final: Path, suffix: str, create: Callable[[Path], None]) -> Path:
    """Create a new hidden sibling ``.<name>.<random><suffix>`` of ``final`` (umask applies)."""
    for _ in range(_ATTEMPTS):
        candidate = final.with_name(f".{final.name}.{secrets.token_hex(6)}{suffix}")
        try:
            create(candidate)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"output directory {final.parent} is not writable: {exc.strerror or exc}") from None
        return candidate
    raise OutputError(f"cannot find a free temporary name next to {final}")


def _rename(src: Path, dst: Path) -> None:
    try:
        os.rename(src, dst)
    except OSError as exc:
        raise OutputError(f"cannot move {src.name} to {dst}: {exc.strerror or exc}") from None


def _check_writable_dir(directory: Path) -> None:
    if not directory.is_dir():
        raise OutputError(f"output directory {directory} does not exist or is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):  # cheap; creating the entry reports the rest
        raise OutputError(f"output directory {directory} is not writable")
