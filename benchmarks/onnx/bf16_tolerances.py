"""bindrt's bf16 (and fp16) graphs of real-size towers against their tolerance (issue 16).

bf16 graphs are validated in fp32 emulation (:func:`bindrt.export.fp16.emulate_in_fp32`: bf16
values, fp32 ops, every bf16 output rounded), since no CPU engine runs ONNX bf16 graphs; fp16
runs on ONNX Runtime. Both on the fp32 graph of ``bench_cpu --workdir`` bundles (imagebind_huge,
random weights), validated as the export validates (random and real suites, batch 1 and 5 of
one graph, against torch fp32):

    python -m benchmarks.onnx.bench_cpu --modalities depth,audio --workdir WORK --batches 1 --rounds 1
    python -m benchmarks.onnx.bf16_tolerances --workdir WORK --modalities depth,audio

Writes ``benchmarks/results/<date>-<cpu>/export/<date>-bf16-<modalities>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from benchmarks.common import machine_info, report_header, write_report

PRECISIONS = ("bf16", "fp16")


def run(args: argparse.Namespace) -> dict:
    import onnx

    from benchmarks.onnx.bench_cpu import bundle_path
    from bindrt.bundle import Bundle
    from bindrt.export.fp16 import convert_to_low_precision
    from bindrt.export.pipeline import validator
    from bindrt.export.validate import Reference, tolerance_for, validate_graph
    from bindrt.loaders import EncodersFromSource
    from bindrt.runtime.base import ModelSource

    results = {}
    for kind in args.modalities.split(","):
        bundle = Bundle.open(bundle_path(args.workdir, args.preset, kind))
        reference = Reference(EncodersFromSource(ModelSource(config=bundle.config, bundle=bundle), (kind,))())
        for precision in PRECISIONS:
            start = time.perf_counter()
            graph, summary = convert_to_low_precision(
                onnx.load(str(bundle.path / f"onnx/{kind}/{kind}.fp32.onnx")), precision
            )
            with tempfile.TemporaryDirectory() as tmp:
                onnx.save(graph, f"{tmp}/g.onnx", save_as_external_data=graph.ByteSize() > (1 << 30))
                v = validate_graph(
                    f"{tmp}/g.onnx",
                    kind,
                    precision,
                    reference,
                    where=f"{kind}.{precision}",
                    **validator("plain", precision),
                )
            results[f"{kind} {precision}"] = {
                "min_cosine": {
                    s: min(v["suites"][s][f"batch_{b}"]["min_cosine"] for b in (1, 5)) for s in ("random", "real")
                },
                "max_rel_diff": v["worst"]["max_rel_diff"],
                "tolerance": tolerance_for(kind, precision)[1],
                "passed": v["passed"],
                "tier": v.get("tier"),
                "runtime": v["runtime"],
                "low_nodes": summary["low_nodes"],
                "fp32_ops": summary["fp32_ops"],
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(kind, precision, results[f"{kind} {precision}"], flush=True)
    machine = machine_info()
    return {
        "benchmark": "bindrt bf16 / fp16 graphs on real-size towers (issue 16)",
        "date": machine["date"],
        "machine": machine,
        "model": f"{args.preset} {args.modalities}, random weights (bench_cpu's bundles), pooled-last-block fp32 graphs",
        "method": "convert_to_low_precision; validate_graph against torch fp32 (random and real suites, batch 1 and 5 "
        "from one graph); bf16 on ONNX Runtime CPU in fp32 emulation (emulate_in_fp32), fp16 on ONNX Runtime CPU",
        "results": results,
    }


def markdown(report: dict) -> str:
    lines = [
        *report_header(
            f"bindrt bf16 / fp16 graphs on {report['model']}", report, notes=[f"- method: {report['method']}"]
        ),
        "| tower | precision | min cosine, random suite | min cosine, real suite | max rel diff | tolerance | passed "
        "| tier | ops kept fp32 | seconds |",
        "|---|---|---:|---:|---:|---|---|---|---|---:|",
    ]
    for name, r in report["results"].items():
        kind, precision = name.split(" ", 1)
        lines.append(
            f"| {kind} | {precision} | {r['min_cosine']['random']:.5f} | {r['min_cosine']['real']:.5f} | "
            f"{r['max_rel_diff']:.2e} | >= {r['tolerance']} | {r['passed']} | {r['tier'] or '-'} | "
            f"{', '.join(r['fp32_ops'])} | {r['seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="a bench_cpu --workdir holding the bundles")
    p.add_argument("--modalities", default="depth,audio")
    p.add_argument("--preset", default="imagebind_huge")
    p.add_argument("--out", help="results folder (default benchmarks/results/<date>-<cpu>/export)")
    p.add_argument("--tag", default=None)
    args = p.parse_args(argv)
    report = run(args)
    print(markdown(report))
    write_report(report, markdown, args.out, "export", args.tag or f"bf16-{args.modalities.replace(',', '-')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
