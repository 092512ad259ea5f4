"""``bindrt export`` and ``bindrt validate`` (imports stay inside ``run`` so the CLI starts fast)."""

from __future__ import annotations

import argparse

EXPORT_DESCRIPTION = (
    "Export a bundle's encoders to ONNX: per modality and precision one graph under onnx/<modality>/ with "
    "symbolic batch (and clips for audio/video), checked with onnx.checker (full_check) and shape inference, "
    "validated against the PyTorch fp32 model (random and real inputs, batch 1 and 5) and recorded in "
    "manifest.json with checksums. Vision also gets a 'video' graph (B, clips, 3, 2, 224, 224). "
    "Any graph missing its tolerance fails the export and nothing is written."
)
VALIDATE_DESCRIPTION = (
    "Re-validate a bundle's exported ONNX graphs against the PyTorch fp32 model (checksums first) and store "
    "the results in manifest.json. Tolerances: fp32 max|diff| <= 1e-5 of the row norm; fp16 min cosine >= 0.999; "
    "int8 min cosine >= 0.98; raw-input graphs vs the Python preprocessing >= 0.9999; same top-1 retrieval. "
    "Exit status 2 when any graph misses its tolerance. A read-only bundle is validated without recording "
    "(with a note). TensorRT engines from `bindrt build` go through the same suites where TensorRT and a GPU "
    "are present (recorded in each engine's record); elsewhere a note says they were not validated."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a bundle's encoders to validated ONNX graphs", description=EXPORT_DESCRIPTION
    )
    p.add_argument("bundle", help="bundle directory (from `bindrt convert` or `bindrt train`)")
    p.add_argument("--modalities", help="comma-separated modalities (default: all in the bundle)")
    p.add_argument(
        "--precision", default="fp32", help="comma-separated: fp32, fp16, bf16 (for TensorRT), int8 (default fp32)"
    )
    p.add_argument(
        "--opset", type=int, default=None, help="ONNX opset (default 18; 17 up to what the installed onnx knows)"
    )
    p.add_argument(
        "--with-preprocessing",
        action="store_true",
        help="also export raw-input graphs: audio from 16 kHz waveform clips (Kaldi fbank in the graph), "
        "vision from 224x224 uint8 RGB",
    )
    p.add_argument(
        "--fused",
        action="store_true",
        help="also export ONNX Runtime 'fused' variants (com.microsoft Attention, BiasGelu; Gelu in int8) "
        "of the fp32 and int8 graphs",
    )
    p.add_argument(
        "--int8-method",
        choices=("dynamic", "static"),
        default="dynamic",
        help="int8 quantization: dynamic (default, per-call activation ranges) or static QDQ calibrated on real inputs",
    )
    p.add_argument(
        "--nncf",
        action="store_true",
        help="also export int8 graphs quantized by NNCF for OpenVINO (<kind>.int8.nncf: static QDQ, calibrated on "
        "held-out real and random inputs, validated through OpenVINO; the openvino backend's int8 runs them)",
    )
    p.add_argument(
        "--modelopt",
        action="store_true",
        help="also export int8 and fp8 Q/DQ graphs for TensorRT quantized by NVIDIA Model Optimizer "
        "(<kind>.int8.modelopt, <kind>.fp8.modelopt; pip install 'bindrt[modelopt]'), validated on ONNX Runtime",
    )
    p.add_argument(
        "--calibrate",
        action="append",
        default=[],
        metavar="KIND=PATH",
        help="with --nncf: calibrate KIND's int8 graph on your own media (a file, directory or glob; text: .txt, "
        "one caption per line; repeatable) instead of the mirrored sample media",
    )
    p.add_argument(
        "--target",
        action="append",
        choices=("tensorrt",),
        default=[],
        help="check every graph for this engine before writing (tensorrt: the ONNX-TensorRT operator matrix; "
        "plain fp32/fp16 and --nncf int8 graphs must pass, fused and dynamic-int8 graphs are recorded as ORT-only)",
    )
    p.add_argument(
        "--full-last-block",
        action="store_true",
        help="trace the last transformer block for every token as the reference does (default: only for "
        "the pooled token the head reads; same embeddings, ~1/12 less work in a 12-block tower)",
    )
    p.add_argument(
        "--external-data-threshold",
        type=int,
        default=None,
        metavar="BYTES",
        help="graphs whose tensors exceed this many bytes keep them in a .data file (default ~1.8 GB)",
    )
    p.add_argument("--json", action="store_true", help="print the graph records as JSON")
    p.set_defaults(func=run_export)

    v = sub.add_parser(
        "validate", help="re-validate a bundle's ONNX graphs against PyTorch", description=VALIDATE_DESCRIPTION
    )
    v.add_argument("bundle", help="bundle directory with exported graphs")
    v.add_argument("--modalities", help="comma-separated modalities (default: all)")
    v.add_argument("--precision", help="comma-separated precisions (default: all exported)")
    v.add_argument("--no-update", action="store_true", help="do not write the results into manifest.json")
    v.add_argument("--json", action="store_true", help="print the results as JSON")
    v.set_defaults(func=run_validate)


def run_export(args: argparse.Namespace) -> int:
    import json

    from bindrt.cli import modality_list
    from bindrt.cli.output import graphs_table, make_console
    from bindrt.export.pipeline import export_bundle
    from bindrt.export.spec import DEFAULT_OPSET, EXTERNAL_DATA_THRESHOLD

    console = make_console(stderr=args.json)
    records = export_bundle(
        args.bundle,
        modalities=modality_list(args.modalities) if args.modalities else None,
        precisions=args.precision,
        opset=DEFAULT_OPSET if args.opset is None else args.opset,
        with_preprocessing=args.with_preprocessing,
        fused=args.fused,
        int8_method=args.int8_method,
        pooled_last_block=not args.full_last_block,
        nncf=args.nncf,
        targets=tuple(args.target),
        calibration=_calibration(args.calibrate, args.nncf or args.modelopt),
        modelopt=args.modelopt,
        external_data_threshold=EXTERNAL_DATA_THRESHOLD
        if args.external_data_threshold is None
        else args.external_data_threshold,
        progress=lambda msg: console.print(f"[dim]{msg}[/]"),
    )
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        console.print(graphs_table(records, f"exported {len(records)} graph(s) into {args.bundle}"))
    return 0


def _calibration(specs: list[str], nncf: bool) -> dict | None:
    """``--calibrate KIND=PATH ...`` -> input kind -> preprocessed batch."""
    if not specs:
        return None
    from bindrt.errors import ConfigError
    from bindrt.export.validate import calibration_from_media

    if not nncf:
        raise ConfigError("--calibrate calibrates the static int8/fp8 graphs; add --nncf or --modelopt")
    sources: dict[str, list[str]] = {}
    for spec in specs:
        kind, sep, path = spec.partition("=")
        if not sep or not kind or not path:
            raise ConfigError(f"--calibrate {spec!r} is invalid; expected KIND=PATH, e.g. audio='clips/*.wav'")
        sources.setdefault(kind.strip(), []).append(path)
    return {kind: calibration_from_media(kind, paths) for kind, paths in sources.items()}


def run_validate(args: argparse.Namespace) -> int:
    import json

    from bindrt.bundle import Bundle
    from bindrt.cli import modality_list
    from bindrt.cli.output import graphs_table, make_console
    from bindrt.export.pipeline import raise_failures, validate_bundle
    from bindrt.fileio import is_writable_dir

    console = make_console(stderr=args.json)
    bundle = Bundle.open(args.bundle)
    record = not args.no_update
    if record and not is_writable_dir(bundle.path):  # checking needs no write access; only recording does
        console.print(
            f"note: {bundle.path} is not writable; validating without recording the results in manifest.json",
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
        record = False
    results = validate_bundle(
        bundle,
        modalities=modality_list(args.modalities) if args.modalities else None,
        precisions=args.precision,
        update_manifest=record,
        raise_on_failure=False,
        progress=lambda msg: console.print(f"[dim]{msg}[/]"),
    )
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        graphs = {
            key: rec
            for m in bundle.modalities
            for key, rec in bundle.modality(m).get("artifacts", {}).get("onnx", {}).get("graphs", {}).items()
        }
        rows = {k: {**graphs.get(k.split("/", 1)[-1], {}), "validation": v} for k, v in results.items()}
        console.print(graphs_table(rows, f"validated {len(results)} graph(s) in {args.bundle}"))
    raise_failures(results)
    return 0
