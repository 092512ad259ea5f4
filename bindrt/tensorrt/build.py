"""``bindrt build``: TensorRT engines from a bundle's ONNX graphs, one per input kind.

:func:`plan_engines` decides everything from the manifest and the TensorRT version (no
TensorRT needed: it is what ``--print-trtexec`` prints anywhere); :func:`build_engine` makes
the TensorRT calls, written from NVIDIA's Python API reference and migration guides.

**Never run against a real TensorRT**: no machine this project has reached can install it
(the README's verified-where table says so). The plans, version decisions, trtexec lines and
cache keys are tested; the calls in :func:`build_engine` are not.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from bindrt.bundle import Bundle
from bindrt.errors import BackendError, ConfigError
from bindrt.schema import RAW_KINDS, OnnxGraph, base_kinds, export_hint, graph_key, onnx_graphs
from bindrt.tensorrt.adapter import ENGINE_PRECISIONS, BuildDecisions, TrtVersion, decide
from bindrt.tensorrt.compat import check_graph, raise_if_incompatible
from bindrt.tensorrt.plan import BuildOptions, Profile, command_line, trtexec_command

ENGINE_DIR = "engines/tensorrt"
INSTALL_HINT = (
    "TensorRT is not installed (`import tensorrt` fails); install it from NVIDIA's index "
    "(pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12) on a machine with an NVIDIA GPU, "
    "or print the equivalent trtexec commands anywhere with --print-trtexec --tensorrt-version X.Y"
)


@dataclass(frozen=True)
class EnginePlan:
    """One engine to build: which graph, which shapes, how, and the trtexec line that does the same."""

    modality: str
    kind: str
    graph: OnnxGraph
    onnx_path: Path
    engine_relpath: str
    input_name: str
    shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
    decisions: BuildDecisions
    options: BuildOptions
    trtexec: list[str] = field(default_factory=list)

    @property
    def trtexec_line(self) -> str:
        return command_line(self.trtexec)


def installed_version() -> TrtVersion | None:
    """The installed TensorRT's version, or None where it is absent (never imports it when absent)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt
    except Exception:  # the -libs stubs install a module that cannot load its libraries
        return None
    return TrtVersion.parse(tensorrt.__version__)


def plan_engines(
    bundle: Bundle,
    *,
    precision: str,
    version: TrtVersion,
    modalities: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    profile: Profile = Profile(),
    options: BuildOptions = BuildOptions(),
    timing_cache: str | None = None,
) -> list[EnginePlan]:
    """Every engine ``bindrt build`` would make, in manifest order; errors name the missing export."""
    decisions = decide(version, precision)
    sources = ENGINE_PRECISIONS[precision]
    where = str(bundle.path / "manifest.json")
    records_of = {m: onnx_graphs(bundle.modality(m), where, m) for m in (modalities or bundle.modalities)}
    if modalities:
        mods = list(modalities)
    else:  # every modality exported at this precision
        mods = [m for m, recs in records_of.items() if any((r.precision, r.variant) in sources for r in recs.values())]
        if not mods:
            graph_precision, variant = sources[-1]
            raise BackendError(
                f"bundle {bundle.path} has no {precision} graphs for TensorRT "
                f"({' or '.join(f'{p}.{v}' for p, v in sources)}); "
                + export_hint(bundle.path, bundle.modalities[0], graph_precision, variant).replace(
                    f" --modalities {bundle.modalities[0]}", ""
                )
            )
    plans: list[EnginePlan] = []
    for m in mods:
        records = records_of[m]
        wanted = [k for k in [*base_kinds(m), *RAW_KINDS.get(m, ())] if kinds is None or k in kinds]
        for kind in wanted:
            record = next(
                (records[graph_key(kind, p, v)] for p, v in sources if graph_key(kind, p, v) in records), None
            )
            if record is None:
                if kinds is not None or kind in base_kinds(m):
                    graph_precision, variant = sources[-1]
                    hint = export_hint(bundle.path, m, graph_precision, variant)
                    raise BackendError(
                        f"bundle {bundle.path} has no graph {m}/{graph_key(kind, *sources[0])} "
                        f"to build a {precision} engine from; {hint}"
                    )
                continue  # raw-input graphs are built only where they were exported
            report = check_graph(bundle.path / record.file)  # before TensorRT: a named refusal, not a parser trace
            raise_if_incompatible(report, f"{m}/{record.key}")
            (tensor,) = record.inputs
            shapes = profile.shapes(tensor.shape)
            relpath = f"{ENGINE_DIR}/{m}/{kind}.{precision}.plan"
            onnx_path = bundle.path / record.file
            plan = EnginePlan(m, kind, record, onnx_path, relpath, tensor.name, shapes, decisions, options)
            argv = trtexec_command(
                str(onnx_path), str(bundle.path / relpath), tensor.name, shapes, decisions, options, timing_cache
            )
            plans.append(EnginePlan(**{**plan.__dict__, "trtexec": argv}))
    if kinds is not None:
        unknown = sorted(set(kinds) - {p.kind for p in plans})
        if unknown:
            raise ConfigError(f"--kinds {', '.join(unknown)}: no such input kind in {', '.join(mods)}")
    return plans


def build_engine(plan: EnginePlan, timing_cache: bytes | None = None) -> tuple[bytes, bytes, str, str]:
    """Build one engine with TensorRT -> (serialized engine, serialized timing cache, inspector JSON, build log).

    Written from NVIDIA's documentation; not yet run on a real TensorRT (see the module docstring).
    """
    import tensorrt as trt

    class CapturingLogger(trt.ILogger):  # the build log is kept beside the engine
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity <= trt.ILogger.INFO:
                self.lines.append(f"[{str(severity).rsplit('.', 1)[-1]}] {msg}")

    d = plan.decisions
    logger = CapturingLogger()
    builder = trt.Builder(logger)
    flags = 0
    for name in d.network_flag_names():
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(plan.onnx_path)):  # reads external data beside the file
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT's ONNX parser rejected {plan.graph.file}: {errors[:500]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.options.workspace_bytes)
    config.builder_optimization_level = plan.options.opt_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer inspector JSON
    for name in d.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if d.clear_tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    if plan.options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if plan.options.hardware_compatibility != "none":
        from bindrt.tensorrt.adapter import check_hardware_compatibility

        member = check_hardware_compatibility(plan.options.hardware_compatibility)[0]
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, member)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    profile.set_shape(plan.input_name, *plan.shapes)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT could not build {plan.graph.file} at {plan.decisions.precision} (see its log)")
    engine_bytes = bytes(serialized)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    inspector = engine.create_engine_inspector()
    layers = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    log = "\n".join(logger.lines) + "\n"
    return engine_bytes, bytes(config.get_timing_cache().serialize()), layers, log


def describe_plans(plans: Sequence[EnginePlan]) -> list[dict[str, Any]]:
    """What ``bindrt build --print-trtexec --json`` prints per engine."""
    return [
        {
            "modality": p.modality,
            "kind": p.kind,
            "graph": p.graph.file,
            "engine": p.engine_relpath,
            "input": p.input_name,
            "shapes": {"min": list(p.shapes[0]), "opt": list(p.shapes[1]), "max": list(p.shapes[2])},
            "tensorrt": str(p.decisions.version),
            "strongly_typed": p.decisions.strongly_typed,
            "builder_flags": list(p.decisions.builder_flags),
            "notes": list(p.decisions.notes),
            "trtexec": p.trtexec_line,
        }
        for p in plans
    ]
