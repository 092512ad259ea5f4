"""``bindrt bench``: the report is complete and well formed, bad input is one line each, the harness measures what it says.

No wall-clock assertions: timings are only checked for consistency (p50 <= p90 <= p99,
items/s = batch / p50), never against a speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bindrt.bench import bench, random_batch, timing
from bindrt.bench.report import compare, read_report, write_report
from bindrt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(iters=4, rounds=2, warmup=1, peaks=False)


def test_random_batches_follow_the_layouts():
    assert random_batch("video", 2, clips=3).shape == (2, 3, 3, 2, 224, 224)
    assert random_batch("audio", 1).shape == (1, 3, 1, 128, 204)
    ids = random_batch("text", 4)
    assert ids.dtype == np.int64 and (ids.argmax(-1) == (ids == 49407).argmax(-1)).all()
    a, b = random_batch("imu", 2, seed=1), random_batch("imu", 2, seed=2)
    assert not np.allclose(a, b) and np.isfinite(a).all()


def _rows(report, **match):
    return [r for r in report["rows"] if all(r[k] == v for k, v in match.items())]


def test_report_rows_are_complete_and_consistent(golden_bundle):
    report = bench(golden_bundle, ["torch", "torch:bf16"], modalities=["depth", "text"], batches=[1, 3], **QUICK)
    assert [(r["target"], r["kind"], r["batch"]) for r in report["rows"][:2]] == [
        ("torch:fp32", "depth", 1),
        ("torch:bf16", "depth", 1),
    ]
    assert len(report["rows"]) == 8 and report["skipped"] == []
    for r in report["rows"]:
        assert r["calls"] == 4 and 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["items_per_s"] == pytest.approx(r["batch"] / (r["p50_ms"] / 1e3))
        assert r["peak_rss_mib"] > 0 and r["working_mib"] is not None
        assert r["preprocess_ms_per_item"] > 0 and 0 < r["end_to_end_items_per_s"] < r["items_per_s"]
        assert r["gflop_per_item"] > 0 and r["ran"].startswith(f"torch {r['precision']}, eager")
    bf16 = _rows(report, precision="bf16")
    assert all(0.99 < r["min_cosine"] <= 1 + 1e-6 for r in bf16)
    assert all(r["speedup"] is not None or r["speedup_note"].startswith("withheld") for r in bf16)
    assert set(report["preprocessing"]) == {"depth", "text"}
    assert {"date", "cpu", "cpu_flags", "cpu_cores", "versions"} <= set(report["machine"])


def test_every_bad_name_is_one_skip_line_and_the_rest_runs(golden_bundle, tmp_path):
    """Unknown backend, precision and modality, a precision the backend lacks, a modality the bundle lacks,
    a bundle without the graphs a backend needs: one line each, and the torch rows still come."""
    import shutil

    from bindrt.bundle import Bundle

    partial = tmp_path / "partial"
    shutil.copytree(golden_bundle, partial)
    manifest = json.loads((partial / "manifest.json").read_text())
    del manifest["modalities"]["imu"]
    (partial / "manifest.json").write_text(json.dumps(manifest))
    Bundle.open(partial)  # still a valid bundle, without imu
    report = bench(
        partial,
        ["torch", "nope", "torch:fp8", "torch:int8", "onnxruntime"],
        modalities=["depth", "smell", "imu"],
        batches=[2],
        preprocess=False,
        **QUICK,
    )
    reasons = {(s["target"], s["kind"]): s["reason"] for s in report["skipped"]}
    assert "unknown backend 'nope'" in reasons[("nope", None)]
    assert "unknown precision 'fp8'" in reasons[("torch:fp8", None)]
    assert "torch runs fp32, fp16, bf16, not int8" in reasons[("torch:int8", None)]
    assert "unknown modality or input kind 'smell'" in reasons[("*", "smell")]
    assert "has no imu weights" in reasons[("*", "imu")]
    assert "has no exported ONNX graph" in reasons[("onnxruntime:fp32", "depth")]
    assert "bindrt export" in reasons[("onnxruntime:fp32", "depth")]
    assert len(report["skipped"]) == 6
    assert [(r["target"], r["kind"]) for r in report["rows"]] == [("torch:fp32", "depth")]
    assert all("\n" not in s["reason"] for s in report["skipped"])


def test_a_batch_above_the_engine_profile_is_skipped_from_the_manifest(golden_bundle, tmp_path):
    """TensorRT engines carry their profile in the manifest: a bigger batch is one skip line, smaller ones try to run."""
    import shutil

    from bindrt.bench.plan import make_plan
    from bindrt.bundle import Bundle
    from bindrt.schema import ProfileShapes, TensorRtEngine
    from bindrt.tensorrt.engines import record_engine

    copy = tmp_path / "trt"
    shutil.copytree(golden_bundle, copy)
    bundle = Bundle.open(copy)
    engine = TensorRtEngine(
        kind="depth",
        modality="depth",
        precision="fp16",
        file="engines/tensorrt/depth/depth.fp16.plan",
        graph="onnx/depth/depth.fp16.onnx",
        graph_sha256="0" * 64,
        tensorrt="10.13.0",
        gpu="NVIDIA H200",
        compute_capability=(9, 0),
        input="depth",
        shapes=ProfileShapes(min=(1, 1, 224, 224), opt=(4, 1, 224, 224), max=(4, 1, 224, 224)),
        options={},
        strongly_typed=True,
        cache_key="0" * 64,
        trtexec="trtexec ...",
    )
    record_engine(bundle, engine)
    plan = make_plan(bundle, ["torch", "tensorrt:fp16"], ["fp32"], ["depth"], [2, 8])
    (skip,) = plan.skipped
    assert (skip.target, skip.kind, skip.batch) == ("tensorrt:fp16", "depth", 8)
    assert (
        "batch 8 exceeds the TensorRT engine's profile (max batch 4" in skip.reason and "--batch 1:8:8" in skip.reason
    )
    assert plan.runnable(plan.targets[1], "depth", 2) and not plan.runnable(plan.targets[1], "depth", 8)


def test_interleaved_rounds_alternate_the_order_and_settle_each_block():
    order: list[str] = []
    calls = {n: (lambda n=n: order.append(n)) for n in "abc"}
    blocks = timing.interleaved_rounds(calls, 3, {"a": 2, "b": 1, "c": 1}, lambda fn: (fn(), 1.0)[1])
    assert {n: [len(b) for b in bl] for n, bl in blocks.items()} == {"a": [2, 2, 2], "b": [1, 1, 1], "c": [1, 1, 1]}
    # each block: one settle call plus its timed calls; forward, then reversed, then forward
    assert "".join(order) == "aaabbcc" + "ccbbaaa" + "aaabbcc"


def test_paired_ratio_and_percentiles():
    base = [[2.0, 2.2], [4.0, 4.0], [2.0, 2.0]]  # the machine slowed down in round 2: both sides see it
    other = [[1.0, 1.1], [2.0, 2.0], [1.0, 1.0]]
    assert timing.paired_ratio(base, other) == pytest.approx(2.0)
    stats = timing.percentiles([0.001] * 90 + [0.01] * 10)
    assert stats["p50_ms"] == pytest.approx(1.0) and stats["p99_ms"] == pytest.approx(10.0)
    assert stats["spread"] == pytest.approx(stats["p90_ms"] / stats["p50_ms"])
    assert timing.calls_for(0.01, 1.0, None, 5) == 20 and timing.calls_for(0.01, None, 7, 3) == 3


def test_peak_memory_sees_an_allocation_made_in_the_block():
    from bindrt.bench.memory import PeakMemory

    probe = PeakMemory()
    if not probe.resettable:
        pytest.skip("this kernel does not let a process reset its peak RSS (/proc/self/clear_refs)")

    def block():
        x = np.ones(200 << 17)  # 200 MiB of float64, touched
        return float(x.sum())

    _, found = probe.measure(block)
    assert 190 <= found["working_mib"] <= 260
    _, quiet = probe.measure(lambda: None)
    assert quiet["working_mib"] < 20


def test_markdown_json_compare_and_plots(golden_bundle, tmp_path):
    from PIL import Image

    from bindrt.bench.plots import plot_report

    old = bench(golden_bundle, ["torch"], modalities=["imu"], batches=[1, 2], **QUICK)
    new = bench(golden_bundle, ["torch"], modalities=["imu", "thermal"], batches=[2], **QUICK)
    paths = write_report(new, tmp_path, "unit")
    again = write_report(new, tmp_path, "unit")
    assert again["json"].name.endswith("-unit-2.json") and paths["json"].exists()  # never overwrites
    loaded = read_report(paths["json"])
    assert loaded["rows"] == json.loads(json.dumps(new["rows"]))
    md = paths["md"].read_text()
    assert md.count("\n| torch:fp32 |") == 2 and "| imu | 2000-sample 6-axis CSV |" in md
    (c,) = compare(old, new)  # imu batch 2 is in both
    assert (c["target"], c["kind"], c["batch"]) == ("torch:fp32", "imu", 2)
    assert c["throughput_ratio"] == pytest.approx(new["rows"][0]["items_per_s"] / old["rows"][1]["items_per_s"])
    pngs = plot_report(new, tmp_path, paths["json"].stem)
    assert [p.name for p in pngs] == [f"{paths['json'].stem}-imu.png", f"{paths['json'].stem}-thermal.png"]
    for p in pngs:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 600


def test_read_report_names_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a bindrt bench report"):
        read_report(bad)
    bad.write_text(json.dumps({"format": "bindrt.bench", "rows": [{"target": "torch:fp32"}]}))
    with pytest.raises(ConfigError, match="row 0 lacks one of target, kind, batch, p50_ms, items_per_s"):
        read_report(bad)


def test_cli_nothing_to_measure_is_exit_2_after_the_skip_lines(golden_bundle):
    proc = subprocess.run(
        [sys.executable, "-m", "bindrt", "bench", str(golden_bundle), "--backends", "nope", "--modalities", "text"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == ""
    assert lines[0].startswith("skipped: nope: unknown backend 'nope'; expected one of torch, torch.compile")
    assert lines[-1] == "bindrt bench: error: nothing could be measured: all 1 combinations were skipped (see above)"


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
