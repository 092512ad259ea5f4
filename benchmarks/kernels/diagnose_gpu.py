#!/usr/bin/env python
"""Localise a GPU-only disagreement of bindrt's kernels (run it on the GPU machine).

    python benchmarks/kernels/diagnose_gpu.py attention [--launch-blocking]
    python benchmarks/kernels/diagnose_gpu.py graphs [--modality depth] [--dtype bf16]
    python benchmarks/kernels/diagnose_gpu.py repeat [--modality depth] [--dtype bf16]

``attention`` runs every (seq, head dim, dtype, batch, bias_kv, causal) case of
the GPU test sweep, one at a time with a device sync after each, and prints the
relative error against the float64 reference; on the first CUDA error it names
the case and stops (the context is dead after an illegal access). Wrap it in
``compute-sanitizer --tool memcheck`` to get the faulting kernel and address.

``graphs`` checks the CUDA-graph path fusion by fusion: for each subset of the
triton backend's fusions it compares graph replay against the same module run
without a graph, after filling the caching allocator with NaN so that a kernel
leaving output elements unwritten, or a launch that escaped the capture, shows
up as NaN or as a cosine below 1.

``repeat`` runs the same input many times without graphs, fusion by fusion:
any bitwise difference between runs points at a race inside a kernel.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "kernels"))
sys.path.insert(0, str(REPO / "tests"))


def poison_cache(gib: float = 4.0) -> None:
    """Leave NaN-filled blocks in torch's caching allocator for later torch.empty calls."""
    import torch

    blocks = [torch.full((int(gib * 2**30 / 4 / 16),), float("nan"), device="cuda") for _ in range(16)]
    del blocks


def run_attention(args) -> int:
    import torch
    from kernel_refs import TOL, randn, ref_attention, rel_err

    from bindrt.kernels import fused_attention

    seqs = args.seqs
    hds = args.head_dims
    dts = {
        k: v
        for k, v in {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.items()
        if k in args.dtypes
    }
    bad = 0
    for n, hd, (dname, dt), b, bias, causal in itertools.product(
        seqs, hds, dts.items(), [1, 3], [False, True], [False, True]
    ):
        heads = 3 if hd <= 64 else 2
        D = heads * hd
        seed = 1000 * n + hd
        label = f"B={b} N={n} H={heads} hd={hd} {dname} bias_kv={bias} causal={causal}"
        try:
            qkv = randn(b, n, 3 * D, seed=seed, scale=1.5, dtype=dt)
            bk = randn(1, 1, D, seed=seed + 1, dtype=dt) if bias else None
            bv = randn(1, 1, D, seed=seed + 2, dtype=dt) if bias else None
            out = fused_attention(qkv, bk, bv, heads, causal)
            if out.is_cuda:
                torch.cuda.synchronize()
            err = rel_err(out, ref_attention(qkv, bk, bv, heads, causal))
        except Exception as exc:  # noqa: BLE001 - a diagnostic: report and stop
            print(f"CUDA ERROR  {label}: {type(exc).__name__}: {str(exc).splitlines()[0]}", flush=True)
            return 1
        ok = err <= TOL[dt]
        bad += not ok
        if not ok or args.verbose:
            print(f"{'ok ' if ok else 'BAD'}  {label}: rel err {err:.2e}", flush=True)
    print(f"attention sweep done, {bad} case(s) over tolerance", flush=True)
    return 1 if bad else 0


def run_graphs(args) -> int:
    import torch

    from bindrt.bench import random_batch
    from bindrt.config import PRESETS
    from bindrt.model import build_encoder
    from bindrt.runtime.triton_backend import FUSIONS, capture_cuda_graph, patch_with_kernels

    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    torch.manual_seed(0)
    base = build_encoder(args.modality, PRESETS[args.preset]).eval().requires_grad_(False)
    worst = 1.0
    subsets = [()] + [(f,) for f in FUSIONS] + [FUSIONS]
    for batch in args.batches:
        x = torch.from_numpy(random_batch(args.modality, batch, seed=batch)).cuda()
        x = x if args.modality == "text" else x.to(dt)
        for fusions in subsets:
            model = copy.deepcopy(base).to("cuda", dt)
            patch_with_kernels(model, fusions)
            with torch.inference_mode():
                ref = model(x).float()
                poison_cache()
                graph, out = capture_cuda_graph(model, x.clone())
                results = []
                for _ in range(3):
                    poison_cache()
                    graph.replay()
                    torch.cuda.synchronize()
                    got = out.float()
                    cos = float(torch.nn.functional.cosine_similarity(got, ref, dim=-1).min())
                    results.append((cos, bool(torch.isnan(got).any())))
            cmin = min(c for c, _ in results)
            worst = min(worst, cmin if not math.isnan(cmin) else -1.0)
            print(
                f"{args.modality} {args.dtype} B={batch} fusions={'+'.join(fusions) or 'none'}: "
                f"graph vs no-graph min cos per replay {[round(c, 6) for c, _ in results]}, "
                f"nan {[n for _, n in results]}",
                flush=True,
            )
            del graph, out, model
            torch.cuda.empty_cache()
    return 0 if worst >= 0.9999 else 1


def run_repeat(args) -> int:
    """Same input, many runs without graphs: any bitwise difference means a race or a read of stale memory."""
    import torch

    from bindrt.bench import random_batch
    from bindrt.config import PRESETS
    from bindrt.model import build_encoder
    from bindrt.runtime.triton_backend import FUSIONS, patch_with_kernels

    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    torch.manual_seed(0)
    base = build_encoder(args.modality, PRESETS[args.preset]).eval().requires_grad_(False)
    differing = 0
    for batch in args.batches:
        x = torch.from_numpy(random_batch(args.modality, batch, seed=batch)).cuda()
        x = x if args.modality == "text" else x.to(dt)
        for fusions in [()] + [(f,) for f in FUSIONS]:
            model = copy.deepcopy(base).to("cuda", dt)
            patch_with_kernels(model, fusions)
            with torch.inference_mode():
                first = model(x).clone()
                diffs = []
                for _ in range(args.repeats):
                    poison_cache(1.0)
                    out = model(x)
                    diffs.append(float((out.float() - first.float()).abs().max()))
            n_diff = sum(d != 0 for d in diffs)
            differing += n_diff
            print(
                f"{args.modality} {args.dtype} B={batch} fusions={'+'.join(fusions) or 'none'}: "
                f"{n_diff}/{len(diffs)} runs differ from the first (max |diff| {max(diffs):.3g})",
                flush=True,
            )
    return 1 if differing else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("attention")
    a.add_argument("--seqs", type=int, nargs="*", default=[1, 2, 16, 33, 77, 197, 229, 251, 257])
    a.add_argument("--head-dims", type=int, nargs="*", default=[12, 16, 40, 48, 64, 80, 96, 112, 128, 200, 256])
    a.add_argument("--dtypes", nargs="*", default=["fp32", "fp16", "bf16"])
    a.add_argument("--verbose", action="store_true")
    g = sub.add_parser("graphs")
    g.add_argument("--modality", default="depth")
    g.add_argument("--dtype", default="bf16")
    g.add_argument("--preset", default="imagebind_huge")
    g.add_argument("--batches", type=int, nargs="*", default=[1, 8])
    r = sub.add_parser("repeat")
    r.add_argument("--modality", default="depth")
    r.add_argument("--dtype", default="bf16")
    r.add_argument("--preset", default="imagebind_huge")
    r.add_argument("--batches", type=int, nargs="*", default=[1, 8])
    r.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("diagnose_gpu: needs a CUDA device", file=sys.stderr)
        return 3
    return {"attention": run_attention, "graphs": run_graphs, "repeat": run_repeat}[args.what](args)


if __name__ == "__main__":
    raise SystemExit(main())
