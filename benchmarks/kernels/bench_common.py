"""Shared plumbing of the kernel benchmarks: environment record, timing, peak, output files.

Imported by ``bench_attention`` / ``bench_patch_embed`` / ``bench_encoder_e2e`` (run
as ``python -m benchmarks.kernels.NAME``). ``--smoke`` runs use the Triton interpreter on
CPU when there is no GPU; ``setup_interpreter`` must run before
``bindrt.kernels`` submodules are imported.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import free_name, machine_info, results_dir


def setup_interpreter(smoke: bool) -> bool:
    """Turn on the Triton interpreter for a smoke run without a GPU. Returns True if on."""
    import torch

    if smoke and not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"
        return True
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def add_sweep_args(ap, modalities: str, modalities_help: str | None = None) -> None:
    """The options every kernel benchmark shares: shapes, dtypes, baselines, timing."""
    ap.add_argument(
        "out",
        nargs="?",
        help="output path stem: writes OUT.json and OUT.md (default benchmarks/results/<date>-<gpu>/kernels/<script>)",
    )
    ap.add_argument("--smoke", action="store_true", help="tiny shapes; runs in the Triton interpreter on CPU")
    ap.add_argument("--dtypes", default=None, help="comma list of fp16,bf16,fp32 (default fp16,bf16; smoke fp32,fp16)")
    ap.add_argument("--batches", default=None, help="comma list (default 64,256; smoke 1,2)")
    ap.add_argument("--modalities", default=modalities, help=modalities_help)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile baseline")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; smoke aot_eager)")
    ap.add_argument("--warmup", type=int, default=25, help="do_bench warm-up ms")
    ap.add_argument("--rep", type=int, default=100, help="do_bench measurement ms")


@dataclass
class Sweep:
    """What ``add_sweep_args``' options resolve to on this machine."""

    device: str
    dtypes: list
    batches: list[int]
    modalities: list[str]
    table: dict
    compile_backend: str
    timing: dict


def sweep_settings(args, table: dict, smoke_table: dict) -> Sweep | None:
    """Resolve the shared options; None (after saying why) when neither a GPU nor the interpreter is there.

    Turns the Triton interpreter on for smoke runs without a GPU, so call it before
    importing ``bindrt.kernels`` submodules.
    """
    interp = setup_interpreter(args.smoke)
    import torch

    has_cuda = torch.cuda.is_available()
    if not has_cuda and not interp:
        print("no CUDA device: run with --smoke (Triton interpreter) or on a GPU", file=sys.stderr)
        return None
    names = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    dtypes = [names[d] for d in (args.dtypes or ("fp32,fp16" if args.smoke else "fp16,bf16")).split(",")]
    if interp:
        dtypes = [d for d in dtypes if d != torch.bfloat16]  # no bf16 in the interpreter
    table = smoke_table if args.smoke else table
    return Sweep(
        device="cuda" if has_cuda else "cpu",
        dtypes=dtypes,
        batches=[int(b) for b in (args.batches or ("1,2" if args.smoke else "64,256")).split(",")],
        modalities=[m for m in args.modalities.split(",") if m in table],
        table=table,
        compile_backend=args.compile_backend or ("aot_eager" if args.smoke else "inductor"),
        timing=dict(warmup=args.warmup, rep=args.rep, smoke=args.smoke),
    )


def environment() -> dict:
    """The run's record: :func:`benchmarks.common.machine_info` (CPU flags, GPU, versions, date) under
    ``machine``, and at the top what the tables print plus what only torch knows (CUDA, cuDNN, SMs)."""
    import torch

    machine = machine_info()
    info = {
        "date_utc": machine["date"],
        "host": platform.node(),
        "python": machine["versions"]["python"],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "triton_interpret": os.environ.get("TRITON_INTERPRET", "0") == "1",
        "triton": machine["versions"].get("triton", "unavailable"),
        "machine": machine,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_capability=f"{props.major}.{props.minor}",
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_sms=props.multi_processor_count,
            driver=machine.get("gpu_driver", "unknown"),
            max_sm_clock=machine.get("gpu_max_sm_clock"),
            power_limit=machine.get("gpu_power_limit"),
        )
    else:
        info["gpu"] = None
        info["cpu"] = machine["cpu"]
    return info


def bench(fn, *, warmup: int = 25, rep: int = 100, smoke: bool = False) -> float:
    """Median milliseconds of ``fn()``: triton.testing.do_bench on a GPU, wall clock in smoke runs."""
    import torch

    if torch.cuda.is_available() and not smoke:
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))
    fn()  # warm-up / compile
    times = []
    for _ in range(3 if smoke else 10):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def measure_peak(dtype, smoke: bool = False) -> dict:
    """Dense matmul TFLOP/s in ``dtype`` (8192^3 on a GPU; tiny on CPU smoke runs)."""
    import torch

    n = 8192 if torch.cuda.is_available() and not smoke else 256
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cpu" and dtype != torch.float32:
        dtype_run = torch.float32  # CPU half matmuls are not representative
    else:
        dtype_run = dtype
    a = torch.randn(n, n, device=dev, dtype=dtype_run)
    b = torch.randn(n, n, device=dev, dtype=dtype_run)
    ms = bench(lambda: torch.matmul(a, b), smoke=smoke)
    return {"n": n, "dtype": str(dtype_run).replace("torch.", ""), "ms": ms, "tflops": 2 * n**3 / (ms * 1e-3) / 1e12}


def measure_bandwidth(smoke: bool = False) -> dict:
    """Device-to-device copy GB/s (read + write), the roofline for memory-bound kernels."""
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    n = (1 << 28) if dev == "cuda" and not smoke else (1 << 20)
    a = torch.empty(n, device=dev, dtype=torch.float32)
    b = torch.empty_like(a)
    ms = bench(lambda: b.copy_(a), smoke=smoke)
    return {"bytes": 8 * n, "ms": ms, "gbps": 8 * n / (ms * 1e-3) / 1e9}


@functools.cache
def default_out() -> Path:
    """``<script name>[-N]`` in today's kernels results folder; once per process, since tables are rewritten as
    a run goes."""
    folder = results_dir("kernels", gpu=True)
    return folder / free_name(folder, Path(sys.argv[0]).stem.removeprefix("bench_"), (".json", ".md"))


def out_paths(out: str | None) -> tuple[Path, Path]:
    """``OUT.json``, ``OUT.md`` (without OUT: :func:`default_out`)."""
    p = default_out() if out is None else Path(out)
    if p.suffix in (".json", ".md"):
        p = p.with_suffix("")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p.with_suffix(".json"), p.with_suffix(".md")


def write_outputs(out: str, payload: dict, table_rows: list[list], headers: list[str], title: str, notes: list[str]):
    json_path, md_path = out_paths(out)
    json_path.write_text(json.dumps(payload, indent=1, default=str))
    env = payload["environment"]
    lines = [f"# {title}", ""]
    lines.append(
        f"GPU: {env.get('gpu') or 'none (CPU / interpreter smoke run)'}; driver {env.get('driver', '-')}; "
        f"torch {env['torch']} (CUDA {env.get('torch_cuda')}); triton {env.get('triton')}; "
        f"date {env['date_utc']}"
    )
    lines.append("")
    for note in notes:
        lines.append(f"- {note}")
    lines += ["", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in table_rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def compile_for_static_shapes(fn, backend: str):
    """``fn`` under torch.compile, one static-shape graph per case: dynamo's recompile limit lifted so later
    cases are not silently run eagerly."""
    import torch
    import torch._dynamo

    for knob in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 1024)
    return torch.compile(fn, backend=backend, dynamic=False)


def measure_impls(impls: dict, ref, timing: dict, record) -> list[dict]:
    """Each implementation's max error vs ``ref`` (relative to its max) and median ms, or why it could not run.

    ``record(name)`` gives the case fields each result starts from; scripts add their derived rates.
    """
    import torch

    results = []
    for name, fn in impls.items():
        rec = record(name)
        try:
            with torch.no_grad():
                out = fn()
                err = float((out.float() - ref).abs().max() / ref.abs().max())
                ms = bench(fn, **timing)
        except Exception as exc:  # backend rejects the case, OOM, compile failure...
            rec.update(status="unsupported", error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        else:
            rec.update(status="ok", ms=ms, max_rel_err=err)
        results.append(rec)
    return results


def fmt(x, nd=3):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)
