"""Guarded, atomic writes: --overwrite never deletes what bindrt did not write, outputs honour the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from helpers import GOLDEN_DIR

from bindrt import fileio
from bindrt.bundle import Bundle
from bindrt.cli import main
from bindrt.errors import OutputError
from bindrt.fileio import (
    atomic_directory,
    atomic_path,
    current_umask,
    ensure_replaceable,
    is_writable_dir,
    remove_replaceable,
)

CKPT = str(GOLDEN_DIR / "weights.pth")


def _convert(out: str, *extra: str, modalities: str = "imu") -> int:
    return main(["convert", CKPT, "--config", "golden", "--out", out, "--modalities", modalities, *extra])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("bindrt convert: error: "), err
    return err


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ----------------------------------------------------------------------------- --overwrite
def test_overwrite_keeps_a_folder_that_is_not_a_bundle(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "important.txt").write_text("irreplaceable")
    assert _convert(str(folder), "--overwrite") == 2
    assert "is a directory, not a bindrt bundle; refusing to replace it" in _one_line_error(capsys)
    assert (folder / "important.txt").read_text() == "irreplaceable"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no partial or aside directory left


def test_overwrite_keeps_a_regular_file(tmp_path, capsys):
    target = tmp_path / "notes"
    target.write_text("keep me")
    for _ in range(2):  # the second attempt used to fail with NotADirectoryError on a leftover .notes.old
        assert _convert(str(target), "--overwrite") == 2
        assert "is a file, not a bindrt bundle" in _one_line_error(capsys)
    assert target.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]


def test_overwrite_does_not_follow_a_symlink_to_a_bundle(tmp_path, capsys):
    assert _convert(str(tmp_path / "real")) == 0
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert _convert(str(tmp_path / "link"), "--overwrite", modalities="depth") == 2
    assert "is a symlink, not a bindrt bundle" in _one_line_error(capsys)
    assert Bundle.open(tmp_path / "real").modalities == ("imu",)


@pytest.mark.parametrize("out", [".", "..", "./", "sub/..", "{cwd}"])
def test_out_is_the_current_directory_or_a_parent(tmp_path, monkeypatch, capsys, out):
    work = tmp_path / "work"
    work.mkdir()
    (work / "important.txt").write_text("x")
    monkeypatch.chdir(work)
    assert _convert(out.format(cwd=work), "--overwrite") == 2
    assert "it is the current directory or one of its parents" in _one_line_error(capsys)
    assert (work / "important.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_cwd_inside_a_bundle_is_not_replaced(tmp_path, monkeypatch, capsys):
    assert _convert(str(tmp_path / "b")) == 0
    monkeypatch.chdir(tmp_path / "b")
    assert _convert(".", "--overwrite") == 2
    assert "current directory" in _one_line_error(capsys)
    assert Bundle.open(tmp_path / "b").modalities == ("imu",)


def test_repeated_overwrite_of_a_bundle_leaves_nothing_behind(tmp_path, capsys):
    out = tmp_path / "b"
    for mods in ("imu", "depth", "imu,thermal"):
        assert _convert(str(out), "--overwrite", modalities=mods) == 0
    assert Bundle.open(out).modalities == ("thermal", "imu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no hidden .b.* left in the parent
    assert sorted(p.name for p in (out / "weights").iterdir()) == ["imu.safetensors", "thermal.safetensors"]


def test_failed_swap_puts_the_old_bundle_back(tmp_path, monkeypatch):
    from bindrt.convert import convert_checkpoint

    out = tmp_path / "b"
    convert_checkpoint(CKPT, "golden", out, modalities=["imu"])
    before = (out / "manifest.json").read_bytes()
    real_rename = os.rename

    def rename_in_fails(src, dst):
        if Path(dst) == out:  # moving the new bundle in (not putting the old one back: that source is hidden)
            if Path(src).name.endswith(".partial"):
                raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_in_fails)
    with pytest.raises(OutputError, match="No space left on device"):
        convert_checkpoint(CKPT, "golden", out, modalities=["depth"], overwrite=True)
    assert (out / "manifest.json").read_bytes() == before
    assert Bundle.open(out).modalities == ("imu",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_interrupted_replace_keeps_the_old_bundle(tmp_path):
    from bindrt.convert import convert_checkpoint

    out = tmp_path / "b"
    convert_checkpoint(CKPT, "golden", out, modalities=["imu"])
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(out, overwrite=True, is_ours=Bundle.is_bundle, what="bindrt bundle") as tmp:
            (tmp / "half-written").write_text("x")
            raise KeyboardInterrupt
    assert Bundle.open(out).modalities == ("imu",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_target_that_stopped_being_a_bundle_during_the_build_is_kept(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "manifest.json").write_text('{"format": "bindrt-bundle"}')
    with pytest.raises(OutputError, match="not a bindrt bundle"):
        with atomic_directory(out, overwrite=True, is_ours=Bundle.is_bundle, what="bindrt bundle") as tmp:
            (tmp / "new").write_text("x")
            (out / "manifest.json").write_text("user data now")  # replaced by someone else meanwhile
    assert (out / "manifest.json").read_text() == "user data now"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# ----------------------------------------------------------------------------- the guard
def test_ensure_replaceable(tmp_path, monkeypatch):
    ensure_replaceable(tmp_path / "absent", is_ours=lambda p: False, what="run directory")
    (tmp_path / "ours").mkdir()
    ensure_replaceable(tmp_path / "ours", is_ours=lambda p: p.name == "ours", what="run directory")
    (tmp_path / "log").write_text("x")
    with pytest.raises(OutputError, match=r"log exists and is a file, not a training log; refusing"):
        ensure_replaceable(tmp_path / "log", is_ours=lambda p: False, what="training log")
    monkeypatch.chdir(tmp_path / "ours")
    with pytest.raises(OutputError, match="current directory"):
        ensure_replaceable(tmp_path, is_ours=lambda p: True, what="run directory")


def test_remove_replaceable(tmp_path):
    run = tmp_path / "checkpoints"
    run.mkdir()
    (run / "last.pt").write_bytes(b"x")
    with pytest.raises(OutputError, match="not a checkpoint directory"):
        remove_replaceable(run, is_ours=lambda p: False, what="checkpoint directory")
    assert (run / "last.pt").exists()
    remove_replaceable(run, is_ours=lambda p: True, what="checkpoint directory")
    assert not run.exists()
    remove_replaceable(run, is_ours=lambda p: False, what="checkpoint directory")  # absent: nothing to do
    (tmp_path / "train.jsonl").write_text("{}\n")
    remove_replaceable(tmp_path / "train.jsonl", is_ours=Path.is_file, what="training log")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_refuses_a_directory(tmp_path):
    (tmp_path / "out.npz").mkdir()
    with pytest.raises(OutputError, match="is a directory; expected a file path"):
        with atomic_path(tmp_path / "out.npz") as tmp:
            tmp.write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]


def test_is_writable_dir(tmp_path):
    assert is_writable_dir(tmp_path)
    assert not is_writable_dir(tmp_path / "absent")
    assert not is_writable_dir("/proc")  # refuses new entries even for root


# ----------------------------------------------------------------------------- umask
@pytest.fixture()
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    previous = os.umask(0o022)
    yield set_mask
    os.umask(previous)


@pytest.mark.parametrize(
    "mask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640), (0o077, 0o700, 0o600)]
)
def test_outputs_honour_the_umask(tmp_path, umask, mask, dir_mode, file_mode):
    from bindrt.convert import convert_checkpoint

    umask(mask)
    out = tmp_path / "b"
    convert_checkpoint(CKPT, "golden", out, modalities=["imu", "depth"])
    convert_checkpoint(CKPT, "golden", out, modalities=["imu", "depth"], overwrite=True)  # the swap path too
    dirs = [out, *(p for p in out.rglob("*") if p.is_dir())]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(dirs) == 2 and len(files) == 3  # bundle, weights/; manifest + two safetensors
    assert {p.relative_to(tmp_path).as_posix(): _mode(p) for p in dirs} == {"b": dir_mode, "b/weights": dir_mode}
    assert {_mode(p) for p in files} == {file_mode}
    with atomic_path(tmp_path / "emb.npz") as tmp:
        tmp.write_bytes(b"x")
    assert _mode(tmp_path / "emb.npz") == file_mode


def test_current_umask_reads_proc_and_falls_back(umask, monkeypatch):
    umask(0o027)
    assert current_umask() == 0o027

    def no_proc(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(fileio, "open", no_proc, raising=False)
    assert current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # the fallback restored it
