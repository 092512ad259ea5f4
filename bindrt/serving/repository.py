"""``bindrt triton-repo``: a Triton model repository from a bundle. Torch- and tritonclient-free.

Layout (as Triton documents it)::

    DIR/<model>/config.pbtxt
    DIR/<model>/1/model.onnx | model.plan | model.py (+ bundle/ for Python models)
    DIR/bindrt-triton-repository.json     # what wrote it (the marker ``--force`` looks for)
    DIR/README.md

Models and tensors follow :mod:`bindrt.serving.protocol`: ``<kind>_encoder`` takes the preprocessed
tensor named after the kind; ``<kind>`` (``--platform python``, or ``--ensemble``) takes raw media
(:data:`~bindrt.serving.protocol.RAW_INPUTS`); every model returns ``embedding``.

Embeddings are L2-normalised, as the protocol says, everywhere bindrt can make them so:

* ``onnxruntime``: ``model.onnx`` is the bundle's plain graph of the precision with one
  ``LpNormalization(p=2, axis=-1)`` node appended to its output (the graph's weights, inline or as
  external data, are copied unchanged); the record says which bundle graph it came from.
* ``python``: the models run ``bindrt.load(..., backend="onnxruntime")`` and ``encode(normalize=True)``.
* ``tensorrt``: an engine cannot be edited, so ``<kind>_encoder`` returns what the engine returns,
  the reference's scaled embedding (unit rows times the modality's logit scale; cosine similarity is
  unaffected); its config says so (``bindrt_output``). With ``--ensemble`` the raw ``<kind>`` chains a
  ``<kind>_normalize`` Python step after the engine, so raw-media clients get unit rows.

Python models are self-contained: each version directory holds a copy of what it needs from the
bundle (the manifest and that modality's graphs; hard links where the filesystem allows), so the
repository can be moved to another machine that has ``bindrt`` (and ``onnxruntime``) installed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Sequence

from bindrt.bundle import Bundle, now_iso
from bindrt.errors import BackendError, BundleError, ConfigError, OutputError, UnknownModalityError
from bindrt.fileio import atomic_directory
from bindrt.layouts import INPUT_KINDS
from bindrt.schema import (
    OUTPUT_NAME,
    TRITON_FORMAT,
    TRITON_FORMAT_VERSION,
    TRITON_KEY,
    TritonRepository,
    TritonRepositoryArtifact,
    base_kinds,
    read_artifact,
    write_artifact,
)
from bindrt.serving import protocol

PLATFORMS = ("onnxruntime", "tensorrt", "python")
DEVICES = ("cpu", "gpu")
MARKER = "bindrt-triton-repository.json"
MARKER_FORMAT = "bindrt-triton-repository"
WHAT = "bindrt Triton model repository"
VERSION = "1"
DEFAULT_MAX_BATCH = 32
DEFAULT_PREFERRED_BATCH = (4, 8)
DEFAULT_MAX_QUEUE_DELAY_US = 1000
#: bundle dtype -> Triton data type (without the TYPE_ prefix)
TRITON_DTYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "bfloat16": "BF16",
    "float64": "FP64",
    "int64": "INT64",
    "int32": "INT32",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
}
_TEMPLATE = Path(__file__).with_name("triton_model.py")


# ----------------------------------------------------------------------------- what to write
@dataclass
class Model:
    """One model directory: its config and the files of its version directory."""

    name: str
    config: str
    #: path inside the version directory -> source file (copied / hard-linked) or a writer(tmp path)
    files: dict[str, "Path | Callable[[Path], None]"] = field(default_factory=dict)


def _tensor(spec: protocol.TensorSpec) -> str:
    dims = ", ".join(str(d) for d in spec.dims)
    dtype = "STRING" if spec.dtype == "BYTES" else spec.dtype  # ModelConfig's enum calls BYTES TYPE_STRING
    lines = [f'    name: "{spec.name}"', f"    data_type: TYPE_{dtype}", f"    dims: [ {dims} ]"]
    if spec.optional:
        lines.append("    optional: true")
    return "  {\n" + "\n".join(lines) + "\n  }"


def _params(params: dict[str, Any]) -> str:
    return "".join(
        f'parameters {{\n  key: "{k}"\n  value: {{ string_value: {json.dumps(str(v))} }}\n}}\n'
        for k, v in params.items()
    )


def config_text(
    name: str,
    *,
    inputs: Sequence[protocol.TensorSpec],
    outputs: Sequence[protocol.TensorSpec],
    max_batch: int,
    platform: str | None = None,
    backend: str | None = None,
    preferred_batch: Sequence[int] = (),
    max_queue_delay_us: int | None = None,
    instances: int | None = None,
    kind: str | None = None,
    parameters: dict[str, Any] | None = None,
    ensemble_steps: Sequence[tuple[str, dict[str, str], dict[str, str]]] = (),
) -> str:
    """``config.pbtxt`` text (Triton's ``ModelConfig`` in protobuf text format)."""
    out = [f'name: "{name}"']
    if platform:
        out.append(f'platform: "{platform}"')
    if backend:
        out.append(f'backend: "{backend}"')
    out.append(f"max_batch_size: {max_batch}")
    out.append("input [\n" + ",\n".join(_tensor(t) for t in inputs) + "\n]")
    out.append("output [\n" + ",\n".join(_tensor(t) for t in outputs) + "\n]")
    if max_queue_delay_us is not None:
        sizes = ", ".join(str(b) for b in preferred_batch)
        pref = f"  preferred_batch_size: [ {sizes} ]\n" if preferred_batch else ""
        out.append(f"dynamic_batching {{\n{pref}  max_queue_delay_microseconds: {max_queue_delay_us}\n}}")
    if instances is not None:
        out.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]")
    if ensemble_steps:
        steps = []
        for model, input_map, output_map in ensemble_steps:
            maps = "".join(f'      input_map {{ key: "{k}" value: "{v}" }}\n' for k, v in input_map.items())
            maps += "".join(f'      output_map {{ key: "{k}" value: "{v}" }}\n' for k, v in output_map.items())
            steps.append(f'    {{\n      model_name: "{model}"\n      model_version: -1\n{maps}    }}')
        out.append("ensemble_scheduling {\n  step [\n" + ",\n".join(steps) + "\n  ]\n}")
    text = "\n".join(out) + "\n"
    return text + _params(parameters or {})


def _graph_specs(tensors: Sequence[Any], where: str) -> tuple[protocol.TensorSpec, ...]:
    """Graph inputs/outputs of a manifest record as Triton tensors: batch axis dropped, symbolic axes -1."""
    out = []
    for t in tensors:
        if not t.shape or t.shape[0] != "batch":
            raise BundleError(f"{where}: {t.name} has shape {list(t.shape)}; expected a leading 'batch' axis")
        if t.dtype not in TRITON_DTYPES:
            raise BundleError(f"{where}: {t.name} has dtype {t.dtype}, which Triton has no type for")
        dims = tuple(d if isinstance(d, int) else -1 for d in t.shape[1:])
        out.append(protocol.TensorSpec(t.name, TRITON_DTYPES[t.dtype], dims))
    return tuple(out)


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _normalized_onnx(src: Path) -> Callable[[Path], None]:
    """A writer of ``src`` with ``LpNormalization(p=2, axis=-1)`` appended to its ``embedding`` output."""

    def write(dst: Path) -> None:
        try:
            import onnx
            from onnx import helper
        except ImportError as exc:
            raise BackendError(
                f"--platform onnxruntime needs the onnx package to append the L2 normalisation: {exc} "
                "(pip install 'bindrt[onnx]')"
            ) from None
        model = onnx.load(str(src), load_external_data=False)  # external data stays where it is: copied beside
        graph = model.graph
        raw = OUTPUT_NAME + "_unnormalized"
        producers = [n for n in graph.node if OUTPUT_NAME in n.output]
        if len(producers) != 1 or [o.name for o in graph.output] != [OUTPUT_NAME]:
            raise BundleError(f"{src}: expected one output {OUTPUT_NAME!r} made by one node")
        for node in graph.node:
            node.output[:] = [raw if o == OUTPUT_NAME else o for o in node.output]
            node.input[:] = [raw if i == OUTPUT_NAME else i for i in node.input]
        graph.node.append(helper.make_node("LpNormalization", [raw], [OUTPUT_NAME], axis=-1, p=2, name="bindrt_l2"))
        onnx.save_model(model, str(dst))

    return write


@dataclass(frozen=True)
class Options:
    platform: str
    precision: str
    max_batch: int
    preferred_batch: tuple[int, ...]
    max_queue_delay_us: int
    instances: int
    device: str
    ensemble: bool
    max_request_bytes: int
    max_request_items: int


def _check_options(o: Options) -> None:
    if o.platform not in PLATFORMS:
        raise ConfigError(f"unknown platform {o.platform!r}; expected one of {', '.join(PLATFORMS)}")
    if o.device not in DEVICES:
        raise ConfigError(f"unknown device {o.device!r}; expected cpu or gpu")
    if o.platform == "tensorrt" and o.device != "gpu":
        raise ConfigError("--platform tensorrt runs on the GPU (--device gpu)")
    if o.platform == "python" and o.device != "cpu":
        raise ConfigError("--platform python runs bindrt's ONNX Runtime on the CPU (--device cpu)")
    for name in ("max_batch", "instances", "max_request_bytes", "max_request_items"):
        value = getattr(o, name)
        if type(value) is not int or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if type(o.max_queue_delay_us) is not int or o.max_queue_delay_us < 0:
        raise ConfigError(f"max_queue_delay_us must be an integer >= 0, got {o.max_queue_delay_us!r}")
    bad = [b for b in o.preferred_batch if type(b) is not int or not 1 <= b <= o.max_batch]
    if bad:
        raise ConfigError(f"preferred batch sizes {bad} are not within 1..max_batch ({o.max_batch})")


class _Planner:
    def __init__(self, bundle: Bundle, o: Options):
        self.bundle, self.o = bundle, o
        self.out_dim = bundle.config.out_embed_dim
        self.models: list[Model] = []

    # -- common pieces -------------------------------------------------------------
    def _batching(self, kind_group: str) -> dict[str, Any]:
        return {
            "max_batch": self.o.max_batch,
            "preferred_batch": self.o.preferred_batch,
            "max_queue_delay_us": self.o.max_queue_delay_us,
            "instances": self.o.instances,
            "kind": kind_group,
        }

    def _caps(self) -> dict[str, Any]:
        return {
            "bindrt_max_request_bytes": self.o.max_request_bytes,
            "bindrt_max_request_items": self.o.max_request_items,
        }

    def _python(self, name: str, role: str, kind: str, inputs, outputs, bundle_files: Sequence[str] = ()) -> Model:
        params: dict[str, Any] = {"bindrt_role": role, "bindrt_kind": kind, **self._caps()}
        files: dict[str, Any] = {"model.py": _TEMPLATE}
        if bundle_files:
            params |= {
                "bindrt_bundle": "bundle",
                "bindrt_precision": self.o.precision,
                "bindrt_batch_size": self.o.max_batch,
            }
            files["bundle/manifest.json"] = self.bundle.path / "manifest.json"
            for rel in bundle_files:
                files[f"bundle/{rel}"] = self.bundle.file(rel, verify=False)
        return Model(
            name,
            config_text(
                name, inputs=inputs, outputs=outputs, backend="python", parameters=params, **self._batching("KIND_CPU")
            ),
            files,
        )

    # -- per kind --------------------------------------------------------------------
    def plan(self, modalities: Sequence[str]) -> list[Model]:
        for m in modalities:
            sources = list(self._sources(m))
            # bindrt.load(modalities=[m]) opens every kind of m (vision: video too): Python models get them all
            self.modality_files = [f for *_, (_e, g) in sources for f in (g.file, *g.external_data)]
            for kind, encoder_in, encoder_out, files in sources:
                self._kind(kind, encoder_in, encoder_out, files)
        return self.models

    def _sources(self, modality: str):
        """(kind, encoder inputs, encoder outputs, source files) of every base kind of ``modality``."""
        from bindrt.runtime.graphs import bundle_graphs

        where = f"bundle {self.bundle.path}"
        if self.o.platform == "tensorrt":
            from bindrt.tensorrt.engines import engine_records

            engines = engine_records(self.bundle, modality)
            graphs = {g.file: g for g in _graph_records(self.bundle, modality).values()}
            for kind in base_kinds(modality):
                record = engines.get(f"{kind}.{self.o.precision}")
                if record is None:
                    have = ", ".join(sorted(engines)) or "none"
                    raise BackendError(
                        f"{where} has no {self.o.precision} TensorRT engine for {modality}/{kind} (it has: {have}); "
                        f"run `bindrt build {self.bundle.path} --modalities {modality} --precision {self.o.precision}` "
                        "first"
                    )
                graph = graphs.get(record.graph)
                if graph is None:
                    raise BundleError(
                        f"{where}: engine {record.file} names graph {record.graph}, which is not recorded"
                    )
                if record.shapes.max[0] < self.o.max_batch:
                    raise ConfigError(
                        f"engine {record.file} takes batches up to {record.shapes.max[0]}, less than max_batch "
                        f"{self.o.max_batch}; lower --max-batch or rebuild with `bindrt build --batch`"
                    )
                at = f"{where}: {record.file}"
                yield kind, _graph_specs(graph.inputs, at), _graph_specs(graph.outputs, at), (record, graph)
            return
        for _m, kind, graph, _path in bundle_graphs(
            self.bundle, [modality], precision=self.o.precision, variants=("plain",), preprocessing=False, verify=True
        ):
            at = f"{where}: {graph.file}"
            yield kind, _graph_specs(graph.inputs, at), _graph_specs(graph.outputs, at), (None, graph)

    def _kind(self, kind: str, encoder_in, encoder_out, source) -> None:
        o, (engine, graph) = self.o, source
        expected = protocol.encoder_model(kind, self.out_dim)
        names = ([t.name for t in encoder_in], [t.name for t in encoder_out])
        if names != ([t.name for t in expected.inputs], [expected.output.name]):
            raise BundleError(
                f"bundle {self.bundle.path}: {graph.file} declares inputs/outputs {names}; the protocol expects "
                f"{[t.name for t in expected.inputs]} -> {expected.output.name!r}"
            )
        graph_files = self.modality_files
        encoder = expected.name
        source_params = {"bindrt_graph": graph.key, "bindrt_graph_sha256": self._sha(graph.file)}
        if o.platform == "onnxruntime":
            files: dict[str, Any] = {"model.onnx": _normalized_onnx(self.bundle.file(graph.file, verify=False))}
            base = str(PurePosixPath(graph.file).parent)
            for rel in graph.external_data:
                files[_relative(rel, base)] = self.bundle.file(rel, verify=False)
            params = {**source_params, "bindrt_output": "L2-normalised (LpNormalization appended to the bundle graph)"}
            self.models.append(
                Model(
                    encoder,
                    config_text(
                        encoder,
                        platform="onnxruntime_onnx",
                        inputs=encoder_in,
                        outputs=encoder_out,
                        parameters=params,
                        **self._batching("KIND_GPU" if o.device == "gpu" else "KIND_CPU"),
                    ),
                    files,
                )
            )
        elif o.platform == "tensorrt":
            params = {
                "bindrt_engine": engine.file,
                "bindrt_engine_tensorrt": engine.tensorrt,
                "bindrt_engine_gpu": engine.gpu,
                **source_params,
                "bindrt_output": "the engine's output: unit rows times the modality's logit scale (not L2-normalised)",
            }
            self.models.append(
                Model(
                    encoder,
                    config_text(
                        encoder,
                        platform="tensorrt_plan",
                        inputs=encoder_in,
                        outputs=encoder_out,
                        parameters=params,
                        **self._batching("KIND_GPU"),
                    ),
                    {"model.plan": self.bundle.file(engine.file, verify=True)},
                )
            )
        else:  # bindrt's runtime takes the reference layouts and returns float32, whatever the graph's io dtype
            encoder_in, encoder_out = expected.inputs, (expected.output,)
            self.models.append(self._python(encoder, "encoder", kind, encoder_in, encoder_out, graph_files))
        raw = protocol.raw_model(kind, self.out_dim)
        if not o.ensemble:
            if o.platform == "python":
                self.models.append(self._python(raw.name, "raw", kind, raw.inputs, (raw.output,), graph_files))
            return
        prep = f"{kind}_preprocess"
        self.models.append(self._python(prep, "preprocess", kind, raw.inputs, encoder_in))
        tensor = f"{kind}_preprocessed"
        steps = [(prep, {t.name: t.name for t in raw.inputs}, {kind: tensor})]
        final_dtype = "FP32" if o.platform == "tensorrt" else encoder_out[0].dtype
        if o.platform == "tensorrt":
            norm = f"{kind}_normalize"
            unit = protocol.TensorSpec(OUTPUT_NAME, "FP32", encoder_out[0].dims)
            self.models.append(self._python(norm, "normalize", kind, encoder_out, (unit,)))
            steps += [(encoder, {kind: tensor}, {OUTPUT_NAME: f"{kind}_scaled"})]
            steps += [(norm, {OUTPUT_NAME: f"{kind}_scaled"}, {OUTPUT_NAME: OUTPUT_NAME})]
        else:
            steps += [(encoder, {kind: tensor}, {OUTPUT_NAME: OUTPUT_NAME})]
        self.models.append(
            Model(
                raw.name,
                config_text(
                    raw.name,
                    platform="ensemble",
                    inputs=raw.inputs,
                    outputs=(protocol.TensorSpec(OUTPUT_NAME, final_dtype, encoder_out[0].dims),),
                    max_batch=o.max_batch,
                    ensemble_steps=steps,
                    parameters={"bindrt_role": "ensemble", "bindrt_kind": kind},
                ),
            )
        )

    def _sha(self, rel: str) -> str:
        return self.bundle.manifest["files"][rel]["sha256"]


def _relative(rel: str, base: str) -> str:
    if base and rel.startswith(base + "/"):
        return rel[len(base) + 1 :]
    raise BundleError(f"external data {rel} is not beside its graph in {base}/")


def _graph_records(bundle: Bundle, modality: str):
    from bindrt.schema import onnx_graphs

    return onnx_graphs(bundle.modality(modality), str(bundle.path / "manifest.json"), modality)


# ----------------------------------------------------------------------------- the marker and the guard
def is_repository(path: Path) -> bool:
    """Whether ``path`` is a repository this command wrote (the only directories ``force`` replaces)."""
    marker = Path(path) / MARKER
    if Path(path).is_symlink() or marker.is_symlink() or not marker.is_file():
        return False
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == MARKER_FORMAT


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _readme(record: dict[str, Any], bundle: Bundle) -> str:
    lines = [
        f"# Triton model repository written by `bindrt triton-repo` from {bundle.path}",
        "",
        f"platform {record['platform']}, precision {record['precision']}, written {record['created']}.",
        "Models (see bindrt/serving/protocol.py for the wire contract):",
        "",
    ]
    for name in record["models"]:
        lines.append(f"- `{name}`")
    lines += [
        "",
        "Every model returns `embedding` (float32), L2-normalised, except the `<kind>_encoder` models of the",
        "tensorrt platform: an engine returns the reference's scaled embedding (unit rows times the modality's",
        "logit scale); the `<kind>` ensembles normalise it. Python-backend models (model.py) need `bindrt`",
        "(and onnxruntime) installed in the interpreter of Triton's Python backend stub; each holds the part",
        "of the bundle it needs under `1/bundle/`.",
        "",
        "    tritonserver --model-repository " + record["path"],
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the entry point
def write_repository(
    bundle_path: "str | os.PathLike[str]",
    out: "str | os.PathLike[str]",
    *,
    platform: str = "onnxruntime",
    precision: str = "fp32",
    modalities: "Sequence[str] | None" = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    preferred_batch: Sequence[int] = DEFAULT_PREFERRED_BATCH,
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
    instances: int = 1,
    device: str | None = None,
    ensemble: bool = False,
    force: bool = False,
    max_request_bytes: int = protocol.MAX_REQUEST_BYTES,
    max_request_items: int = protocol.MAX_REQUEST_ITEMS,
    record: bool = True,
) -> dict[str, Any]:
    """Write a Triton model repository for ``bundle_path`` at ``out``; returns its record (as in the manifest).

    ``device`` (instance groups): ``gpu`` for tensorrt, ``cpu`` for python, either for onnxruntime
    (default cpu). ``out`` is built under a temporary name beside it and renamed at the end; an
    existing non-empty ``out`` is replaced only with ``force`` and only if this command wrote it.
    ``record``: also record the repository in the bundle's manifest (``artifacts.triton`` of each
    modality; skipped with a warning when the bundle is not writable).
    """
    import warnings

    default_device = {"tensorrt": "gpu", "python": "cpu"}.get(platform, "cpu")
    o = Options(
        platform=platform,
        precision=precision,
        max_batch=max_batch,
        preferred_batch=tuple(preferred_batch),
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
        device=device or default_device,
        ensemble=bool(ensemble),
        max_request_bytes=max_request_bytes,
        max_request_items=max_request_items,
    )
    _check_options(o)
    bundle = Bundle.open(bundle_path)
    mods = list(bundle.modalities if modalities is None else modalities)
    for m in mods:
        if m not in INPUT_KINDS.values():
            raise UnknownModalityError(f"unknown modality {m!r}; expected some of {', '.join(bundle.modalities)}")
        bundle.modality(m)
    if not mods:
        raise ConfigError("no modalities selected")
    models = _Planner(bundle, o).plan(mods)  # every refusal (missing graphs/engines) before anything is written
    target = Path(os.path.abspath(out))
    overwrite = force or _is_empty_dir(target)
    try:
        is_ours: Callable[[Path], bool] = lambda p: is_repository(p) or _is_empty_dir(p)  # noqa: E731
        if os.path.lexists(target) and not overwrite:
            raise OutputError(f"{out} exists and is not empty; pass --force to replace a repository bindrt wrote")
        entry = {
            "path": str(target),
            "platform": platform,
            "precision": precision,
            "ensemble": o.ensemble,
            "models": [m.name for m in models],
            "created": now_iso(),
        }
        with atomic_directory(target, overwrite=overwrite, is_ours=is_ours, what=WHAT) as tmp:
            written: dict[Path, Path] = {}
            for model in models:
                root = tmp / model.name
                root.mkdir()
                (root / "config.pbtxt").write_text(model.config)
                (root / VERSION).mkdir()  # ensembles too: Triton wants a version directory
                for rel, src in model.files.items():
                    dst = root / VERSION / rel
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    if callable(src):
                        src(dst)
                    elif src in written:  # the same bundle file for another model: link the first copy
                        _link_or_copy(written[src], dst)
                    else:
                        _link_or_copy(src, dst)
                        written[src] = dst
            (tmp / MARKER).write_text(json.dumps({"format": MARKER_FORMAT, **entry}, indent=1) + "\n")
            (tmp / "README.md").write_text(_readme(entry, bundle))
    except PermissionError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    if record:
        try:
            record_repository(bundle, entry, mods)
        except (OSError, BundleError) as exc:
            warnings.warn(f"the repository was written, but not recorded in {bundle.path}'s manifest: {exc}")
    return entry


def record_repository(bundle: Bundle, entry: dict[str, Any], modalities: Sequence[str]) -> None:
    """Record the repository under ``artifacts.triton`` of each modality it serves, and save the manifest."""
    repo = TritonRepository.from_dict(
        {k: entry[k] for k in ("path", "platform", "precision", "ensemble", "models", "created")}
    )
    for m in modalities:
        section = read_artifact(bundle, m, TRITON_KEY) or TritonRepositoryArtifact(
            format=TRITON_FORMAT, version=TRITON_FORMAT_VERSION, repositories={}
        )
        write_artifact(bundle, m, TRITON_KEY, section.with_repository(repo))
    bundle.save()
