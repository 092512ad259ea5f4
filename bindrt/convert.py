"""Reference checkpoint -> bundle (``bindrt convert``)."""

from __future__ import annotations

import os
from pathlib import Path

from bindrt.bundle import Bundle, check_bundle_output, write_bundle
from bindrt.config import ImageBindConfig, check_modalities, resolve_config


def convert_checkpoint(
    checkpoint: "str | os.PathLike[str]",
    config: "str | ImageBindConfig",
    out: "str | os.PathLike[str]",
    *,
    modalities: "list[str] | None" = None,
    overwrite: bool = False,
) -> Bundle:
    """Strictly check a reference state dict and write the requested modalities as a bundle."""
    from bindrt.model.checkpoint import read_state_dict, split_state_dict

    cfg = resolve_config(config)
    mods = check_modalities(modalities)
    check_bundle_output(out, overwrite)  # before reading a multi-GB checkpoint
    per_modality = split_state_dict(read_state_dict(checkpoint), cfg, mods)
    return write_bundle(out, cfg, per_modality, stage="convert", source=Path(checkpoint).name, overwrite=overwrite)
