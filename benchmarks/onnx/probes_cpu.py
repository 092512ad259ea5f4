"""Single-op alternatives that might close the batch-8 gap, timed against torch in the same run.

The "What was tried" table in ``benchmarks/README.md`` cites these. Each probe runs its candidates in
interleaved cycles (``bench_cpu.interleaved``), so this VM's bursts of slowdown hit
them alike. It reports medians and the median over cycles of the paired ratio against
the probe's baseline (its first candidate).

* ``gelu``: GELU (+ bias) on the depth tower's batch-8 MLP activation: ORT ``FastGelu``
  against ``com.microsoft.Gelu`` (no bias: what the int8 graphs run, see
  ``export.fusion.split_gelu_bias``), ``BiasGelu``, opset-20 ``Gelu`` (exact and tanh, no
  bias) and torch ``gelu(x + b)``. Torch's figure here swings 2.5-11 ms between runs
  (eager allocates ``x + b`` every call; interleaved with ORT this sometimes costs
  far more than in a tight loop), so read the ORT rows against each other.
* ``attention``: the attention core at the depth tower's batch-8 shapes: ORT
  ``MultiHeadAttention`` against the standard opset-23 ``Attention`` (3-D and 4-D inputs)
  and torch SDPA on the same (B, N, D) layout.
* ``gemm``: the tower's four weight GEMMs (QKV, attention output, fc1, fc2) at batch 8, and
  QKV at batch 1 for contrast: ORT ``MatMul`` (MLAS) against torch ``Linear`` on the same
  weights. Where torch's GEMM is the faster one, no graph rewrite can make up the
  difference: it sits inside the kernel that takes the largest share of both sides' time
  (about half of torch's at batch 8). On QKV,
  also other ways of handing MLAS the same product: rows split in two, the transposed
  product, a 1x1 ``Conv`` (ORT's NCHWc path).
* ``int8 weight scales``: ``DynamicQuantizeMatMul`` with weights scaled per output channel
  (the graphs) or per tensor, at fc1's batch-8 shape.
* ``sharding fp32`` / ``sharding int8`` (needs ``--workdir`` from ``bench_cpu.py``): a batch-8 call as two
  concurrent batch-4 calls on two single-thread sessions, against one 2-thread session.

    python -m benchmarks.onnx.probes_cpu --workdir /tmp/bench-depth
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, machine_summary, versions_summary
from benchmarks.onnx.bench_cpu import (
    add_output_args,
    bundle_path,
    flat,
    input_batch,
    interleaved,
    make_session,
    paired_speedup,
    run_and_record,
)


def graph_session(
    nodes: list, inputs: dict[str, list[int]], threads: int, opset: int, weights: dict[str, np.ndarray] | None = None
):
    """A session over ``nodes`` (float inputs; the last node's first output is the graph's)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, n) for n, w in (weights or {}).items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 10
    # No spinning: these calls last milliseconds, and a worker still spinning after one would
    # steal the cores from the torch call timed next.
    return make_session(model.SerializeToString(), threads, spinning=False)


def single_node_session(
    node, inputs: dict[str, list[int]], threads: int, opset: int, weights: dict[str, np.ndarray] | None = None
):
    return graph_session([node], inputs, threads, opset, weights)


def gelu_calls(threads: int, rows: int, width: int) -> tuple[dict, str]:
    import torch
    from onnx import helper

    rng = np.random.default_rng()
    x = rng.standard_normal((rows, width), dtype=np.float32)
    b = rng.standard_normal(width, dtype=np.float32)
    shapes = {"x": [rows, width], "b": [width]}
    nodes = {
        "ort_FastGelu(x, b)": helper.make_node("FastGelu", ["x", "b"], ["y"], domain="com.microsoft"),
        "ort_Gelu(x) (int8 graphs: bias folded into the GEMM)": helper.make_node(
            "Gelu", ["x"], ["y"], domain="com.microsoft"
        ),
        "ort_BiasGelu(x, b)": helper.make_node("BiasGelu", ["x", "b"], ["y"], domain="com.microsoft"),
        "onnx_Gelu20(x)": helper.make_node("Gelu", ["x"], ["y"]),
        "onnx_Gelu20_tanh(x)": helper.make_node("Gelu", ["x"], ["y"], approximate="tanh"),
    }
    calls = {}
    for name, node in nodes.items():
        feeds = {k: v for k, v in (("x", x), ("b", b)) if k in node.input}
        sess = single_node_session(node, {k: shapes[k] for k in feeds}, threads, opset=20)
        calls[name] = lambda s=sess, f=feeds: s.run(None, f)
    xt, bt = torch.from_numpy(x), torch.from_numpy(b)
    calls["torch_gelu(x + b) (allocates x + b, as eager does)"] = lambda: torch.nn.functional.gelu(xt + bt)
    return calls, f"({rows}, {width}) fp32; baseline: FastGelu, what the fused int8 graphs ran before split_gelu_bias"


def attention_calls(threads: int, batch: int, heads: int, tokens: int, head_dim: int) -> tuple[dict, str]:
    import torch
    from onnx import helper

    dim = heads * head_dim
    rng = np.random.default_rng()
    q, k, v = (rng.standard_normal((batch, tokens, dim), dtype=np.float32) for _ in range(3))
    q4, k4, v4 = (t.reshape(batch, tokens, heads, head_dim).transpose(0, 2, 1, 3).copy() for t in (q, k, v))
    flat3 = {"q": [batch, tokens, dim], "k": [batch, tokens, dim], "v": [batch, tokens, dim]}
    mha = single_node_session(
        helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], domain="com.microsoft", num_heads=heads),
        flat3,
        threads,
        opset=23,
    )
    a3 = single_node_session(
        helper.make_node("Attention", ["q", "k", "v"], ["y"], q_num_heads=heads, kv_num_heads=heads),
        flat3,
        threads,
        opset=23,
    )
    a4 = single_node_session(
        helper.make_node("Attention", ["q", "k", "v"], ["y"]),
        {n: [batch, heads, tokens, head_dim] for n in "qkv"},
        threads,
        opset=23,
    )
    got = [s.run(None, {"q": q, "k": k, "v": v})[0] for s in (mha, a3)]
    if not np.allclose(got[0], got[1], atol=1e-4):
        raise AssertionError("MultiHeadAttention and opset-23 Attention disagree: the probe builds them wrongly")
    qt, kt, vt = (torch.from_numpy(t).view(batch, tokens, heads, head_dim).transpose(1, 2) for t in (q, k, v))

    def torch_sdpa():
        out = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt)
        return out.transpose(1, 2).reshape(batch, tokens, dim)

    calls = {
        "ort_MultiHeadAttention": lambda: mha.run(None, {"q": q, "k": k, "v": v}),
        "onnx_Attention23 (B, N, D)": lambda: a3.run(None, {"q": q, "k": k, "v": v}),
        "onnx_Attention23 (B, H, N, Dh)": lambda: a4.run(None, {"q": q4, "k": k4, "v": v4}),
        "torch_sdpa (B, N, D) in and out": torch_sdpa,
    }
    return calls, f"batch {batch}, {heads} heads of {head_dim}, {tokens} tokens"


def gemm_calls(threads: int, rows: int, k: int, n: int, layouts: bool = False) -> tuple[dict, str]:
    """ORT's fp32 GEMM against torch's; ``layouts`` adds other ways to hand MLAS the same product."""
    import torch
    from onnx import helper

    rng = np.random.default_rng()
    weight = rng.standard_normal((k, n), dtype=np.float32) / k**0.5
    x = rng.standard_normal((rows, k), dtype=np.float32)
    # The weight is an initializer, so MLAS prepacks it as it does in the exported graphs.
    sess = single_node_session(
        helper.make_node("MatMul", ["x", "w"], ["y"]), {"x": [rows, k]}, threads, opset=17, weights={"w": weight}
    )
    linear = torch.nn.Linear(k, n, bias=False)
    linear.weight.data = torch.from_numpy(weight.T.copy())
    xt = torch.from_numpy(x)
    want = linear(xt).detach().numpy()
    if not np.allclose(sess.run(None, {"x": x})[0], want, atol=1e-3):
        raise AssertionError("ORT MatMul and torch Linear disagree: the probe builds them wrongly")
    calls = {"ort_MatMul (MLAS)": lambda: sess.run(None, {"x": x})}
    if layouts:
        halves = graph_session(
            [
                helper.make_node("Split", ["x"], ["x1", "x2"], axis=0),
                helper.make_node("MatMul", ["x1", "w"], ["y1"]),
                helper.make_node("MatMul", ["x2", "w"], ["y2"]),
                helper.make_node("Concat", ["y1", "y2"], ["y"], axis=0),
            ],
            {"x": [rows, k]},
            threads,
            opset=17,
            weights={"w": weight},
        )
        x_t = np.ascontiguousarray(x.T)
        transposed = single_node_session(
            helper.make_node("MatMul", ["wt", "xt"], ["y"]),
            {"xt": [k, rows]},
            threads,
            opset=17,
            weights={"wt": np.ascontiguousarray(weight.T)},
        )
        x_nchw = x_t.reshape(1, k, 1, rows)
        conv = single_node_session(
            helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1]),
            {"x": [1, k, 1, rows]},
            threads,
            opset=17,
            weights={"w": np.ascontiguousarray(weight.T).reshape(n, k, 1, 1)},
        )
        for got in (
            halves.run(None, {"x": x})[0],
            transposed.run(None, {"xt": x_t})[0].T,
            conv.run(None, {"x": x_nchw})[0].reshape(n, rows).T,
        ):
            if not np.allclose(got, want, atol=1e-3):
                raise AssertionError("a GEMM layout variant disagrees with torch: the probe builds it wrongly")
        calls |= {
            "ort_MatMul, rows split in two": lambda: halves.run(None, {"x": x}),
            "ort_MatMul, transposed product (input given transposed: layout cost not counted)": lambda: transposed.run(
                None, {"xt": x_t}
            ),
            "ort_Conv 1x1 (input given as NCHW: layout cost not counted)": lambda: conv.run(None, {"x": x_nchw}),
        }
    calls["torch_Linear"] = lambda: linear(xt)
    return calls, f"({rows} x {k}) @ ({k} x {n}) fp32, {2 * rows * k * n / 1e9:.2f} GFLOP"


def int8_weight_calls(threads: int, rows: int, k: int, n: int) -> tuple[dict, str]:
    """``DynamicQuantizeMatMul`` with int8 weights scaled per output channel (what the graphs use) or per tensor."""
    from onnx import helper

    rng = np.random.default_rng()
    weight = rng.standard_normal((k, n), dtype=np.float32) / k**0.5
    x = rng.standard_normal((rows, k), dtype=np.float32)
    node = helper.make_node("DynamicQuantizeMatMul", ["x", "w", "scale", "zero"], ["y"], domain="com.microsoft")
    calls = {}
    for name, amax in (("per output channel", np.abs(weight).max(axis=0)), ("per tensor", np.abs(weight).max())):
        scale = np.asarray(amax / 127, dtype=np.float32)
        q = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
        sess = single_node_session(
            node,
            {"x": [rows, k]},
            threads,
            opset=17,
            weights={"w": q, "scale": scale, "zero": np.zeros_like(scale, dtype=np.int8)},
        )
        got, want = sess.run(None, {"x": x})[0], x @ weight
        if np.abs(got - want).max() > 0.05 * np.abs(want).max():
            raise AssertionError(
                f"DynamicQuantizeMatMul {name} is far from the fp32 product: the probe builds it wrongly"
            )
        calls[f"ort_DynamicQuantizeMatMul, weights {name}"] = lambda s=sess: s.run(None, {"x": x})
    return calls, f"({rows} x {k}) @ ({k} x {n}) int8 weights, dynamic uint8 activations"


def sharding_calls(threads: int, workdir: Path, modality: str, batch: int, precision: str) -> tuple[dict, str]:
    from bindrt.bundle import Bundle
    from bindrt.export.spec import graph_records

    bundle = Bundle.open(bundle_path(workdir, "imagebind_huge", modality))
    path = bundle.file(graph_records(bundle.modality(modality))[f"{modality}.{precision}.fused"]["file"])
    x = input_batch(modality, batch)
    halves = np.array_split(x, threads)
    pool = ThreadPoolExecutor(threads)
    whole = make_session(path, threads)
    parts = [make_session(path, 1) for _ in halves]

    def sharded():
        futures = [pool.submit(s.run, None, {modality: h}) for s, h in zip(parts, halves)]
        return np.concatenate([f.result()[0] for f in futures])

    calls = {
        f"one {threads}-thread session": lambda: whole.run(None, {modality: x}),
        f"{threads} x 1-thread sessions, batch split": sharded,
    }
    return calls, f"{modality}.{precision}.fused, batch {batch} split {threads} ways"


def run(args: argparse.Namespace) -> dict:
    import torch

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    probes = {
        "gelu": gelu_calls(threads, 8 * 197, 1536),
        "attention": attention_calls(threads, 8, 8, 197, 48),
    }
    for name, (rows, k, n) in {
        "qkv": (8 * 197, 384, 1152),
        "attention out": (8 * 197, 384, 384),
        "fc1": (8 * 197, 384, 1536),
        "fc2": (8 * 197, 1536, 384),
        "qkv batch 1": (197, 384, 1152),
    }.items():
        probes[f"gemm {name}"] = gemm_calls(threads, rows, k, n, layouts=name == "qkv")
    probes["int8 weight scales"] = int8_weight_calls(threads, 8 * 197, 384, 1536)
    if args.workdir:
        for precision in ("fp32", "int8"):
            probes[f"sharding {precision}"] = sharding_calls(threads, Path(args.workdir), args.modality, 8, precision)
    results = {}
    with torch.inference_mode():
        for name, (calls, shape) in probes.items():
            print(f"probe {name}: {shape}", flush=True)
            blocks = interleaved(calls, args.rounds, 2, time.perf_counter)
            base = next(iter(calls))
            results[name] = {
                "shape": shape,
                "baseline": base,
                "candidates": {
                    c: {
                        "median_ms": round(1000 * statistics.median(flat(b)), 3),
                        "min_ms": round(1000 * min(flat(b)), 3),
                        "paired_vs_baseline": round(paired_speedup(blocks, base, c), 3),
                    }
                    for c, b in blocks.items()
                },
            }
    machine = machine_info()
    return {"date": machine["date"], "machine": machine, "threads": threads, "rounds": args.rounds, "probes": results}


def markdown(report: dict) -> str:
    lines = [
        "# Single-op probes on CPU (what might close the batch-8 gap)",
        "",
        f"- date: {report['date']}",
        f"- machine: {machine_summary(report['machine'])}",
        f"- threads: {report['threads']}; versions: {versions_summary(report['machine'])}",
        f"- method: {report['rounds']} timed calls per candidate in interleaved cycles (bench_cpu.interleaved); "
        "paired = median over cycles of baseline block median / candidate block median (>1: candidate faster)",
    ]
    for name, probe in report["probes"].items():
        lines += [
            "",
            f"## {name}: {probe['shape']}",
            "",
            "| candidate | median ms | min ms | paired vs baseline |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {c} | {r['median_ms']} | {r['min_ms']} | {r['paired_vs_baseline']:.2f}x |"
            for c, r in probe["candidates"].items()
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=24)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--modality", default="depth", choices=("depth", "audio", "thermal", "imu"))
    p.add_argument("--workdir", help="a bench_cpu.py --workdir holding the exported bundle: adds the sharding probe")
    add_output_args(p, "probes")
    return run_and_record(p.parse_args(argv), run, markdown)


if __name__ == "__main__":
    sys.exit(main())
