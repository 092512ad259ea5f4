"""Reference checkpoints: key mapping, strict layout checks, safe loading.

The bundle stores weights under the reference key names, so a bundle's
safetensors files concatenate back into a reference state dict; encoders see
the same keys with ``modality_<part>s.<modality>.`` replaced by ``<part>.``.
"""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from os import PathLike
from typing import Iterable, Mapping

import torch
from torch import Tensor

from bindrt.config import MODALITIES, ImageBindConfig
from bindrt.errors import CheckpointError

_PARTS = ("preprocessor", "trunk", "head", "postprocessor")


def to_encoder_key(reference_key: str) -> tuple[str, str]:
    """'modality_trunks.audio.blocks.0.attn.bias_k' -> ('audio', 'trunk.blocks.0.attn.bias_k')."""
    group, _, rest = reference_key.partition(".")
    modality, _, sub = rest.partition(".")
    part = group.removeprefix("modality_").removesuffix("s")
    if not group.startswith("modality_") or part not in _PARTS or modality not in MODALITIES or not sub:
        raise CheckpointError(f"key {reference_key!r} is not in the ImageBind reference layout")
    return modality, f"{part}.{sub}"


def to_reference_key(modality: str, encoder_key: str) -> str:
    part, _, sub = encoder_key.partition(".")
    return f"modality_{part}s.{modality}.{sub}"


def reference_layout(config: ImageBindConfig, modalities: Iterable[str] = MODALITIES) -> dict[str, tuple[int, ...]]:
    """Every reference key and shape the config implies (built on the meta device: no memory)."""
    from bindrt.model.encoders import ModalityEncoder

    layout: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        for m in modalities:
            for key, tensor in ModalityEncoder(m, config).state_dict().items():
                layout[to_reference_key(m, key)] = tuple(tensor.shape)
    return layout


def read_state_dict(path: "str | PathLike[str]") -> Mapping[str, Tensor]:
    """Load a plain state dict with ``weights_only=True`` (never unpickles arbitrary objects).

    Memory-mapped, so selecting a few modalities never reads the others' tensors.
    """
    return check_plain_state_dict(safe_torch_load(path, "checkpoint"), str(path))


def safe_torch_load(path: "str | PathLike[str]", what: str = "checkpoint") -> object:
    """``torch.load(weights_only=True)`` with every failure as one CheckpointError.

    The only place bindrt calls ``torch.load``: a pickle naming any global outside
    torch's allow-list (``os.system``...) is refused before anything runs, and the
    message never repeats torch's advice to retry with ``weights_only=False``.
    """
    expected = "a file written by torch.save holding tensors, dicts, lists and numbers"
    if not os.path.exists(path):
        raise CheckpointError(f"{what} {path} does not exist (expected {expected})")
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} {path} is not a regular file (expected {expected})")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it then refuses anyway
            warnings.simplefilter("ignore", UserWarning)
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
                if "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = next((ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
        raise CheckpointError(
            f"{what} {path} holds Python objects other than tensors and plain containers, which bindrt never "
            f"unpickles (they can run code){': ' + refused if refused else ''} (expected {expected}, loaded with "
            "weights_only=True)"
        ) from None
    except OSError as exc:
        raise CheckpointError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    except (
        zipfile.BadZipFile,
        EOFError,
        RuntimeError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        OverflowError,
        MemoryError,
    ) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:300] or type(exc).__name__
        raise CheckpointError(
            f"{what} {path} could not be loaded with weights_only=True: {reason} (expected {expected})"
        ) from None


def check_plain_state_dict(obj: object, where: str = "checkpoint") -> Mapping[str, Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{where} holds a {type(obj).__name__}, expected a plain state dict (mapping of name -> tensor)"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        hint = (
            " (is it a training checkpoint wrapping the state dict?)"
            if any(isinstance(obj[k], Mapping) for k in bad if k in obj)
            else ""
        )
        raise CheckpointError(f"{where} is not a plain state dict: entries {bad[:5]} are not tensors{hint}")
    return obj


def split_state_dict(
    state_dict: Mapping[str, Tensor], config: ImageBindConfig, modalities: Iterable[str] = MODALITIES
) -> dict[str, dict[str, Tensor]]:
    """Strictly check a reference state dict and return the requested modalities' keys.

    Keys outside the reference layout are errors; keys of modalities that were not
    requested are ignored without being read.
    """
    modalities = tuple(modalities)
    layout = reference_layout(config)
    unexpected = sorted(k for k in state_dict if k not in layout)
    wanted = {k: s for k, s in layout.items() if to_encoder_key(k)[0] in modalities}
    missing = sorted(k for k in wanted if k not in state_dict)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs expected {wanted[k]}"
        for k in wanted
        if k in state_dict and tuple(state_dict[k].shape) != wanted[k]
    )
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_clip(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_clip(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {_clip(mismatched)}")
    if problems:
        raise CheckpointError("state dict does not match the ImageBind layout of this config: " + "; ".join(problems))
    out: dict[str, dict[str, Tensor]] = {m: {} for m in modalities}
    for key in wanted:
        out[to_encoder_key(key)[0]][key] = state_dict[key]
    return out


def _clip(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
