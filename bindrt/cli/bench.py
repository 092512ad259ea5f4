"""bindrt bench: latency of backends on a bundle, with speedups against the first one."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark backends on a bundle",
        description="Median latency over repeated runs of each backend on fresh random inputs; speedup and minimum "
        "cosine are measured against the first backend in the same run. Backends as NAME[:PRECISION], "
        "e.g. torch onnxruntime onnxruntime:int8.",
    )
    p.add_argument("bundle")
    p.add_argument("--backends", nargs="+", default=["torch"], help="NAME[:PRECISION] ... (first = baseline)")
    p.add_argument("--inputs", nargs="+", default=None, help="input kinds (default: every kind the bundle has)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="directory to write <date>-<name>.json/.md results into")
    p.add_argument("--name", default="bench")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bindrt.bench import bench_bundle, rows_to_markdown, write_results
    from bindrt.bundle import Bundle
    from bindrt.cli.output import make_console
    from bindrt.layouts import kinds_for

    bundle = Bundle.open(args.bundle)
    if args.out:  # fail before minutes of timing, not after
        Path(args.out).mkdir(parents=True, exist_ok=True)
    kinds = args.inputs or [k for m in bundle.modalities for k in kinds_for(m)]
    console = make_console()
    rows = bench_bundle(
        bundle.path,
        args.backends,
        kinds,
        args.batch_sizes,
        device=args.device,
        repeats=args.repeats,
        warmup=args.warmup,
        on_row=lambda r: console.print(f"  {r.backend}:{r.precision} {r.kind} b{r.batch}: {r.median_ms:.2f} ms"),
    )
    print(rows_to_markdown(rows), end="")
    if args.out:
        paths = write_results(rows, args.out, args.name, extra={"bundle": str(bundle.path)})
        console.print("wrote " + ", ".join(map(str, paths)))
    return 0
