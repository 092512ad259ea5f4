"""The bindrt command line, run as users run it (a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import GOLDEN_DIR

from bindrt.cli import COMMAND_MODULES, build_parser


def bindrt_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bindrt", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def _commands() -> list[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)


def test_every_command_has_help():
    commands = _commands()
    assert {"convert", "embed", "info", "demo"} <= set(commands)
    assert len(commands) >= len(COMMAND_MODULES)
    for command in commands:
        result = bindrt_cli(command, "--help")
        assert result.returncode == 0, result.stderr
        assert f"usage: bindrt {command}" in result.stdout


def test_convert_info_embed(tmp_path):
    bundle = tmp_path / "bundle"
    result = bindrt_cli(
        "convert", GOLDEN_DIR / "weights.pth", "--config", "golden", "--out", bundle, "--modalities", "vision,text"
    )
    assert result.returncode == 0, result.stderr
    assert "vision, text" in result.stdout

    info = json.loads(bindrt_cli("info", bundle, "--json").stdout)
    assert sorted(info["modalities"]) == ["text", "vision"]
    assert info["config"]["vision_embed_dim"] == 64

    text_out = bindrt_cli("info", bundle, "--verify")
    assert text_out.returncode == 0 and "all checksums verified" in text_out.stdout

    out = tmp_path / "emb.npz"
    media = GOLDEN_DIR / "media"
    result = bindrt_cli(
        "embed",
        bundle,
        "--text",
        "a photo",
        "a logo",
        "--vision",
        media / "photo.jpg",
        media / "logo.png",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert "cosine similarity text x vision" in result.stdout
    with np.load(out) as data:
        assert data["text"].shape == (2, 32) and data["vision"].shape == (2, 32)


@pytest.mark.parametrize(
    "args, message",
    [
        (["convert", "missing.pth", "--config", "golden", "--out", "x"], "checkpoint missing.pth does not exist"),
        (["convert", str(GOLDEN_DIR / "weights.pth"), "--config", "tiny", "--out", "x"], "shape mismatches"),
        (["info", "."], "has no manifest.json"),
        (["embed", str(GOLDEN_DIR / "weights.pth"), "--config", "golden"], "nothing to embed"),
        (["embed", str(GOLDEN_DIR / "weights.pth"), "--config", "golden", "--vision", "nope.png"], "vision item 0"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    result = bindrt_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_info_lists_every_graph_with_full_values_when_piped():
    """Not a terminal (logs, CI): rich must print whole values, not `toleran…`."""
    old = GOLDEN_DIR.parent / "data" / "bundle-64f1869"
    out = bindrt_cli("info", old)
    assert out.returncode == 0, out.stderr
    for graph in ("depth.fp32", "depth.int8", "imu.fp32", "imu.int8"):
        assert graph in out.stdout
    assert "cos>=0.98" in out.stdout and "rel<=1e-05" in out.stdout and "…" not in out.stdout
    info = json.loads(bindrt_cli("info", old, "--json").stdout)
    graphs = info["modalities"]["imu"]["artifacts"]["onnx"]["graphs"]
    assert graphs["imu.int8"]["quantization"]["method"] == "dynamic" and graphs["imu.int8"]["validation"]["passed"]


def test_version_has_one_source():
    from importlib import metadata

    import bindrt

    assert metadata.version("bindrt") == bindrt.__version__
    assert bindrt_cli("--version").stdout.strip() == f"bindrt {bindrt.__version__}"
