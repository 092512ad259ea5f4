"""``bindrt build``: TensorRT engines from a bundle's ONNX graphs (imports stay inside ``run``)."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Build one TensorRT engine per input kind from the bundle's ONNX graph of the precision (fp32 and fp16 "
    "from the plain graphs, int8 from the Q/DQ graphs of `bindrt export --nncf`), with one optimisation "
    "profile over batch (and clips for audio/video). The build follows the installed TensorRT's version "
    "(8.6, 10.x before and after 10.12, 11.x). --print-trtexec prints the equivalent trtexec command lines "
    "instead, on any machine (--tensorrt-version names the target where TensorRT is not installed)."
)


def register(sub: argparse._SubParsersAction) -> None:
    from bindrt.tensorrt.adapter import ENGINE_PRECISIONS, HARDWARE_COMPATIBILITY
    from bindrt.tensorrt.plan import DEFAULT_OPT_LEVEL, DEFAULT_WORKSPACE_GIB

    p = sub.add_parser("build", help="build TensorRT engines from a bundle's ONNX graphs", description=DESCRIPTION)
    p.add_argument("bundle", help="bundle directory with exported graphs")
    p.add_argument("--modalities", help="comma-separated modalities (default: all in the bundle)")
    p.add_argument("--kinds", help="comma-separated input kinds (default: every exported kind of those modalities)")
    p.add_argument("--precision", default="fp16", choices=tuple(ENGINE_PRECISIONS), help="default fp16")
    p.add_argument("--batch", default="1:8:32", help="profile MIN:OPT:MAX over the batch axis (default 1:8:32)")
    p.add_argument("--clips", default="1:3:5", help="profile MIN:OPT:MAX over clips (audio, video; default 1:3:5)")
    p.add_argument("--workspace", type=float, default=DEFAULT_WORKSPACE_GIB, help="GiB (default 4)")
    p.add_argument("--opt-level", type=int, default=DEFAULT_OPT_LEVEL, help="builder optimisation level 0-5")
    p.add_argument("--version-compatible", action="store_true", help="engines later TensorRT versions can run")
    p.add_argument("--hardware-compatibility", default="none", choices=tuple(HARDWARE_COMPATIBILITY))
    p.add_argument("--timing-cache", help="timing cache file (default BUNDLE/engines/tensorrt/timing.cache)")
    p.add_argument("--print-trtexec", action="store_true", help="print the trtexec command lines; build nothing")
    p.add_argument("--tensorrt-version", help="with --print-trtexec: the TensorRT to spell the flags for")
    p.add_argument("--json", action="store_true", help="with --print-trtexec: the plans as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from bindrt.bundle import Bundle
    from bindrt.cli import modality_list
    from bindrt.errors import BackendError, ConfigError
    from bindrt.tensorrt.adapter import TrtVersion
    from bindrt.tensorrt.build import ENGINE_DIR, INSTALL_HINT, describe_plans, installed_version, plan_engines
    from bindrt.tensorrt.plan import BuildOptions, Profile, parse_range

    installed = installed_version()
    if args.tensorrt_version and not args.print_trtexec:
        raise ConfigError("--tensorrt-version only applies with --print-trtexec (a build uses the installed TensorRT)")
    if installed is None and not args.print_trtexec:
        raise BackendError(INSTALL_HINT)
    if args.print_trtexec and installed is None and not args.tensorrt_version:
        raise ConfigError("TensorRT is not installed here; name the target with --tensorrt-version (e.g. 10.13)")
    version = TrtVersion.parse(args.tensorrt_version) if args.tensorrt_version else installed
    bundle = Bundle.open(args.bundle)
    timing_cache = args.timing_cache or str(bundle.path / ENGINE_DIR / "timing.cache")
    plans = plan_engines(
        bundle,
        precision=args.precision,
        version=version,
        modalities=modality_list(args.modalities) if args.modalities else None,
        kinds=modality_list(args.kinds) if args.kinds else None,
        profile=Profile(batch=parse_range(args.batch, "batch"), clips=parse_range(args.clips, "clips")),
        options=BuildOptions(
            workspace_gib=args.workspace,
            opt_level=args.opt_level,
            version_compatible=args.version_compatible,
            hardware_compatibility=args.hardware_compatibility,
        ),
        timing_cache=timing_cache,
    )
    if args.print_trtexec:
        if args.json:
            print(json.dumps(describe_plans(plans), indent=1))
        else:
            for p in plans:
                print(f"# {p.modality}/{p.kind} {args.precision}, TensorRT {version}: {'; '.join(p.decisions.notes)}")
                print(p.trtexec_line)
        return 0
    return _build(bundle, plans, timing_cache)


def _build(bundle, plans, timing_cache_path: str) -> int:
    """Build every planned engine (a cache hit where the recorded one was built from the same inputs),
    write it, its inspector JSON and build log into the bundle, and record each in the manifest.

    Never run on a real TensorRT yet (see bindrt.tensorrt.build).
    """
    import time
    from pathlib import Path

    from bindrt.fileio import atomic_write_bytes
    from bindrt.tensorrt.adapter import check_gpu
    from bindrt.tensorrt.build import build_engine
    from bindrt.tensorrt.cuda import gpu_properties
    from bindrt.tensorrt.engines import engine_records, is_cache_hit, make_record, record_engine
    from bindrt.tensorrt.plan import engine_cache_key

    gpu, cc = gpu_properties(0)
    cache_path = Path(timing_cache_path)
    cache = cache_path.read_bytes() if cache_path.is_file() else None
    built = 0
    for plan in plans:
        check_gpu(plan.decisions.version, cc, plan.decisions.precision, gpu)
        graph_sha = bundle.manifest["files"][plan.graph.file]["sha256"]
        key = engine_cache_key(
            onnx_sha256=graph_sha,
            tensorrt_version=str(plan.decisions.version),
            gpu_name=gpu,
            compute_capability=cc,
            shapes=plan.shapes,
            precision=plan.decisions.precision,
            options=plan.options,
        )
        old = engine_records(bundle, plan.modality).get(f"{plan.kind}.{plan.decisions.precision}")
        if is_cache_hit(bundle, old, key):
            print(f"cached {bundle.path / plan.engine_relpath} (same graph, TensorRT, GPU, profile and options)")
            continue
        start = time.perf_counter()
        engine, cache, layers, log = build_engine(plan, cache)
        stem = plan.engine_relpath.removesuffix(".plan")
        bundle.add_file(plan.engine_relpath, lambda tmp, data=engine: tmp.write_bytes(data))
        bundle.add_file(f"{stem}.layers.json", lambda tmp, data=layers: tmp.write_text(data))
        bundle.add_file(f"{stem}.log", lambda tmp, data=log: tmp.write_text(data))
        record_engine(
            bundle,
            make_record(
                plan,
                graph_sha256=graph_sha,
                gpu=gpu,
                compute_capability=cc,
                cache_key=key,
                seconds=time.perf_counter() - start,
                layers=f"{stem}.layers.json",
                log=f"{stem}.log",
            ),
        )
        bundle.save()  # after each engine: an interrupted build keeps the engines it finished
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_path, cache)
        built += 1
        print(f"built {bundle.path / plan.engine_relpath} ({len(engine) / 1e6:.1f} MB)")
    print(f"{built} engine(s) built, {len(plans) - built} cached")
    return 0
