"""Model configuration: the reference constructor arguments, plus named presets.

Torch-free on purpose: the manifest, the CLI and the ONNX Runtime path read
configs without importing torch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from os import PathLike
from pathlib import Path
from typing import Any, Mapping

from bindrt.errors import ConfigError, UnknownModalityError
from bindrt.layouts import INPUT_KINDS  # noqa: F401  (re-exported: config is where callers have always found it)

#: Encoders of the model, in the reference's order.
MODALITIES: tuple[str, ...] = ("vision", "text", "audio", "depth", "thermal", "imu")

#: Upper bounds of config fields: 32x imagebind_huge's widest tower and deepest trunk, so a typo or a hostile
#: manifest (a dimension of 10**12) is a ConfigError instead of an allocation of terabytes.
MAX_FIELD = {"embed_dim": 1 << 15, "num_blocks": 1024, "num_heads": 1024}


def _check(modality: str) -> str:
    if modality not in MODALITIES:
        raise UnknownModalityError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    return modality


@dataclass(frozen=True)
class ImageBindConfig:
    """Field names are the reference ``imagebind_model`` constructor argument names."""

    out_embed_dim: int = 1024
    vision_embed_dim: int = 1280
    vision_num_blocks: int = 32
    vision_num_heads: int = 16
    text_embed_dim: int = 1024
    text_num_blocks: int = 24
    text_num_heads: int = 16
    audio_embed_dim: int = 768
    audio_num_blocks: int = 12
    audio_num_heads: int = 12
    depth_embed_dim: int = 384
    depth_num_blocks: int = 12
    depth_num_heads: int = 8
    thermal_embed_dim: int = 768
    thermal_num_blocks: int = 12
    thermal_num_heads: int = 12
    imu_embed_dim: int = 512
    imu_num_blocks: int = 6
    imu_num_heads: int = 8

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"config field {f.name!r} must be a positive integer, got {value!r}")
            limit = next(v for k, v in MAX_FIELD.items() if f.name.endswith(k))
            if value > limit:
                raise ConfigError(f"config field {f.name!r} is {value}; expected at most {limit}")
        for m in MODALITIES:
            dim, heads = self.embed_dim(m), self.num_heads(m)
            if dim % heads:
                raise ConfigError(
                    f"{m}_embed_dim={dim} is not divisible by {m}_num_heads={heads}; "
                    "expected embed_dim to be a multiple of num_heads"
                )

    def embed_dim(self, modality: str) -> int:
        return getattr(self, f"{_check(modality)}_embed_dim")

    def num_blocks(self, modality: str) -> int:
        return getattr(self, f"{_check(modality)}_num_blocks")

    def num_heads(self, modality: str) -> int:
        return getattr(self, f"{_check(modality)}_num_heads")

    def head_dim(self, modality: str) -> int:
        return self.embed_dim(modality) // self.num_heads(modality)

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ImageBindConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; expected a subset of {sorted(known)}")
        return cls(**dict(data))


PRESETS: dict[str, ImageBindConfig] = {
    # The published checkpoint, exactly.
    "imagebind_huge": ImageBindConfig(),
    # The reference's golden test model (tests/golden/config.json).
    "golden": ImageBindConfig(
        out_embed_dim=32,
        vision_embed_dim=64,
        vision_num_blocks=2,
        vision_num_heads=4,
        text_embed_dim=32,
        text_num_blocks=2,
        text_num_heads=2,
        audio_embed_dim=32,
        audio_num_blocks=2,
        audio_num_heads=2,
        depth_embed_dim=32,
        depth_num_blocks=2,
        depth_num_heads=2,
        thermal_embed_dim=32,
        thermal_num_blocks=2,
        thermal_num_heads=2,
        imu_embed_dim=32,
        imu_num_blocks=2,
        imu_num_heads=2,
    ),
    # Trains on 2 CPU cores in minutes (bindrt train --preset tiny).
    "tiny": ImageBindConfig(
        out_embed_dim=64,
        vision_embed_dim=64,
        vision_num_blocks=2,
        vision_num_heads=4,
        text_embed_dim=64,
        text_num_blocks=2,
        text_num_heads=4,
        audio_embed_dim=64,
        audio_num_blocks=2,
        audio_num_heads=4,
        depth_embed_dim=64,
        depth_num_blocks=2,
        depth_num_heads=4,
        thermal_embed_dim=64,
        thermal_num_blocks=2,
        thermal_num_heads=4,
        imu_embed_dim=64,
        imu_num_blocks=2,
        imu_num_heads=4,
    ),
    # A GPU-sized demo model with the huge model's head dims (80 vision, 48 depth).
    "small": ImageBindConfig(
        out_embed_dim=256,
        vision_embed_dim=320,
        vision_num_blocks=6,
        vision_num_heads=4,
        text_embed_dim=256,
        text_num_blocks=6,
        text_num_heads=4,
        audio_embed_dim=256,
        audio_num_blocks=6,
        audio_num_heads=4,
        depth_embed_dim=192,
        depth_num_blocks=6,
        depth_num_heads=4,
        thermal_embed_dim=256,
        thermal_num_blocks=6,
        thermal_num_heads=4,
        imu_embed_dim=256,
        imu_num_blocks=4,
        imu_num_heads=4,
    ),
}


def resolve_config(spec: "str | PathLike[str] | Mapping[str, Any] | ImageBindConfig") -> ImageBindConfig:
    """Accept a preset name, a JSON file of reference arguments, a dict or a config."""
    if isinstance(spec, ImageBindConfig):
        return spec
    if isinstance(spec, Mapping):
        return ImageBindConfig.from_dict(spec)
    text = str(spec)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(
                f"config file {path} does not exist; expected a preset name {sorted(PRESETS)} or a JSON file"
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a JSON object of constructor arguments")
        return ImageBindConfig.from_dict(data)
    raise ConfigError(f"unknown config {text!r}; expected a preset name {sorted(PRESETS)} or a JSON file")


def check_modalities(
    modalities: "list[str] | tuple[str, ...] | None", available: "tuple[str, ...] | list[str]" = MODALITIES
) -> tuple[str, ...]:
    """Validate a user's modality selection (None = all available), keeping reference order."""
    if modalities is None:
        return tuple(m for m in MODALITIES if m in available)
    if isinstance(modalities, str):
        modalities = [m for m in modalities.split(",") if m]
    if not modalities:
        raise ConfigError("empty modality list; expected at least one of " + ", ".join(available))
    for m in modalities:
        if m not in available:
            raise UnknownModalityError(f"unknown modality {m!r}; expected one of {', '.join(available)}")
    return tuple(m for m in MODALITIES if m in modalities)
