"""The bundle's TensorRT engines as records: which one serves a kind here, and when a rebuild is a cache hit.

Pure decisions over manifest records (no TensorRT, no GPU), so the refusals a user sees
("built with TensorRT 10.8 for an A100; this is TensorRT 10.12 on an H200") are tested here.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping

from bindrt.bundle import Bundle, now_iso
from bindrt.errors import BackendError
from bindrt.schema import (
    TENSORRT_FORMAT,
    TENSORRT_FORMAT_VERSION,
    TENSORRT_KEY,
    ProfileShapes,
    TensorRtArtifact,
    TensorRtEngine,
    read_artifact,
    write_artifact,
)
from bindrt.tensorrt.adapter import TrtVersion
from bindrt.tensorrt.build import EnginePlan

ENGINE_FORMAT_NOTE = "serialized with ICudaEngine.serialize (IHostMemory), read by trt.Runtime.deserialize_cuda_engine"


def engine_records(bundle: Bundle, modality: str) -> dict[str, TensorRtEngine]:
    """``<kind>.<precision>`` -> engine record of one modality (empty when none were built)."""
    section = read_artifact(bundle, modality, TENSORRT_KEY)
    return dict(section.engines) if section is not None else {}


def make_record(
    plan: EnginePlan,
    *,
    graph_sha256: str,
    gpu: str,
    compute_capability: tuple[int, int],
    cache_key: str,
    seconds: float,
    layers: str | None,
    log: str | None,
) -> TensorRtEngine:
    low, opt, high = plan.shapes
    return TensorRtEngine(
        kind=plan.kind,
        modality=plan.modality,
        precision=plan.decisions.precision,
        file=plan.engine_relpath,
        graph=plan.graph.file,
        graph_sha256=graph_sha256,
        tensorrt=str(plan.decisions.version),
        gpu=gpu,
        compute_capability=tuple(compute_capability),
        input=plan.input_name,
        shapes=ProfileShapes(min=tuple(low), opt=tuple(opt), max=tuple(high)),
        options=asdict(plan.options),
        strongly_typed=plan.decisions.strongly_typed,
        cache_key=cache_key,
        trtexec=plan.trtexec_line,
        layers=layers,
        log=log,
        created=now_iso(),
        seconds=round(seconds, 2),
    )


def record_engine(bundle: Bundle, record: TensorRtEngine) -> None:
    """Put ``record`` in the manifest (not saved: the caller saves once all engines are in)."""
    section = read_artifact(bundle, record.modality, TENSORRT_KEY) or TensorRtArtifact(
        format=TENSORRT_FORMAT, version=TENSORRT_FORMAT_VERSION, engines={}
    )
    write_artifact(bundle, record.modality, TENSORRT_KEY, section.with_engine(record))


def is_cache_hit(bundle: Bundle, record: TensorRtEngine | None, cache_key: str) -> bool:
    """Whether the recorded engine was built from exactly these inputs and its file is intact."""
    if record is None or record.cache_key != cache_key:
        return False
    try:
        bundle.file(record.file, verify=True)
    except Exception:  # missing or changed on disk: rebuild
        return False
    return True


def select_engine(
    records: Mapping[str, TensorRtEngine],
    kind: str,
    precision: str,
    *,
    tensorrt: TrtVersion,
    gpu: str,
    compute_capability: tuple[int, int],
    where: str,
) -> TensorRtEngine:
    """The engine for ``kind`` at ``precision`` that this TensorRT and GPU can run, or a BackendError naming what differs.

    An engine runs where it was built: same TensorRT version (unless built ``version_compatible``,
    then any later version) and same compute capability (unless built for ``ampere+`` hardware
    compatibility, then any GPU from Ampere on).
    """
    record = records.get(f"{kind}.{precision}")
    if record is None:
        have = ", ".join(sorted(records)) or "none"
        raise BackendError(
            f"{where} has no {precision} TensorRT engine for {kind} (it has: {have}); "
            f"run `bindrt build {where} --precision {precision}` on this machine"
        )
    differs = []
    built = TrtVersion.parse(record.tensorrt)
    if record.options.get("version_compatible"):
        if tensorrt < built:
            differs.append(f"TensorRT {tensorrt} is older than the {built} that built it")
    elif built != tensorrt:
        differs.append(f"built with TensorRT {built}, this is TensorRT {tensorrt}")
    cc, here = tuple(record.compute_capability), tuple(compute_capability)
    if record.options.get("hardware_compatibility") == "ampere+":
        if here < (8, 0):
            differs.append(f"built for Ampere and newer, this GPU ({gpu}) is compute capability {here[0]}.{here[1]}")
    elif cc != here:
        differs.append(
            f"built for compute capability {cc[0]}.{cc[1]} ({record.gpu}), this GPU ({gpu}) is {here[0]}.{here[1]}"
        )
    if differs:
        raise BackendError(
            f"{where}: engine {record.file} cannot run here: {'; '.join(differs)}; rebuild it with `bindrt build`"
        )
    return record


def describe(record: TensorRtEngine) -> dict[str, Any]:
    return {"file": record.file, "tensorrt": record.tensorrt, "gpu": record.gpu, "max_shape": list(record.shapes.max)}
