"""Timing engines fairly on a shared machine: warm-up, interleaved rounds, percentiles, paired ratios.

Timing one engine for a minute and then the next lets a burst of other work land on one of
them only: a new user's run once showed torch at 154 ms against 1.76 ms a minute earlier,
and ratios of 100x and more. So engines are timed in rounds, each round running every engine
once in alternating order, and ratios are taken within a round (:func:`paired_ratio`), where
both sides saw the same machine. The p90/p50 spread of each engine then says whether the
machine was quiet enough to trust the figures at all (:data:`BUSY_SPREAD`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

#: A p90/p50 spread above this means calls of the same engine on the same input varied by
#: more than half: something else took the cores. Ratios from such a run are withheld.
BUSY_SPREAD = 1.5
#: A share of all cores' time taken by other processes above this during a measurement is flagged.
BUSY_OTHER_SHARE = 0.2


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


class WallClock:
    """Synchronised wall clock: every backend's ``run`` returns host arrays, so the call has finished."""

    name = "wall clock (perf_counter)"

    def time(self, fn: Callable[[], Any]) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


class CudaEventClock:
    """CUDA events around the call on the current stream, then a sync (torch's events; GPU runs only).

    The backends copy embeddings to the host inside ``run``, so this measures the same call as
    the wall clock does; the events keep host-side jitter (Python, the timer) out of it.
    """

    name = "CUDA events"

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def time(self, fn: Callable[[], Any]) -> float:
        start, end = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


def interleaved_rounds(
    calls: Mapping[str, Callable[[], Any]],
    rounds: int,
    calls_per_round: Mapping[str, int],
    time_one: Callable[[Callable[[], Any]], float],
    around: Callable[[str, Callable[[], list[float]]], list[float]] | None = None,
) -> dict[str, list[list[float]]]:
    """Per engine, the seconds of each timed call, grouped by round.

    Each round runs every engine's block (``calls_per_round[name]`` timed calls after one
    untimed settle call: the previous engine's thread pools may still be spinning), forward
    order on even rounds and reversed on odd ones, so no engine always follows the same one.
    ``around(name, block)`` wraps a block (the memory probe does: reset peak, run, read peak).
    """
    blocks: dict[str, list[list[float]]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = calls[name]

            def block(fn: Callable[[], Any] = fn, n: int = calls_per_round[name]) -> list[float]:
                fn()
                return [time_one(fn) for _ in range(n)]

            blocks[name].append(around(name, block) if around else block())
    return blocks


def calls_for(seconds_per_call: float, budget_s: float | None, iters: int | None, rounds: int) -> int:
    """Timed calls per round: ``iters`` spread over the rounds, or as many as fit ``budget_s``."""
    if iters is not None:
        return max(1, math.ceil(iters / rounds))
    assert budget_s is not None
    return int(min(max(1, budget_s / rounds / max(seconds_per_call, 1e-6)), 10_000))


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and mean of ``seconds``, in milliseconds, and the p90/p50 spread."""
    ms = np.asarray(seconds, np.float64) * 1e3
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    return {"p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "mean_ms": float(ms.mean()), "spread": p90 / p50}


def paired_ratio(base: Sequence[Sequence[float]], other: Sequence[Sequence[float]]) -> float:
    """Median over rounds of base's block median over other's: > 1 means ``other`` is faster."""
    ratios = [statistics.median(b) / statistics.median(o) for b, o in zip(base, other) if b and o]
    return float(statistics.median(ratios))
