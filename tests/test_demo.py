"""The README's main-job command, end to end, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_on_the_shipped_model(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "bindrt", "demo", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    bundle = out / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    graphs = manifest["modalities"]["audio"]["artifacts"]["onnx"]["graphs"]
    assert {"audio.fp32", "audio.int8"} <= set(graphs)
    assert all(g["validation"]["passed"] for g in graphs.values())
    bench = json.loads(next((out / "bench").glob("*-demo.json")).read_text())
    assert {r["target"] for r in bench["rows"]} == {"torch:fp32", "onnxruntime:fp32", "onnxruntime:int8"}
    # the world the shipped model knows: the searched-for image comes first, the classified images are right
    target = sorted(p.name for p in (out / "media").glob("*.png"))[0]
    _, colour, cls = target.removesuffix(".png").split("-")
    assert f"5. search the images by text: 'a photo of a {colour} {cls}'" in result.stdout
    search = subprocess.run(
        [sys.executable, "-m", "bindrt", "search", str(out / "index"), "--text", f"a photo of a {colour} {cls}", "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert json.loads(search.stdout)[0]["path"].endswith(target), search.stdout
    classified = json.loads((out / "classify.json").read_text())["items"]
    right = sum(i["label"] == i["file"].rsplit("-", 1)[1].removesuffix(".png") for i in classified)
    assert right >= 3, classified


@pytest.mark.slow
def test_demo_with_random_weights_still_runs(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "bindrt", "demo", "--out", str(out), "--no-train"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "classify.json").is_file() and (out / "index" / "index.sqlite").is_file()
