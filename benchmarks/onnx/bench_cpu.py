"""ONNX Runtime (fp32 / fused / int8) against PyTorch eager on a real-size ImageBind encoder, on CPU.

Builds one imagebind_huge encoder with random weights (``--modality depth`` by
default: 384 wide, 12 blocks, 8 heads, 197 tokens; ``audio``: 768 wide, 12
blocks, 229 tokens), writes it as a bundle, exports it with ``bindrt export``
(fp32, int8, fused variants -- each validated against torch at export), then
times every engine at batch 1 and 8 with the same thread count, interleaving the
engines round by round so that machine noise hits all of them alike. Reports
medians (and minima), ratios against torch measured in the same run, and the
cosine of every engine's embeddings against torch's on the same inputs.

    python -m benchmarks.onnx.bench_cpu                 # depth, batch 1 and 8 (from the repository root)
    python -m benchmarks.onnx.bench_cpu --modality audio --rounds 15

Rows besides the ONNX Runtime engines, so the ratios can be read honestly:

* ``torch_eager_pooled`` -- torch running ``embed_pooled`` (the last block for the pooled
  token only, as every exported graph does by default): how much of a speed-up is the
  graph doing less work rather than ONNX Runtime running it faster;
* ``openvino_fp32`` -- the plain fp32 graph compiled by OpenVINO (only when the
  ``openvino`` package is installed; it is not a bindrt dependency): the issue's
  reference point for what fp32 can reach on this CPU.

Writes ``benchmarks/results/<date>-<cpu>/onnx/<date>-cpu.{json,md}`` (``benchmarks/README.md``:
results layout). Not a test: timings
depend on the machine (and on whatever else runs on it; the load average is
recorded before and after).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, machine_summary, versions_summary, write_report
from bindrt.bench import max_row_rel_diff


def bundle_path(workdir: Path | str, preset: str, modality: str) -> Path:
    """Where ``bench_cpu.py --workdir`` keeps the bundle the other scripts time."""
    return Path(workdir) / f"{preset}-{modality}"


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


def input_batch(modality: str, batch: int, seed: int = 0) -> np.ndarray:
    """Real-like inputs: the export validation's 'real' suite (sample media), tiled to the batch size."""
    from bindrt.export.validate import suite_inputs

    x, _ = suite_inputs(modality, "real")
    reps = -(-batch // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:batch])


def make_session(
    path: Path | bytes, threads: int, opt_level: str = "all", spinning: bool = True, profile_prefix: str | None = None
):
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


def cpu_counters() -> tuple[list[int], float]:
    """(/proc/stat 'cpu' jiffies, this process's CPU seconds): their difference over a run tells
    whether anything else ran on the cores (and how much the hypervisor stole)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        fields = []
    t = os.times()
    return fields, t.user + t.system


def contention(before: tuple[list[int], float], after: tuple[list[int], float]) -> dict:
    """Shares of all cores' time during the run: used by this benchmark, by other processes, stolen."""
    (a, mine_a), (b, mine_b) = before, after
    if len(a) < 8 or len(b) < 8:
        return {}
    hz = os.sysconf("SC_CLK_TCK")
    delta = [y - x for x, y in zip(a, b)]
    total = sum(delta[:8])  # user nice system idle iowait irq softirq steal
    if total <= 0:
        return {}
    busy = delta[0] + delta[1] + delta[2] + delta[5] + delta[6]
    mine = (mine_b - mine_a) * hz
    return {
        "this_benchmark": round(min(mine, busy) / total, 3),
        "other_processes": round(max(busy - mine, 0) / total, 3),
        "steal": round(delta[7] / total, 3),
    }


def openvino_engine(path: Path, threads: int, batch_shape: tuple[int, ...], hint: str = "f32"):
    """OpenVINO on the plain fp32 graph at an explicit inference precision (latency hint).

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


def best_per_tier(rows: dict[str, dict]) -> dict[str, dict]:
    """Per precision tier, the fastest engine (by median) that meets it, bindrt's and the peers' apart."""
    from bindrt.tiers import TIERS, tier_met

    order = list(TIERS)
    out: dict[str, dict] = {}
    for tier in order:
        qualifying = {
            name: r
            for name, r in rows.items()
            if (met := tier_met(r["max_rel_diff_vs_torch"], r["min_cosine_vs_torch"])) is not None
            and order.index(met) <= order.index(tier)
        }
        sides = {
            "bindrt": {n: r for n, r in qualifying.items() if n.startswith("ort_")},
            "peers": {n: r for n, r in qualifying.items() if not n.startswith("ort_")},
        }
        out[tier] = {
            side: (min(group, key=lambda n: group[n]["median_ms"]) if group else None) for side, group in sides.items()
        }
    return out


def run(args: argparse.Namespace) -> dict:
    import torch

    from bindrt.bundle import Bundle
    from bindrt.export.spec import graph_records
    from bindrt.export.torch_export import wrap
    from bindrt.model import load_encoder

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bindrt-bench-onnx-"))
    load_before = os.getloadavg()
    counters_before = cpu_counters()
    bundle_dir, export_seconds = prepare_bundle(args, work)
    bundle = Bundle.open(bundle_dir)
    records = graph_records(bundle.modality(args.modality))
    kind = args.modality
    encoder = load_encoder(kind, bundle.config, bundle.load_weights(kind))
    pooled = wrap(kind, encoder, pooled_last_block=True)  # what the graphs trace (clip axis folded)
    engines, engine_info = open_engines(bundle, records, kind, threads, args.compare_static, work)
    openvino_graph = (
        bundle.file(records[f"{kind}.fp32"]["file"]) if f"{kind}.fp32" in records and args.openvino else None
    )
    results = time_engines(args, kind, encoder, pooled, engines, engine_info, openvino_graph, threads)
    cpu_time = (
        single_thread_cpu_time(args, kind, encoder, pooled, engines, openvino_graph) if args.cpu_time_check else {}
    )
    torch.set_num_threads(threads)
    load_after = os.getloadavg()
    cpu_share = contention(counters_before, cpu_counters())
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    machine = machine_info()
    return {
        "benchmark": "bindrt ONNX Runtime CPU vs torch eager",
        "date": machine["date"],
        "model": {
            "preset": args.preset,
            "modality": kind,
            "weights": f"random (build_encoder, seed {args.seed})",
            "embed_dim": bundle.config.embed_dim(kind),
            "blocks": bundle.config.num_blocks(kind),
            "heads": bundle.config.num_heads(kind),
        },
        "inputs": "the export validation's real-media suite (bindrt.export.validate.suite_inputs), tiled to the batch",
        "threads": threads,
        "int8_method": args.int8_method,
        "machine": machine,
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]},
        "cpu_share": cpu_share,
        "export_seconds": export_seconds,
        "engines": engine_info,
        "results": results,
        "best_per_tier": {batch: best_per_tier(rows) for batch, rows in results.items()},
        "single_thread_cpu_time": cpu_time,
        "method": f"{args.warmup} warm-up calls per engine, then cycles over all engines (order alternating) of 1 untimed "
        "+ 4 timed consecutive calls each, until every engine has its rounds; median and min per engine; "
        "speed-ups = torch time / engine time in the same run: 'paired' = median over cycles of the ratio of "
        "the two engines' block medians within the cycle (robust to the VM's bursts of slowdown), 'of medians' "
        "and 'of minima' over all calls",
    }


def prepare_bundle(args: argparse.Namespace, work: Path) -> tuple[Path, float | None]:
    """The random-weight bundle with its fp32/int8/fused graphs: built and exported, or reused from --workdir."""
    from bindrt.export import export_bundle

    bundle_dir = bundle_path(work, args.preset, args.modality)
    if (bundle_dir / "manifest.json").exists() and not args.rebuild:
        return bundle_dir, None  # None: bundle reused from --workdir
    t0 = time.perf_counter()
    print(f"building {args.preset} {args.modality} bundle (random weights) in {bundle_dir}", flush=True)
    build_bundle(args.modality, bundle_dir, args.seed, args.preset)
    print("exporting fp32 / int8 / fused (validated against torch at export)", flush=True)
    export_bundle(
        bundle_dir,
        modalities=[args.modality],
        precisions=("fp32", "int8"),
        fused=True,
        int8_method=args.int8_method,
        progress=lambda m: print("  " + m, flush=True),
    )
    return bundle_dir, round(time.perf_counter() - t0, 1)


def open_engines(
    bundle, records: dict, kind: str, threads: int, compare_static: bool, work: Path
) -> tuple[dict[str, object], dict[str, dict]]:
    """ONNX Runtime sessions on the bundle's graphs (and static-int8 copies), with what each one is."""
    engines: dict[str, object] = {}
    engine_info: dict[str, dict] = {
        "torch_eager": {"what": f"bindrt torch encoder (the reference forward), eager, fp32, {threads} threads"},
        "torch_eager_pooled": {
            "what": "the same, embed_pooled: last block for the pooled token only (as the exported graphs)"
        },
    }
    for name, key in (
        ("ort_fp32", f"{kind}.fp32"),
        ("ort_fused_fp32", f"{kind}.fp32.fused"),
        ("ort_int8", f"{kind}.int8"),
        ("ort_fused_int8", f"{kind}.int8.fused"),
    ):
        if key in records:
            engines[name] = make_session(bundle.file(records[key]["file"]), threads)
            rec = records[key]
            engine_info[name] = {
                "graph": rec["file"],
                "validation_worst": rec["validation"]["worst"],
                "fusions": rec.get("fusions", {}).get("fused_operator_statistics"),
                "quantization": (rec.get("quantization") or {}).get("method"),
                "pooled_last_block": rec.get("pooled_last_block", False),
            }
    if compare_static:  # static QDQ int8 (calibrated on real inputs) from the same fp32 graphs, outside the bundle
        import onnx

        from bindrt.export.int8 import quantize
        from bindrt.export.validate import calibration_feeds

        feeds = calibration_feeds(kind, kind)
        for name, key in (("ort_int8_static", f"{kind}.fp32"), ("ort_fused_int8_static", f"{kind}.fp32.fused")):
            if key not in records:
                continue
            q, summary = quantize(onnx.load(str(bundle.file(records[key]["file"]))), method="static", calibration=feeds)
            path = work / f"{name}.onnx"
            onnx.save_model(q, str(path))
            engines[name] = make_session(path, threads)
            engine_info[name] = {
                "graph": f"{key} quantized statically (QDQ, per-channel, MinMax on {len(feeds)} real inputs)",
                "quantization": summary["method"],
            }
    return engines, engine_info


def _calls(
    kind: str, x: np.ndarray, encoder, pooled, sessions: dict[str, object], openvino_graph, threads: int, compiled=None
) -> dict:
    """One callable per engine on the same batch ``x``: the peers a CPU user could pick (torch eager, its bf16
    autocast, torch.compile when asked for, OpenVINO at f32 and bf16) and bindrt's sessions."""
    import torch

    xt = torch.from_numpy(x)

    def bf16_autocast():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return encoder(xt).float()

    calls = {
        "torch_eager": lambda: encoder(xt),
        "torch_eager_pooled": lambda: pooled(xt),
        "torch_bf16_autocast": bf16_autocast,
    }
    if compiled is not None:
        calls["torch_compile"] = lambda: compiled(xt)
    for name, sess in sessions.items():
        calls[name] = lambda s=sess: s.run(None, {kind: x})[0]
    for hint in ("f32", "bf16"):
        ov = openvino_engine(openvino_graph, threads, x.shape, hint) if openvino_graph else None
        if ov is not None:
            calls[f"openvino_{'fp32' if hint == 'f32' else hint}"] = lambda ov=ov: ov(x)
    return calls


def time_engines(
    args: argparse.Namespace,
    kind: str,
    encoder,
    pooled,
    engines: dict[str, object],
    engine_info: dict[str, dict],
    openvino_graph,
    threads: int,
) -> dict[str, dict]:
    """Per batch size: every engine timed in interleaved cycles, its speed-ups over torch eager and cosine to it."""
    import torch

    results: dict[str, dict] = {}
    compiled = torch.compile(encoder, dynamic=False) if args.compile else None
    engine_info["torch_bf16_autocast"] = {"what": "the torch encoder under torch.autocast('cpu', dtype=torch.bfloat16)"}
    if compiled is not None:
        engine_info["torch_compile"] = {"what": "torch.compile(encoder) (inductor, static shapes), fp32"}
    for batch in args.batches:
        x = input_batch(kind, batch)
        calls = _calls(kind, x, encoder, pooled, engines, openvino_graph, threads, compiled)
        for name, hint in (("openvino_fp32", "f32"), ("openvino_bf16", "bf16")):
            if name in calls:
                engine_info[name] = {
                    "what": f"OpenVINO {ov_version()} on {kind}.fp32 ({hint} inference precision, LATENCY hint)"
                }
        with torch.inference_mode():
            ref = encoder(torch.from_numpy(x)).numpy()
            outputs = {name: np.asarray(fn()) for name, fn in calls.items()}
            rounds = args.rounds if batch == 1 else max(args.rounds // 2, 5)
            blocks = interleaved(calls, rounds, args.warmup, time.perf_counter)
        times = {name: flat(b) for name, b in blocks.items()}
        base = statistics.median(times["torch_eager"])
        base_min = min(times["torch_eager"])
        results[f"batch_{batch}"] = {
            name: {
                "median_ms": round(1000 * statistics.median(t), 2),
                "min_ms": round(1000 * min(t), 2),
                "speedup_vs_torch_median": round(base / statistics.median(t), 3),
                "speedup_vs_torch_min": round(base_min / min(t), 3),
                "speedup_vs_torch_paired": round(paired_speedup(blocks, "torch_eager", name), 3),
                "p90_over_median": round(float(np.percentile(t, 90)) / statistics.median(t), 3),
                "items_per_s": round(batch / statistics.median(t), 2),
                "min_cosine_vs_torch": round(cosine(outputs[name], ref), 6),
                "max_rel_diff_vs_torch": max_row_rel_diff(outputs[name], ref),
                "runs": len(t),
            }
            for name, t in times.items()
        }
        print(f"batch {batch}:", flush=True)
        for name, r in results[f"batch_{batch}"].items():
            print(
                f"  {name:22s} {r['median_ms']:9.1f} ms  x{r['speedup_vs_torch_median']:.2f}  (min {r['min_ms']:.1f} ms, "
                f"x{r['speedup_vs_torch_min']:.2f}; paired x{r['speedup_vs_torch_paired']:.2f})  "
                f"cos {r['min_cosine_vs_torch']:.6f}",
                flush=True,
            )
    return results


def single_thread_cpu_time(
    args: argparse.Namespace, kind: str, encoder, pooled, engines: dict[str, object], openvino_graph
) -> dict[str, dict]:
    """Contention-robust cross-check: one thread everywhere, CPU seconds of this process per call.

    Time-slicing by other processes does not count, and no spin-waiting threads exist.
    """
    import torch

    torch.set_num_threads(1)
    single = {name: make_session(Path(sess._bindrt_path), 1, spinning=False) for name, sess in engines.items()}
    cpu_time: dict[str, dict] = {}
    for batch in args.batches:
        calls = _calls(kind, input_batch(kind, batch), encoder, pooled, single, openvino_graph, 1)
        with torch.inference_mode():
            times = {n: flat(b) for n, b in interleaved(calls, max(args.rounds // 3, 5), 1, time.process_time).items()}
        base = statistics.median(times["torch_eager"])
        cpu_time[f"batch_{batch}"] = {
            name: {
                "median_cpu_ms": round(1000 * statistics.median(t), 2),
                "min_cpu_ms": round(1000 * min(t), 2),
                "speedup_vs_torch_median": round(base / statistics.median(t), 3),
                "runs": len(t),
            }
            for name, t in times.items()
        }
        print(f"1 thread, CPU time, batch {batch}:", flush=True)
        for name, r in cpu_time[f"batch_{batch}"].items():
            print(f"  {name:22s} {r['median_cpu_ms']:9.1f} ms  x{r['speedup_vs_torch_median']:.2f}", flush=True)
    return cpu_time


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# ONNX Runtime vs torch eager on CPU — {report['model']['preset']} {report['model']['modality']} encoder",
        "",
        f"- date: {report['date']}",
        f"- machine: {machine_summary(m)}",
        f"- threads: {report['threads']} (torch.set_num_threads and ORT intra_op_num_threads)",
        f"- versions: {versions_summary(m)}",
        f"- model: {report['model']['embed_dim']} wide, {report['model']['blocks']} blocks, {report['model']['heads']} heads, {report['model']['weights']}",
        f"- inputs: {report['inputs']}",
        f"- int8: {report['int8_method']} quantization; load average before/after: {report['load_average']['before']} / {report['load_average']['after']}",
        f"- method: {report['method']}",
        "",
    ]
    share = report.get("cpu_share") or {}
    if share:
        lines[-1:-1] = [
            f"- CPU time during the run: this benchmark {share['this_benchmark']:.0%}, other processes "
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
            "then mostly measure how each engine's threads cope with sharing the cores (PyTorch's OpenMP barriers "
            "suffer most, which inflates ORT's median ratios); minima approximate the uncontended latency. The "
            "single-thread CPU-time table at the end is the contention-robust comparison of the engines' work.",
            "",
        ]
    for batch, rows in report["results"].items():
        lines += [
            f"## {batch.replace('_', ' ')}",
            "",
            "| engine | median ms | min ms | p90/median | speed-up vs torch: paired | of medians | of minima | items/s | min cosine vs torch |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in rows.items():
            lines.append(
                f"| {name} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {r.get('p90_over_median', float('nan')):.2f} | "
                f"{r.get('speedup_vs_torch_paired', float('nan')):.2f}x | {r['speedup_vs_torch_median']:.2f}x | "
                f"{r['speedup_vs_torch_min']:.2f}x | {r['items_per_s']:.1f} | {r['min_cosine_vs_torch']:.6f} |"
            )
        lines.append("")
    if report.get("best_per_tier"):
        lines += [
            "## Fastest per precision tier (exact: max|diff| <= 1e-5 of the row norm; near-exact: cosine >= 0.999; "
            "int8: cosine >= 0.98)",
            "",
            "| batch | tier | bindrt (ONNX Runtime graphs) | ms | fastest peer | ms | bindrt vs peer |",
            "|---|---|---|---:|---|---:|---:|",
        ]
        for batch, tiers in report["best_per_tier"].items():
            rows = report["results"][batch]
            for tier, best in tiers.items():
                ours, peer = best["bindrt"], best["peers"]
                ours_ms = rows[ours]["median_ms"] if ours else None
                peer_ms = rows[peer]["median_ms"] if peer else None
                ratio = f"{peer_ms / ours_ms:.2f}x" if ours_ms and peer_ms else "-"
                lines.append(
                    f"| {batch.replace('batch_', '')} | {tier} | {ours or '-'} | {ours_ms or '-'} | {peer or '-'} | "
                    f"{peer_ms or '-'} | {ratio} |"
                )
        lines.append("")
    if report.get("single_thread_cpu_time"):
        lines += [
            "## Cross-check: one thread, CPU time per call",
            "",
            "CPU seconds this process spent per call with 1 thread everywhere (no spin-waiting threads): "
            "insensitive to other processes time-slicing the cores, unlike wall-clock latency.",
            "",
        ]
        for batch, rows in report["single_thread_cpu_time"].items():
            lines += [
                f"### {batch.replace('_', ' ')}",
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


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Which encoder to time, at which batch sizes and thread count (bench_cpu and ceiling_cpu alike)."""
    from bindrt.config import PRESETS

    p.add_argument("--modality", default="depth", choices=("depth", "audio", "thermal", "imu"))
    p.add_argument(
        "--preset",
        default="imagebind_huge",
        choices=sorted(PRESETS),
        help="model size (default the real one; smaller presets only check the script runs)",
    )
    p.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_args(p)
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--int8-method", default="dynamic", choices=("dynamic", "static"))
    p.add_argument(
        "--no-cpu-time", dest="cpu_time_check", action="store_false", help="skip the single-thread CPU-time cross-check"
    )
    p.add_argument(
        "--static",
        dest="compare_static",
        action="store_true",
        help="add static-quantization (QDQ) engines (measured slower than dynamic: "
        "benchmarks/results/2026-11-28-xeon-2.50ghz/onnx/2026-11-28-cpu.md)",
    )
    p.add_argument(
        "--no-openvino",
        dest="openvino",
        action="store_false",
        help="skip the OpenVINO reference row (it is skipped anyway without the openvino package)",
    )
    p.add_argument("--compile", action="store_true", help="add a torch.compile row (inductor; minutes of compiling)")
    p.add_argument("--workdir", help="keep/reuse the bundle here")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--keep", action="store_true")
    add_output_args(p, "cpu")
    return run_and_record(p.parse_args(argv), run, markdown, show=False)


if __name__ == "__main__":
    sys.exit(main())
