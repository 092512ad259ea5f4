"""Build encoders, fresh or from reference weights, one modality at a time."""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import Tensor, nn

from bindrt.config import ImageBindConfig, check_modalities
from bindrt.model.checkpoint import split_state_dict, to_encoder_key
from bindrt.model.encoders import ModalityEncoder, init_weights


def build_encoder(modality: str, config: ImageBindConfig, *, init: bool = True) -> ModalityEncoder:
    """A freshly initialised encoder (for training or random-weight benchmarks)."""
    encoder = ModalityEncoder(modality, config)
    return init_weights(encoder) if init else encoder


def load_encoder(modality: str, config: ImageBindConfig, reference_weights: Mapping[str, Tensor]) -> ModalityEncoder:
    """An eval-mode encoder from weights under reference key names (strictly checked).

    Built on the meta device and filled by assignment, so a 1.2B-parameter model is
    never initialised twice.
    """
    with torch.device("meta"):
        encoder = ModalityEncoder(modality, config)
    own = {to_encoder_key(k)[1]: v for k, v in reference_weights.items() if to_encoder_key(k)[0] == modality}
    encoder.load_state_dict(own, strict=True, assign=True)
    return encoder.eval().requires_grad_(False)


class ImageBind(nn.Module):
    """All requested encoders in one module; ``forward`` takes a dict like the reference."""

    def __init__(self, config: ImageBindConfig, encoders: Mapping[str, ModalityEncoder]) -> None:
        super().__init__()
        self.config = config
        self.encoders = nn.ModuleDict(dict(encoders))

    @classmethod
    def from_config(cls, config: ImageBindConfig, modalities: Iterable[str] | None = None) -> "ImageBind":
        mods = check_modalities(list(modalities) if modalities is not None else None)
        return cls(config, {m: build_encoder(m, config) for m in mods})

    @classmethod
    def from_state_dict(
        cls, state_dict: Mapping[str, Tensor], config: ImageBindConfig, modalities: Iterable[str] | None = None
    ) -> "ImageBind":
        mods = check_modalities(list(modalities) if modalities is not None else None)
        per_modality = split_state_dict(state_dict, config, mods)
        return cls(config, {m: load_encoder(m, config, per_modality[m]) for m in mods})

    def reference_state_dict(self) -> dict[str, Tensor]:
        from bindrt.model.checkpoint import to_reference_key

        return {to_reference_key(m, k): v for m, enc in self.encoders.items() for k, v in enc.state_dict().items()}

    def forward(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {m: self.encoders[m](x) for m, x in inputs.items()}
