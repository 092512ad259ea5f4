"""A sweep's report as files engineers paste into design docs: JSON, a Markdown table, and ``--compare``.

The JSON is the record (machine, settings, peaks, every row and skip); the Markdown is made
from it alone, so an old JSON renders the same way. A rerun never overwrites an earlier
report: :func:`free_name` picks ``<name>-2``, ``<name>-3``...
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bindrt.bench.machine import machine_summary, versions_summary
from bindrt.errors import ConfigError
from bindrt.fileio import atomic_write_bytes

REPORT_FORMAT = "bindrt.bench"
#: Row keys a report must carry for ``--compare`` (older or newer reports may add others).
COMPARE_KEYS = ("target", "kind", "batch", "p50_ms", "items_per_s")


def free_name(directory: "str | os.PathLike[str]", name: str, suffixes: tuple[str, ...] = ("",)) -> str:
    """``name``, or the first of ``name-2``, ``name-3``, ... with no ``directory/<it><suffix>`` yet."""
    candidate, n = name, 2
    while any((Path(directory) / f"{candidate}{s}").exists() for s in suffixes):
        candidate, n = f"{name}-{n}", n + 1
    return candidate


def _num(value: Any, fmt: str = ".2f", suffix: str = "") -> str:
    return "" if value is None else f"{value:{fmt}}{suffix}"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: header, one table of rows, preprocessing, skips, warnings."""
    m, s = report["machine"], report["settings"]
    timing = f"{s['iters']} calls" if s.get("iters") else f"{s['duration_s']:g} s"
    lines = [
        f"# bindrt bench: {Path(report['bundle']).name}",
        "",
        f"- date: {m['date']}",
        f"- machine: {machine_summary(m)}",
        f"- versions: {versions_summary(m)}",
        f"- timing: {timing} per combination in {s['rounds']} interleaved rounds after {s['warmup']} warm-up calls; "
        f"{report['clock']}; threads {s.get('threads') or 'library default'}; memory: {report['memory']}",
        f"- baseline for speed-up and cosine: {report.get('baseline') or 'none'}",
    ]
    peaks = report.get("peaks")
    if peaks:
        rates = ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks["matmul_gflops"].items())
        lines.append(
            f"- measured peaks ({peaks['device']}): matmul {rates} ({peaks['matmul_n']}^2); copy {peaks['copy_gbs']:.1f} GB/s"
        )
    load = report.get("load") or {}
    if load.get("before"):
        lines.append(f"- load average before / after: {load['before'][0]} / {(load.get('after') or ['?'])[0]}")
    lines += [
        "",
        "| target | input | batch | p50 ms | p90 ms | p99 ms | items/s | pre ms/item | e2e items/s | GFLOP/s | % peak "
        "| peak RSS MiB | speed-up | min cosine | ran |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        speed = _num(r.get("speedup"), ".2f", "x") or ("withheld" if r.get("speedup_note") else "")
        lines.append(
            f"| {r['target']} | {r['kind']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['items_per_s']:.1f} | {_num(r.get('preprocess_ms_per_item'))} | {_num(r.get('end_to_end_items_per_s'), '.1f')} "
            f"| {_num(r.get('achieved_gflops'), '.1f')} | {_num(r.get('percent_of_peak'), '.1f')} "
            f"| {_num(r.get('peak_rss_mib'), '.0f')} | {speed} "
            f"| {_num(r.get('min_cosine'), '.5f')} | {r['ran']}{' (busy: ' + r['busy'] + ')' if r.get('busy') else ''} |"
        )
    pre = report.get("preprocessing") or {}
    if pre:
        lines += ["", "Preprocessing (numpy/Pillow/PyAV on the CPU, per item, on fresh raw inputs):", ""]
        lines += ["| input | raw item | ms/item | items/s |", "|---|---|---:|---:|"]
        lines += [f"| {k} | {v['inputs']} | {v['ms_per_item']:.2f} | {v['items_per_s']:.1f} |" for k, v in pre.items()]
    if report.get("skipped"):
        lines += ["", "Skipped:", ""] + [f"- {skip_line(s)}" for s in report["skipped"]]
    if report.get("warnings"):
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def skip_line(skip: dict[str, Any]) -> str:
    where = " ".join(
        p for p in (skip.get("kind"), None if skip.get("batch") is None else f"batch {skip['batch']}") if p
    )
    return f"{skip['target']}{' ' + where if where else ''}: {skip['reason']}"


def write_report(report: dict[str, Any], out_dir: "str | os.PathLike[str]", name: str) -> dict[str, Path]:
    """``<out_dir>/<date>-<name>.json`` and ``.md`` (``-2``, ``-3``... when taken); returns the paths by suffix."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = free_name(out, f"{report['machine']['date'][:10]}-{name}", (".json", ".md"))
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    atomic_write_bytes(paths["json"], (json.dumps(report, indent=1) + "\n").encode())
    atomic_write_bytes(paths["md"], markdown(report).encode())
    return paths


def read_report(path: "str | os.PathLike[str]") -> dict[str, Any]:
    """An earlier report for ``--compare``; a file that is not one is a ConfigError saying what it lacks."""
    expected = "expected a JSON report written by `bindrt bench --out`"
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}; {expected}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not JSON ({exc}); {expected}") from None
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT or not isinstance(data.get("rows"), list):
        raise ConfigError(f"{path} is not a bindrt bench report (no format {REPORT_FORMAT!r} with rows); {expected}")
    for i, row in enumerate(data["rows"]):
        if not isinstance(row, dict) or any(k not in row for k in COMPARE_KEYS):
            raise ConfigError(f"{path}: row {i} lacks one of {', '.join(COMPARE_KEYS)}; {expected}")
    return data


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of both reports matched on (target, input, batch): old and new p50 and items/s, and new/old ratios."""
    index = {(r["target"], r["kind"], r["batch"]): r for r in old["rows"]}
    out = []
    for r in new["rows"]:
        o = index.get((r["target"], r["kind"], r["batch"]))
        if o is None:
            continue
        out.append(
            {
                "target": r["target"],
                "kind": r["kind"],
                "batch": r["batch"],
                "old_p50_ms": o["p50_ms"],
                "new_p50_ms": r["p50_ms"],
                "old_items_per_s": o["items_per_s"],
                "new_items_per_s": r["items_per_s"],
                "throughput_ratio": r["items_per_s"] / o["items_per_s"] if o["items_per_s"] else None,
                "busy": bool(r.get("busy") or o.get("busy")),
            }
        )
    return out


def compare_markdown(rows: list[dict[str, Any]], old: dict[str, Any], new: dict[str, Any]) -> str:
    """The comparison as Markdown, with both runs' dates and machines (a different machine is said first)."""
    om, nm = old["machine"], new["machine"]
    lines = [f"Compared with {om['date']} on {machine_summary(om)}:"]
    if (om.get("cpu"), om.get("gpu")) != (nm.get("cpu"), nm.get("gpu")):
        lines.append("note: a different machine; ratios compare machines as much as code")
    if not rows:
        return "\n".join(lines + ["no rows in common (same target, input and batch)"]) + "\n"
    lines += [
        "",
        "| target | input | batch | old p50 ms | new p50 ms | old items/s | new items/s | new/old throughput |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in rows:
        ratio = _num(c["throughput_ratio"], ".2f", "x") + (" (busy)" if c["busy"] else "")
        lines.append(
            f"| {c['target']} | {c['kind']} | {c['batch']} | {c['old_p50_ms']:.2f} | {c['new_p50_ms']:.2f} "
            f"| {c['old_items_per_s']:.1f} | {c['new_items_per_s']:.1f} | {ratio} |"
        )
    return "\n".join(lines) + "\n"
