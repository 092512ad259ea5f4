"""Model Optimizer's int8 / fp8 Q/DQ graphs of a real-size tower against their tolerances (issue 16).

Every recipe of :data:`bindrt.export.qdq_modelopt.RECIPES` on one fp32 graph of a
``bench_cpu --workdir`` bundle (imagebind_huge, random weights), calibrated as the export
calibrates (:func:`bindrt.export.validate.calibration_inputs`), validated as the export
validates (random and real suites, batch 1 and 5 of one graph, against torch fp32):

    python -m benchmarks.onnx.bench_cpu --modalities depth --workdir WORK --batches 1 --rounds 1
    python -m benchmarks.onnx.qdq_tolerances --workdir WORK --modality depth

Writes ``benchmarks/results/<date>-<cpu>/export/<date>-qdq-<modality>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from importlib import metadata

from benchmarks.common import machine_info, report_header, write_report


def run(args: argparse.Namespace) -> dict:
    import onnx

    from benchmarks.onnx.bench_cpu import bundle_path
    from bindrt.bundle import Bundle
    from bindrt.export import qdq_modelopt as qm
    from bindrt.export.validate import Reference, calibration_inputs, validate_graph
    from bindrt.loaders import EncodersFromSource
    from bindrt.runtime.base import ModelSource

    kind = args.modality
    bundle = Bundle.open(bundle_path(args.workdir, args.preset, kind))
    reference = Reference(EncodersFromSource(ModelSource(config=bundle.config, bundle=bundle), (kind,))())
    source = str(bundle.path / f"onnx/{kind}/{kind}.fp32.onnx")
    calibration = [{kind: x} for x in calibration_inputs(kind)]
    results = {}
    for mode, recipes in qm.RECIPES.items():
        for recipe in recipes:
            start = time.perf_counter()
            graph, _ = qm.quantize_modelopt(source, calibration, mode=mode, where=f"{kind}.{mode}", recipe=recipe)
            with tempfile.TemporaryDirectory() as tmp:
                onnx.save(graph, f"{tmp}/q.onnx")
                v = validate_graph(
                    f"{tmp}/q.onnx",
                    kind,
                    mode,
                    reference,
                    where=f"{kind}.{mode}.{recipe}",
                    session_factory=qm.session_factory(mode),
                    runtime=qm.runtime(mode),
                )
            worst = {s: min(v["suites"][s][f"batch_{b}"]["min_cosine"] for b in (1, 5)) for s in ("random", "real")}
            results[f"{mode} {recipe}"] = {
                "min_cosine": worst,
                "passed": v["passed"],
                "tier": v.get("tier"),
                "compute_nodes": {"quantized": len(qm.quantized_nodes(graph)), "fp32": len(qm.fp32_nodes(graph))},
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(mode, recipe, results[f"{mode} {recipe}"], flush=True)
    machine = machine_info()
    return {
        "benchmark": "Model Optimizer Q/DQ graphs on a real-size tower (issue 16)",
        "date": machine["date"],
        "machine": machine,
        "model": f"{args.preset} {kind}, random weights (bench_cpu's bundle), pooled-last-block fp32 graph",
        "nvidia_modelopt": metadata.version("nvidia-modelopt"),
        "method": "quantize_modelopt per recipe on calibration_inputs (real-media suite mirrored + layout-random, "
        "held out); validate_graph on ONNX Runtime CPU (fp8: graph optimizations off) against torch fp32, random "
        "and real suites, batch 1 and 5 from one graph",
        "results": results,
    }


def markdown(report: dict) -> str:
    lines = [
        *report_header(
            f"Model Optimizer Q/DQ graphs on {report['model']}",
            report,
            versions=f", nvidia-modelopt {report['nvidia_modelopt']}",
            notes=[f"- method: {report['method']}"],
        ),
        "| mode | recipe | min cosine, random suite | min cosine, real suite | tolerance | passed | tier "
        "| MatMul/Gemm/Conv quantized / fp32 | seconds |",
        "|---|---|---:|---:|---|---|---|---:|---:|",
    ]
    for name, r in report["results"].items():
        mode, recipe = name.split(" ", 1)
        lines.append(
            f"| {mode} | {recipe} | {r['min_cosine']['random']:.4f} | {r['min_cosine']['real']:.4f} | "
            f">= {0.98 if mode == 'int8' else 0.99} | {r['passed']} | {r['tier'] or '-'} | "
            f"{r['compute_nodes']['quantized']} / {r['compute_nodes']['fp32']} | {r['seconds']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="a bench_cpu --workdir holding the bundle")
    p.add_argument("--modality", default="depth")
    p.add_argument("--preset", default="imagebind_huge")
    p.add_argument("--out", help="results folder (default benchmarks/results/<date>-<cpu>/export)")
    p.add_argument("--tag", default=None)
    args = p.parse_args(argv)
    report = run(args)
    print(markdown(report))
    write_report(report, markdown, args.out, "export", args.tag or f"qdq-{args.modality}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
