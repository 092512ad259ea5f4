"""What a ``bindrt bench`` sweep will run, and one line for each combination that cannot run, before any timing.

A sweep is every target (backend and precision) times every input kind times every batch
size. Bad names (an unknown backend, precision or modality), precisions a backend does not
run, modalities the bundle lacks and batches above a TensorRT engine's profile are found
here from the registry and the manifest alone, so each becomes one ``skipped: why`` line
and the rest of the sweep still runs. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bindrt.bundle import Bundle
from bindrt.errors import BindrtError, ConfigError
from bindrt.layouts import INPUT_KINDS, INPUT_LAYOUTS
from bindrt.runtime.base import PRECISIONS

#: What ``--backends`` names: a runtime backend and the options that make it this configuration.
BENCH_BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "torch": ("torch", {}),
    "torch.compile": ("torch", {"compile": True}),
    "triton": ("triton", {}),
    "onnxruntime": ("onnxruntime", {}),
    "openvino": ("openvino", {}),
    "tensorrt": ("tensorrt", {}),
}
#: ``--backends all`` expands to these; ``auto`` is ``bindrt.load(..., backend="auto")``'s choice.
ALL, AUTO = "all", "auto"
#: Backends that run the bundle's exported graphs (their FLOPs are the pooled last block's).
GRAPH_BACKENDS = frozenset({"onnxruntime", "openvino", "tensorrt"})
#: Thread-count option of each runtime backend (``--threads``).
THREAD_OPTIONS = {"onnxruntime": "intra_op_num_threads", "openvino": "inference_num_threads"}


@dataclass(frozen=True)
class Target:
    """One engine configuration: ``torch.compile:bf16``, ``onnxruntime:int8``, ``auto``."""

    name: str  # a key of BENCH_BACKENDS, or "auto"
    precision: str  # "auto" for the auto target

    @property
    def label(self) -> str:
        return self.name if self.name == AUTO else f"{self.name}:{self.precision}"

    @property
    def backend(self) -> str:
        """The runtime backend ``bindrt.load`` gets."""
        return self.name if self.name == AUTO else BENCH_BACKENDS[self.name][0]

    @property
    def options(self) -> dict[str, Any]:
        return {} if self.name == AUTO else dict(BENCH_BACKENDS[self.name][1])


@dataclass(frozen=True)
class Skip:
    """A combination that gave no numbers, and why. ``kind``/``batch`` None: every kind / batch of it."""

    target: str
    kind: str | None
    batch: int | None
    reason: str

    @property
    def line(self) -> str:
        where = " ".join(p for p in (self.kind, None if self.batch is None else f"batch {self.batch}") if p)
        return f"skipped: {self.target}{' ' + where if where else ''}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "batch": self.batch, "reason": self.reason}


@dataclass
class Plan:
    targets: list[Target]
    kinds: list[str]
    batches: list[int]
    skipped: list[Skip] = field(default_factory=list)
    #: (target label, kind, batch) -> reason: combinations found unrunnable from the manifest
    blocked: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def runnable(self, target: Target, kind: str, batch: int) -> bool:
        return (target.label, kind, batch) not in self.blocked


def parse_batches(text: "str | Sequence[str] | Sequence[int]") -> list[int]:
    """'1,8,32' (or ['1', '8'], [1, 8]) -> [1, 8, 32]; anything else is a ConfigError naming the bad entry."""
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in str(t).split(",")]
    out: list[int] = []
    for p in (p.strip() for p in parts):
        if not p.isdigit() or int(p) < 1:
            raise ConfigError(f"batch size {p!r} is not an integer >= 1; expected e.g. --batch 1,8,32")
        if int(p) not in out:
            out.append(int(p))
    if not out:
        raise ConfigError("no batch sizes; expected e.g. --batch 1,8,32")
    return out


def expand_targets(backends: Iterable[str], precisions: Iterable[str]) -> tuple[list[Target], list[Skip]]:
    """``--backends`` x ``--precision``: a bare name takes every precision, ``name:prec`` just its own."""
    from bindrt.runtime import backend_class

    precisions = list(precisions) or ["fp32"]
    targets: list[Target] = []
    skipped: list[Skip] = []
    names = [n for spec in backends for n in ([*BENCH_BACKENDS] if spec == ALL else [spec])]
    for spec in names:
        if spec == AUTO:
            targets.append(Target(AUTO, AUTO))
            continue
        name, sep, own = spec.partition(":")
        if name not in BENCH_BACKENDS:
            expected = ", ".join([*BENCH_BACKENDS, ALL, AUTO])
            skipped.append(Skip(spec, None, None, f"unknown backend {name!r}; expected one of {expected}"))
            continue
        for precision in [own] if sep else precisions:
            target = Target(name, precision)
            if precision not in PRECISIONS:
                skipped.append(
                    Skip(
                        target.label,
                        None,
                        None,
                        f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}",
                    )
                )
                continue
            try:
                cls = backend_class(target.backend)
            except BindrtError as exc:
                skipped.append(Skip(target.label, None, None, str(exc)))
                continue
            if precision not in cls.precisions:
                skipped.append(
                    Skip(target.label, None, None, f"{name} runs {', '.join(cls.precisions)}, not {precision}")
                )
                continue
            if target not in targets:
                targets.append(target)
    return targets, skipped


def select_kinds(bundle: Bundle, requested: Iterable[str] | None) -> tuple[list[str], list[Skip]]:
    """Input kinds to run: the requested ones the bundle has (default: every kind of its modalities)."""
    if not requested:
        return [k for k, m in INPUT_KINDS.items() if m in bundle.modalities], []
    kinds: list[str] = []
    skipped: list[Skip] = []
    for name in requested:
        if name not in INPUT_LAYOUTS:
            skipped.append(
                Skip(
                    "*",
                    name,
                    None,
                    f"unknown modality or input kind {name!r}; expected one of {', '.join(INPUT_LAYOUTS)}",
                )
            )
        elif INPUT_KINDS[name] not in bundle.modalities:
            have = ", ".join(bundle.modalities) or "none"
            skipped.append(
                Skip("*", name, None, f"bundle {bundle.path} has no {INPUT_KINDS[name]} weights (it has: {have})")
            )
        elif name not in kinds:
            kinds.append(name)
    return kinds, skipped


def engine_profile_limits(bundle: Bundle, target: Target, kind: str) -> tuple[int, str] | None:
    """(max batch, engine file) of the TensorRT engine ``target`` would run for ``kind``, from the manifest."""
    from bindrt.schema import TENSORRT_KEY, TensorRtArtifact, read_artifact

    if target.backend != "tensorrt":
        return None
    section = read_artifact(bundle, INPUT_KINDS[kind], TENSORRT_KEY)
    engine = section.engines.get(f"{kind}.{target.precision}") if isinstance(section, TensorRtArtifact) else None
    return None if engine is None else (int(engine.shapes.max[0]), engine.file)


def make_plan(
    bundle: Bundle,
    backends: Iterable[str],
    precisions: Iterable[str],
    kinds: Iterable[str] | None,
    batches: Sequence[int],
) -> Plan:
    """Every target x kind x batch, with a Skip for each one the names or the manifest rule out."""
    targets, skipped = expand_targets(backends, precisions)
    chosen, kind_skips = select_kinds(bundle, kinds)
    plan = Plan(targets, chosen, list(batches), skipped + kind_skips)
    for target in targets:
        for kind in chosen:
            limits = engine_profile_limits(bundle, target, kind)
            for batch in batches:
                if limits and batch > limits[0]:
                    reason = (
                        f"batch {batch} exceeds the TensorRT engine's profile (max batch {limits[0]}, {limits[1]}); "
                        f"rebuild with `bindrt build {bundle.path} --batch 1:8:{batch}`"
                    )
                    plan.blocked[(target.label, kind, batch)] = reason
                    plan.skipped.append(Skip(target.label, kind, batch, reason))
    return plan
