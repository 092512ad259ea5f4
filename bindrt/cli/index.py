"""bindrt index: embed a collection of files of any modality into a searchable index, incrementally."""

from __future__ import annotations

import argparse

from bindrt.index.ann import ANN_CHOICES
from bindrt.index.build import ON_BAD_DATA
from bindrt.layouts import INPUT_KINDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index",
        help="embed files and folders into a search index",
        description="Walks INPUTS, routes each file to its modality by type and content (images, audio, video, "
        "depth/thermal PNG or .npy, IMU .npy/.csv, text files one item per line), embeds it and stores the "
        "unit embeddings (a memory-mappable .npy) with their metadata (SQLite) in --out. A rerun embeds only new "
        "or changed files and drops deleted ones; an interrupted run resumes.",
    )
    p.add_argument("bundle")
    p.add_argument("inputs", nargs="+", help="files and folders")
    p.add_argument("--out", required=True, help="index directory (created; an existing one is updated)")
    p.add_argument("--backend", default="torch", help="torch | onnxruntime | openvino | triton | tensorrt")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=32, help="items per encoder call")
    p.add_argument("--workers", type=int, default=None, help="preprocessing threads (default: cores, at most 8)")
    p.add_argument("--modality", choices=list(INPUT_KINDS), help="treat every file as this input kind")
    p.add_argument(
        "--on-bad-data", choices=ON_BAD_DATA, default="stop", help="skip unreadable files, or stop (default)"
    )
    p.add_argument(
        "--ann", choices=ANN_CHOICES, default="auto", help="FAISS index: auto (large collections), faiss, none"
    )
    p.add_argument("--verify", action="store_true", help="report the FAISS index's recall@10 against exact search")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="ray: a Ray Data pipeline")
    p.add_argument("--address", help="with --engine ray: the cluster address (default: a local Ray instance)")
    p.add_argument("--json", action="store_true", help="print the run's report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from bindrt.cli.output import make_console
    from bindrt.errors import BindrtError
    from bindrt.index import Index, build_index

    err = make_console(stderr=True)
    options = dict(
        backend=args.backend,
        precision=args.precision,
        device=args.device,
        batch=args.batch,
        workers=args.workers,
        modality=args.modality,
        on_bad_data=args.on_bad_data,
        ann=args.ann,
    )
    progress = _Progress(err)
    try:
        if args.engine == "ray":
            from bindrt.index.ray_engine import build_index_ray

            report = build_index_ray(
                args.bundle, args.inputs, args.out, address=args.address, on_progress=progress, **options
            )
        else:
            report = build_index(args.bundle, args.inputs, args.out, on_progress=progress, **options)
    finally:
        progress.stop()
    out = report.to_dict()
    if args.verify:
        with Index.open(args.out) as index:
            try:
                out["verify"] = index.verify()
            except BindrtError as exc:
                out["verify"] = {"skipped": str(exc)}
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    for path, why in report.errors:
        err.print(f"error: {path}: {why}", markup=False, highlight=False)
    print(
        f"indexed {report.items} items from {report.files} files into {report.index}: embedded {report.embedded_files} "
        f"files ({report.embedded_items} items), {report.unchanged_files} unchanged, {report.resumed_items} items "
        f"resumed from an interrupted run, {report.dropped_files} dropped, {len(report.errors)} with errors, "
        f"{len(report.ignored)} ignored, in {report.seconds:.1f} s"
    )
    if report.ann:
        print(f"FAISS index: {report.ann['factory']} over {report.ann['count']} items")
    if "verify" in out:
        v = out["verify"]
        print(
            v["skipped"]
            if "skipped" in v
            else f"recall@{v['k']} of FAISS vs exact over {v['queries']} queries: {v['recall']:.4f}; median query "
            f"{v['ann_ms_median']:.3f} ms (FAISS) vs {v['exact_ms_median']:.3f} ms (exact)"
        )
    return 0


class _Progress:
    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("embedding"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = None

    def __call__(self, what: str, value) -> None:
        if what == "total" and value:
            self.bar.start()
            self.task = self.bar.add_task("", total=value)
        elif what == "advance" and self.task is not None:
            self.bar.advance(self.task, value)

    def stop(self) -> None:
        self.bar.stop()
