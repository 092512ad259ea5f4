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
from bindrt.errors import BundleError, UnknownModalityError
from bindrt.fileio import atomic_directory, atomic_write_bytes, sha256_file

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
FORMAT = "bindrt-bundle"


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

    return {k: {"shape": INPUT_LAYOUTS[k].symbolic_shape(), "dtype": INPUT_LAYOUTS[k].dtype} for k in kinds_for(modality)}


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
        manifest_path = path / MANIFEST
        if not path.is_dir():
            raise BundleError(f"bundle {path} does not exist or is not a directory")
        if not manifest_path.is_file():
            raise BundleError(f"bundle {path} has no {MANIFEST}; expected a directory written by `bindrt convert` or `bindrt train`")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
        _validate_manifest(manifest, path)
        return cls(path, manifest)

    @staticmethod
    def is_bundle(path: "str | os.PathLike[str]") -> bool:
        return (Path(path) / MANIFEST).is_file()

    # -- reading -----------------------------------------------------------------
    @property
    def config(self) -> ImageBindConfig:
        return ImageBindConfig.from_dict(self.manifest["config"])

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if m in self.manifest["modalities"])

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
        """Reference-keyed torch tensors of one modality (imports torch)."""
        from safetensors.torch import load_file

        return load_file(str(self.weights_file(modality, verify=verify)))

    # -- writing -----------------------------------------------------------------
    def add_file(self, relpath: str, write: Callable[[Path], None]) -> None:
        """Write a file into the bundle atomically (``write`` gets a temporary path) and list it.

        The manifest is not saved here: call ``save()`` (or use ``update``) afterwards.
        """
        full = _inside(self.path, relpath)
        full.parent.mkdir(parents=True, exist_ok=True)
        from bindrt.fileio import atomic_path

        with atomic_path(full) as tmp:
            write(tmp)
        self.manifest["files"][relpath] = {"sha256": sha256_file(full), "bytes": full.stat().st_size}

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
    with atomic_directory(out, overwrite=overwrite) as tmp:
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "config": config.to_dict(),
            "modalities": {},
            "files": {},
            "producer": producer_versions("torch", "safetensors"),
            "history": [{"stage": stage, "time": now_iso(), **({"source": source} if source else {})}],
        }
        bundle = Bundle(tmp, manifest)
        for m in (m for m in MODALITIES if m in weights):
            rel = f"weights/{m}.safetensors"
            tensors = {k: v.detach().contiguous().cpu() for k, v in weights[m].items()}
            bundle.add_file(rel, lambda p, t=tensors: save_file(t, str(p), metadata={"modality": m, "format": "pt"}))
            manifest["modalities"][m] = {
                "weights": rel,
                "inputs": input_specs(m),
                "output": {"shape": ["batch", config.out_embed_dim], "dtype": "float32"},
                "preprocessing": preprocessing_constants(m),
                "artifacts": {},
            }
        for rel, data in (extra_files or {}).items():
            bundle.add_file(rel, lambda p, d=data: p.write_bytes(d))
        bundle.save()
    return Bundle.open(out)


def _inside(root: Path, relpath: str) -> Path:
    """Resolve ``relpath`` under ``root``; reject absolute paths, '..' and escaping symlinks."""
    pure = PurePosixPath(relpath)
    escapes = (
        not relpath
        or pure.is_absolute()
        or ".." in pure.parts
        or "\\" in relpath
        or ":" in pure.parts[0]
    )
    if escapes:
        raise BundleError(f"manifest path {relpath!r} points outside the bundle directory; refusing to follow it")
    full = root / Path(*pure.parts)
    resolved_root = root.resolve()
    resolved = full.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise BundleError(f"manifest path {relpath!r} resolves outside the bundle directory (symlink?); refusing to follow it")
    return full


def _validate_manifest(manifest: Any, where: Path) -> None:
    def fail(msg: str) -> None:
        raise BundleError(f"{where / MANIFEST}: {msg}")

    if not isinstance(manifest, dict):
        fail("expected a JSON object")
    if manifest.get("format") != FORMAT:
        fail(f"format is {manifest.get('format')!r}, expected {FORMAT!r}")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        fail(f"schema_version {version!r} is not supported; this bindrt reads version {SCHEMA_VERSION}")
    for key in ("config", "modalities", "files"):
        if not isinstance(manifest.get(key), dict):
            fail(f"missing or invalid {key!r} section")
    try:
        ImageBindConfig.from_dict(manifest["config"])
    except Exception as exc:  # ConfigError with its own message
        fail(f"invalid config: {exc}")
    for rel, entry in manifest["files"].items():
        _inside(where, rel)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("bytes"), int):
            fail(f"file entry {rel!r} needs 'sha256' and 'bytes'")
    for name, entry in manifest["modalities"].items():
        if name not in MODALITIES:
            fail(f"unknown modality {name!r}")
        if not isinstance(entry, dict) or entry.get("weights") not in manifest["files"]:
            fail(f"modality {name!r} must name a weights file listed under 'files'")

