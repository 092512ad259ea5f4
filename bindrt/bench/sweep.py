"""The ``bindrt bench`` sweep: every runnable target x input kind x batch, timed in interleaved rounds.

Per modality, every target is loaded at once (so their rounds interleave, :mod:`.timing`),
then per input kind and batch size each one gets the same rotating pool of fresh random
inputs: an untimed first call (compilation, allocation), the warm-up, then the rounds. Each
row carries latency percentiles, throughput, peak memory, the preprocessing time per item,
the roofline (achieved GFLOP/s and percent of this machine's measured peak), the speed-up
against the first target and its accuracy on the same inputs, and what actually ran.
Anything that cannot run becomes a :class:`~bindrt.bench.plan.Skip`; the sweep goes on.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bindrt.bench import timing
from bindrt.bench.machine import contention, cpu_counters, cpuinfo, load_average, machine_info
from bindrt.bench.memory import PeakMemory, rss_mib
from bindrt.bench.metrics import max_row_rel_diff, min_row_cosine
from bindrt.bench.plan import GRAPH_BACKENDS, THREAD_OPTIONS, Plan, Skip, Target
from bindrt.bench.report import REPORT_FORMAT
from bindrt.bundle import Bundle
from bindrt.errors import BindrtError, ConfigError
from bindrt.layouts import INPUT_KINDS, random_batch

#: Input pool per (kind, batch): this many distinct batches, rotated call by call, within a memory cap.
POOL, POOL_BYTES = 3, 256 << 20
#: Items preprocessed per timed preprocessing call, and rounds of fresh items.
PREPROCESS_ITEMS, PREPROCESS_ROUNDS = 8, 3
#: Seconds of /proc/stat watched before the run for other processes' load.
IDLE_CHECK_S = 0.5
REPORT_VERSION = 1


@dataclass
class Settings:
    """How long to time and where: ``duration_s`` per combination (split over ``rounds``) or ``iters`` calls."""

    batches: list[int]
    duration_s: float | None = 2.0
    iters: int | None = None
    rounds: int = 5
    warmup: int = 2
    threads: int | None = None
    device: str = "cpu"
    peaks: bool = True
    preprocess: bool = True
    seed: int = 0

    def check(self) -> None:
        if self.iters is not None and (isinstance(self.iters, bool) or self.iters < 1):
            raise ConfigError(f"--iters must be an integer >= 1, got {self.iters}")
        if self.iters is None and (self.duration_s is None or not self.duration_s > 0):
            raise ConfigError(f"--duration must be a number of seconds > 0, got {self.duration_s}")
        if self.rounds < 1:
            raise ConfigError(f"--rounds must be >= 1, got {self.rounds}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be >= 0, got {self.warmup}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")


@dataclass
class Row:
    """One measured combination. Times in ms; memory in MiB; ``speedup`` against the report's baseline."""

    target: str
    backend: str
    precision: str
    kind: str
    batch: int
    ran: str  # what actually ran: engine, graph variant, fallbacks
    calls: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    spread: float  # p90 / p50
    items_per_s: float
    threads: int | None
    #: RSS growth while the target loaded: its weights and sessions, plus libraries imported for the first time,
    #: less memory an earlier target freed and this one reused; a hint, not a measurement of the model alone
    load_rss_mib: float | None
    peak_rss_mib: float | None  # the process's peak RSS during this target's timed calls
    working_mib: float | None  # that peak minus the RSS just before the calls
    device_peak_mib: float | None
    preprocess_ms_per_item: float | None
    end_to_end_items_per_s: float | None  # one item through preprocessing, then this batch's share of the encoder
    gflop_per_item: float | None
    achieved_gflops: float | None
    peak_gflops: float | None
    percent_of_peak: float | None
    other_processes: float | None  # share of all cores' time other processes took during the rounds
    busy: str | None  # why the machine looked busy, if it did
    speedup: float | None = None
    speedup_note: str | None = None
    min_cosine: float | None = None
    max_rel_diff: float | None = None


@dataclass
class Report:
    machine: dict[str, Any]
    bundle: str
    settings: dict[str, Any]
    baseline: str | None
    clock: str
    memory: str
    peaks: dict[str, Any] | None
    preprocessing: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "machine": self.machine,
            "bundle": self.bundle,
            "settings": self.settings,
            "baseline": self.baseline,
            "clock": self.clock,
            "memory": self.memory,
            "peaks": self.peaks,
            "load": self.load,
            "preprocessing": self.preprocessing,
            "rows": [asdict(r) for r in self.rows],
            "skipped": [s.to_dict() for s in self.skipped],
            "warnings": self.warnings,
        }


Event = Callable[[str, Any], None]  # ("total", n) ("advance", 1) ("skip", Skip) ("row", Row) ("note", str)


def run_sweep(bundle: Bundle, plan: Plan, settings: Settings, on_event: Event | None = None) -> Report:
    """Measure every runnable combination of ``plan``; the first target is the baseline for ratios."""
    settings.check()
    emit = on_event or (lambda what, value: None)
    for s in plan.skipped:
        emit("skip", s)
    before_load = load_average()
    idle_check = cpu_counters()
    time.sleep(IDLE_CHECK_S)
    others = contention(idle_check, cpu_counters()).get("other_processes")
    report = Report(
        machine=machine_info(),
        bundle=str(bundle.path),
        settings={**asdict(settings), "targets": [t.label for t in plan.targets], "kinds": plan.kinds},
        baseline=plan.targets[0].label if plan.targets else None,
        clock=_clock(settings.device).name,
        memory=PeakMemory(settings.device).method,
        peaks=None,
        skipped=list(plan.skipped),
    )
    if others is not None and others > timing.BUSY_OTHER_SHARE:
        report.warnings.append(
            f"other processes took {others:.0%} of the cores in the {IDLE_CHECK_S:g} s before the run: "
            "the figures may be slow and noisy"
        )
        emit("note", "warning: " + report.warnings[-1])
    total = len(plan.kinds) * len(plan.batches) * len(plan.targets) + (len(plan.kinds) if settings.preprocess else 0)
    emit("total", total + (1 if settings.peaks else 0))
    if settings.peaks:
        report.peaks = _peaks(plan, settings, report.warnings)
        emit("advance", 1)
    if settings.preprocess:
        for kind in plan.kinds:
            report.preprocessing[kind] = time_preprocessing(kind, settings)
            emit("advance", 1)
    _set_torch_threads(plan, settings)
    for modality in dict.fromkeys(INPUT_KINDS[k] for k in plan.kinds):
        kinds = [k for k in plan.kinds if INPUT_KINDS[k] == modality]
        loaded = _load_targets(bundle, plan, modality, kinds, settings, report, emit)
        try:
            for kind in kinds:
                for batch in plan.batches:
                    _measure(bundle, plan, loaded, kind, batch, settings, report, emit)
        finally:
            for model, _ in loaded.values():
                model.close()
    report.load = {"before": before_load, "after": load_average(), "other_processes_before": others}
    busy = [r for r in report.rows if r.busy]
    if busy:
        worst = max(busy, key=lambda r: r.spread)
        report.warnings.append(
            f"the machine looked busy during {len(busy)} of {len(report.rows)} measurements (worst: {worst.target} "
            f"{worst.kind} batch {worst.batch}, {worst.busy}); their speed-ups are withheld: rerun on a quiet machine"
        )
    return report


def _clock(device: str) -> Any:
    return timing.CudaEventClock() if device.startswith("cuda") else timing.WallClock()


def _peaks(plan: Plan, settings: Settings, warnings: list[str]) -> dict[str, Any] | None:
    """This machine's matmul and copy peaks for the precisions the sweep runs (fp32 always)."""
    from bindrt.roofline import measure_peaks

    device = "cuda" if settings.device.startswith("cuda") else "cpu"
    wanted = ["fp32"] + [p for p in ("bf16", "fp16") if any(t.precision == p for t in plan.targets)]
    if device == "cpu" and "fp16" in wanted and not {"avx512_fp16", "amx_fp16"} & cpuinfo()[1]:
        wanted.remove("fp16")  # emulated: no peak to speak of (the fp16 rows show no percent)
        warnings.append(
            "no fp16 peak: this CPU has no native fp16 matmul (AVX512-FP16/AMX-FP16); fp16 rows show no percent"
        )
    try:
        return measure_peaks(0.5, device=device, precisions=tuple(wanted))
    except ImportError:  # bf16/fp16 peaks need torch
        warnings.append(f"no {'/'.join(wanted[1:])} peak measured (needs torch); those rows show no percent of peak")
        return measure_peaks(0.5, device=device, precisions=("fp32",))


def time_preprocessing(kind: str, settings: Settings) -> dict[str, Any]:
    """Milliseconds per item of ``preprocess(kind, items)`` on fresh raw items (median of a few rounds)."""
    from bindrt.bench.raw_inputs import FreshWords, raw_items
    from bindrt.preprocess import preprocess

    n = min(max(settings.batches), PREPROCESS_ITEMS)
    words = FreshWords(settings.seed + 1)
    rounds = [raw_items(kind, n, seed=settings.seed + r, words=words) for r in range(PREPROCESS_ROUNDS + 1)]
    preprocess(kind, rounds[0])  # imports, tokenizer vocabulary, codec set-up: not timed
    per_item = []
    for items in rounds[1:]:
        start = time.perf_counter()
        preprocess(kind, items)
        per_item.append((time.perf_counter() - start) / n)
    ms = statistics.median(per_item) * 1e3
    return {"ms_per_item": ms, "items_per_s": 1e3 / ms, "items": n, "rounds": PREPROCESS_ROUNDS, "inputs": _RAW[kind]}


_RAW = {
    "text": "fresh captions (6-16 new words)",
    "vision": "640x480 JPEG",
    "video": "2 s 320x240 MPEG-4 at 15 fps",
    "audio": "5 s 44.1 kHz 16-bit WAV",
    "depth": "640x480 16-bit PNG (mm)",
    "thermal": "640x480 8-bit PNG",
    "imu": "2000-sample 6-axis CSV",
}


def _set_torch_threads(plan: Plan, settings: Settings) -> None:
    if settings.threads and any(t.backend in ("torch", "triton") for t in plan.targets):
        import torch

        torch.set_num_threads(settings.threads)


def _load_targets(
    bundle: Bundle, plan: Plan, modality: str, kinds: list[str], settings: Settings, report: Report, emit: Event
) -> dict[str, tuple[Any, float | None]]:
    """label -> (model, MiB its loading added) for every target that loads ``modality``; the rest are skipped."""
    import warnings

    import bindrt

    loaded: dict[str, tuple[Any, float | None]] = {}
    for target in plan.targets:
        options = target.options
        if settings.threads and target.backend in THREAD_OPTIONS:
            options[THREAD_OPTIONS[target.backend]] = settings.threads
        before = rss_mib()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the triton fallback warns; the row's `ran` says it instead
                if target.name == "auto":
                    model = bindrt.load(bundle.path, "auto", device=settings.device, modalities=[modality])
                else:
                    model = bindrt.load(
                        bundle.path,
                        target.backend,
                        device=settings.device,
                        precision=target.precision,
                        modalities=[modality],
                        batch_size=max(plan.batches),
                        **options,
                    )
        except (BindrtError, RuntimeError, ImportError) as exc:
            _skip_all(report, emit, target, kinds, plan.batches, _reason(exc))
            continue
        after = rss_mib()
        loaded[target.label] = (model, None if before is None or after is None else max(after - before, 0.0))
    return loaded


def _skip_all(report: Report, emit: Event, target: Target, kinds: list[str], batches: list[int], reason: str) -> None:
    for kind in kinds:
        skip = Skip(target.label, kind, None, reason)
        report.skipped.append(skip)
        emit("skip", skip)
        emit("advance", len(batches))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if isinstance(exc, BindrtError) else f"{type(exc).__name__}: {text}"


def _input_pool(kind: str, batch: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, batch, list(INPUT_KINDS).index(kind)])
    first = random_batch(kind, batch, rng)
    count = max(1, min(POOL, POOL_BYTES // max(first.nbytes, 1)))
    return [first] + [random_batch(kind, batch, rng) for _ in range(count - 1)]


def _measure(
    bundle: Bundle,
    plan: Plan,
    loaded: dict[str, tuple[Any, float | None]],
    kind: str,
    batch: int,
    settings: Settings,
    report: Report,
    emit: Event,
) -> None:
    """One (kind, batch) cell for every loaded target, interleaved."""
    pool = _input_pool(kind, batch, settings.seed)
    clock = _clock(settings.device)
    calls: dict[str, Callable[[], Any]] = {}
    outputs: dict[str, np.ndarray] = {}
    per_call: dict[str, float] = {}
    for target in plan.targets:
        if target.label not in loaded:
            continue  # skipped when loading
        model = loaded[target.label][0]
        reason = plan.blocked.get((target.label, kind, batch)) or _cannot_run(model, kind, batch)
        if reason is None:
            try:
                outputs[target.label] = model.encode(kind, pool[0])  # first call: compile, allocate; not timed
                call = _rotating(model, kind, pool)
                for _ in range(settings.warmup):
                    call()
                per_call[target.label] = clock.time(call)
                calls[target.label] = call
                continue
            except (BindrtError, RuntimeError, MemoryError) as exc:
                reason = _reason(exc)
        if (target.label, kind, batch) not in plan.blocked:  # blocked ones were reported by the plan
            skip = Skip(target.label, kind, batch, reason)
            report.skipped.append(skip)
            emit("skip", skip)
        emit("advance", 1)
    if not calls:
        return
    per_round = {
        name: timing.calls_for(per_call[name], settings.duration_s, settings.iters, settings.rounds) for name in calls
    }
    memory = PeakMemory(settings.device)
    peaks: dict[str, list[dict[str, float | None]]] = {name: [] for name in calls}

    def around(name: str, block: Callable[[], list[float]]) -> list[float]:
        times, found = memory.measure(block)
        peaks[name].append(found)
        return times

    counters = cpu_counters()
    blocks = timing.interleaved_rounds(calls, settings.rounds, per_round, clock.time, around)
    shares = contention(counters, cpu_counters())
    pre = report.preprocessing.get(kind)
    base = report.baseline if report.baseline in blocks else None
    rows = {
        label: _row(target, *loaded[label], kind, batch, blocks[label], peaks[label], pre, report, settings)
        for target in plan.targets
        if (label := target.label) in blocks
    }
    for label, row in rows.items():
        row.other_processes = shares.get("other_processes")
        if row.other_processes is not None and row.other_processes > timing.BUSY_OTHER_SHARE:
            other = f"other processes took {row.other_processes:.0%} of the cores"
            row.busy = f"{row.busy}; {other}" if row.busy else other
    for label, row in rows.items():
        if base is not None:
            row.min_cosine = min_row_cosine(outputs[label], outputs[base])
            row.max_rel_diff = max_row_rel_diff(outputs[label], outputs[base])
            busy = row.busy or rows[base].busy
            if busy:
                row.speedup_note = f"withheld: the machine looked busy ({busy})"
            else:
                row.speedup = 1.0 if label == base else timing.paired_ratio(blocks[base], blocks[label])
        report.rows.append(row)
        emit("row", row)
        emit("advance", 1)


def _cannot_run(model: Any, kind: str, batch: int) -> str | None:
    """Why this loaded model cannot take ``batch`` items of ``kind`` in one call (None: it can)."""
    if kind not in model.input_kinds:
        return f"the engine has no {kind} input (it runs: {', '.join(model.input_kinds) or 'none'})"
    limit = model.backend.max_batch_size(kind)
    if limit is not None and batch > limit:
        return f"batch {batch} exceeds the engine's largest batch ({limit}); a bigger batch would be split"
    return None


def _rotating(model: Any, kind: str, pool: list[np.ndarray]) -> Callable[[], Any]:
    """A call that encodes the next batch of the pool each time (so no cache sees the same input twice running)."""
    state = {"i": 0}

    def call() -> Any:
        state["i"] = (state["i"] + 1) % len(pool)
        return model.encode(kind, pool[state["i"]])

    return call


def _row(
    target: Target,
    model: Any,
    load_rss_mib: float | None,
    kind: str,
    batch: int,
    blocks: list[list[float]],
    peaks: list[dict[str, float | None]],
    pre: dict[str, Any] | None,
    report: Report,
    settings: Settings,
) -> Row:
    from bindrt.roofline import encoder_flops, roofline_row

    stats = timing.percentiles([t for b in blocks for t in b])
    items_per_s = batch / (stats["p50_ms"] / 1e3)
    info = model.describe() if hasattr(model, "describe") else model.backend.describe()
    backend = info.get("backend", target.backend)
    precision = info.get("precision", target.precision)
    graph = getattr(model.backend, "graphs", {}).get(kind)
    pooled = backend in GRAPH_BACKENDS and (graph is None or getattr(graph, "pooled_last_block", True) is not False)
    flops = encoder_flops(model.config, kind, pooled_last_block=pooled)
    roof = roofline_row(flops, items_per_s, report.peaks or {}, precision) if report.peaks else None
    pre_ms = pre["ms_per_item"] if pre else None

    def worst(key: str) -> float | None:
        values = [p[key] for p in peaks if p.get(key) is not None]
        return max(values) if values else None

    busy = f"p90/p50 {stats['spread']:.2f}" if stats["spread"] > timing.BUSY_SPREAD else None
    return Row(
        target=target.label,
        backend=backend,
        precision=precision,
        kind=kind,
        batch=batch,
        ran=describe_run(target, info, kind),
        calls=sum(map(len, blocks)),
        p50_ms=stats["p50_ms"],
        p90_ms=stats["p90_ms"],
        p99_ms=stats["p99_ms"],
        mean_ms=stats["mean_ms"],
        spread=stats["spread"],
        items_per_s=items_per_s,
        threads=_threads(info, settings),
        load_rss_mib=load_rss_mib,
        peak_rss_mib=worst("peak_rss_mib"),
        working_mib=worst("working_mib"),
        device_peak_mib=worst("device_peak_mib") if backend in ("torch", "triton") else None,
        preprocess_ms_per_item=pre_ms,
        end_to_end_items_per_s=None if pre_ms is None else 1e3 / (pre_ms + stats["p50_ms"] / batch),
        gflop_per_item=flops["total"] / 1e9,
        achieved_gflops=roof["achieved_gflops"] if roof else None,
        peak_gflops=roof["peak_gflops"] if roof else None,
        percent_of_peak=roof["percent_of_peak"] if roof else None,
        other_processes=None,
        busy=busy,
    )


def _threads(info: dict[str, Any], settings: Settings) -> int | None:
    for key in ("threads", "inference_num_threads"):
        if isinstance(info.get(key), int):
            return info[key]
    return settings.threads


def describe_run(target: Target, info: dict[str, Any], kind: str) -> str:
    """What actually ran, in words: 'onnxruntime int8, fused graph depth.int8.fused.onnx', a fallback said so."""
    backend, precision = info.get("backend", target.backend), info.get("precision", target.precision)
    words = [f"{backend} {precision}"]
    if "auto" in info:
        chosen = info["auto"]["chosen"]
        words = [f"auto chose {chosen['backend']} {chosen['precision']} (tier {info['auto']['tier']})"]
    if info.get("compile"):
        words.append(f"torch.compile mode {info['compile']}")
    elif backend == "torch":
        words.append("eager")
    kernels = info.get("kernels")
    if kernels and kernels != "on":
        words.append(f"Triton kernels off, fell back to plain torch ({kernels.removeprefix('off: ')})")
    elif kernels == "on":
        words.append("Triton kernels" + (", CUDA graphs" if info.get("cuda_graphs") else ""))
    graph = (info.get("graphs") or {}).get(kind)
    if graph:
        words.append(f"{graph['variant']} graph {os.path.basename(graph['file'])}")
    if info.get("inference_precision") and backend == "openvino":
        words.append(f"inference precision {info['inference_precision']}")
    engine = (info.get("engines") or {}).get(kind)
    if engine:
        words.append(f"engine {engine.get('file', '') if isinstance(engine, dict) else engine}")
    return ", ".join(words)
