"""Search at collection scale: a synthetic collection indexed with FAISS, its recall@10 and both query latencies.

Indexes ``--items`` fresh captions (one text file, one item per line) with ``bindrt index``'s
Python API and the golden bundle (what is measured is the index and the search, not the
encoder), with ``ann="faiss"``; then ``Index.verify``: recall@10 of FAISS against exact search
over 200 perturbed stored rows, and the median latency of each. The same run also times exact
search over a memory-mapped 1,000,000 x 1024 random matrix (an imagebind_huge-size
collection, no encoder), where FAISS earns its keep.

    python -m benchmarks.search.bench_search [--items 10000] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, report_header, write_report

ROOT = Path(__file__).resolve().parents[2]


def run(args: argparse.Namespace) -> dict:
    from bindrt.bench.raw_inputs import FreshWords
    from bindrt.convert import convert_checkpoint
    from bindrt.index import Index, build_index

    golden = ROOT / "tests" / "golden"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bundle = tmp / "bundle"
        convert_checkpoint(golden / "weights.pth", golden / "config.json", bundle, modalities=["text"])
        data = tmp / "data"
        data.mkdir()
        (data / "captions.txt").write_text("\n".join(FreshWords(11).captions(args.items)) + "\n")
        start = time.perf_counter()
        report = build_index(bundle, [data], tmp / "idx", ann="faiss", batch=256)
        index_s = time.perf_counter() - start
        with Index.open(tmp / "idx") as index:
            verify = index.verify(queries=200, k=10)
    big = _exact_at_scale(args.scale_items, args.scale_dim)
    return {
        "date": machine_info()["date"],
        "machine": machine_info(),
        "items": args.items,
        "index_seconds": index_s,
        "ann": report.ann,
        "verify": verify,
        "exact_at_scale": big,
    }


def _exact_at_scale(items: int, dim: int) -> dict:
    """Median ms of one exact top-10 query (matrix-vector product + argpartition) over a memory map."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "e.npy"
        rows = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(items, dim))
        rng = np.random.default_rng(0)
        for i in range(0, items, 65536):
            chunk = rng.standard_normal((min(65536, items - i), dim), dtype=np.float32)
            rows[i : i + len(chunk)] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
        rows.flush()
        del rows
        e = np.load(path, mmap_mode="r")
        times = []
        for _ in range(7):
            q = rng.standard_normal(dim, dtype=np.float32)
            start = time.perf_counter()
            s = e @ q
            top = np.argpartition(-s, 9)[:10]
            top[np.argsort(-s[top])]
            times.append(time.perf_counter() - start)
        del e
    return {"items": items, "dim": dim, "ms_median": float(np.median(times[1:]) * 1e3)}


def markdown(r: dict) -> str:
    v, big = r["verify"], r["exact_at_scale"]
    lines = report_header("Search at scale: FAISS against exact", r)
    lines += [
        f"Collection: {r['items']} fresh captions, golden bundle's text tower, indexed in {r['index_seconds']:.1f} s "
        f'(`bindrt.index.build_index`, `ann="faiss"`: {r["ann"]["factory"]}).',
        "",
        "| search | recall@10 vs exact | median ms per query |",
        "|---|---:|---:|",
        f"| exact (numpy, memory-mapped) | 1 | {v['exact_ms_median']:.3f} |",
        f"| FAISS {r['ann']['factory']} | {v['recall']:.4f} | {v['ann_ms_median']:.3f} |",
        "",
        f"Exact search over {big['items']:,} x {big['dim']} unit rows (memory-mapped, no encoder): "
        f"{big['ms_median']:.1f} ms per query.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--scale-items", type=int, default=1_000_000)
    ap.add_argument("--scale-dim", type=int, default=1024)
    ap.add_argument("--out", help="results folder (default benchmarks/results/<date>-<cpu>/search)")
    args = ap.parse_args(argv)
    report = run(args)
    write_report(report, markdown, args.out, "search", "faiss")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
