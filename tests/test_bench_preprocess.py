"""The preprocessing benchmark's short form writes a complete, well-formed report (not its speed numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("text", "text-unicode", "audio", "vision")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    # A subprocess: the benchmark may load a reference module without its package __init__ (sys.modules).
    out = tmp_path_factory.mktemp("preprocess")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.preprocess.bench_preprocess", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (json_path,) = out.glob("*-preprocess-quick.json")
    md = json_path.with_suffix(".md").read_text()
    assert "| input | reference |" in md and "- machine:" in md and "- versions:" in md
    return json.loads(json_path.read_text())


def test_report_is_complete(report: dict) -> None:
    assert report["suite"] == "preprocess" and report["quick"] is True
    assert {"date", "cpu", "cpu_flags", "cpu_cores", "versions"} <= set(report["machine"])
    assert report["date"] == report["machine"]["date"]
    assert set(report["results"]) == set(KINDS)
    for kind, r in report["results"].items():
        assert r["unit"].endswith("/s") and r["items_per_round"] > 0
        assert r["target"] > 0
        t = r["bindrt_timing"]  # bindrt's side runs whether or not the reference is there
        assert t["items_per_s"] > 0 and t["ms_per_item"] > 0 and len(t["round_s"]) == report["settings"]["rounds"]
        assert r["available"] == (r["skipped"] is None), kind


@pytest.mark.parametrize("kind", KINDS)
def test_side_by_side(report: dict, kind: str) -> None:
    r = report["results"][kind]
    if not r["available"]:
        assert r["skipped"] and r["ratio"] is None and r["met"] is None
        pytest.skip(f"{kind}: reference not compared: {r['skipped']}")
    ref = r["reference_library"]
    assert ref["version"] and ref["loaded"]
    assert r["parity"]["passed"] is True and r["parity"]["checked"] > 0
    assert r["reference_timing"]["items_per_s"] > 0
    assert r["ratio"] > 0 and isinstance(r["met"], bool) and len(r["round_ratios"]) == report["settings"]["rounds"]
    if kind.startswith("text"):
        assert r["parity"]["mismatches"] == 0 and ref["same_merges_file"] is True
    else:
        assert 0 <= r["parity"]["max_abs_diff"] <= r["parity"]["bound"] + r["parity"].get("reference_own_rounding", 0)
