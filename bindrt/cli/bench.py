"""bindrt bench: latency percentiles, throughput, memory, roofline and preprocessing of backends on a bundle."""

from __future__ import annotations

import argparse

from bindrt.bench.plan import ALL, AUTO, BENCH_BACKENDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark backends and precisions on a bundle",
        description="Times every backend x precision x input kind x batch that can run here, in interleaved rounds "
        "on fresh random inputs: p50/p90/p99 latency, items/s, peak memory, preprocessing per item, achieved "
        "GFLOP/s against this machine's measured peak, speed-up and min cosine against the first target. "
        "Whatever cannot run is one 'skipped: why' line and the rest still runs.",
    )
    p.add_argument("bundle")
    p.add_argument(
        "--backends",
        nargs="+",
        default=[ALL],
        help=f"NAME or NAME:PRECISION ... (first = baseline); names: {', '.join(BENCH_BACKENDS)}, "
        f"{ALL} (every one: the default), {AUTO} (what backend='auto' picks)",
    )
    p.add_argument(
        "--precision", nargs="+", default=["fp32"], help="precisions for bare backend names (fp32 fp16 bf16 int8)"
    )
    p.add_argument(
        "--modalities", "--inputs", nargs="+", default=None, help="input kinds (default: every kind the bundle has)"
    )
    p.add_argument("--batch", "--batch-sizes", nargs="+", default=["1,8"], help="batch sizes, e.g. 1,8,32,128")
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--duration", type=float, default=None, help="seconds of timed calls per combination (default 2)"
    )
    length.add_argument("--iters", type=int, default=None, help="timed calls per combination instead of --duration")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds the timed calls are split into")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per combination after the first")
    p.add_argument("--threads", type=int, default=None, help="threads per engine (default: each library's own)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="directory for <date>-<name>.json/.md (and .png with --plots)")
    p.add_argument("--name", default="bench")
    p.add_argument("--compare", metavar="OLD.json", help="print ratios against an earlier report")
    p.add_argument(
        "--plots", action="store_true", help="write latency/throughput-vs-batch PNGs (needs --out, matplotlib)"
    )
    p.add_argument("--no-peaks", action="store_true", help="skip measuring the machine's matmul/copy peaks")
    p.add_argument("--no-preprocess", action="store_true", help="skip timing preprocessing")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of Markdown")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from bindrt.bench import Settings, make_plan, parse_batches, run_sweep
    from bindrt.bench.report import compare, compare_markdown, markdown, read_report, write_report
    from bindrt.bundle import Bundle
    from bindrt.cli.output import make_console
    from bindrt.errors import ConfigError

    bundle = Bundle.open(args.bundle)
    batches = parse_batches(args.batch)
    settings = Settings(
        batches=batches,
        duration_s=None if args.iters is not None else (args.duration if args.duration is not None else 2.0),
        iters=args.iters,
        rounds=args.rounds,
        warmup=args.warmup,
        threads=args.threads,
        device=args.device,
        peaks=not args.no_peaks,
        preprocess=not args.no_preprocess,
    )
    settings.check()
    if args.plots and not args.out:
        raise ConfigError("--plots writes PNG files: give --out DIR too")
    old = read_report(args.compare) if args.compare else None  # fail before minutes of timing, not after
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.plots:
        from bindrt.bench.plots import pyplot

        pyplot()  # matplotlib missing: say so now
    plan = make_plan(bundle, args.backends, args.precision, args.modalities, batches)
    err = make_console(stderr=True)
    progress = _progress(err)
    try:
        report = run_sweep(bundle, plan, settings, progress).to_dict()
    finally:
        progress.bar.stop()
    if not report["rows"]:
        raise ConfigError(
            f"nothing could be measured: all {len(report['skipped'])} combinations were skipped (see above)"
        )
    print(json.dumps(report, indent=1) if args.json else markdown(report), end="" if not args.json else "\n")
    if args.out:
        paths = write_report(report, args.out, args.name)
        written = [paths["json"], paths["md"]]
        if args.plots:
            from bindrt.bench.plots import plot_report

            written += plot_report(report, args.out, paths["json"].stem)
        err.print("wrote " + ", ".join(map(str, written)))
    if old is not None:
        print(compare_markdown(compare(old, report), old, report), end="")
    for warning in report["warnings"]:
        err.print(f"warning: {warning}", markup=False)
    return 0


class _progress:
    """The sweep's events as a rich progress bar on stderr, skip lines printed above it."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Progress(
            TextColumn("bench"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
        )
        self.task = None

    def __call__(self, what: str, value) -> None:
        if what == "total":
            self.bar.start()
            self.task = self.bar.add_task("", total=value)
        elif what == "advance" and self.task is not None:
            self.bar.advance(self.task, value)
            if self.bar.finished:
                self.bar.stop()
        elif what == "skip":
            self.bar.console.print(value.line, markup=False, highlight=False)
        elif what == "note":
            self.bar.console.print(value, markup=False, highlight=False)
        elif what == "row" and self.task is not None:
            self.bar.update(self.task, description=f"{value.target} {value.kind} b{value.batch}: {value.p50_ms:.2f} ms")
