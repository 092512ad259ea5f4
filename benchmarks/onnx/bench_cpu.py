"""bindrt's CPU configurations against the peers a user could pick without bindrt, side by side, per precision tier.

One run measures, for each tower asked for (``--modalities depth,audio``; default depth:
384 wide, 12 blocks, 8 heads, 197 tokens; audio: 768 wide, 12 blocks, 229 tokens, 3 clips)
of one preset (default ``imagebind_huge``, random weights), at batch 1 and 8 with one
thread count, two sides on the same inputs:

* **bindrt** -- what a bindrt user gets through the public API, on a bundle exported with
  bindrt's defaults (pooled last block; fp32 and int8, plain and fused; the NNCF graph
  ``<kind>.int8.nncf`` too where ``export_bundle`` takes ``nncf``):
  ``bindrt.load(bundle, backend=B, precision=P, modalities=[kind], **options)`` then
  ``model.encode(kind, x)``, numpy in and out. Rows ``bindrt_<backend>_<precision>[_<variant>]``:
  onnxruntime fp32 / int8, each ``plain`` and ``fused`` (``intra_op_num_threads``); openvino
  fp32, bf16 (where the CPU offers BF16) and int8 (``inference_num_threads``,
  ``performance_hint="LATENCY"``). Each row records the graph file the backend ran (its
  ``describe()["graphs"]``); one that does not load is skipped with the reason recorded.
* **peers** -- what a user does without bindrt, on the reference-trace graph: a second
  bundle with the same weights (built from the same seed, checked by checksum) exported at
  fp32 with ``pooled_last_block=False`` (``bindrt export --full-last-block``): ``torch_eager``
  (torch fp32, the reference every row is compared with), ``torch_bf16_autocast``,
  ``torch_compile`` (``--compile``), ``ort_fp32`` (a plain ``onnxruntime.InferenceSession``),
  ``ort_int8_dynamic`` (``quantize_dynamic(..., weight_type=QuantType.QInt8)``, the default
  recipe), ``openvino_fp32`` / ``openvino_bf16`` (precision hint f32 / bf16, static batch
  shape) and ``openvino_nncf_int8`` (``nncf.quantize`` calibrated on the real inputs,
  ``ModelType.TRANSFORMER``, compiled at f32).

Informational rows, on neither side: ``torch_eager_pooled`` (torch running ``embed_pooled``,
the last block for the pooled token only, as bindrt's graphs do: how much of bindrt's
speed-up is the graph doing less work rather than a runtime running it faster) and, with
``--static``, ``ort_int8_static`` / ``ort_fused_int8_static`` (static QDQ int8 of bindrt's
fp32 graphs, outside the bundle).

Every row is compared with torch_eager on the same inputs (min cosine, max row-relative
diff) and so placed in a precision tier (``bindrt.tiers``: exact, near-exact, int8); the
engines are timed round by round in interleaved cycles so that machine noise hits all of
them alike. The report gives, per tower, batch and tier, the fastest bindrt row against
the fastest peer row (issue 15: bindrt at least as fast in every tier), and bindrt's
near-exact speed-up over torch eager (the >= 4x target applies to AMX CPUs).

    python -m benchmarks.onnx.bench_cpu                              # depth, batch 1 and 8
    python -m benchmarks.onnx.bench_cpu --modalities depth,audio    # both towers, one report
    python -m benchmarks.onnx.bench_cpu --modality audio --rounds 15 --cpu-time

Writes ``benchmarks/results/<date>-<cpu>/onnx/<date>-cpu.{json,md}`` (``benchmarks/README.md``:
results layout). Not a test: timings depend on the machine (and on whatever else runs on
it; the load average and the CPU time of other processes are recorded).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.common import machine_info, machine_summary, versions_summary, write_report
from bindrt.bench import contention, cpu_counters, max_row_rel_diff

#: bindrt's configurations: (row name, backend, precision, backend options besides the thread count).
BINDRT_CONFIGS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("bindrt_onnxruntime_fp32_plain", "onnxruntime", "fp32", {"variant": "plain"}),
    ("bindrt_onnxruntime_fp32_fused", "onnxruntime", "fp32", {"variant": "fused"}),
    ("bindrt_onnxruntime_int8_plain", "onnxruntime", "int8", {"variant": "plain"}),
    ("bindrt_onnxruntime_int8_fused", "onnxruntime", "int8", {"variant": "fused"}),
    ("bindrt_openvino_fp32", "openvino", "fp32", {}),
    ("bindrt_openvino_bf16", "openvino", "bf16", {}),
    ("bindrt_openvino_int8", "openvino", "int8", {}),
)
BINDRT_PREFIX = "bindrt_"
#: The peer side: what a CPU user picks without bindrt, on the reference-trace graph.
PEERS = (
    "torch_eager",
    "torch_bf16_autocast",
    "torch_compile",
    "ort_fp32",
    "ort_int8_dynamic",
    "openvino_fp32",
    "openvino_bf16",
    "openvino_nncf_int8",
)
#: Rows measured for reading the others, on neither side.
INFORMATIONAL = ("torch_eager_pooled", "ort_int8_static", "ort_fused_int8_static")
REFERENCE = "torch_eager"


def side_of(name: str) -> str | None:
    """'bindrt' (``bindrt_*`` rows), 'peers' (:data:`PEERS`), None for informational rows."""
    if name.startswith(BINDRT_PREFIX):
        return "bindrt"
    return "peers" if name in PEERS else None


def bundle_path(workdir: Path | str, preset: str, modality: str) -> Path:
    """Where ``bench_cpu.py --workdir`` keeps the bindrt bundle (default export) the other scripts time."""
    return Path(workdir) / f"{preset}-{modality}"


def peer_bundle_path(workdir: Path | str, preset: str, modality: str) -> Path:
    """The same weights exported with ``--full-last-block`` (the reference trace): the peers' graph."""
    return Path(workdir) / f"{preset}-{modality}-full-last-block"


def build_bundle(modality: str, out: Path, seed: int, preset: str = "imagebind_huge") -> None:
    import torch

    from bindrt.bundle import write_bundle
    from bindrt.config import PRESETS
    from bindrt.model import build_encoder
    from bindrt.model.checkpoint import to_reference_key

    torch.manual_seed(seed)
    config = PRESETS[preset]
    encoder = build_encoder(modality, config)
    weights = {to_reference_key(modality, k): v for k, v in encoder.state_dict().items()}
    write_bundle(out, config, {modality: weights}, stage="bench", overwrite=True)


def input_batch(modality: str, batch: int, seed: int = 0, suite: str = "real") -> np.ndarray:
    """The export validation's ``suite`` (``real``: sample media; ``random``: the layout's seeded random
    inputs), tiled to the batch size."""
    from bindrt.export.validate import suite_inputs

    x, _ = suite_inputs(modality, suite)
    reps = -(-batch // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:batch])


def make_session(
    path: Path | bytes, threads: int, opt_level: str = "all", spinning: bool = True, profile_prefix: str | None = None
):
    """bindrt's loader's session on a graph (sequential, one inter-op thread): for the static rows and the other scripts."""
    from bindrt.loaders import OrtSessionOptions, SessionFromOnnx

    options = OrtSessionOptions(
        intra_op_num_threads=threads,
        inter_op_num_threads=1,
        optimization_level=opt_level,
        sequential=True,
        profile_prefix=profile_prefix,
        config={} if spinning else {"session.intra_op.allow_spinning": "0"},
    )
    sess = SessionFromOnnx(path, options)()
    sess._bindrt_path = None if isinstance(path, bytes) else str(path)
    return sess


def plain_session(path: Path, threads: int):
    """What a user writes: ``onnxruntime.InferenceSession`` with default graph optimisations, ``threads`` intra-op."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if threads == 1:  # the CPU-time cross-check: no spin-waiting
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0]


def ov_capabilities() -> list[str] | None:
    """OpenVINO's CPU ``OPTIMIZATION_CAPABILITIES`` (BF16 among them on AVX512-BF16 / AMX CPUs); None without openvino."""
    try:
        import openvino as ov
    except ImportError:
        return None
    return [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def openvino_engine(path: Path | str, threads: int, batch_shape: tuple[int, ...], hint: str = "f32"):
    """OpenVINO on a graph file (ONNX or IR) at an explicit inference precision (latency hint, static batch shape).

    None without openvino, or when the CPU lacks the precision (bf16 needs BF16 in its capabilities):
    OpenVINO would otherwise pick bf16 by itself on AMX CPUs, so every row names its hint.
    """
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    if hint != "f32" and hint.upper() not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return None
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): list(batch_shape)})
    compiled = core.compile_model(
        model,
        "CPU",
        {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint},
    )
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})[compiled.outputs[0]]


def ov_version() -> str:
    from importlib import metadata

    return metadata.version("openvino")


def interleaved(calls: dict, rounds: int, warmup: int, clock, block: int = 4) -> dict[str, list[list[float]]]:
    """Time the engines in blocks of ``block + 1`` consecutive calls, cycling through them (order
    alternating each cycle) until each has ``rounds`` timed calls; returns, per engine, the
    seconds per call of each cycle's block.

    The first call of every block is not timed: thread pools of the engine that ran before
    (ONNX Runtime's spinning workers, OpenMP's spin-wait) may still hold the cores for a
    moment after their last call, which would otherwise be charged to the next engine.
    Keeping the cycles lets :func:`paired_speedup` compare engines within one cycle.
    """
    blocks: dict[str, list[list[float]]] = {name: [] for name in calls}
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    cycle = 0
    while min(sum(map(len, b)) for b in blocks.values()) < rounds:
        order = list(calls) if cycle % 2 == 0 else list(reversed(list(calls)))
        for name in order:
            calls[name]()  # settle: not timed
            done = sum(map(len, blocks[name]))
            this: list[float] = []
            for _ in range(max(min(block, rounds - done), 1)):
                start = clock()
                calls[name]()
                this.append(clock() - start)
            blocks[name].append(this)
        cycle += 1
    return blocks


def paired_speedup(blocks: dict[str, list[list[float]]], base: str, name: str) -> float:
    """Median over cycles of (base's block median / name's block median).

    This VM's neighbours slow it down in bursts of seconds; a burst inflates every engine
    that runs during it, so comparing two engines within one cycle (both measured within
    about a second) and taking the median over cycles is far less noisy than the ratio of
    the overall medians.
    """
    return statistics.median(statistics.median(b) / statistics.median(e) for b, e in zip(blocks[base], blocks[name]))


def flat(blocks: list[list[float]]) -> list[float]:
    return [t for b in blocks for t in b]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).min())


def best_per_tier(rows: dict[str, dict], basis: str = "tier") -> dict[str, dict]:
    """Per precision tier, the fastest row (by median) that meets it, bindrt's and the peers' apart.

    ``basis``: the row field holding the tier met: ``tier`` (on the real-media inputs) or
    ``tier_any_input`` (on those and the layout's random inputs: an engine whose static int8
    ranges only cover real media falls out there).

    Sides by row name (:func:`side_of`): ``bindrt_*`` rows against :data:`PEERS`; informational
    rows compete on neither side. A row meets its own tier and every looser one. Each entry:
    ``bindrt`` / ``peers`` (row names or None), their ``*_ms`` medians and ``peer_over_bindrt``
    (peer ms / bindrt ms: >= 1 when bindrt is at least as fast).
    """
    from bindrt.tiers import TIERS

    order = list(TIERS)
    out: dict[str, dict] = {}
    for tier in order:
        qualifying = {
            name: r
            for name, r in rows.items()
            if (met := r.get(basis)) is not None and order.index(met) <= order.index(tier)
        }
        entry: dict[str, Any] = {}
        for side in ("bindrt", "peers"):
            group = {n: r for n, r in qualifying.items() if side_of(n) == side}
            best = min(group, key=lambda n: group[n]["median_ms"]) if group else None
            entry[side] = best
            entry[f"{'bindrt' if side == 'bindrt' else 'peer'}_ms"] = group[best]["median_ms"] if best else None
        ours, peer = entry["bindrt_ms"], entry["peer_ms"]
        entry["peer_over_bindrt"] = round(peer / ours, 3) if ours and peer else None
        out[tier] = entry
    return out


def verdict(best: dict[str, dict[str, dict]]) -> dict[str, Any]:
    """Whether bindrt's fastest row is at least as fast as the fastest peer in every (batch, tier).

    ``best``: batch -> :func:`best_per_tier`. A tier no bindrt row meets is a miss; one no peer
    meets is not. ``missed_by``: how much slower bindrt is where it is slowest (bindrt ms / peer
    ms - 1); ``unmet_tiers``: (batch, tier) pairs a peer meets and no bindrt row does.
    """
    misses, unmet, worst = [], [], None
    for batch, tiers in best.items():
        for tier, e in tiers.items():
            if e["peers"] is None:
                continue
            if e["bindrt"] is None:
                unmet.append([batch, tier])
                misses.append({"batch": batch, "tier": tier, "why": f"no bindrt row meets it ({e['peers']} does)"})
            elif e["bindrt_ms"] > e["peer_ms"]:
                short = e["bindrt_ms"] / e["peer_ms"] - 1
                misses.append(
                    {"batch": batch, "tier": tier, "why": f"{e['bindrt']} vs {e['peers']}", "by": round(short, 4)}
                )
                worst = max(worst or 0.0, short)
    return {
        "met": not misses,
        "missed_by": None if worst is None else round(worst, 4),
        "unmet_tiers": unmet,
        "misses": misses,
    }


def near_exact_vs_torch(best: dict[str, dict[str, dict]], results: dict[str, dict], amx: bool) -> dict[str, Any]:
    """Per batch: bindrt's fastest near-exact row over torch eager (target >= 4x on AMX CPUs)."""
    out: dict[str, Any] = {}
    for batch, tiers in best.items():
        ours = tiers["near-exact"]["bindrt"]
        ratio = round(results[batch][REFERENCE]["median_ms"] / results[batch][ours]["median_ms"], 3) if ours else None
        out[batch] = {"bindrt": ours, "speedup_vs_torch_eager": ratio, "target": 4.0, "target_applies": amx}
    return out


# ----------------------------------------------------------------------------- engines
class Skip(Exception):
    """An engine that cannot run here; its message is recorded in the report (``engines[...]["skipped"]``)."""


#: An engine at a thread count: (call on a numpy batch, what to record about it).
Made = tuple[Callable[[np.ndarray], Any], dict[str, Any]]


@dataclass
class Engine:
    name: str
    what: str
    make: Callable[[int], Made]  # threads -> (call, info); raises Skip
    cpu_time: bool = True  # part of the single-thread CPU-time cross-check


def per_shape(make_for_shape: Callable[[tuple[int, ...]], Callable[[np.ndarray], Any]]) -> Callable[[np.ndarray], Any]:
    """A call that compiles for each new batch shape on first sight (OpenVINO peers run static shapes)."""
    compiled: dict[tuple[int, ...], Callable[[np.ndarray], Any]] = {}

    def call(x: np.ndarray):
        if x.shape not in compiled:
            compiled.clear()  # one batch size at a time: free the last one's compiled model
            compiled[x.shape] = make_for_shape(x.shape)
        return compiled[x.shape](x)

    return call


def once(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run on the first call only (graph preparation shared by the multi- and single-thread engines)."""
    memo: list[Any] = []

    def wrapped():
        if not memo:
            memo.append(fn())
        return memo[0]

    return wrapped


def torch_engines(encoder, pooled, compile_: bool) -> list[Engine]:
    """Torch fp32 (the reference), its bf16 autocast, torch.compile (optional), and embed_pooled (informational)."""
    import torch

    def eager(threads: int) -> Made:
        return (lambda x: encoder(torch.from_numpy(x))), {}

    def bf16(threads: int) -> Made:
        def call(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return encoder(torch.from_numpy(x)).float()

        return call, {}

    def compiled(threads: int) -> Made:
        fn = torch.compile(encoder, dynamic=False)
        return (lambda x: fn(torch.from_numpy(x))), {}

    engines = [
        Engine(
            REFERENCE, "bindrt's torch encoder, the reference forward (eager fp32): the baseline of every row", eager
        ),
        Engine("torch_bf16_autocast", "the torch encoder under torch.autocast('cpu', dtype=torch.bfloat16)", bf16),
    ]
    if compile_:
        engines.append(
            Engine("torch_compile", "torch.compile(encoder) (inductor, static shapes), fp32", compiled, cpu_time=False)
        )
    engines.append(
        Engine(
            "torch_eager_pooled",
            "informational: the torch encoder's embed_pooled (last block for the pooled token only, as bindrt's graphs)",
            lambda threads: ((lambda x: pooled(torch.from_numpy(x))), {}),
        )
    )
    return engines


def bindrt_engines(bundle_dir: Path, kind: str, batch_size: int) -> list[Engine]:
    """bindrt's configurations through the public API on the default-exported bundle."""
    from bindrt.bundle import Bundle
    from bindrt.schema import graph_records

    records = graph_records(Bundle.open(bundle_dir).modality(kind))
    by_file = {r["file"]: r for r in records.values()}
    caps = ov_capabilities()

    def make(name: str, backend: str, precision: str, options: dict[str, Any]) -> Callable[[int], Made]:
        def opened(threads: int) -> Made:
            import bindrt
            from bindrt.errors import BindrtError

            if backend == "openvino" and precision == "bf16" and caps is not None and "BF16" not in caps:
                raise Skip(f"the CPU offers no BF16 to OpenVINO (OPTIMIZATION_CAPABILITIES: {', '.join(caps)})")
            opts = dict(options)
            if backend == "onnxruntime":
                opts["intra_op_num_threads"] = threads
            else:
                opts.update(inference_num_threads=threads, performance_hint="LATENCY")
            try:
                model = bindrt.load(
                    bundle_dir, backend=backend, precision=precision, modalities=[kind], batch_size=batch_size, **opts
                )
            except BindrtError as exc:
                raise Skip(f"bindrt.load failed: {type(exc).__name__}: {exc}") from exc
            described = model.backend.describe()
            graph = described["graphs"][kind]
            record = by_file.get(graph["file"], {})
            info = {
                "load": f"bindrt.load(bundle, backend={backend!r}, precision={precision!r}, modalities=[{kind!r}], "
                + ", ".join(f"{k}={v!r}" for k, v in opts.items())
                + ")",
                "graph": graph["file"],
                "graph_variant": graph["variant"],
                "pooled_last_block": record.get("pooled_last_block"),
                "quantization": (record.get("quantization") or {}).get("method"),
                "validation_worst": (record.get("validation") or {}).get("worst"),
            }
            if backend == "openvino":
                info["inference_precision"] = described.get("inference_precision")
            return (lambda x: model.encode(kind, x)), info

        return opened

    return [
        Engine(
            name,
            f"bindrt {backend} {precision}" + (f" ({o['variant']})" if o else ""),
            make(name, backend, precision, o),
        )
        for name, backend, precision, o in BINDRT_CONFIGS
    ]


def peer_engines(peer_dir: Path, kind: str, work: Path) -> list[Engine]:
    """The peers on the reference-trace fp32 graph: plain ONNX Runtime (fp32, default int8), OpenVINO (f32, bf16, NNCF)."""
    from bindrt.bundle import Bundle
    from bindrt.schema import graph_records

    bundle = Bundle.open(peer_dir)
    record = graph_records(bundle.modality(kind))[f"{kind}.fp32"]
    full = bundle.file(record["file"])
    graph_info = {
        "graph": f"{peer_dir.name}/{record['file']}",
        "pooled_last_block": record.get("pooled_last_block", False),
    }
    out_dir = work / f"{peer_dir.name}-peers"
    out_dir.mkdir(parents=True, exist_ok=True)

    def derived(path: Path) -> dict[str, Any]:
        """A graph quantized from the full fp32 graph: what ran, and what it came from."""
        return {**graph_info, "graph": f"{out_dir.name}/{path.name}", "source_graph": graph_info["graph"]}

    @once
    def int8_dynamic() -> tuple[Path, float]:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        t0 = time.perf_counter()
        path = out_dir / f"{kind}.int8.dynamic.onnx"
        quantize_dynamic(str(full), str(path), weight_type=QuantType.QInt8)
        return path, round(time.perf_counter() - t0, 1)

    @once
    def nncf_int8() -> tuple[Path, float]:
        try:
            import nncf
            import openvino as ov
        except ImportError as exc:
            raise Skip(f"needs nncf and openvino: {exc}") from exc
        from bindrt.export.validate import suite_inputs

        t0 = time.perf_counter()
        x, _ = suite_inputs(kind, "real")
        calib = [x[i : i + 1] for i in range(len(x))]
        core = ov.Core()
        quantized = nncf.quantize(
            core.read_model(str(full)),
            nncf.Dataset(calib),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calib),
        )
        path = out_dir / f"{kind}.nncf_int8.xml"
        ov.save_model(quantized, str(path), compress_to_fp16=False)
        return path, round(time.perf_counter() - t0, 1)

    def ort_fp32(threads: int) -> Made:
        return plain_session(full, threads), dict(graph_info)

    def ort_int8(threads: int) -> Made:
        path, seconds = int8_dynamic()
        return plain_session(path, threads), {
            **derived(path),
            "quantized": "quantize_dynamic(full fp32 graph, weight_type=QuantType.QInt8)",
            "quantize_seconds": seconds,
        }

    def openvino(hint: str, path_of: Callable[[], tuple[Path, float | None]]) -> Callable[[int], Made]:
        def opened(threads: int) -> Made:
            caps = ov_capabilities()
            if caps is None:
                raise Skip("the openvino package is not installed")
            if hint != "f32" and hint.upper() not in caps:
                raise Skip(
                    f"the CPU offers no {hint.upper()} to OpenVINO (OPTIMIZATION_CAPABILITIES: {', '.join(caps)})"
                )
            path, seconds = path_of()
            info = {**graph_info, "openvino": ov_version(), "inference_precision": hint}
            if path != full:
                info.update(
                    derived(path),
                    quantized=f"nncf.quantize(full fp32 graph, ModelType.TRANSFORMER, the {kind} real suite one by one)",
                    quantize_seconds=seconds,
                )
            return per_shape(lambda shape: openvino_engine(path, threads, shape, hint)), info

        return opened

    return [
        Engine(
            "ort_fp32",
            "onnxruntime.InferenceSession on the full-last-block fp32 graph (default optimisations)",
            ort_fp32,
        ),
        Engine(
            "ort_int8_dynamic", "onnxruntime.quantization.quantize_dynamic (QInt8 weights), plain session", ort_int8
        ),
        Engine(
            "openvino_fp32",
            "OpenVINO, INFERENCE_PRECISION_HINT f32, LATENCY hint",
            openvino("f32", lambda: (full, None)),
        ),
        Engine(
            "openvino_bf16",
            "OpenVINO, INFERENCE_PRECISION_HINT bf16, LATENCY hint",
            openvino("bf16", lambda: (full, None)),
        ),
        Engine(
            "openvino_nncf_int8",
            "nncf.quantize(TRANSFORMER) on the real inputs, OpenVINO f32 hint",
            openvino("f32", nncf_int8),
        ),
    ]


def static_engines(bundle_dir: Path, kind: str, work: Path) -> list[Engine]:
    """Informational (``--static``): static QDQ int8 (MinMax on real inputs) of bindrt's fp32 graphs, outside the bundle."""
    from bindrt.bundle import Bundle
    from bindrt.schema import graph_records

    bundle = Bundle.open(bundle_dir)
    records = graph_records(bundle.modality(kind))

    def make(name: str, key: str) -> Callable[[int], Made]:
        @once
        def quantized() -> tuple[Path, str, int]:
            import onnx

            from bindrt.export.int8 import quantize
            from bindrt.export.validate import calibration_feeds

            feeds = calibration_feeds(kind, kind)
            q, summary = quantize(onnx.load(str(bundle.file(records[key]["file"]))), method="static", calibration=feeds)
            path = work / f"{bundle_dir.name}-{name}.onnx"
            onnx.save_model(q, str(path))
            return path, summary["method"], len(feeds)

        def opened(threads: int) -> Made:
            if key not in records:
                raise Skip(f"the bundle has no {key} graph")
            path, method, n = quantized()
            sess = make_session(path, threads, spinning=threads > 1)
            info = {
                "graph": f"{key} quantized statically (QDQ, per-channel, MinMax on {n} real inputs)",
                "quantization": method,
            }
            return (lambda x: sess.run(None, {kind: x})[0]), info

        return opened

    return [
        Engine(
            "ort_int8_static",
            "informational: static QDQ int8 of the bindrt fp32 graph",
            make("ort_int8_static", f"{kind}.fp32"),
        ),
        Engine(
            "ort_fused_int8_static",
            "informational: static QDQ int8 of the bindrt fused fp32 graph",
            make("ort_fused_int8_static", f"{kind}.fp32.fused"),
        ),
    ]


def tolerated(name: str) -> tuple[type[BaseException], ...]:
    """What makes an engine skipped rather than the run fail: the reference never; bindrt's rows a
    BindrtError (anything else is a bug to see); a peer's or informational row's own failure (a
    quantizer or compiler of another project) anything."""
    from bindrt.errors import BindrtError

    if name == REFERENCE:
        return (Skip,)
    return (Skip, BindrtError) if side_of(name) == "bindrt" else (Exception,)


def why(exc: BaseException) -> str:
    if isinstance(exc, Skip):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def open_engines(engines: list[Engine], threads: int, info: dict[str, dict], only_cpu_time: bool = False) -> dict:
    """``name -> call`` of the engines that open at ``threads``; the others are recorded as skipped in ``info``."""
    calls = {}
    for e in engines:
        if only_cpu_time and not e.cpu_time:
            continue
        entry = info.setdefault(e.name, {"what": e.what, "side": side_of(e.name) or "informational"})
        try:
            calls[e.name], extra = e.make(threads)
        except tolerated(e.name) as exc:
            entry["skipped"] = why(exc)
            print(f"  skipped {e.name}: {entry['skipped']}", flush=True)
            continue
        if not only_cpu_time:
            entry.update(extra)
    return calls


# ----------------------------------------------------------------------------- bundles
def export_supports(name: str) -> bool:
    """Whether ``export_bundle`` takes the keyword ``name`` (``bindrt.export.export_bundle`` is a lazy
    ``*args, **kwargs`` wrapper: then the pipeline's own signature decides)."""
    from bindrt.export import export_bundle

    params = inspect.signature(export_bundle).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        from bindrt.export.pipeline import export_bundle as real

        params = inspect.signature(real).parameters
    return name in params


def same_weights(a: Path, b: Path, kind: str) -> bool:
    """Whether two bundles hold the same tensors for ``kind`` (the files' bytes may differ: safetensors'
    metadata order is not fixed)."""
    from safetensors.numpy import load_file

    wa, wb = (load_file(str(d / "weights" / f"{kind}.safetensors")) for d in (a, b))
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def prepare_bundles(args: argparse.Namespace, work: Path, kind: str) -> tuple[Path, Path, dict[str, Any]]:
    """The bindrt bundle (default export) and the peers' (same weights, full last block): built, or reused from --workdir.

    Returns both paths and what the export did: ``seconds`` per bundle (None: reused) and ``nncf``
    (whether the NNCF graph was exported, or why not: the option missing from ``export_bundle``, or
    no NNCF recipe meeting the int8 tolerance -- then the bundle is exported without it).
    """
    from bindrt.bundle import Bundle
    from bindrt.errors import ExportError
    from bindrt.export import export_bundle
    from bindrt.schema import graph_records

    progress = lambda m: print("  " + m, flush=True)  # noqa: E731
    export: dict[str, Any] = {"seconds": {"bindrt": None, "peers": None}, "nncf": None}
    ours = bundle_path(work, args.preset, kind)
    if not (ours / "manifest.json").exists() or args.rebuild:
        t0 = time.perf_counter()
        print(f"building {args.preset} {kind} bundle (random weights, seed {args.seed}) in {ours}", flush=True)
        build_bundle(kind, ours, args.seed, args.preset)
        common = dict(modalities=[kind], precisions=("fp32", "int8"), fused=True, int8_method=args.int8_method)
        if not export_supports("nncf"):
            export["nncf"] = "not exported: export_bundle has no nncf option"
        else:
            print("exporting fp32 / int8 / fused / nncf with bindrt's defaults (validated at export)", flush=True)
            try:
                export_bundle(ours, nncf=True, progress=progress, **common)
                export["nncf"] = "exported"
            except ExportError as exc:
                if "nncf" not in str(exc).lower():
                    raise
                export["nncf"] = f"not exported: {exc}"
                print(f"  the NNCF graph failed its export ({exc}); exporting without it", flush=True)
        if export["nncf"] != "exported":
            print("exporting fp32 / int8 / fused with bindrt's defaults (validated at export)", flush=True)
            export_bundle(ours, progress=progress, **common)
        export["seconds"]["bindrt"] = round(time.perf_counter() - t0, 1)
    else:
        variants = {r.get("variant") for r in graph_records(Bundle.open(ours).modality(kind)).values()}
        export["nncf"] = "reused bundle: " + ("has" if "nncf" in variants else "has no") + " NNCF graph"
    peers = peer_bundle_path(work, args.preset, kind)
    if not (peers / "manifest.json").exists() or args.rebuild:
        t0 = time.perf_counter()
        print(
            f"building the same weights in {peers}; exporting fp32 with --full-last-block (the reference trace)",
            flush=True,
        )
        build_bundle(kind, peers, args.seed, args.preset)
        export_bundle(peers, modalities=[kind], precisions=("fp32",), pooled_last_block=False, progress=progress)
        export["seconds"]["peers"] = round(time.perf_counter() - t0, 1)
    if not same_weights(ours, peers, kind):
        raise SystemExit(f"{ours} and {peers} hold different weights: rerun with --rebuild")
    return ours, peers, export


# ----------------------------------------------------------------------------- running
def run(args: argparse.Namespace) -> dict:
    import torch

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bindrt-bench-onnx-"))
    load_before = os.getloadavg()
    counters_before = cpu_counters()
    machine = machine_info()
    amx = "amx_bf16" in machine.get("cpu_flags", [])
    models, engines, results, cpu_time, export = {}, {}, {}, {}, {}
    best, verdicts, vs_torch, best_any, verdicts_any = {}, {}, {}, {}, {}
    for kind in args.modalities:
        print(f"== {kind}", flush=True)
        measured = measure_modality(args, kind, work, threads)
        models[kind], engines[kind], results[kind], cpu_time[kind], export[kind] = measured
        best[kind] = {batch: best_per_tier_paired(rows, blocks) for batch, (rows, blocks) in results[kind].items()}
        best_any[kind] = {
            batch: best_per_tier_paired(rows, blocks, "tier_any_input")
            for batch, (rows, blocks) in results[kind].items()
        }
        results[kind] = {batch: rows for batch, (rows, _) in results[kind].items()}
        verdicts[kind] = verdict(best[kind])
        verdicts_any[kind] = verdict(best_any[kind])
        vs_torch[kind] = near_exact_vs_torch(best[kind], results[kind], amx)
        torch.set_num_threads(threads)
    load_after = os.getloadavg()
    cpu_share = contention(counters_before, cpu_counters())
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    all_met = all(v["met"] for v in verdicts.values())
    return {
        "benchmark": "bindrt CPU configurations vs peers per precision tier (issue 15)",
        "date": machine["date"],
        "model": {
            "preset": args.preset,
            "modalities": list(args.modalities),
            "weights": f"random (build_encoder, seed {args.seed})",
            "towers": models,
        },
        "inputs": "timed on the export validation's real-media suite (bindrt.export.validate.suite_inputs), tiled to "
        "the batch; accuracy on it ('tier') and also on the suite of layout-random inputs ('tier_any_input')",
        "threads": threads,
        "int8_method": args.int8_method,
        "machine": machine,
        "amx_bf16": amx,
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]},
        "cpu_share": cpu_share,
        "export": export,
        "sides": {"bindrt": f"rows named {BINDRT_PREFIX}*", "peers": list(PEERS), "informational": list(INFORMATIONAL)},
        "engines": engines,
        "results": results,
        "best_per_tier": best,
        "verdict": {"met": all_met, "per_modality": verdicts},
        "best_per_tier_any_input": best_any,
        "verdict_any_input": {"met": all(v["met"] for v in verdicts_any.values()), "per_modality": verdicts_any},
        "near_exact_vs_torch_eager": vs_torch,
        "single_thread_cpu_time": cpu_time,
        "method": f"{args.warmup} warm-up calls per engine, then cycles over all engines (order alternating) of 1 untimed "
        "+ 4 timed consecutive calls each, until every engine has its rounds; median and min per engine; "
        "speed-ups = torch time / engine time in the same run: 'paired' = median over cycles of the ratio of "
        "the two engines' block medians within the cycle (robust to the VM's bursts of slowdown), 'of medians' "
        "and 'of minima' over all calls; tiers from each row's outputs vs torch_eager on the same inputs, "
        "fastest per side by median",
    }


def best_per_tier_paired(
    rows: dict[str, dict], blocks: dict[str, list[list[float]]], basis: str = "tier"
) -> dict[str, dict]:
    """:func:`best_per_tier` plus, where both sides have a row, the paired ratio (peer over bindrt, within cycles)."""
    best = best_per_tier(rows, basis)
    for entry in best.values():
        if entry["bindrt"] and entry["peers"]:
            entry["peer_over_bindrt_paired"] = round(paired_speedup(blocks, entry["peers"], entry["bindrt"]), 3)
    return best


def measure_modality(args: argparse.Namespace, kind: str, work: Path, threads: int):
    """(model info, engine info, batch -> (rows, blocks), single-thread CPU time, what the export did) of one tower."""
    from bindrt.bundle import Bundle
    from bindrt.export.torch_export import wrap
    from bindrt.model import load_encoder

    ours, peers, export = prepare_bundles(args, work, kind)
    bundle = Bundle.open(ours)
    encoder = load_encoder(kind, bundle.config, bundle.load_weights(kind))
    pooled = wrap(kind, encoder, pooled_last_block=True)  # what bindrt's graphs trace (clip axis folded)
    model = {
        "embed_dim": bundle.config.embed_dim(kind),
        "blocks": bundle.config.num_blocks(kind),
        "heads": bundle.config.num_heads(kind),
        "bindrt_bundle": ours.name,
        "peer_bundle": peers.name,
    }
    engines = torch_engines(encoder, pooled, args.compile) + bindrt_engines(ours, kind, max(args.batches))
    engines += peer_engines(peers, kind, work)
    engines += static_engines(ours, kind, work) if args.compare_static else []
    info: dict[str, dict] = {}
    if not args.openvino:
        for e in engines:
            if "openvino" in e.name:
                info[e.name] = {"what": e.what, "side": side_of(e.name) or "informational", "skipped": "--no-openvino"}
        engines = [e for e in engines if "openvino" not in e.name]
    print(f"opening {len(engines)} engines at {threads} threads", flush=True)
    calls = open_engines(engines, threads, info)
    results = time_engines(args, kind, encoder, calls, info)
    del calls
    gc.collect()
    cpu_time = single_thread_cpu_time(args, kind, engines, info) if args.cpu_time_check else {}
    return model, info, results, cpu_time, export


def first_outputs(calls: dict, x: np.ndarray, info: dict[str, dict], batch: int) -> dict[str, np.ndarray]:
    """Every engine's output on ``x`` (compiling what compiles on first sight); one that fails is dropped, with why."""
    outputs = {}
    for name in list(calls):
        try:
            outputs[name] = np.asarray(calls[name](x), dtype=np.float32)
        except tolerated(name) as exc:  # an engine that opens but cannot run: recorded, not fatal
            info[name]["skipped"] = f"batch {batch}: {why(exc)}"
            print(f"  skipped {name}: {info[name]['skipped']}", flush=True)
            del calls[name]
    return outputs


def time_engines(args: argparse.Namespace, kind: str, encoder, calls: dict, info: dict[str, dict]) -> dict[str, tuple]:
    """Per batch size: every engine timed in interleaved cycles, its speed-ups over torch eager and agreement with it."""
    import torch

    from bindrt.tiers import tier_met

    results: dict[str, tuple] = {}
    for batch in args.batches:
        x = input_batch(kind, batch)
        x_random = input_batch(kind, batch, suite="random")
        with torch.inference_mode():
            ref = encoder(torch.from_numpy(x)).numpy()
            ref_random = encoder(torch.from_numpy(x_random)).numpy()
            outputs = first_outputs(calls, x, info, batch)
            outputs_random = first_outputs(calls, x_random, info, batch)
            rounds = args.rounds if batch == 1 else max(args.rounds // 2, min(args.rounds, 5))
            blocks = interleaved(
                {n: (lambda fn=fn: fn(x)) for n, fn in calls.items()}, rounds, args.warmup, time.perf_counter
            )
        times = {name: flat(b) for name, b in blocks.items()}
        base = statistics.median(times[REFERENCE])
        base_min = min(times[REFERENCE])
        rows = {}
        for name, t in times.items():
            cos, rel = round(cosine(outputs[name], ref), 6), max_row_rel_diff(outputs[name], ref)
            cos_r = round(cosine(outputs_random[name], ref_random), 6)
            rel_r = max_row_rel_diff(outputs_random[name], ref_random)
            rows[name] = {
                "side": side_of(name) or "informational",
                "median_ms": round(1000 * statistics.median(t), 2),
                "min_ms": round(1000 * min(t), 2),
                "speedup_vs_torch_median": round(base / statistics.median(t), 3),
                "speedup_vs_torch_min": round(base_min / min(t), 3),
                "speedup_vs_torch_paired": round(paired_speedup(blocks, REFERENCE, name), 3),
                "p90_over_median": round(float(np.percentile(t, 90)) / statistics.median(t), 3),
                "items_per_s": round(batch / statistics.median(t), 2),
                "min_cosine_vs_torch": cos,
                "max_rel_diff_vs_torch": rel,
                "tier": tier_met(rel, cos),
                "min_cosine_random": cos_r,
                "max_rel_diff_random": rel_r,
                "tier_any_input": tier_met(max(rel, rel_r), min(cos, cos_r)),
                "runs": len(t),
            }
        results[f"batch_{batch}"] = (rows, blocks)
        print(f"{kind} batch {batch}:", flush=True)
        for name, r in rows.items():
            print(
                f"  {name:32s} {r['median_ms']:9.1f} ms  x{r['speedup_vs_torch_median']:.2f}  (min {r['min_ms']:.1f} ms, "
                f"x{r['speedup_vs_torch_min']:.2f}; paired x{r['speedup_vs_torch_paired']:.2f})  "
                f"cos {r['min_cosine_vs_torch']:.6f}  {r['tier'] or 'no tier'}  "
                f"(random inputs: cos {r['min_cosine_random']:.5f}, {r['tier_any_input'] or 'no tier'})",
                flush=True,
            )
    return results


def single_thread_cpu_time(args: argparse.Namespace, kind: str, engines: list[Engine], info: dict) -> dict[str, dict]:
    """Contention-robust cross-check (``--cpu-time``): one thread everywhere, CPU seconds of this process per call.

    Time-slicing by other processes does not count, and no spin-waiting threads exist. Every
    engine is opened again at one thread (torch.compile excepted).
    """
    import torch

    torch.set_num_threads(1)
    print("single-thread CPU-time cross-check: opening the engines at 1 thread", flush=True)
    scratch: dict[str, dict] = {name: dict(entry) for name, entry in info.items()}
    calls = open_engines([e for e in engines if "skipped" not in info.get(e.name, {})], 1, scratch, only_cpu_time=True)
    cpu_time: dict[str, dict] = {}
    for batch in args.batches:
        x = input_batch(kind, batch)
        with torch.inference_mode():
            first_outputs(calls, x, scratch, batch)
            fns = {n: (lambda fn=fn: fn(x)) for n, fn in calls.items()}
            times = {n: flat(b) for n, b in interleaved(fns, max(args.rounds // 3, 5), 1, time.process_time).items()}
        base = statistics.median(times[REFERENCE])
        cpu_time[f"batch_{batch}"] = {
            name: {
                "median_cpu_ms": round(1000 * statistics.median(t), 2),
                "min_cpu_ms": round(1000 * min(t), 2),
                "speedup_vs_torch_median": round(base / statistics.median(t), 3),
                "runs": len(t),
            }
            for name, t in times.items()
        }
        print(f"{kind}, 1 thread, CPU time, batch {batch}:", flush=True)
        for name, r in cpu_time[f"batch_{batch}"].items():
            print(f"  {name:32s} {r['median_cpu_ms']:9.1f} ms  x{r['speedup_vs_torch_median']:.2f}", flush=True)
    del calls
    gc.collect()
    return cpu_time


# ----------------------------------------------------------------------------- report
def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def tier_table(best: dict[str, dict[str, dict]]) -> list[str]:
    lines = [
        "| batch | tier | bindrt fastest | ms | fastest peer | ms | bindrt vs peer (peer ms / bindrt ms) | paired |",
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    for batch, tiers in best.items():
        for tier, e in tiers.items():
            ratio = f"{e['peer_over_bindrt']:.2f}x" if e.get("peer_over_bindrt") else "-"
            paired = f"{e['peer_over_bindrt_paired']:.2f}x" if e.get("peer_over_bindrt_paired") else "-"
            lines.append(
                f"| {batch.replace('batch_', '')} | {tier} | {e['bindrt'] or '-'} | {_ms(e['bindrt_ms'])} | "
                f"{e['peers'] or '-'} | {_ms(e['peer_ms'])} | {ratio} | {paired} |"
            )
    return lines


def verdict_line(v: dict[str, Any]) -> str:
    if v["met"]:
        return "bindrt's fastest configuration is at least as fast as the fastest peer in every tier: **met**"
    by, unmet = v["missed_by"], v.get("unmet_tiers")
    how = " and ".join(
        ([f"by {by:.1%} where slowest"] if by is not None else [])
        + ([f"in {len(unmet)} tier(s) no bindrt configuration meets"] if unmet else [])
    )
    where = "; ".join(
        f"batch {m['batch'].replace('batch_', '')} {m['tier']}: {m['why']}"
        + (f", {m['by']:.1%} slower" if "by" in m else "")
        for m in v["misses"]
    )
    return f"bindrt's fastest configuration is at least as fast as the fastest peer in every tier: **missed** {how} ({where})"


def markdown(report: dict) -> str:
    m = report["machine"]
    mods = report["model"]["modalities"]
    lines = [
        f"# bindrt vs peers on CPU, per precision tier — {report['model']['preset']} {' and '.join(mods)} encoder"
        + ("s" if len(mods) > 1 else ""),
        "",
        f"- date: {report['date']}",
        f"- machine: {machine_summary(m)}",
        f"- threads: {report['threads']} (torch.set_num_threads, ORT intra_op_num_threads, OpenVINO INFERENCE_NUM_THREADS)",
        f"- versions: {versions_summary(m)}",
    ]
    for kind, t in report["model"]["towers"].items():
        lines.append(
            f"- {kind}: {t['embed_dim']} wide, {t['blocks']} blocks, {t['heads']} heads, {report['model']['weights']}"
        )
    lines += [
        f"- inputs: {report['inputs']}",
        f"- bindrt side: `bindrt.load(bundle, backend=..., precision=...)` + `encode`, on the bundle exported with "
        f"bindrt's defaults (pooled last block; int8: {report['int8_method']}, and the NNCF int8 graph where it "
        "exports: " + "; ".join(f"{k}: {e['nncf']}" for k, e in report["export"].items()) + ")",
        "- peer side: torch eager / bf16 autocast / torch.compile, plain ONNX Runtime (fp32, quantize_dynamic int8), "
        "OpenVINO (f32, bf16, NNCF int8) on the same weights exported with `--full-last-block` (the reference trace); "
        "informational rows (torch_eager_pooled, static int8) are on neither side",
        f"- load average before/after: {report['load_average']['before']} / {report['load_average']['after']}",
        f"- method: {report['method']}",
        "",
    ]
    share = report.get("cpu_share") or {}
    if share:
        lines[-1:-1] = [
            f"- CPU time during the run: this benchmark {share['this_process']:.0%}, other processes "
            f"{share['other_processes']:.0%}, stolen by the hypervisor {share['steal']:.0%}"
        ]
    busy = (
        share.get("other_processes", 0) + share.get("steal", 0) > 0.05
        if share
        else report["load_average"]["before"][0] > 0.5 * (m.get("cpu_cores") or 1)
    )
    if busy:
        lines += [
            "> **The machine was busy with other work during this run** (see above). Wall-clock medians "
            "then mostly measure how each engine's threads cope with sharing the cores; minima approximate the "
            "uncontended latency, and the paired ratios compare engines measured within the same second.",
            "",
        ]
    lines += [
        "## Verdict (issue 15)",
        "",
    ]
    for kind in mods:
        lines.append(f"- {kind}, accuracy on real media: {verdict_line(report['verdict']['per_modality'][kind])}")
    for kind in mods:
        v = report.get("verdict_any_input", {}).get("per_modality", {}).get(kind)
        if v is not None:
            lines.append(f"- {kind}, accuracy on real media and layout-random inputs: {verdict_line(v)}")
    amx = report.get("amx_bf16")
    for kind in mods:
        for batch, r in report["near_exact_vs_torch_eager"][kind].items():
            ratio = r["speedup_vs_torch_eager"]
            state = "-" if ratio is None else ("met" if ratio >= r["target"] else "missed")
            lines.append(
                f"- {kind} {batch.replace('_', ' ')}: near-exact bindrt ({r['bindrt'] or 'none'}) vs torch eager: "
                f"{'-' if ratio is None else f'{ratio:.2f}x'} (target >= {r['target']:.0f}x on AMX CPUs; this CPU "
                f"{'has' if amx else 'lacks'} amx_bf16, so the target {'applies: ' + state if amx else 'does not apply'})"
            )
    lines.append("")
    for kind in mods:
        lines += [
            f"## {kind}: fastest per precision tier (accuracy on real media)",
            "",
            *tier_table(report["best_per_tier"][kind]),
            "",
        ]
        if kind in report.get("best_per_tier_any_input", {}):
            lines += [
                f"## {kind}: fastest per precision tier (accuracy on real media and layout-random inputs)",
                "",
                *tier_table(report["best_per_tier_any_input"][kind]),
                "",
            ]
        lines += [
            "Tiers: exact max|diff| <= 1e-5 of the row norm vs torch fp32; near-exact min cosine >= 0.999; "
            "int8 min cosine >= 0.98. A row meets its tier and every looser one.",
            "",
        ]
        skipped = {n: e["skipped"] for n, e in report["engines"][kind].items() if "skipped" in e}
        if skipped:
            lines += ["Skipped:", "", *(f"- {n}: {why}" for n, why in skipped.items()), ""]
        for batch, rows in report["results"][kind].items():
            lines += [
                f"### {kind} {batch.replace('_', ' ')}",
                "",
                "| engine | side | graph | median ms | min ms | p90/median | vs torch: paired | of medians | of minima | "
                "items/s | min cosine | max rel diff | tier | random inputs: min cosine | tier, any input |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
            ]
            for name, r in rows.items():
                graph = report["engines"][kind].get(name, {}).get("graph", "torch")
                lines.append(
                    f"| {name} | {r['side']} | {graph} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | "
                    f"{r['p90_over_median']:.2f} | {r['speedup_vs_torch_paired']:.2f}x | "
                    f"{r['speedup_vs_torch_median']:.2f}x | {r['speedup_vs_torch_min']:.2f}x | {r['items_per_s']:.1f} | "
                    f"{r['min_cosine_vs_torch']:.6f} | {r['max_rel_diff_vs_torch']:.2g} | {r['tier'] or '-'} | "
                    f"{r.get('min_cosine_random', float('nan')):.5f} | {r.get('tier_any_input') or '-'} |"
                )
            lines.append("")
    if any(report.get("single_thread_cpu_time", {}).values()):
        lines += [
            "## Cross-check: one thread, CPU time per call",
            "",
            "CPU seconds this process spent per call with 1 thread everywhere (no spin-waiting threads): "
            "insensitive to other processes time-slicing the cores, unlike wall-clock latency.",
            "",
        ]
        for kind, per_batch in report["single_thread_cpu_time"].items():
            for batch, rows in per_batch.items():
                lines += [
                    f"### {kind} {batch.replace('_', ' ')}",
                    "",
                    "| engine | median CPU ms | min CPU ms | speed-up vs torch |",
                    "|---|---:|---:|---:|",
                ]
                for name, r in rows.items():
                    lines.append(
                        f"| {name} | {r['median_cpu_ms']:.1f} | {r['min_cpu_ms']:.1f} | {r['speedup_vs_torch_median']:.2f}x |"
                    )
                lines.append("")
    return "\n".join(lines)


def add_output_args(p: argparse.ArgumentParser, tag: str) -> None:
    p.add_argument("--out", help="results folder (default benchmarks/results/<date>-<cpu>/onnx)")
    p.add_argument("--tag", default=tag, help="results file name: <date>-<tag>.{json,md} (a rerun: <date>-<tag>-2)")


def run_and_record(args: argparse.Namespace, run, markdown, show: bool = True) -> int:
    """The benchmarks' common ending: run, print the table, record it under ``--out``."""
    report = run(args)
    if show:
        print(markdown(report))
    write_report(report, markdown, args.out, "onnx", args.tag)
    return 0


MODALITY_CHOICES = ("depth", "audio", "thermal", "imu")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Which encoder to time, at which batch sizes and thread count (bench_cpu and ceiling_cpu alike)."""
    from bindrt.config import PRESETS

    p.add_argument("--modality", default="depth", choices=MODALITY_CHOICES)
    p.add_argument(
        "--preset",
        default="imagebind_huge",
        choices=sorted(PRESETS),
        help="model size (default the real one; smaller presets only check the script runs)",
    )
    p.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)


def modality_list(text: str) -> list[str]:
    mods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in mods if m not in MODALITY_CHOICES]
    if not mods or bad:
        raise argparse.ArgumentTypeError(f"expected a comma list of {', '.join(MODALITY_CHOICES)}, got {text!r}")
    return list(dict.fromkeys(mods))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(p)
    p.add_argument(
        "--modalities",
        type=modality_list,
        default=None,
        help="towers to measure in this run, one report (comma list, e.g. depth,audio; default: --modality)",
    )
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--int8-method", default="dynamic", choices=("dynamic", "static"), help="bindrt's int8 export")
    p.add_argument(
        "--cpu-time",
        dest="cpu_time_check",
        action="store_true",
        help="add the single-thread CPU-time cross-check (every engine again at 1 thread; long)",
    )
    p.add_argument("--no-cpu-time", dest="cpu_time_check", action="store_false", help="(the default) no cross-check")
    p.add_argument(
        "--static",
        dest="compare_static",
        action="store_true",
        help="add informational static-quantization (QDQ) rows (measured slower than dynamic: "
        "benchmarks/results/2026-11-28-xeon-2.50ghz/onnx/2026-11-28-cpu.md)",
    )
    p.add_argument(
        "--no-openvino",
        dest="openvino",
        action="store_false",
        help="skip every OpenVINO row, bindrt's and the peers' (skipped anyway without the openvino package)",
    )
    p.add_argument("--compile", action="store_true", help="add a torch.compile row (inductor; minutes of compiling)")
    p.add_argument("--workdir", help="keep/reuse the bundles here")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--keep", action="store_true")
    add_output_args(p, "cpu")
    args = p.parse_args(argv)
    args.modalities = args.modalities or [args.modality]
    return run_and_record(args, run, markdown, show=False)


if __name__ == "__main__":
    sys.exit(main())
