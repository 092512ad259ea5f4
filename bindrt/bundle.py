"""The bundle: a directory that carries one model between bindrt's stages.

Layout::

    BUNDLE/
      manifest.json            # the single schema every stage reads and writes
      weights/<modality>.safetensors   # reference key names, per modality
      onnx/..., engines/...    # added by `bindrt export` / `bindrt build`

Every file the manifest lists carries a sha256; files are verified when a stage
reads them, and paths that leave the bundle directory are rejected, never followed.
Torch-free: the ONNX Runtime and TensorRT paths read bundles without torch.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping

from bindrt.config import MODALITIES, ImageBindConfig
from bindrt.errors import BundleError, CheckpointError, UnknownModalityError
from bindrt.fileio import atomic_directory, atomic_path, atomic_write_bytes, check_output, sha256_file
from bindrt.schema import (  # noqa: F401  (FORMAT, MANIFEST, SCHEMA_VERSION: re-exported, callers find them here)
    FORMAT,
    MANIFEST,
    SCHEMA_VERSION,
    FileEntry,
    HistoryEntry,
    Manifest,
    ModalityEntry,
    TensorSpec,
    relpath_problem,
)

BUNDLE_WHAT = "bindrt bundle"  # names what ``overwrite`` may replace, in OutputError messages


def producer_versions(*packages: str) -> dict[str, str]:
    """Versions of the packages that produced an artefact (recorded in the manifest)."""
    out = {"python": platform.python_version()}
    for name in ("bindrt", *packages):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def input_specs(modality: str) -> dict[str, Any]:
    """The modality's model inputs (reference layouts; batch and clips are symbolic)."""
    from bindrt.layouts import INPUT_LAYOUTS, kinds_for

    return {
        k: TensorSpec(shape=tuple(INPUT_LAYOUTS[k].symbolic_shape()), dtype=INPUT_LAYOUTS[k].dtype).to_dict()
        for k in kinds_for(modality)
    }


def preprocessing_constants(modality: str) -> dict[str, Any]:
    from bindrt.preprocess import constants

    return constants(modality)


class Bundle:
    """A bundle opened for reading; ``update`` rewrites its manifest atomically."""

    def __init__(self, path: "str | os.PathLike[str]", manifest: dict[str, Any]):
        self.path = Path(path)
        self.manifest = manifest

    # -- opening -----------------------------------------------------------------
    @classmethod
    def open(cls, path: "str | os.PathLike[str]") -> "Bundle":
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"bundle {path} does not exist or is not a directory")
        if not os.path.lexists(path / MANIFEST):
            raise BundleError(
                f"bundle {path} has no {MANIFEST}; expected a directory written by `bindrt convert` or `bindrt train`"
            )
        manifest_path = _inside(path, MANIFEST)  # a manifest symlinked out of the bundle is never read
        if not manifest_path.is_file():
            raise BundleError(f"bundle {path}: {MANIFEST} is not a regular file")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
        _validate_manifest(manifest, path)
        return cls(path, manifest)

    @staticmethod
    def is_bundle(path: "str | os.PathLike[str]") -> bool:
        """Whether ``path`` is a bundle bindrt wrote: the only directories ``overwrite`` may replace.

        A real directory (not a symlink) holding a regular ``manifest.json`` of format
        ``bindrt-bundle``; the rest of the manifest is not checked, so a damaged bundle
        can still be replaced.
        """
        path = Path(path)
        manifest = path / MANIFEST
        if path.is_symlink() or manifest.is_symlink() or not manifest.is_file():
            return False
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return False
        return isinstance(data, dict) and data.get("format") == FORMAT

    # -- reading -----------------------------------------------------------------
    @property
    def config(self) -> ImageBindConfig:
        return ImageBindConfig.from_dict(self.manifest["config"])

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.manifest["modalities"])

    @property
    def record(self) -> Manifest:
        """The manifest as typed records (parsed afresh: ``manifest`` is the dict stages edit and save)."""
        return Manifest.from_dict(self.manifest, str(self.path / MANIFEST))

    def modality(self, name: str) -> dict[str, Any]:
        if name not in self.manifest["modalities"]:
            raise UnknownModalityError(
                f"bundle {self.path} has no {name!r} modality; it holds {', '.join(self.modalities) or 'none'}"
            )
        return self.manifest["modalities"][name]

    def file(self, relpath: str, verify: bool = True) -> Path:
        """Resolve a manifest-listed file inside the bundle, checking its sha256."""
        entry = self.manifest["files"].get(relpath)
        if entry is None:
            raise BundleError(f"bundle {self.path}: {relpath!r} is not listed in {MANIFEST}")
        full = _inside(self.path, relpath)
        if full.is_dir():
            raise BundleError(f"bundle {self.path}: {relpath} (listed in {MANIFEST}) is a directory, expected a file")
        if not full.is_file():
            raise BundleError(f"bundle {self.path} is missing {relpath} (listed in {MANIFEST})")
        if verify:
            size = full.stat().st_size
            if size != entry["bytes"] or sha256_file(full) != entry["sha256"]:
                raise BundleError(
                    f"bundle {self.path}: {relpath} is corrupted or was modified "
                    f"(sha256/size differ from {MANIFEST}); re-create it with the stage that wrote it"
                )
        return full

    def weights_file(self, modality: str, verify: bool = True) -> Path:
        return self.file(self.modality(modality)["weights"], verify=verify)

    def load_weights(self, modality: str, verify: bool = True) -> dict[str, Any]:
        """Reference-keyed torch tensors of one modality, checked against the config (imports torch).

        A checksum proves the file is the one the manifest lists, not that it holds
        this config's tensors: layout and finiteness are checked here so a bad file is
        a BundleError naming it, not a raw ``load_state_dict`` error or NaN embeddings.
        """
        where = f"bundle {self.path}: {self.modality(modality)['weights']}"
        tensors = _read_safetensors(self.weights_file(modality, verify=verify), where)
        tensors = _check_layout(tensors, self.config, modality, where)
        _check_finite(tensors, self.config, modality, where)
        # weights stored at fp16/bf16 (the shipped tiny model) are widened: backends choose their own precision
        return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}

    # -- writing -----------------------------------------------------------------
    def add_file(self, relpath: str, write: Callable[[Path], None]) -> None:
        """Write a file into the bundle atomically (``write`` gets a temporary path) and list it.

        The manifest is not saved here: call ``save()`` (or use ``update``) afterwards.
        """
        full = _inside(self.path, relpath)
        full.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(full) as tmp:
            write(tmp)
        self.manifest["files"][relpath] = FileEntry(sha256=sha256_file(full), bytes=full.stat().st_size).to_dict()

    def remove_file(self, relpath: str) -> None:
        full = _inside(self.path, relpath)
        self.manifest["files"].pop(relpath, None)
        if full.exists():
            full.unlink()

    def save(self) -> None:
        _validate_manifest(self.manifest, self.path)
        atomic_write_bytes(self.path / MANIFEST, (json.dumps(self.manifest, indent=1) + "\n").encode())

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        sizes = {k: v["bytes"] for k, v in m["files"].items()}
        return {
            "path": str(self.path),
            "schema_version": m["schema_version"],
            "config": m["config"],
            "modalities": {
                name: {
                    "inputs": entry["inputs"],
                    "output": entry["output"],
                    "artifacts": sorted(entry.get("artifacts", {})),
                }
                for name, entry in m["modalities"].items()
            },
            "files": sizes,
            "total_bytes": sum(sizes.values()),
            "producer": m.get("producer", {}),
            "history": m.get("history", []),
        }


def write_bundle(
    out: "str | os.PathLike[str]",
    config: ImageBindConfig,
    weights: Mapping[str, Mapping[str, Any]],
    *,
    stage: str,
    source: str | None = None,
    extra_files: Mapping[str, bytes] | None = None,
    overwrite: bool = False,
) -> Bundle:
    """Write a new bundle atomically from per-modality reference-keyed tensors.

    The whole directory is built under a temporary name and renamed at the end,
    so an interrupted write never leaves a bundle that loads.
    """
    from safetensors.torch import save_file

    for m in weights:
        if m not in MODALITIES:
            raise UnknownModalityError(f"unknown modality {m!r}; expected one of {', '.join(MODALITIES)}")
    if not weights:
        raise BundleError("a bundle needs at least one modality")
    out = Path(out)
    with atomic_directory(out, overwrite=overwrite, is_ours=Bundle.is_bundle, what=BUNDLE_WHAT) as tmp:
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "config": config.to_dict(),
            "modalities": {},
            "files": {},
            "producer": producer_versions("torch", "safetensors"),
            "history": [HistoryEntry(stage=stage, time=now_iso(), source=source or None).to_dict()],
        }
        bundle = Bundle(tmp, manifest)
        for m in (m for m in MODALITIES if m in weights):
            rel = f"weights/{m}.safetensors"
            tensors = {k: v.detach().contiguous().cpu() for k, v in weights[m].items()}
            bundle.add_file(rel, lambda p, t=tensors: save_file(t, str(p), metadata={"modality": m, "format": "pt"}))
            manifest["modalities"][m] = ModalityEntry(
                weights=rel,
                inputs={k: TensorSpec.from_dict(v) for k, v in input_specs(m).items()},
                output=TensorSpec(shape=("batch", config.out_embed_dim), dtype="float32"),
                preprocessing=preprocessing_constants(m),
                artifacts={},
            ).to_dict()
        for rel, data in (extra_files or {}).items():
            bundle.add_file(rel, lambda p, d=data: p.write_bytes(d))
        bundle.save()
    return Bundle.open(out)


def check_bundle_output(out: "str | os.PathLike[str]", overwrite: bool = False) -> None:
    """Fail before expensive work (reading a checkpoint) if ``out`` cannot receive a bundle."""
    check_output(out, overwrite=overwrite, is_ours=Bundle.is_bundle, what=BUNDLE_WHAT)


def _inside(root: Path, relpath: str) -> Path:
    """Resolve ``relpath`` to a file under ``root``; reject absolute paths, '..', the root and escaping symlinks."""
    problem = _path_problem(root, relpath)
    if problem:
        raise BundleError(f"bundle {root}: manifest path {relpath!r} {problem}")
    return root / Path(*PurePosixPath(relpath).parts)


def _path_problem(root: Path, relpath: Any) -> str | None:
    """Why ``relpath`` cannot name a file inside ``root`` (None when it can): its text, then where it resolves."""
    problem = relpath_problem(relpath)
    if problem:
        return problem
    pure = PurePosixPath(relpath)
    resolved_root = root.resolve()
    resolved = (root / Path(*pure.parts)).resolve()
    if resolved == resolved_root:
        return "names the bundle directory itself (symlink?), expected a file inside it"
    if resolved_root not in resolved.parents:
        return "resolves outside the bundle directory (symlink?); refusing to follow it"
    return None


def _read_safetensors(path: Path, where: str) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except SafetensorError as exc:
        raise BundleError(f"{where} is not a valid safetensors file: {exc}") from None


def _check_layout(tensors: dict[str, Any], config: ImageBindConfig, modality: str, where: str) -> dict[str, Any]:
    """The modality's tensors, strictly matched against the config's reference layout (keys and shapes)."""
    from bindrt.model.checkpoint import split_state_dict

    try:
        return split_state_dict(tensors, config, [modality])[modality]
    except CheckpointError as exc:
        raise BundleError(f"{where}: {exc}; re-create the bundle from the checkpoint it came from") from None


def _check_finite(tensors: Mapping[str, Any], config: ImageBindConfig, modality: str, where: str) -> None:
    """NaN/Inf weights (a diverged run) make every embedding NaN; aminmax is one cheap pass per tensor.

    Parameters must be finite; buffers only free of NaN (the text causal mask is -inf by design).
    """
    import torch

    parameters = _parameter_keys(config, modality)
    bad = []
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.numel():
            low, high = torch.aminmax(tensor)
            finite = bool(torch.isfinite(low) and torch.isfinite(high))
            if not finite and (key in parameters or bool(torch.isnan(low))):
                bad.append(key)
    if bad:
        shown = ", ".join(bad[:5]) + (f", ... ({len(bad) - 5} more)" if len(bad) > 5 else "")
        raise BundleError(
            f"{where}: tensor(s) {shown} hold NaN or Inf values; the weights are unusable (a diverged training run?)"
        )


def _parameter_keys(config: ImageBindConfig, modality: str) -> set[str]:
    """Reference keys of the encoder's parameters, not its buffers (built on the meta device: no memory)."""
    import torch

    from bindrt.model.checkpoint import to_reference_key
    from bindrt.model.encoders import ModalityEncoder

    with torch.device("meta"):
        encoder = ModalityEncoder(modality, config)
    return {to_reference_key(modality, key) for key, _ in encoder.named_parameters()}


def _validate_manifest(manifest: Any, where: Path) -> None:
    """The whole manifest through the schema records, then every listed path against the directory (symlinks)."""
    Manifest.from_dict(manifest, str(where / MANIFEST))
    for rel in manifest["files"]:
        problem = _path_problem(where, rel)
        if problem:
            raise BundleError(f"{where / MANIFEST}: files[{json.dumps(rel)}]: {problem}")
