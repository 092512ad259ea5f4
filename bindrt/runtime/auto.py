"""``bindrt.load(bundle, backend="auto", tier=...)``: the fastest engine here that meets a precision tier.

Which engine is fastest depends on the CPU (AMX or AVX512-BF16 make bf16 pay; without them
it is slow or absent), so it is measured, briefly, on the machine itself: every engine and
precision that loads runs fresh random inputs of the requested modalities against torch
fp32. The measurements are cached in the bundle per machine (``engines/auto/<machine>.json``)
and reused while the candidates, the bundle's manifest and the library versions are the same;
the decision itself is :func:`bindrt.tiers.choose`, a pure function over them.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from bindrt.bench import CPU_FLAGS, cpuinfo, max_row_rel_diff, min_row_cosine, time_call
from bindrt.bundle import MANIFEST, producer_versions
from bindrt.config import ImageBindConfig, check_modalities
from bindrt.errors import BackendError, BindrtError, ConfigError
from bindrt.fileio import atomic_write_bytes, is_writable_dir, sha256_file
from bindrt.layouts import INPUT_KINDS, random_batch
from bindrt.runtime.base import Backend
from bindrt.runtime.embedder import Embedder
from bindrt.tiers import TIERS, Measurement, check_tier, choose

#: Every (backend, precision) worth trying on a CPU, the reference first.
CANDIDATES: tuple[tuple[str, str], ...] = (
    ("torch", "fp32"),
    ("torch", "bf16"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "fp16"),
    ("onnxruntime", "int8"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
)
REFERENCE = CANDIDATES[0]
#: A short measurement: batch 2 (2 clips for multi-clip kinds), one warm-up, median of 3 calls.
BATCH, CLIPS, WARMUP, REPEATS = 2, 2, 1, 3
DEFAULT_TIER = "near-exact"
CACHE_VERSION = 1


class AutoEmbedder(Embedder):
    """An Embedder over the chosen engine that also says how it was chosen (``describe()["auto"]``)."""

    def __init__(self, backend: Backend, batch_size: int, auto: dict[str, Any]) -> None:
        super().__init__(backend, batch_size=batch_size)
        self.auto = auto

    def describe(self) -> dict[str, Any]:
        return {**self.backend.describe(), "auto": self.auto}


def machine_key() -> str:
    """'intel-r-xeon-r-platinum-8480-3f2a9c1d': CPU model plus a hash of the kernel-deciding flags."""
    model, flags = cpuinfo()
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:60] or "cpu"
    digest = hashlib.sha256(" ".join(f for f in CPU_FLAGS if f in flags).encode()).hexdigest()[:8]
    return f"{slug}-{digest}"


def cache_path(bundle_path: Path, machine: str | None = None) -> Path:
    return Path(bundle_path) / "engines" / "auto" / f"{machine or machine_key()}.json"


def load_auto(
    path: Any,
    *,
    tier: str | None,
    device: str,
    precision: str,
    modalities: Any,
    config: "str | ImageBindConfig | None",
    batch_size: int,
    refresh: bool = False,
    **options: Any,
) -> AutoEmbedder:
    """Measure (or reuse the cached measurement), choose, then load the winner."""
    from bindrt.runtime import load, open_source

    tier = check_tier(DEFAULT_TIER if tier is None else tier)
    if precision != "fp32":
        raise ConfigError(
            f"backend='auto' chooses the precision itself; drop precision={precision!r} (or name a backend)"
        )
    if device.lower() != "cpu":
        raise ConfigError(f"backend='auto' measures CPU engines only; got device={device!r}")
    if options:
        raise ConfigError(
            f"backend='auto' takes no backend options (got {sorted(options)}); name a backend to pass them"
        )
    source = open_source(path, config)
    if source.bundle is None:
        raise ConfigError(
            "backend='auto' needs a bundle directory (it caches its measurement there); convert the checkpoint first"
        )
    mods = check_modalities(modalities, source.available_modalities)
    bundle_path = source.bundle.path
    cache = cache_path(bundle_path)
    key = {
        "version": CACHE_VERSION,
        "candidates": [list(c) for c in CANDIDATES],
        "modalities": list(mods),
        "manifest_sha256": sha256_file(bundle_path / MANIFEST),
        "versions": producer_versions("numpy", "torch", "onnxruntime", "openvino"),
    }
    measurements = None if refresh else _read_cache(cache, key)
    reused = measurements is not None
    written = False
    if measurements is None:
        measurements = measure(bundle_path, mods)
        written = _write_cache(cache, key, measurements)
    winner = choose(measurements, tier)
    model = load(bundle_path, winner.backend, precision=winner.precision, modalities=list(mods), **winner.options)
    ref = next((m for m in measurements if (m.backend, m.precision) == REFERENCE), None)
    speedup = ref.median_ms / winner.median_ms if ref and ref.median_ms and winner.median_ms else None
    report = {
        "tier": tier,
        "tier_description": TIERS[tier].description,
        "chosen": {"backend": winner.backend, "precision": winner.precision, "options": winner.options},
        "speedup_vs_reference": speedup,
        "why": f"fastest of the {sum(1 for m in measurements if m.median_ms is not None)} engines measured that "
        f"meet {tier!r} ({TIERS[tier].description})",
        "reference": " ".join(REFERENCE),
        "machine": machine_key(),
        "measurements": [m.to_dict() for m in measurements],
        "cache": {"path": str(cache), "reused": reused, "written": written},
    }
    return AutoEmbedder(model.backend, batch_size, report)


def measure(bundle_path: Path, modalities: tuple[str, ...], seed: int | None = None) -> list[Measurement]:
    """Every candidate on the same fresh random batches; the ones that cannot load or run say why."""
    from bindrt.runtime import load

    rng = np.random.default_rng(seed)
    batches = {k: random_batch(k, BATCH, rng, clips=CLIPS) for k, m in INPUT_KINDS.items() if m in modalities}
    reference: dict[str, np.ndarray] = {}
    out: list[Measurement] = []
    for backend, precision in CANDIDATES:
        m = Measurement(backend, precision)
        try:
            with load(
                bundle_path, backend, precision=precision, modalities=list(modalities), batch_size=BATCH
            ) as model:
                total, diffs, cosines = 0.0, [], []
                for kind, x in batches.items():
                    emb = model.encode(kind, x)
                    times = time_call(lambda: model.encode(kind, x), warmup=WARMUP, repeats=REPEATS)
                    total += statistics.median(times) * 1e3
                    ref = reference.setdefault(kind, emb) if (backend, precision) == REFERENCE else reference[kind]
                    diffs.append(max_row_rel_diff(emb, ref))
                    cosines.append(min_row_cosine(emb.astype(np.float64), ref.astype(np.float64)))
            m.median_ms, m.max_rel_diff, m.min_cosine = total, max(diffs), min(cosines)
        except (BindrtError, RuntimeError) as exc:  # RuntimeError: an engine's own refusal
            if (backend, precision) == REFERENCE:
                raise BackendError(
                    f"backend='auto' measures against torch fp32, which cannot run here: {exc}"
                ) from None
            m.skipped = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        out.append(m)
    return out


def _read_cache(cache: Path, key: dict[str, Any]) -> list[Measurement] | None:
    """The cached measurements if they were taken for the same key; anything unreadable is measured anew."""
    try:
        entry = _cache_entries(cache).get(",".join(key["modalities"]))
        if not entry or entry.get("key") != key:
            return None
        return [Measurement.from_dict(d) for d in entry["measurements"]]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _cache_entries(cache: Path) -> dict[str, Any]:
    """modalities ('imu', 'text,vision') -> {key, measurements}: one file per machine, one entry per selection."""
    try:
        entries = json.loads(cache.read_text()).get("entries")
    except (OSError, ValueError, AttributeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write_cache(cache: Path, key: dict[str, Any], measurements: list[Measurement]) -> bool:
    """Write where the bundle lets us (a read-only bundle still loads, it just measures each time)."""
    try:
        if not is_writable_dir(cache.parents[2]):
            return False
        cache.parent.mkdir(parents=True, exist_ok=True)
        entries = _cache_entries(cache)
        entries[",".join(key["modalities"])] = {"key": key, "measurements": [m.to_dict() for m in measurements]}
        payload = {"machine": machine_key(), "entries": entries}
        atomic_write_bytes(cache, (json.dumps(payload, indent=1) + "\n").encode())
    except (OSError, BindrtError):
        return False
    return True


def summary(auto: dict[str, Any]) -> str:
    """The CLI's line: 'auto: openvino bf16 (near-exact, 3.1x torch fp32), measured on this machine, cached in ...'."""
    chosen, cache = auto["chosen"], auto["cache"]
    speed = f", {auto['speedup_vs_reference']:.1f}x {auto['reference']}" if auto["speedup_vs_reference"] else ""
    how = "measurement cached for this machine" if cache["reused"] else "measured on this machine"
    where = f"cached in {cache['path']}" if cache["reused"] or cache["written"] else "not cached (bundle not writable)"
    return f"auto: {chosen['backend']} {chosen['precision']} ({auto['tier']}{speed}), {how}, {where}"
