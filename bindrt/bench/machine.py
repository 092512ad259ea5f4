"""Where a benchmark ran: CPU model and flags, cores, GPU, library versions, date, and how busy the cores were.

The one record of "where did this run": ``bindrt bench`` and every script under ``benchmarks/``
write it, so results from different suites compare on the same fields. Torch-free.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

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
    "amx_fp16",
    "asimd",
    "sve",
)


def machine_info() -> dict[str, Any]:
    """CPU model and flags, cores, GPU, library versions and the date: recorded with every result.

    The one record of "where did this run": ``bindrt bench`` and every script under
    ``benchmarks/`` write it, so results from different suites compare on the same fields.
    """
    from bindrt.bundle import now_iso, producer_versions

    model, flags = cpuinfo()
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
    info.update(nvidia_smi())
    return info


def machine_summary(info: dict[str, Any]) -> str:
    """One Markdown-friendly line of a :func:`machine_info` record (the results' ``- machine:`` line)."""
    flags = ", ".join(info.get("cpu_flags") or ()) or "no flags recorded"
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    return f"{info['cpu']} — {info['cpu_cores']} cores ({flags}), {info['platform']}{gpu}"


def versions_summary(info: dict[str, Any]) -> str:
    """The record's library versions as one line: 'python 3.11.7, bindrt 0.1.0, ...'."""
    return ", ".join(f"{k} {v}" for k, v in info["versions"].items())


def cpuinfo() -> tuple[str, set[str]]:
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


def nvidia_smi() -> dict[str, Any]:
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


def cpu_counters() -> tuple[list[int], float]:
    """(/proc/stat 'cpu' jiffies, this process's CPU seconds): their difference over a run tells
    whether anything else ran on the cores (and how much the hypervisor stole)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        fields = []
    t = os.times()
    return fields, t.user + t.system


def contention(before: tuple[list[int], float], after: tuple[list[int], float]) -> dict[str, float]:
    """Shares of all cores' time between two :func:`cpu_counters`: this process, other processes, stolen.

    Empty where /proc/stat is unreadable (not Linux) or no time passed.
    """
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
        "this_process": round(min(mine, busy) / total, 3),
        "other_processes": round(max(busy - mine, 0) / total, 3),
        "steal": round(delta[7] / total, 3),
    }


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except (AttributeError, OSError):
        return None
