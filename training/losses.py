"""Contrastive losses: symmetric InfoNCE with a learnable temperature.

Encoders return postprocessed embeddings (L2-normalised, then multiplied by a
scale: text's learnable one, the fixed buffers of audio/depth/thermal/IMU).
The losses re-normalise, so an encoder's output scale never acts as a
temperature by accident; each loss has its own learnable temperature instead.
For image-text the temperature *is* the text encoder's learnable
``log_logit_scale`` (clipped at 100), exactly as in CLIP and the reference,
so the exported text tower carries the trained value.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_SCALE = 100.0


class Temperature(nn.Module):
    """A learnable logit scale ``exp(log_scale)``, clipped at 100 (CLIP's init 1/0.07)."""

    def __init__(self, init: float = 1 / 0.07) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(init)))

    def forward(self) -> Tensor:
        return self.log_scale.exp().clamp(max=MAX_SCALE)


def info_nce(queries: Tensor, keys: Tensor, scale: Tensor) -> Tensor:
    """Symmetric InfoNCE: row i of ``queries`` matches row i of ``keys`` and no other row."""
    q = F.normalize(queries.float(), dim=-1)
    k = F.normalize(keys.float(), dim=-1)
    logits = scale * q @ k.T
    target = torch.arange(len(q), device=q.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def text_scale(text_encoder: nn.Module) -> Tensor:
    """The text tower's own learnable logit scale (its postprocessor's ``log_logit_scale``), clipped at 100."""
    return text_encoder.postprocessor[1].log_logit_scale.exp().clamp(max=MAX_SCALE)


@torch.no_grad()
def retrieval_accuracy(queries: Tensor, keys: Tensor) -> float:
    """Fraction of rows whose nearest key is their own pair (a cheap in-batch progress signal)."""
    sim = F.normalize(queries.float(), dim=-1) @ F.normalize(keys.float(), dim=-1).T
    return (sim.argmax(dim=1) == torch.arange(len(sim), device=sim.device)).float().mean().item()
