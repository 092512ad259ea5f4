"""bindrt info: what a bundle holds, artefacts included."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="show what a bundle holds",
        description="Print a bundle's config, modalities, inputs, files and artefacts (every exported "
        "graph with its precision, variant, opset and validation result).",
    )
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON (artefact records in full)")
    p.add_argument("--verify", action="store_true", help="also verify every file's sha256")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bindrt.bundle import Bundle
    from bindrt.cli.output import graphs_table, make_console, make_table

    bundle = Bundle.open(args.bundle)
    if args.verify:
        for rel in bundle.manifest["files"]:
            bundle.file(rel, verify=True)
    summary = bundle.summary()
    artifacts = {m: bundle.modality(m).get("artifacts", {}) for m in bundle.modalities}
    if args.json:
        for m, records in artifacts.items():
            summary["modalities"][m]["artifacts"] = records
        print(json.dumps(summary, indent=1))
        return 0
    console = make_console()
    console.print(
        f"[bold]{summary['path']}[/] schema v{summary['schema_version']}, out_embed_dim {summary['config']['out_embed_dim']}"
    )
    table = make_table("modality", "inputs", "embed dim / blocks / heads", "artefacts")
    cfg = summary["config"]
    for name, entry in summary["modalities"].items():
        inputs = "; ".join(f"{k} ({', '.join(map(str, v['shape']))}) {v['dtype']}" for k, v in entry["inputs"].items())
        arch = f"{cfg[name + '_embed_dim']} / {cfg[name + '_num_blocks']} / {cfg[name + '_num_heads']}"
        table.add_row(name, inputs, arch, ", ".join(entry["artifacts"]) or "-")
    console.print(table)
    graphs = {
        key: rec for records in artifacts.values() for key, rec in records.get("onnx", {}).get("graphs", {}).items()
    }
    if graphs:
        console.print(graphs_table(graphs, f"{len(graphs)} ONNX graph(s)"))
    console.print(
        f"{len(summary['files'])} files, {summary['total_bytes'] / 1e6:.1f} MB"
        + (" (all checksums verified)" if args.verify else "")
    )
    for event in summary["history"]:
        console.print(
            f"  {event.get('time', '?')}  {event.get('stage')}"
            + (f"  from {event['source']}" if event.get("source") else "")
        )
    return 0
