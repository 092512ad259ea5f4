"""``bindrt train`` timed on this machine, its evaluation recorded with the machine: the training suite.

Runs ``bindrt train --preset tiny`` (or whatever options follow ``--``) in this process,
then writes ``<date>-<tag>.json`` (machine record, command, wall time, the run's
``eval/report.json``) and ``<date>-<tag>.md`` (zero-shot and retrieval tables) into
``benchmarks/results/<date>-<cpu>/training/`` (``--out`` overrides; a rerun gets ``-2``).

    python -m benchmarks.training.train_tiny                                # the tiny run, defaults
    python -m benchmarks.training.train_tiny --tag smoke -- --steps 4 --eval-samples 40
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine_info, machine_summary, versions_summary, write_report


def run(train_args: list[str], run_dir: Path) -> dict:
    """Train into ``run_dir`` and return what the report records."""
    from bindrt.cli import main as bindrt_main
    from bindrt.errors import BindrtError

    argv = ["train", "--preset", "tiny", "--out", str(run_dir), *train_args]
    if "--preset" in train_args or "--init" in train_args:
        argv[1:3] = []
    start = time.perf_counter()
    status = bindrt_main(argv)
    wall = time.perf_counter() - start
    if status:
        raise BindrtError(f"bindrt {shlex.join(argv)} exited with status {status}")
    evaluation = json.loads((run_dir / "bundle" / "eval" / "report.json").read_text())
    machine = machine_info()
    return {
        "benchmark": "bindrt train",
        "date": machine["date"],
        "machine": machine,
        "command": "bindrt " + shlex.join(argv),
        "wall_seconds": round(wall, 1),
        "evaluation": evaluation,
    }


def markdown(report: dict) -> str:
    m, ev = report["machine"], report["evaluation"]
    lines = [
        f"# `{report['command']}`",
        "",
        f"- date: {report['date']}",
        f"- machine: {machine_summary(m)}",
        f"- versions: {versions_summary(m)}",
        f"- wall time: {report['wall_seconds'] / 60:.1f} min",
        "",
        f"| emergent zero-shot top-1 vs text prompts (chance {ev['world']['chance_top1']:.0%}) | |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {v:.1%} |" for k, v in ev["zero_shot_top1"].items()]
    retrieval = {k: v for k, v in ev["retrieval"].items() if "->" in k}
    lines += ["", f"| retrieval, galleries of {ev['retrieval']['gallery']} | R@1 | R@5 |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['R@1']:.1%} | {v['R@5']:.1%} |" for k, v in retrieval.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="results folder (default benchmarks/results/<date>-<cpu>/training)")
    p.add_argument("--tag", default="tiny-cpu", help="results file name: <date>-<tag>.{json,md}")
    p.add_argument("--workdir", help="keep the run (bundle, checkpoints, log) here instead of a temporary folder")
    args = p.parse_args(own)
    with tempfile.TemporaryDirectory(prefix="bindrt-bench-train-") as tmp:
        report = run(train_args, Path(args.workdir or tmp) / "run")
    print(markdown(report))
    write_report(report, markdown, args.out, "training", args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
