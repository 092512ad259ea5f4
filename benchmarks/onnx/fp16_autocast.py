"""NVIDIA Model Optimizer's AutoCast against bindrt's own fp16 converter (issue 16, item 4).

For every input kind of a bundle exported at fp32 and fp16: AutoCast
(``modelopt.onnx.autocast.convert_to_mixed_precision(low_precision_type="fp16",
keep_io_types=True)``) on the fp32 graph, beside bindrt's fp16 graph (``bindrt.export.fp16``),
both validated as the export validates (fp16 tolerance: min cosine >= 0.999 against torch fp32)
and compared on structure (Casts, nodes, fp16 initializers, nodes mixing fp16 and fp32 inputs):

    python -m benchmarks.onnx.fp16_autocast --bundle BUNDLE   # exported with --precision fp32,fp16

Writes ``benchmarks/results/<date>-<cpu>/export/<date>-fp16-autocast.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from collections import Counter
from importlib import metadata

from benchmarks.common import machine_info, machine_summary, versions_summary, write_report


def structure(model) -> dict:
    import onnx

    from bindrt.export.fp16 import check_strongly_typed

    ops = Counter(n.op_type for n in model.graph.node)
    return {
        "casts": ops.get("Cast", 0),
        "nodes": len(model.graph.node),
        "fp16_initializers": sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16),
        "initializers": len(model.graph.initializer),
        "mixed_type_nodes": len(check_strongly_typed(model)),
    }


def run(args: argparse.Namespace) -> dict:
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    from bindrt.bundle import Bundle
    from bindrt.export.validate import Reference, validate_graph
    from bindrt.loaders import EncodersFromSource
    from bindrt.runtime.base import ModelSource
    from bindrt.schema import base_kinds, onnx_graphs

    bundle = Bundle.open(args.bundle)
    mods = tuple(bundle.modalities)
    reference = Reference(EncodersFromSource(ModelSource(config=bundle.config, bundle=bundle), mods)())
    results = {}
    for m in mods:
        graphs = onnx_graphs(bundle.modality(m), str(bundle.path / "manifest.json"), m)
        for kind in base_kinds(m):
            fp32, ours = graphs.get(f"{kind}.fp32"), graphs.get(f"{kind}.fp16")
            if fp32 is None or ours is None:
                continue
            with contextlib.redirect_stdout(io.StringIO()):
                cast = convert_to_mixed_precision(
                    onnx_path=str(bundle.path / fp32.file),
                    low_precision_type="fp16",
                    keep_io_types=True,
                    providers=["cpu"],
                )
            row = {"autocast": structure(cast), "bindrt": structure(onnx.load(str(bundle.path / ours.file)))}
            with tempfile.TemporaryDirectory() as tmp:
                onnx.save(cast, f"{tmp}/autocast.onnx")
                for side, path in (("autocast", f"{tmp}/autocast.onnx"), ("bindrt", str(bundle.path / ours.file))):
                    try:
                        v = validate_graph(path, kind, "fp16", reference, where=f"{m}/{kind}.fp16 ({side})")
                        row[side] |= {"worst_min_cosine": v["worst"]["min_cosine"], "passed": v["passed"]}
                    except Exception as exc:  # a graph ONNX Runtime cannot run is a result here, not a crash
                        row[side] |= {
                            "worst_min_cosine": None,
                            "passed": False,
                            "error": str(exc).splitlines()[0][:240],
                        }
            results[kind] = row
            print(kind, row, flush=True)
    machine = machine_info()
    return {
        "benchmark": "AutoCast vs bindrt's fp16 converter (issue 16)",
        "date": machine["date"],
        "machine": machine,
        "bundle": str(bundle.path),
        "nvidia_modelopt": metadata.version("nvidia-modelopt"),
        "results": results,
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# AutoCast (NVIDIA Model Optimizer) vs bindrt's fp16 converter",
        "",
        f"- date: {report['date']}",
        f"- machine: {machine_summary(m)}",
        f"- versions: {versions_summary(m)}, nvidia-modelopt {report['nvidia_modelopt']}",
        f"- bundle: {report['bundle']}",
        "",
        "| kind | converter | worst min cosine | passed | Casts | nodes | fp16 initializers | mixed-type nodes | error |",
        "|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for kind, row in report["results"].items():
        for side in ("autocast", "bindrt"):
            r = row[side]
            cos = "-" if r.get("worst_min_cosine") is None else f"{r['worst_min_cosine']:.7f}"
            lines.append(
                f"| {kind} | {side} | {cos} | {r['passed']} | {r['casts']} | {r['nodes']} | "
                f"{r['fp16_initializers']}/{r['initializers']} | {r['mixed_type_nodes']} | {r.get('error') or ''} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="a bundle exported with --precision fp32,fp16")
    p.add_argument("--out", help="results folder (default benchmarks/results/<date>-<cpu>/export)")
    args = p.parse_args(argv)
    report = run(args)
    write_report(report, markdown, args.out, "export", "fp16-autocast")
    return 0


if __name__ == "__main__":
    sys.exit(main())
