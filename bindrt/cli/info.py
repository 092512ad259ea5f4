"""bindrt info: what a bundle holds."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show what a bundle holds", description="Print a bundle's config, modalities, inputs, artefacts and files.")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--verify", action="store_true", help="also verify every file's sha256")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from bindrt.bundle import Bundle

    bundle = Bundle.open(args.bundle)
    if args.verify:
        for rel in bundle.manifest["files"]:
            bundle.file(rel, verify=True)
    summary = bundle.summary()
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    console = Console()
    console.print(f"[bold]{summary['path']}[/] schema v{summary['schema_version']}, out_embed_dim {summary['config']['out_embed_dim']}")
    table = Table("modality", "inputs", "embed dim / blocks / heads", "artefacts")
    cfg = summary["config"]
    for name, entry in summary["modalities"].items():
        inputs = "; ".join(f"{k} {tuple(v['shape'])} {v['dtype']}" for k, v in entry["inputs"].items())
        arch = f"{cfg[name + '_embed_dim']} / {cfg[name + '_num_blocks']} / {cfg[name + '_num_heads']}"
        table.add_row(name, inputs, arch, ", ".join(entry["artifacts"]) or "-")
    console.print(table)
    console.print(f"{len(summary['files'])} files, {summary['total_bytes'] / 1e6:.1f} MB" + (" (all checksums verified)" if args.verify else ""))
    for event in summary["history"]:
        console.print(f"  {event.get('time', '?')}  {event.get('stage')}" + (f"  from {event['source']}" if event.get("source") else ""))
    return 0
