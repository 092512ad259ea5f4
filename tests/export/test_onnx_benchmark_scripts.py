"""The CPU benchmark scripts behind benchmarks/README.md's speed figures still run and record what they claim.

They run on the golden preset with two rounds: the timings mean nothing here, but the
export, the engines' agreement with torch and the recorded report are real. (The
figures in benchmarks/README.md come from full runs on imagebind_huge; these only stop
the scripts from rotting between those runs.)
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_script(name: str, *args: str) -> None:
    """``python -m benchmarks.onnx.NAME`` from the repository root, as benchmarks/README.md says to run them."""
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.onnx.{name}", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def report(out: Path, tag: str) -> dict:
    """The run's JSON, after checking it and its Markdown carry the machine record (CPU flags, versions, date)."""
    (path,) = out.glob(f"*-{tag}.json")
    rep = json.loads(path.read_text())
    machine = rep["machine"]
    assert {"date", "cpu", "cpu_flags", "cpu_cores", "platform", "versions"} <= set(machine)
    assert machine["cpu_flags"] or machine.get("gpu"), machine  # which kernels ran: ISA flags (or the GPU)
    assert path.name.startswith(machine["date"][:10]) and rep["date"] == machine["date"]
    assert {"python", "bindrt", "numpy", "onnxruntime"} <= set(machine["versions"])
    md = path.with_suffix(".md").read_text()
    assert md.startswith("# ") and f"- date: {machine['date']}" in md and f"- machine: {machine['cpu']}" in md
    return rep


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("bench_cpu")
    run_script(
        "bench_cpu",
        "--preset",
        "golden",
        "--modality",
        "audio",
        "--batches",
        "1,2",
        "--rounds",
        "2",
        "--warmup",
        "1",
        "--no-cpu-time",
        "--no-openvino",
        "--workdir",
        str(tmp / "work"),
        "--out",
        str(tmp / "out"),
        "--tag",
        "smoke",
    )
    return tmp, report(tmp / "out", "smoke")


def test_bench_cpu_times_every_engine_on_the_same_inputs_as_torch(bench_run):
    _, rep = bench_run
    assert rep["model"]["preset"] == "golden" and rep["model"]["modality"] == "audio"
    assert set(rep["results"]) == {"batch_1", "batch_2"}
    for rows in rep["results"].values():
        assert {"torch_eager", "torch_eager_pooled", "ort_fp32", "ort_fused_fp32", "ort_int8", "ort_fused_int8"} <= set(
            rows
        )
        for name, row in rows.items():
            # the export's tolerances (fp32 rows: exact up to rounding); bf16 peers: the near-exact tier
            floor = 0.98 if "int8" in name else 0.999 if "bf16" in name else 0.9999
            assert row["min_cosine_vs_torch"] >= floor, (name, row["min_cosine_vs_torch"])
            for key in ("median_ms", "min_ms", "speedup_vs_torch_median", "speedup_vs_torch_paired"):
                assert math.isfinite(row[key]) and row[key] > 0, (name, key, row[key])
            assert row["min_ms"] <= row["median_ms"]
        assert "torch_bf16_autocast" in rows  # the peers a CPU user could pick are measured beside bindrt
    for batch, tiers in rep["best_per_tier"].items():
        assert tiers["exact"]["bindrt"] in ("ort_fp32", "ort_fused_fp32")  # only fp32 graphs are exact
        assert tiers["int8"]["bindrt"] is not None and tiers["int8"]["peers"] is not None


def test_ceiling_cpu_reports_floors_and_times_the_exported_graphs(bench_run):
    tmp, _ = bench_run
    run_script(
        "ceiling_cpu",
        "--preset",
        "golden",
        "--modality",
        "audio",
        "--batches",
        "1,2",
        "--rounds",
        "2",
        "--workdir",
        str(tmp / "work"),
        "--out",
        str(tmp / "out"),
        "--tag",
        "smoke-ceiling",
    )
    rep = report(tmp / "out", "smoke-ceiling")
    assert rep["model"]["clips_per_item"] == 3  # audio: the reference's 3 clips per item
    assert rep["gflops_per_item"]["pooled_last_block"] < rep["gflops_per_item"]["reference_forward"]
    for row in rep["results"].values():
        for precision in ("fp32", "int8"):
            assert all(v > 0 for v in row["floor_ms"][precision].values())
        assert set(row["graphs"]) == {"ort_fused_fp32", "ort_fused_int8"}


def test_probes_cpu_runs_every_probe_against_its_baseline(tmp_path):
    run_script("probes_cpu", "--rounds", "2", "--out", str(tmp_path), "--tag", "smoke-probes")
    rep = report(tmp_path, "smoke-probes")
    assert {"gelu", "attention", "gemm qkv", "gemm fc2", "int8 weight scales"} <= set(rep["probes"])
    assert len(rep["probes"]["gemm qkv"]["candidates"]) == 5  # MatMul, three other layouts, torch
    for probe in rep["probes"].values():
        assert probe["candidates"][probe["baseline"]]["paired_vs_baseline"] == pytest.approx(1.0)
        assert all(c["median_ms"] > 0 for c in probe["candidates"].values())
