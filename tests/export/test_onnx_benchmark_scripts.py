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
        "--modalities",
        "depth,audio",
        "--batches",
        "1,2",
        "--rounds",
        "2",
        "--warmup",
        "1",
        "--workdir",
        str(tmp / "work"),
        "--out",
        str(tmp / "out"),
        "--tag",
        "smoke",
    )
    return tmp, report(tmp / "out", "smoke")


BINDRT_ORT = {
    "bindrt_onnxruntime_fp32_plain",
    "bindrt_onnxruntime_fp32_fused",
    "bindrt_onnxruntime_int8_plain",
    "bindrt_onnxruntime_int8_fused",
}
PEERS = {"torch_eager", "torch_bf16_autocast", "ort_fp32", "ort_int8_dynamic"}
OPENVINO = {"bindrt_openvino_fp32", "bindrt_openvino_int8", "openvino_fp32", "openvino_nncf_int8"}


def test_bench_cpu_times_bindrt_and_the_peers_on_the_same_inputs_as_torch(bench_run):
    _, rep = bench_run
    from benchmarks.onnx.bench_cpu import side_of

    assert rep["model"]["preset"] == "golden" and rep["model"]["modalities"] == ["depth", "audio"]
    openvino = "openvino" in rep["machine"]["versions"]  # the OpenVINO rows need the package (not a bindrt dependency)
    for kind in ("depth", "audio"):
        assert set(rep["results"][kind]) == {"batch_1", "batch_2"}
        for rows in rep["results"][kind].values():
            assert BINDRT_ORT | PEERS | {"torch_eager_pooled"} <= set(rows), sorted(rows)
            if openvino:
                assert OPENVINO <= set(rows), sorted(rows)
            for name, row in rows.items():
                assert row["side"] == (side_of(name) or "informational")
                if row["side"] != "peers":  # bindrt's graphs pass their export tolerances; bf16: near-exact
                    floor = 0.98 if "int8" in name else 0.999 if "bf16" in name else 0.9999
                    assert row["min_cosine_vs_torch"] >= floor, (kind, name, row["min_cosine_vs_torch"])
                for key in ("median_ms", "min_ms", "speedup_vs_torch_median", "speedup_vs_torch_paired"):
                    assert math.isfinite(row[key]) and row[key] > 0, (name, key, row[key])
                assert row["min_ms"] <= row["median_ms"]
            assert rows["torch_eager"]["tier"] == "exact" and rows["torch_eager"]["max_rel_diff_vs_torch"] == 0


def test_bench_cpu_records_which_graph_every_side_ran(bench_run):
    tmp, rep = bench_run
    work = tmp / "work"
    for kind in ("depth", "audio"):
        engines = rep["engines"][kind]
        for name, info in engines.items():
            if name.startswith("bindrt_") and "skipped" not in info:  # the graph bindrt's backend says it loaded
                assert (work / f"golden-{kind}" / info["graph"]).exists(), (name, info)
                assert info["pooled_last_block"] is True  # bindrt's default export
        int8 = engines["bindrt_openvino_int8"]
        if "skipped" not in int8:
            assert (work / f"golden-{kind}" / int8["graph"]).exists()
            assert ("nncf" in int8["graph"]) == (rep["export"][kind]["nncf"] == "exported"), (int8, rep["export"])
        for name in ("ort_fp32", "ort_int8_dynamic", "openvino_fp32", "openvino_nncf_int8"):
            info = engines[name]
            if "skipped" in info:
                continue
            # the peers run the reference trace: the same weights exported with --full-last-block
            assert info["pooled_last_block"] is False, (name, info)
            assert (work / info["graph"]).exists(), (name, info)
            assert info["graph"].startswith(f"golden-{kind}-full-last-block")


def test_bench_cpu_best_per_tier_sets_bindrt_against_the_peers(bench_run):
    tmp, rep = bench_run
    for kind in ("depth", "audio"):
        for batch, tiers in rep["best_per_tier"][kind].items():
            assert list(tiers) == ["exact", "near-exact", "int8"]
            rows = rep["results"][kind][batch]
            for tier, best in tiers.items():
                assert best["bindrt"] is not None and best["bindrt"].startswith("bindrt_"), (kind, batch, tier)
                assert best["peers"] is not None and rows[best["peers"]]["side"] == "peers", (kind, batch, tier)
                assert best["bindrt_ms"] == rows[best["bindrt"]]["median_ms"]
                assert best["peer_over_bindrt"] == pytest.approx(best["peer_ms"] / best["bindrt_ms"], rel=1e-2)
                assert best["peer_over_bindrt_paired"] > 0
            assert tiers["exact"]["bindrt"] in {n for n in BINDRT_ORT | OPENVINO if "fp32" in n}  # fp32 graphs only
        assert set(rep["near_exact_vs_torch_eager"][kind]) == {"batch_1", "batch_2"}
        for verdicts in (rep["verdict"], rep["verdict_any_input"]):
            verdict = verdicts["per_modality"][kind]
            assert verdict["met"] == (not verdict["misses"])
        for batch, rows in rep["results"][kind].items():
            for name, r in rows.items():  # "any input" is the stricter basis: never a better tier than real media
                order = [None, "int8", "near-exact", "exact"]
                assert order.index(r["tier_any_input"]) <= order.index(r["tier"]), (kind, batch, name)
                assert -1.0 <= r["min_cosine_random"] <= 1.0
    (md_path,) = (tmp / "out").glob("*-smoke.md")
    md = md_path.read_text()
    # per tower: the tier table on real media and on any input
    assert "## Verdict (issue 15)" in md and md.count("| batch | tier | bindrt fastest | ms | fastest peer | ms |") == 4


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
