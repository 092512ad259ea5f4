"""Latency benchmarks of any backends on one bundle: medians, ratios against a baseline run in the same process.

Torch-free unless a torch-based backend is asked for. Results carry the machine,
versions and date so a recorded run can be compared with the next one.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from bindrt.layouts import INPUT_LAYOUTS, random_batch


@dataclass
class BenchRow:
    backend: str
    precision: str
    kind: str
    batch: int
    median_ms: float
    p10_ms: float
    p90_ms: float
    items_per_s: float
    speedup: float | None = None  # vs the baseline backend, same kind and batch
    min_cosine: float | None = None  # vs the baseline's embeddings of the same inputs


def time_call(fn: Callable[[], Any], warmup: int = 2, repeats: int = 10) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def parse_backend_spec(spec: str) -> tuple[str, str]:
    """'onnxruntime:int8' -> ('onnxruntime', 'int8'); a bare name means fp32."""
    name, _, precision = spec.partition(":")
    return name, precision or "fp32"


def bench_bundle(
    bundle: "str | os.PathLike[str]",
    backends: Iterable[str],
    kinds: Iterable[str],
    batch_sizes: Iterable[int],
    *,
    device: str = "cpu",
    repeats: int = 10,
    warmup: int = 2,
    clips: int | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    on_row: Callable[[BenchRow], None] | None = None,
) -> list[BenchRow]:
    """Time every (backend, kind, batch); the first backend is the baseline for speedup and cosine."""
    import bindrt

    specs = [parse_backend_spec(s) for s in backends]
    kinds, batch_sizes = list(kinds), list(batch_sizes)
    check_bench_settings(specs, kinds, batch_sizes, repeats, warmup)
    modalities = sorted({INPUT_LAYOUTS[k].encoder for k in kinds})
    rows: list[BenchRow] = []
    baseline: dict[tuple[str, int], tuple[float, np.ndarray]] = {}
    for index, (name, precision) in enumerate(specs):
        extra = (options or {}).get(f"{name}:{precision}", (options or {}).get(name, {}))
        with bindrt.load(
            bundle,
            name,
            device=device,
            precision=precision,
            modalities=modalities,
            batch_size=max(batch_sizes),
            **extra,
        ) as model:
            for kind in kinds:
                for batch in batch_sizes:
                    x = random_batch(kind, batch, seed=batch, clips=clips)
                    out = model.encode(kind, x)
                    times = time_call(lambda: model.encode(kind, x), warmup=warmup, repeats=repeats)
                    median = statistics.median(times)
                    row = BenchRow(
                        backend=name,
                        precision=precision,
                        kind=kind,
                        batch=batch,
                        median_ms=median * 1e3,
                        p10_ms=float(np.percentile(times, 10)) * 1e3,
                        p90_ms=float(np.percentile(times, 90)) * 1e3,
                        items_per_s=batch / median,
                    )
                    if index == 0:
                        baseline[(kind, batch)] = (median, out)
                        row.speedup, row.min_cosine = 1.0, 1.0
                    elif (kind, batch) in baseline:
                        base_time, base_out = baseline[(kind, batch)]
                        row.speedup = base_time / median
                        row.min_cosine = float(min_row_cosine(out, base_out))
                    rows.append(row)
                    if on_row:
                        on_row(row)
    return rows


def check_bench_settings(
    specs: list[tuple[str, str]], kinds: list[str], batch_sizes: list[int], repeats: int, warmup: int
) -> None:
    """Reject settings that cannot give a measurement before any backend is loaded."""
    from bindrt.errors import ConfigError, UnknownModalityError
    from bindrt.runtime import BACKENDS

    if not specs:
        raise ConfigError("no backends to benchmark; expected at least one NAME[:PRECISION]")
    for name, _ in specs:
        if name not in BACKENDS:
            raise ConfigError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    if not kinds:
        raise ConfigError(f"no input kinds to benchmark; expected some of {', '.join(INPUT_LAYOUTS)}")
    for kind in kinds:
        if kind not in INPUT_LAYOUTS:
            raise UnknownModalityError(f"unknown input kind {kind!r}; expected one of {', '.join(INPUT_LAYOUTS)}")
    if not batch_sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ConfigError(f"batch sizes must be integers >= 1, got {batch_sizes}")
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1 (a median needs at least one timed run), got {repeats}")
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0, got {warmup}")


def min_row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return float(cos.min())


def max_row_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| over each row, relative to that row's norm in the reference ``b``: the exact tier's metric."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float((np.abs(a - b).max(-1) / np.linalg.norm(b, axis=-1)).max())


#: Instruction-set flags that decide which CPU kernels run (ONNX Runtime's MLAS, oneDNN, torch):
#: recorded so a figure is only compared with figures from a CPU that runs the same kernels.
CPU_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
)


def machine_info() -> dict[str, Any]:
    """CPU model and flags, cores, GPU, library versions and the date: recorded with every result.

    The one record of "where did this run": ``bindrt bench`` and every script under
    ``benchmarks/`` write it, so results from different suites compare on the same fields.
    """
    from bindrt.bundle import now_iso, producer_versions

    model, flags = _cpuinfo()
    info: dict[str, Any] = {
        "date": now_iso(),
        "platform": platform.platform(),
        "cpu": model,
        "cpu_flags": [f for f in CPU_FLAGS if f in flags],
        "cpu_cores": os.cpu_count(),
        "versions": producer_versions(
            "numpy", "torch", "onnx", "onnxruntime", "onnxscript", "openvino", "triton", "tensorrt"
        ),
    }
    if hasattr(os, "sched_getaffinity"):
        info["affinity_cores"] = len(os.sched_getaffinity(0))
    info.update(_nvidia_smi())
    return info


def machine_summary(info: dict[str, Any]) -> str:
    """One Markdown-friendly line of a :func:`machine_info` record (the results' ``- machine:`` line)."""
    flags = ", ".join(info.get("cpu_flags") or ()) or "no flags recorded"
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    return f"{info['cpu']} — {info['cpu_cores']} cores ({flags}), {info['platform']}{gpu}"


def versions_summary(info: dict[str, Any]) -> str:
    """The record's library versions as one line: 'python 3.11.7, bindrt 0.1.0, ...'."""
    return ", ".join(f"{k} {v}" for k, v in info["versions"].items())


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; the platform's word and no flags elsewhere."""
    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model is None:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:  # x86, arm64
                flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or "unknown", flags


def _nvidia_smi() -> dict[str, Any]:
    """The first GPU as nvidia-smi names it (``gpu``: name, driver, memory) and its clock and power limits."""
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
    if not lines:
        return {}
    parts = [p.strip() for p in lines[0].split(",")]
    info: dict[str, Any] = {"gpu": ", ".join(parts[:3]), "gpu_count": len(lines)}
    if len(parts) >= 2:
        info["gpu_driver"] = parts[1]
    if len(parts) >= 5:
        info.update(gpu_max_sm_clock=parts[3], gpu_power_limit=parts[4])
    return info


def rows_to_markdown(rows: list[BenchRow]) -> str:
    head = "| backend | precision | input | batch | median ms | p10-p90 ms | items/s | speedup | min cosine |\n|---|---|---|---:|---:|---:|---:|---:|---:|\n"
    body = "".join(
        f"| {r.backend} | {r.precision} | {r.kind} | {r.batch} | {r.median_ms:.2f} | {r.p10_ms:.2f}-{r.p90_ms:.2f} | "
        f"{r.items_per_s:.1f} | {'' if r.speedup is None else f'{r.speedup:.2f}x'} | {'' if r.min_cosine is None else f'{r.min_cosine:.5f}'} |\n"
        for r in rows
    )
    return head + body


def write_results(
    rows: list[BenchRow], out_dir: "str | os.PathLike[str]", name: str, extra: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write ``<out_dir>/<date>-<name>.json`` and ``.md`` with the machine description."""
    from bindrt.fileio import atomic_write_bytes

    info = machine_info()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{info['date'][:10]}-{name}"
    payload = {"machine": info, **(extra or {}), "rows": [asdict(r) for r in rows]}
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    atomic_write_bytes(json_path, (json.dumps(payload, indent=1) + "\n").encode())
    md = (
        f"# {name}\n\n- date: {info['date']}\n- machine: {machine_summary(info)}\n- versions: {versions_summary(info)}\n\n"
        f"{rows_to_markdown(rows)}"
    )
    atomic_write_bytes(md_path, md.encode())
    return json_path, md_path
