"""Every subcommand, fed missing, unreadable, unwritable, wrong-type and hostile inputs, prints one line and exits 2.

Each case runs the real CLI in a subprocess and checks the exit status, that stderr is a
single ``bindrt CMD: error: ...`` line naming the problem, and that no traceback leaks.
"Unwritable" uses ``/sys``, which refuses new entries even to root (tests here may run as
root, where a chmod-ed directory stays writable).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import GOLDEN_DIR

UNWRITABLE = "/sys/bindrt-cli-test"
CKPT = str(GOLDEN_DIR / "weights.pth")
PHOTO = str(GOLDEN_DIR / "media" / "photo.jpg")


class Planted:
    """A pickle that would run code when unpickled: it must never run."""

    def __reduce__(self):
        return (print, ("PLANTED-PICKLE-RAN",))


@pytest.fixture(scope="module")
def world(tmp_path_factory, golden_bundle) -> dict[str, str]:
    """Hostile and broken files for the cases, each under a name the cases refer to."""
    root = tmp_path_factory.mktemp("cli-errors")
    rng = np.random.default_rng()
    paths: dict[str, Path] = {"bundle": golden_bundle, "dir": root / "a-directory", "file": root / "a-file.txt"}
    paths["dir"].mkdir()
    paths["file"].write_text("not what bindrt expects\n")

    paths["pickle"] = root / "planted.pth"
    paths["pickle"].write_bytes(pickle.dumps({"w": Planted()}))

    paths["huge_config"] = root / "huge.json"
    paths["huge_config"].write_text(json.dumps({"vision_embed_dim": 10**12}))

    imu = rng.standard_normal((6, 2000)).astype(np.float32)
    imu[2, int(rng.integers(2000))] = 1e30  # finite, but overflows float32 inside LayerNorm
    paths["huge_imu"] = root / "huge_imu.npy"
    np.save(paths["huge_imu"], imu)

    from PIL import Image

    paths["thin_png"] = root / "thin.png"  # 1 x 20000: resizing its short side to 224 would need 4.5 billion pixels
    Image.fromarray(rng.integers(0, 256, (1, 20000), dtype=np.uint8)).save(paths["thin_png"])

    paths["not_json"] = root / "not-json.bundle"
    paths["not_json"].mkdir()
    (paths["not_json"] / "manifest.json").write_text("{ this is not json")

    paths["run"] = root / "run-with-planted-checkpoint"
    (paths["run"] / "checkpoints").mkdir(parents=True)
    (paths["run"] / "checkpoints" / "last.pt").write_bytes(pickle.dumps(Planted()))

    paths["empty_run"] = root / "empty-run"
    paths["empty_run"].mkdir()
    return {k: str(v) for k, v in paths.items()}


# (case id, argv with {name} placeholders from `world`, a fragment the one-line message must contain)
CASES = [
    # convert
    ("convert-missing", ["convert", "{dir}/nope.pth", "--config", "golden", "--out", "{tmp}/b"], "does not exist"),
    ("convert-unreadable", ["convert", "{dir}", "--config", "golden", "--out", "{tmp}/b"], "not a regular file"),
    ("convert-unwritable", ["convert", CKPT, "--config", "golden", "--out", UNWRITABLE + "/b"], UNWRITABLE),
    ("convert-wrong-config", ["convert", CKPT, "--config", "no-such-preset", "--out", "{tmp}/b"], "unknown config"),
    (
        "convert-wrong-modality",
        ["convert", CKPT, "--config", "golden", "--out", "{tmp}/b", "--modalities", "smell"],
        "unknown modality 'smell'",
    ),
    ("convert-hostile-pickle", ["convert", "{pickle}", "--config", "golden", "--out", "{tmp}/b"], "never unpickles"),
    ("convert-huge-config", ["convert", CKPT, "--config", "{huge_config}", "--out", "{tmp}/b"], "expected at most"),
    # info
    ("info-missing", ["info", "{dir}/nope"], "does not exist"),
    ("info-unreadable", ["info", "{file}"], "not a directory"),
    ("info-hostile-manifest", ["info", "{not_json}"], "not valid JSON"),
    ("info-wrong-type", ["info"], "required"),
    # embed
    ("embed-missing-model", ["embed", "{dir}/nope", "--text", "a"], "does not exist"),
    ("embed-missing-media", ["embed", "{bundle}", "--vision", "{dir}/nope.png"], "file not found"),
    ("embed-unreadable-media", ["embed", "{bundle}", "--vision", "{dir}"], "not a regular file"),
    ("embed-not-a-bundle", ["embed", "{dir}", "--text", "a"], "not a bundle"),
    ("embed-unwritable", ["embed", "{bundle}", "--text", "a", "--out", UNWRITABLE + "/e.npz"], UNWRITABLE),
    ("embed-wrong-batch-size", ["embed", "{bundle}", "--text", "a", "--batch-size", "0"], "batch_size"),
    ("embed-wrong-batch-type", ["embed", "{bundle}", "--text", "a", "--batch-size", "x"], "invalid int value"),
    ("embed-wrong-device", ["embed", "{bundle}", "--text", "a", "--device", "gpu"], "unsupported device 'gpu'"),
    ("embed-wrong-backend", ["embed", "{bundle}", "--text", "a", "--backend", "nope"], "unknown backend"),
    ("embed-wrong-precision", ["embed", "{bundle}", "--text", "a", "--precision", "fp64"], "fp64"),
    ("embed-hostile-imu", ["embed", "{bundle}", "--imu", "{huge_imu}"], "input range"),
    ("embed-hostile-image", ["embed", "{bundle}", "--vision", "{pickle}"], "cannot decode"),
    ("embed-hostile-thin-image", ["embed", "{bundle}", "--depth", "{thin_png}"], "BINDRT_MAX_ASPECT_RATIO"),
    # export / validate
    ("export-missing", ["export", "{dir}/nope"], "does not exist"),
    ("export-unreadable", ["export", "{file}"], "not a directory"),
    ("export-wrong-precision", ["export", "{bundle}", "--precision", "fp64"], "fp64"),
    ("export-wrong-modality", ["export", "{bundle}", "--modalities", "smell"], "smell"),
    ("validate-missing", ["validate", "{dir}/nope"], "does not exist"),
    ("validate-nothing-exported", ["validate", "{bundle}"], "export"),
    # bench
    ("bench-missing", ["bench", "{dir}/nope"], "does not exist"),
    ("bench-iters-0", ["bench", "{bundle}", "--iters", "0", "--modalities", "text"], "--iters must be an integer >= 1"),
    ("bench-batch-0", ["bench", "{bundle}", "--batch", "0", "--modalities", "text"], "batch size '0'"),
    ("bench-batch-word", ["bench", "{bundle}", "--batch", "1,eight", "--modalities", "text"], "batch size 'eight'"),
    ("bench-compare-not-json", ["bench", "{bundle}", "--modalities", "text", "--compare", "{file}"], "is not JSON"),
    (
        "bench-compare-missing",
        ["bench", "{bundle}", "--modalities", "text", "--compare", "{dir}/old.json"],
        "cannot read",
    ),
    ("bench-plots-without-out", ["bench", "{bundle}", "--modalities", "text", "--plots"], "give --out DIR"),
    (
        "bench-unwritable",
        ["bench", "{bundle}", "--modalities", "text", "--batch", "1", "--iters", "1", "--out", UNWRITABLE + "/r"],
        UNWRITABLE,
    ),
    # train
    ("train-unwritable", ["train", "--out", UNWRITABLE + "/run", "--steps", "2"], UNWRITABLE),
    ("train-resume-missing", ["train", "--out", "{empty_run}", "--resume"], "no checkpoint"),
    ("train-resume-hostile-pickle", ["train", "--out", "{run}", "--resume"], "never unpickles"),
    ("train-wrong-steps", ["train", "--out", "{tmp}/run", "--steps", "0"], "steps >= 1"),
    (
        "train-wrong-init",
        ["train", "--out", "{tmp}/run", "--init", "{dir}/nope.pth", "--init-config", "golden", "--modalities", "audio"],
        "does not exist",
    ),
    ("train-wrong-preset", ["train", "--out", "{tmp}/run", "--preset", "no-such-preset"], "unknown config"),
    # demo
    ("demo-unwritable", ["demo", "--out", UNWRITABLE + "/demo", "--no-train"], UNWRITABLE),
    ("demo-out-is-a-file", ["demo", "--out", "{file}", "--no-train"], "a-file.txt"),
    ("demo-wrong-steps", ["demo", "--out", "{tmp}/demo", "--steps", "x"], "invalid int value"),
]


def run_cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BINDRT_DEBUG": ""}
    return subprocess.run(
        [sys.executable, "-m", "bindrt", *argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.mark.parametrize("case, argv, fragment", CASES, ids=[c[0] for c in CASES])
def test_failure_is_one_line_and_exit_2(case, argv, fragment, world, tmp_path):
    args = [a.format(tmp=tmp_path, **world) for a in argv]
    result = run_cli(args, tmp_path)
    command = args[0]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"{case}: rc {result.returncode}\n{result.stderr}"
    assert len(lines) == 1, f"{case}: stderr is not one line:\n{result.stderr}"
    assert lines[0].startswith(f"bindrt {command}: error: "), lines[0]
    assert fragment.format(**world) in lines[0], f"{case}: {lines[0]!r} does not name {fragment!r}"
    assert "PLANTED-PICKLE-RAN" not in result.stdout + result.stderr
    assert not Path(UNWRITABLE).exists()


def test_debug_shows_the_traceback(world, tmp_path):
    result = run_cli(["info", "--debug", world["not_json"]], tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "BundleError" in result.stderr


def test_a_warning_is_one_line(world, tmp_path):
    """The triton backend without a GPU falls back to torch with a warning: one line, no echoed source."""
    result = run_cli(
        ["embed", world["bundle"], "--backend", "triton", "--text", "a dog", "--out", str(tmp_path / "e.npz")], tmp_path
    )
    warnings = [ln for ln in result.stderr.splitlines() if ln.strip()]
    if result.returncode == 0:
        assert len(warnings) == 1 and warnings[0].startswith("bindrt embed: warning: "), result.stderr
        assert "kernels are off" in warnings[0]
    else:  # no triton package: then it must be the one-line error
        assert result.returncode == 2 and len(warnings) == 1, result.stderr


def test_an_unexpected_exception_is_named_as_a_bug(monkeypatch, capsys):
    """A failure bindrt did not foresee still ends in one line, with its own exit status (70), not as exit 2."""
    from bindrt import cli
    from bindrt.cli import info

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(info, "run", broken)
    assert cli.main(["info", "x"]) == cli.EXIT_BUG
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error ZeroDivisionError: a bug" in err[0] and "--debug" in err[0]


@pytest.mark.parametrize(
    "exc, fragment",
    [
        (MemoryError(), "out of memory"),
        (PermissionError(13, "Permission denied", "/srv/ro/out"), "Permission denied: '/srv/ro/out'"),
    ],
)
def test_memory_and_os_errors_are_one_line_and_exit_2(monkeypatch, capsys, exc, fragment):
    """Failures of the environment, wherever they surface, are the user's to fix: exit 2, one line."""
    from bindrt import cli
    from bindrt.cli import info

    def failing(args):
        raise exc

    monkeypatch.setattr(info, "run", failing)
    assert cli.main(["info", "x"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bindrt info: error: ") and fragment in err[0]


def test_resume_never_runs_a_planted_pickle(world, tmp_path):
    """Issue item 1: a malicious OUT/checkpoints/last.pt is refused, its payload never runs."""
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    result = run_cli(["train", "--out", str(run), "--resume"], tmp_path)
    assert result.returncode == 2 and "never unpickles" in result.stderr
    assert "PLANTED-PICKLE-RAN" not in result.stdout + result.stderr


def test_train_overwrite_never_deletes_what_bindrt_did_not_write(tmp_path):
    """`train --overwrite` deletes OUT/bundle, checkpoints/ and train.jsonl only if each is bindrt's own."""
    run = tmp_path / "run"
    (run / "bundle").mkdir(parents=True)
    (run / "bundle" / "important.txt").write_text("the user's")
    (run / "train.jsonl").write_text('{"event": "start"}\n')
    result = run_cli(["train", "--out", str(run), "--overwrite", "--steps", "2"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert (
        "not a bindrt bundle; refusing to replace it" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    )
    assert (run / "bundle" / "important.txt").read_text() == "the user's"
    assert (run / "train.jsonl").exists()  # nothing is deleted unless everything is replaceable
