"""The benchmark harness measures what it says (no wall-clock assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bindrt.bench import bench_bundle, write_results
from bindrt.layouts import random_batch

ROOT = Path(__file__).resolve().parents[1]


def test_random_batches_follow_the_layouts():
    assert random_batch("video", 2, clips=3).shape == (2, 3, 3, 2, 224, 224)
    assert random_batch("audio", 1).shape == (1, 3, 1, 128, 204)
    ids = random_batch("text", 4)
    assert ids.dtype == np.int64 and (ids.argmax(-1) == (ids == 49407).argmax(-1)).all()
    a, b = random_batch("imu", 2, seed=1), random_batch("imu", 2, seed=2)
    assert not np.allclose(a, b) and np.isfinite(a).all()


def test_bench_compares_against_the_first_backend(golden_bundle, tmp_path):
    rows = bench_bundle(golden_bundle, ["torch", "torch:bf16"], ["depth", "text"], [1, 3], repeats=2, warmup=1)
    assert [(r.backend, r.precision, r.kind, r.batch) for r in rows][:2] == [
        ("torch", "fp32", "depth", 1),
        ("torch", "fp32", "depth", 3),
    ]
    assert len(rows) == 8
    for r in rows:
        assert r.median_ms > 0 and r.p10_ms <= r.median_ms <= r.p90_ms
        assert r.items_per_s == r.batch / (r.median_ms / 1e3)
    bf16 = [r for r in rows if r.precision == "bf16"]
    assert all(0.99 < r.min_cosine <= 1.0 + 1e-6 and r.speedup > 0 for r in bf16)
    json_path, md_path = write_results(rows, tmp_path, "unit")
    payload = json.loads(json_path.read_text())
    assert {"date", "cpu", "cpu_flags", "cpu_cores", "versions"} <= set(payload["machine"])
    assert "| torch | bf16 | text | 3 |" in md_path.read_text()


def test_results_layout_names_the_machine_and_never_overwrites(tmp_path):
    """benchmarks/README.md's rule: results/<date>-<machine>/<suite>/<date>-<tag>[-N].*, the machine as a short slug."""
    from benchmarks.common import RESULTS, free_name, machine_slug, results_dir

    assert machine_slug({"cpu": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz"}) == "xeon-8481c"
    assert machine_slug({"cpu": "Intel(R) Xeon(R) Processor @ 2.50GHz"}) == "xeon-2.50ghz"  # no model number: the clock
    h200 = {"cpu": "AMD EPYC 9654 96-Core Processor", "gpu": "NVIDIA H200, 580.159.04, 143771 MiB"}
    assert machine_slug(h200) == "epyc-9654" and machine_slug(h200, gpu=True) == "nvidia-h200"
    info = {**h200, "date": "2026-11-28T16:46:55+00:00"}
    assert results_dir("kernels", gpu=True, info=info) == RESULTS / "2026-11-28-nvidia-h200" / "kernels"
    assert free_name(tmp_path, "2026-11-28-cpu", (".json", ".md")) == "2026-11-28-cpu"
    (tmp_path / "2026-11-28-cpu.md").write_text("")
    (tmp_path / "2026-11-28-cpu-2.json").write_text("")
    assert free_name(tmp_path, "2026-11-28-cpu", (".json", ".md")) == "2026-11-28-cpu-3"


def test_machine_record_carries_cpu_flags_gpu_versions_and_date():
    from bindrt.bench import CPU_FLAGS, machine_info, machine_summary

    info = machine_info()
    assert info["date"][:4].isdigit() and info["date"].endswith("+00:00")
    assert set(info["cpu_flags"]) <= set(CPU_FLAGS) and info["cpu_cores"] >= 1
    assert {"python", "bindrt", "numpy"} <= set(info["versions"])
    assert machine_summary(info).startswith(f"{info['cpu']} — {info['cpu_cores']} cores (")


@pytest.mark.slow
def test_training_benchmark_records_the_machine_with_the_evaluation(tmp_path):
    """benchmarks.training.train_tiny runs (4 steps here) and writes the report with the machine record."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.training.train_tiny",
        "--out",
        str(tmp_path),
        "--tag",
        "smoke",
        "--",
        "--steps",
        "4",
        "--eval-samples",
        "40",
        "--pool",
        "64",
        "--threads",
        "1",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = tmp_path.glob("*-smoke.json")
    report = json.loads(path.read_text())
    assert {"date", "cpu", "cpu_flags", "versions"} <= set(report["machine"])
    assert path.name.startswith(report["machine"]["date"][:10]) and report["wall_seconds"] > 0
    assert set(report["evaluation"]["zero_shot_top1"]) >= {"audio", "depth", "thermal", "imu"}
    assert f"- machine: {report['machine']['cpu']}" in path.with_suffix(".md").read_text()
