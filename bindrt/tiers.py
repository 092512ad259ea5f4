"""Precision tiers: what "accurate enough" means, the same for every engine. Torch-free.

A tier is a bound on how far an engine's embeddings may be from torch fp32 on the same
inputs. ``backend="auto"`` measures the engines that load here and :func:`choose` picks
the fastest that meets the requested tier; keeping the decision a pure function over
recorded measurements lets it be tested for machines this code never ran on (AMX, no BF16).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from bindrt.errors import BackendError, ConfigError


class Tier(NamedTuple):
    metric: str  # "max_rel_diff" (at most bound) or "min_cosine" (at least bound)
    bound: float
    description: str


#: Strictest first: an engine that meets a tier also meets every tier after it.
TIERS: dict[str, Tier] = {
    "exact": Tier("max_rel_diff", 1e-5, "max |diff| <= 1e-5 of the row norm vs torch fp32"),
    "near-exact": Tier("min_cosine", 0.999, "min row cosine >= 0.999 vs torch fp32"),
    "int8": Tier("min_cosine", 0.98, "min row cosine >= 0.98 vs torch fp32"),
}


@dataclass
class Measurement:
    """One engine measured against the reference; ``skipped`` says why it gave no numbers."""

    backend: str
    precision: str
    options: dict[str, Any] = field(default_factory=dict)
    median_ms: float | None = None  # summed over the measured input kinds
    max_rel_diff: float | None = None
    min_cosine: float | None = None
    skipped: str | None = None

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}"

    @property
    def tier(self) -> str | None:
        return None if self.skipped else tier_met(self.max_rel_diff, self.min_cosine)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tier": self.tier}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurement":
        return cls(**{k: v for k, v in d.items() if k != "tier"})


def check_tier(tier: object) -> str:
    if not isinstance(tier, str) or tier not in TIERS:
        raise ConfigError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
    return tier


def tier_met(max_rel_diff: float | None, min_cosine: float | None) -> str | None:
    """The strictest tier these numbers meet, or None."""
    values = {"max_rel_diff": max_rel_diff, "min_cosine": min_cosine}
    for name, t in TIERS.items():
        value = values[t.metric]
        if value is not None and (value <= t.bound if t.metric == "max_rel_diff" else value >= t.bound):
            return name
    return None


def meets(m: Measurement, tier: str) -> bool:
    reached = m.tier
    return reached is not None and list(TIERS).index(reached) <= list(TIERS).index(check_tier(tier))


def choose(measurements: list[Measurement], tier: str) -> Measurement:
    """The fastest measured engine that meets ``tier`` (the first listed on a tie)."""
    check_tier(tier)
    ok = [m for m in measurements if m.median_ms is not None and meets(m, tier)]
    if not ok:
        reach = "; ".join(reach_text(m) for m in measurements) or "no engine could be measured"
        raise BackendError(f"no engine here meets tier {tier!r} ({TIERS[tier].description}): {reach}")
    return min(ok, key=lambda m: m.median_ms)


def reach_text(m: Measurement) -> str:
    """'onnxruntime int8: cosine 0.9712, 3.2 ms (no tier)' -- what one candidate reached."""
    if m.skipped:
        return f"{m.name}: skipped ({m.skipped})"
    return f"{m.name}: max rel diff {m.max_rel_diff:.2g}, cosine {m.min_cosine:.5f}, {m.median_ms:.2f} ms ({m.tier or 'no tier'})"
