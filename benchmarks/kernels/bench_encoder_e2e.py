#!/usr/bin/env python
"""End-to-end encoder latency: torch eager vs torch.compile vs bindrt's triton backend.

    python -m benchmarks.kernels.bench_encoder_e2e OUT [--modalities vision,audio] [--batches 1,8,64]
                                                       [--dtypes fp16,bf16] [--preset imagebind_huge]
    python -m benchmarks.kernels.bench_encoder_e2e OUT --smoke   # golden-size model, CPU interpreter

ImageBind-huge encoders with random weights (the timing does not depend on the
values). Each implementation runs the same encoder object on the same inputs:

* ``eager``: the torch encoder (SDPA attention core);
* ``compile``: ``torch.compile(encoder, mode="max-autotune-no-cudagraphs")``;
* ``triton``: bindrt's kernels swapped in (fused attention, fused patch stem,
  fused LayerNorm/residual and bias+GELU), replayed through a CUDA graph, as
  ``bindrt.load(..., backend="triton")`` runs it;
* ``triton-nograph``: the same kernels without the CUDA graph (launch overhead shown).

Reports median ms (triton.testing.do_bench), items/s, speedup vs eager and vs
compile, and the min cosine against eager, with the GPU, driver, torch and
triton versions and date.
"""

from __future__ import annotations

import argparse
import copy
import sys

from benchmarks.kernels import bench_common as bc


def make_input(modality: str, batch: int, device, dtype, gen):
    import torch

    from bindrt.bench import random_batch

    x = torch.from_numpy(random_batch(modality, batch, seed=batch)).to(device)
    return x if modality == "text" else x.to(dtype)


def graphed(fn, x):
    """A replay closure over ``fn(x)`` captured as the triton backend captures it."""
    from bindrt.runtime.triton_backend import capture_cuda_graph

    graph, static_out = capture_cuda_graph(fn, x.clone())

    def replay():
        graph.replay()
        return static_out

    return replay


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "out", nargs="?", help="output path stem (default benchmarks/results/<date>-<gpu>/kernels/encoder_e2e)"
    )
    p.add_argument("--modalities", default="vision,audio")
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--dtypes", default="fp16,bf16")
    p.add_argument("--preset", default="imagebind_huge")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument(
        "--compile-mode",
        default="max-autotune-no-cudagraphs",
        help="torch.compile mode for the baseline ('default' compiles much faster)",
    )
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    interp = bc.setup_interpreter(args.smoke)

    import torch

    from bindrt.config import PRESETS
    from bindrt.model import build_encoder
    from bindrt.runtime.triton_backend import patch_with_kernels

    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda" if cuda else "cpu")
    preset = "golden" if args.smoke else args.preset
    batches = [1, 2] if args.smoke else [int(b) for b in args.batches.split(",")]
    dtypes = ["fp32"] if args.smoke and not cuda else args.dtypes.split(",")
    dmap = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    env = bc.environment()
    rows, results = [], []
    notes = [
        f"preset {preset}, random weights",
        "triton = kernels + CUDA graph (bindrt.load(..., backend='triton'))",
        f"compile baseline: torch.compile(mode={args.compile_mode!r})",
    ]
    if interp:
        notes.append("SMOKE RUN on the Triton CPU interpreter: times are meaningless, only correctness is checked")
    headers = ["modality", "dtype", "batch", "impl", "median ms", "items/s", "vs eager", "vs compile", "min cos"]
    title = "Encoder end to end: eager vs torch.compile vs triton backend"
    torch.manual_seed(0)
    for modality in args.modalities.split(","):
        base = build_encoder(modality, PRESETS[preset]).eval().requires_grad_(False)
        for dname in dtypes:
            dtype = dmap[dname]
            eager = copy.deepcopy(base).to(device, dtype)
            fused = copy.deepcopy(base).to(device, dtype)
            counts = patch_with_kernels(fused)
            compiled = None
            if not args.no_compile and cuda:
                compiled = torch.compile(copy.deepcopy(base).to(device, dtype), mode=args.compile_mode)
            for batch in batches:
                x = make_input(modality, batch, device, dtype, None)
                impls = {"eager": lambda: eager(x), "triton-nograph": lambda: fused(x)}
                if cuda:
                    impls["triton"] = graphed(fused, x)
                if compiled is not None:
                    impls["compile"] = lambda: compiled(x)
                with torch.inference_mode():
                    ref = eager(x).float()
                    times, cos = {}, {}
                    for name, fn in impls.items():
                        try:
                            out = fn().float()
                            cos[name] = float(torch.nn.functional.cosine_similarity(out, ref, dim=-1).min())
                            times[name] = bc.bench(fn, smoke=args.smoke)
                        except Exception as exc:  # a failing implementation is reported, not fatal
                            times[name], cos[name] = None, f"error: {type(exc).__name__}: {exc}"[:200]
                for name in impls:
                    ms = times[name]
                    rec = dict(
                        modality=modality,
                        dtype=dname,
                        batch=batch,
                        impl=name,
                        ms=ms,
                        min_cosine=cos[name],
                        items_per_s=None if ms is None else batch / (ms / 1e3),
                        speedup_vs_eager=None if ms is None or times.get("eager") is None else times["eager"] / ms,
                        speedup_vs_compile=None
                        if ms is None or times.get("compile") is None
                        else times["compile"] / ms,
                        fusions=counts,
                    )
                    results.append(rec)
                    rows.append(
                        [
                            modality,
                            dname,
                            batch,
                            name,
                            bc.fmt(ms),
                            bc.fmt(rec["items_per_s"], 1),
                            bc.fmt(rec["speedup_vs_eager"], 2),
                            bc.fmt(rec["speedup_vs_compile"], 2),
                            bc.fmt(cos[name], 5),
                        ]
                    )
                    print(" | ".join(map(str, rows[-1])), flush=True)
                # written after every batch so a run cut short by its time limit keeps what it measured
                bc.write_outputs(args.out, {"environment": env, "results": results}, rows, headers, title, notes)
    bad = [r for r in results if isinstance(r["min_cosine"], float) and r["min_cosine"] < 0.999]
    if bad:
        print(f"ACCURACY FAILURE: {len(bad)} rows with min cosine < 0.999", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
