"""Where a benchmark run's results go and what machine record they carry: one rule for every suite.

Results live under ``benchmarks/results/<YYYY-MM-DD>-<machine>/<suite>/`` (UTC date;
``<machine>``: :func:`machine_slug`, the GPU for GPU suites, the CPU otherwise). A rerun
never overwrites: :func:`free_name` gives it ``<name>-2``, ``<name>-3``, ... The machine
record is :func:`bindrt.bench.machine_info` (CPU model and flags, GPU, versions, date).

    python -m benchmarks.common record             # the machine record as JSON
    python -m benchmarks.common dir onnx           # where the onnx suite writes today
    python -m benchmarks.common dir kernels --gpu --fresh   # a folder no earlier run used
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

from bindrt.bench import machine_info, machine_summary, versions_summary
from bindrt.bench.report import free_name

__all__ = [
    "RESULTS",
    "machine_info",
    "machine_summary",
    "machine_slug",
    "report_header",
    "results_dir",
    "free_name",
    "versions_summary",
    "write_report",
]

RESULTS = Path(__file__).resolve().parent / "results"

#: Words that name no particular part (vendor marks, "CPU", tiers): left out of the slug.
_NOISE = re.compile(
    r"\((r|tm)\)|\b(intel|amd|cpu|processor|platinum|gold|silver|bronze|\d+-core|with radeon graphics)\b"
)


def machine_slug(info: dict[str, Any], gpu: bool = False) -> str:
    """A short folder name for the machine: 'nvidia-h200', 'xeon-8481c', 'xeon-2.50ghz'.

    ``gpu`` picks the GPU's name where there is one. The clock stays only when no model
    number is left (a VM's 'Intel(R) Xeon(R) Processor @ 2.50GHz').
    """
    name = info["gpu"].split(",")[0] if gpu and info.get("gpu") else info.get("cpu") or "unknown"
    name = name.lower()
    if not gpu or not info.get("gpu"):
        name = _NOISE.sub(" ", name)
        model, _, clock = name.partition("@")
        name = model if re.search(r"\d", model) else f"{model} {clock}"
    return "-".join(re.findall(r"[a-z0-9.]+", name)) or "unknown"


def results_dir(suite: str, *, gpu: bool = False, info: dict[str, Any] | None = None) -> Path:
    """``benchmarks/results/<date>-<machine>/<suite>`` for a run starting now (not created)."""
    info = info or machine_info()
    return RESULTS / f"{info['date'][:10]}-{machine_slug(info, gpu)}" / suite


def report_header(
    title: str, report: dict, *, versions: str = "", notes: "list[str] | tuple[str, ...]" = ()
) -> list[str]:
    """A results file's opening lines: title, date, machine, versions (``versions``: more to name), then ``notes``."""
    m = report["machine"]
    return [
        f"# {title}",
        "",
        f"- date: {report['date']}",
        f"- machine: {machine_summary(m)}",
        f"- versions: {versions_summary(m)}{versions}",
        *notes,
        "",
    ]


def write_report(report: dict, markdown: Callable[[dict], str], out: "str | Path | None", suite: str, tag: str) -> Path:
    """``<out>/<date>-<tag>.json`` and ``.md`` (``<date>-<tag>-2`` ... on a rerun); returns the stem's path.

    ``report["machine"]`` is the run's :func:`machine_info`: it names the default ``out``
    (the suite's folder for that machine and day) and dates the file.
    """
    out = Path(out) if out else results_dir(suite, info=report["machine"])
    out.mkdir(parents=True, exist_ok=True)
    stem = out / free_name(out, f"{report['machine']['date'][:10]}-{tag}", (".json", ".md"))
    stem.with_name(stem.name + ".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_name(stem.name + ".md").write_text(markdown(report).rstrip("\n") + "\n")
    print(f"wrote {stem}.json and .md")
    return stem


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("record", help="print the machine record (JSON)")
    d = sub.add_parser("dir", help="print the results folder of SUITE for a run starting now")
    d.add_argument("suite")
    d.add_argument("--gpu", action="store_true", help="name the machine by its GPU")
    d.add_argument("--fresh", action="store_true", help="a folder no earlier run used (SUITE-2, SUITE-3, ...)")
    args = p.parse_args(argv)
    if args.what == "record":
        print(json.dumps(machine_info(), indent=1))
        return 0
    path = results_dir(args.suite, gpu=args.gpu)
    if args.fresh:
        path = path.parent / free_name(path.parent, path.name)
    print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
