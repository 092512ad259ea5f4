"""The CI form of the CPU suite: ``bindrt bench`` over every backend that runs here, on the exported golden bundle.

Checks that every report file is complete and well formed, never the numbers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bindrt.bench.report import read_report

ROOT = Path(__file__).resolve().parents[2]


def _rows(report, **match):
    return [r for r in report["rows"] if all(r[k] == v for k, v in match.items())]


@pytest.mark.slow
def test_cpu_suite_short_form_writes_complete_reports(onnx_bundle, tmp_path):
    """``benchmarks.bench.cpu_suite --quick``: every backend and tier, then ``--backends auto``; reports complete."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmarks.bench.cpu_suite", "--quick", "--bundle", str(onnx_bundle)]
    proc = subprocess.run(
        [*cmd, "--out", str(out), "--threads", "2"], capture_output=True, text=True, cwd=ROOT, timeout=1200
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (suite_path,) = out.glob("*-cpu-suite.json")
    (auto_path,) = out.glob("*-cpu-auto.json")
    suite, auto = read_report(suite_path), read_report(auto_path)
    from benchmarks.bench.cpu_suite import TARGETS

    ran = {r["target"] for r in suite["rows"]}
    skipped = {s["target"] for s in suite["skipped"]}
    assert ran | skipped == set(TARGETS) and not ran & skipped  # every target either ran or says why not
    assert {"torch:fp32", "torch.compile:fp32", "onnxruntime:int8", "openvino:fp32", "triton:fp32"} <= ran
    assert {(r["kind"], r["batch"]) for r in suite["rows"]} == {(k, b) for k in ("depth", "audio") for b in (1, 2)}
    for r in suite["rows"]:
        assert r["threads"] in (2, None) and r["min_cosine"] is not None and r["gflop_per_item"] > 0
        peaked = r["precision"] in suite["peaks"]["matmul_gflops"]  # no int8 peak; no fp16 one without native fp16
        assert r["percent_of_peak"] > 0 if peaked else r["percent_of_peak"] is None
        assert r["preprocess_ms_per_item"] > 0 and r["peak_rss_mib"] > 0
    assert "fell back to plain torch" in _rows(suite, target="triton:fp32")[0]["ran"]
    assert "torch.compile mode default" in _rows(suite, target="torch.compile:fp32")[0]["ran"]
    assert suite["peaks"]["matmul_gflops"]["fp32"] > 0 and suite["settings"]["threads"] == 2
    auto_rows = _rows(auto, target="auto")
    assert len(auto_rows) == 4 and all(r["ran"].startswith("auto chose ") for r in auto_rows)
    assert sorted(p.name.rsplit("-", 1)[1] for p in out.glob("*-cpu-suite-*.png")) == ["audio.png", "depth.png"]
    md = suite_path.with_suffix(".md").read_text()
    assert md.count("\n| ") >= len(suite["rows"]) + 2


@pytest.mark.slow
def test_cli_short_suite_writes_every_report_file(onnx_bundle, tmp_path):
    """The CI form of the CPU suite: the command a user runs, every output checked for shape, not numbers."""
    out = tmp_path / "out"
    argv = [
        sys.executable,
        "-m",
        "bindrt",
        "bench",
        str(onnx_bundle),
        "--backends",
        "torch",
        "onnxruntime",
        "openvino",
        "triton",
        "nope",
        "--precision",
        "fp32",
        "int8",
        "--modalities",
        "depth",
        "text",
        "--batch",
        "1,2",
        "--iters",
        "4",
        "--rounds",
        "2",
        "--threads",
        "2",
        "--out",
        str(out),
        "--plots",
        "--name",
        "short",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report_path,) = out.glob("*-short.json")
    report = read_report(report_path)
    targets = {r["target"] for r in report["rows"]}
    assert {"torch:fp32", "onnxruntime:fp32", "onnxruntime:int8", "openvino:fp32", "triton:fp32"} <= targets
    assert "skipped: nope: unknown backend 'nope'" in proc.stderr
    assert "skipped: torch:int8: torch runs fp32, fp16, bf16, not int8" in proc.stderr
    triton = _rows(report, target="triton:fp32")[0]
    assert "fell back to plain torch" in triton["ran"]
    assert _rows(report, target="onnxruntime:int8")[0]["ran"].startswith("onnxruntime int8, ")
    for r in report["rows"]:
        assert r["threads"] in (2, None)
        assert r["percent_of_peak"] is None or r["percent_of_peak"] > 0
        assert r["min_cosine"] is not None
    assert report["peaks"]["matmul_gflops"]["fp32"] > 0 and report["settings"]["threads"] == 2
    assert sorted(p.name.rsplit("-", 1)[1] for p in out.glob("*.png")) == ["depth.png", "text.png"]
    md = report_path.with_suffix(".md").read_text()
    assert md.count("\n| ") >= len(report["rows"]) + 2 and "Skipped:" in md
    compared = subprocess.run(
        [*argv[:-2], "--name", "again", "--compare", str(report_path), "--backends", "torch", "--precision", "fp32"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert "new/old throughput" in compared.stdout and "| torch:fp32 | depth | 1 |" in compared.stdout
