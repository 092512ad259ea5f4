"""``bindrt.load``: one entry point for every backend."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from bindrt.bundle import MANIFEST, Bundle
from bindrt.config import ImageBindConfig, check_modalities, resolve_config
from bindrt.errors import BackendError, ConfigError
from bindrt.runtime.base import PRECISIONS, Backend, ModelSource
from bindrt.runtime.embedder import Embedder, similarity

#: name -> "module:Class"; imported only when asked for, so e.g. onnxruntime never imports torch.
BACKENDS: dict[str, str] = {
    "torch": "bindrt.runtime.torch_backend:TorchBackend",
    "onnxruntime": "bindrt.runtime.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "bindrt.runtime.openvino_backend:OpenVinoBackend",
    "triton": "bindrt.runtime.triton_backend:TritonBackend",
    "tensorrt": "bindrt.runtime.tensorrt_backend:TensorRtBackend",
}


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    module_name, _, cls_name = BACKENDS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"the {name!r} backend is not available here: {exc}") from exc
    return getattr(module, cls_name)


def open_source(path: "str | os.PathLike[str]", config: "str | ImageBindConfig | None" = None) -> ModelSource:
    """A bundle directory, or a reference checkpoint file plus ``config`` (preset name or JSON)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(
            f"model path must be a str or os.PathLike, got {type(path).__name__}; "
            "expected a bundle directory or a reference checkpoint file"
        )
    path = Path(path)
    if path.is_dir():
        if not os.path.lexists(path / MANIFEST):  # a bundle that is damaged gets Bundle.open's precise error
            raise ConfigError(
                f"{path} is a directory but not a bundle (no manifest.json); expected a bundle directory "
                "or a reference checkpoint file"
            )
        bundle = Bundle.open(path)
        if config is not None and resolve_config(config) != bundle.config:
            raise ConfigError(f"config {config!r} differs from the config stored in bundle {path}; omit config=")
        return ModelSource(config=bundle.config, bundle=bundle)
    if not path.exists():
        raise ConfigError(f"{path} does not exist; expected a bundle directory or a reference checkpoint file")
    if config is None:
        raise ConfigError(
            f"{path} is a checkpoint file: pass config= (a preset name such as 'imagebind_huge' or a JSON file)"
        )
    return ModelSource(config=resolve_config(config), checkpoint=path)


def load(
    path: "str | os.PathLike[str]",
    backend: str = "torch",
    *,
    device: str = "cpu",
    precision: str = "fp32",
    modalities: "list[str] | tuple[str, ...] | str | None" = None,
    config: "str | ImageBindConfig | None" = None,
    batch_size: int = 32,
    tier: str | None = None,
    **options: Any,
) -> Embedder:
    """Load a bundle (or a reference checkpoint with ``config=``) on one backend.

    Only the requested ``modalities`` are read; backend-specific ``options`` (threads,
    providers, engine caches...) are passed through to the backend. ``backend="auto"``
    measures the engines here and loads the fastest that meets ``tier`` (``bindrt.tiers.TIERS``;
    default near-exact; ``refresh=True`` re-measures), see :mod:`bindrt.runtime.auto`.
    """
    _check_types(backend=(backend, str), device=(device, str), precision=(precision, str), batch_size=(batch_size, int))
    if backend == "auto":
        from bindrt.runtime.auto import load_auto

        return load_auto(
            path,
            tier=tier,
            device=device,
            precision=precision,
            modalities=modalities,
            config=config,
            batch_size=batch_size,
            **options,
        )
    if tier is not None:
        raise ConfigError(f"tier={tier!r} is for backend='auto'; backend={backend!r} takes precision= instead")
    source = open_source(path, config)
    mods = check_modalities(modalities, source.available_modalities)
    cls = backend_class(backend)
    if precision not in PRECISIONS or precision not in cls.precisions:
        raise BackendError(f"the {backend!r} backend runs precisions {', '.join(cls.precisions)}, not {precision!r}")
    return Embedder(
        cls.open(source, modalities=mods, device=device, precision=precision, **options), batch_size=batch_size
    )


def _check_types(**named: "tuple[Any, type]") -> None:
    """Wrong argument types get a ConfigError naming the argument, not a TypeError from deep inside."""
    for name, (value, expected) in named.items():
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{name}={value!r} is of type {type(value).__name__}; expected {expected.__name__}")


__all__ = ["load", "Embedder", "Backend", "ModelSource", "BACKENDS", "backend_class", "open_source", "similarity"]
