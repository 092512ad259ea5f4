"""Peak memory of one block of calls: the process's peak RSS on Linux, the torch allocator's peak on CUDA.

Linux keeps a resettable high-water mark of the resident set (``VmHWM``; writing ``5`` to
``/proc/self/clear_refs`` resets it to the current RSS, since Linux 4.0), so the peak of a
block is read exactly, with no sampling thread that would share the cores with the engine
being timed. Elsewhere the peak is ``ru_maxrss``, the whole process's, and says so.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any, Callable

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def rss_mib() -> float | None:
    """The current resident set, MiB (None where /proc is absent)."""
    return _status_kib("VmRSS")


def _status_kib(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Wraps a block of calls and records ``peak_rss_mib`` (and ``working_mib``: peak minus RSS before it)."""

    def __init__(self, device: str = "cpu") -> None:
        self.cuda = device.startswith("cuda") and "torch" in sys.modules
        self.resettable = _reset_peak()
        self.method = (
            "peak RSS of the block (VmHWM, reset before it)" if self.resettable else "process peak RSS (ru_maxrss)"
        )

    def measure(self, block: Callable[[], Any]) -> tuple[Any, dict[str, float | None]]:
        before = rss_mib()
        if self.resettable:
            _reset_peak()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        out = block()
        peak = _status_kib("VmHWM") if self.resettable else None
        if peak is None:
            scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20  # KiB on Linux, bytes on macOS
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        found: dict[str, float | None] = {
            "peak_rss_mib": peak,
            "working_mib": None if before is None or not self.resettable else max(peak - before, 0.0),
        }
        if self.cuda:
            import torch

            found["device_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return out, found
