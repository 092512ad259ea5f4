"""The README's main-job command, end to end, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "demo"
    # the README's main job with a few training steps (learning itself is tested in tests/training)
    result = subprocess.run(
        [sys.executable, "-m", "bindrt", "demo", "--out", str(out), "--steps", "12"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    bundle = out / "train" / "bundle"
    assert (bundle / "eval" / "report.json").is_file()
    assert "zero-shot top-1" in result.stdout
    manifest = json.loads((bundle / "manifest.json").read_text())
    graphs = manifest["modalities"]["audio"]["artifacts"]["onnx"]["graphs"]
    assert {"audio.fp32", "audio.int8"} <= set(graphs)
    assert all(g["validation"]["passed"] for g in graphs.values())
    bench = json.loads(next((out / "bench").glob("*-demo.json")).read_text())
    assert {(r["backend"], r["precision"]) for r in bench["rows"]} == {
        ("torch", "fp32"),
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
    }
    with np.load(out / "embeddings.npz") as emb:
        assert emb["text"].shape == (3, 64) and np.isfinite(emb["vision"]).all()
    assert "cosine similarity text x vision" in result.stdout
