"""Benchmarks of any backends on one bundle: percentiles, memory, roofline, preprocessing, comparisons.

``bench(bundle, backends=[...], ...)`` plans the sweep (:mod:`.plan`: what runs, one skip line
for what cannot), times it in interleaved rounds (:mod:`.sweep`, :mod:`.timing`, :mod:`.memory`)
and returns the report as a dict that :mod:`.report` writes as JSON and Markdown and
:mod:`.plots` draws. Torch-free unless a torch-based backend is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from bindrt.bench.machine import (
    CPU_FLAGS,
    contention,
    cpu_counters,
    cpuinfo,
    machine_info,
    machine_summary,
    versions_summary,
)
from bindrt.bench.metrics import max_row_rel_diff, min_row_cosine
from bindrt.bench.plan import ALL, AUTO, BENCH_BACKENDS, Plan, Skip, Target, make_plan, parse_batches
from bindrt.bench.sweep import Event, Report, Row, Settings, run_sweep
from bindrt.bench.timing import time_call
from bindrt.layouts import random_batch


def bench(
    bundle: "str | os.PathLike[str]",
    backends: Iterable[str] = ("torch",),
    *,
    precisions: Iterable[str] = ("fp32",),
    modalities: Iterable[str] | None = None,
    batches: Sequence[int] = (1, 8),
    on_event: Event | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Run the sweep; ``settings`` are :class:`Settings` fields (``duration_s``, ``iters``, ``rounds``, ``threads``...)."""
    from bindrt.bundle import Bundle

    opened = Bundle.open(bundle)
    batches = parse_batches(list(batches))
    plan = make_plan(opened, backends, precisions, modalities, batches)
    return run_sweep(opened, plan, Settings(batches=batches, **settings), on_event).to_dict()


__all__ = [
    "ALL",
    "AUTO",
    "BENCH_BACKENDS",
    "CPU_FLAGS",
    "Event",
    "Plan",
    "Report",
    "Row",
    "Settings",
    "Skip",
    "Target",
    "bench",
    "contention",
    "cpu_counters",
    "cpuinfo",
    "machine_info",
    "machine_summary",
    "make_plan",
    "max_row_rel_diff",
    "min_row_cosine",
    "parse_batches",
    "random_batch",
    "run_sweep",
    "time_call",
    "versions_summary",
]
