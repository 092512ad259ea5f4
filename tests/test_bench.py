"""The benchmark harness measures what it says (no wall-clock assertions)."""

from __future__ import annotations

import json

import numpy as np

from bindrt.bench import bench_bundle, write_results
from bindrt.layouts import random_batch


def test_random_batches_follow_the_layouts():
    assert random_batch("video", 2, clips=3).shape == (2, 3, 3, 2, 224, 224)
    assert random_batch("audio", 1).shape == (1, 3, 1, 128, 204)
    ids = random_batch("text", 4)
    assert ids.dtype == np.int64 and (ids.argmax(-1) == (ids == 49407).argmax(-1)).all()
    a, b = random_batch("imu", 2, seed=1), random_batch("imu", 2, seed=2)
    assert not np.allclose(a, b) and np.isfinite(a).all()


def test_bench_compares_against_the_first_backend(golden_bundle, tmp_path):
    rows = bench_bundle(golden_bundle, ["torch", "torch:bf16"], ["depth", "text"], [1, 3], repeats=2, warmup=1)
    assert [(r.backend, r.precision, r.kind, r.batch) for r in rows][:2] == [("torch", "fp32", "depth", 1), ("torch", "fp32", "depth", 3)]
    assert len(rows) == 8
    for r in rows:
        assert r.median_ms > 0 and r.p10_ms <= r.median_ms <= r.p90_ms
        assert r.items_per_s == r.batch / (r.median_ms / 1e3)
    bf16 = [r for r in rows if r.precision == "bf16"]
    assert all(0.99 < r.min_cosine <= 1.0 + 1e-6 and r.speedup > 0 for r in bf16)
    json_path, md_path = write_results(rows, tmp_path, "unit")
    payload = json.loads(json_path.read_text())
    assert {"date", "cpu", "cpu_cores", "versions"} <= set(payload["machine"])
    assert "| torch | bf16 | text | 3 |" in md_path.read_text()
