"""Hooks: the designed places where a backend swaps the encoders' math for its own kernels.

A hookable module lists its hooks in the class attribute ``HOOKS``; each is a plain
instance attribute holding a callable with a documented signature, by default the
torch reference implementation (so the default path costs one attribute read):

* ``Attention.core`` (:data:`~bindrt.model.layers.AttentionCore`, default ``sdpa_attention``);
* ``Block.norm`` / ``Block.add_norm`` (:data:`~bindrt.model.layers.Norm` /
  :data:`~bindrt.model.layers.AddNorm`, defaults ``layer_norm`` / ``add_layer_norm``);
* ``Mlp.linear_gelu`` (:data:`~bindrt.model.layers.LinearGelu`, default ``linear_gelu``);
* ``PatchTokenizer.embed`` (:data:`~bindrt.model.encoders.PatchEmbed`, defaults
  ``vision_patch_embed``, ``conv_patch_embed``, ``imu_patch_embed``).

A backend names what it replaces by the reference function it replaces, so one
table covers every modality and nothing else of the model's structure is read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from torch import nn


def hook_sites(module: nn.Module) -> Iterator[tuple[nn.Module, str]]:
    """Every ``(submodule, hook name)`` under ``module``, in module order."""
    for sub in module.modules():
        for name in getattr(sub, "HOOKS", ()):
            yield sub, name


def install_hooks(module: nn.Module, replacements: Mapping[Callable, Callable]) -> Counter[Callable]:
    """Point every hook that holds a key of ``replacements`` at its value, in place.

    Returns how many hooks each key was replaced in. Only instances change (hooks are
    instance attributes); a hook already replaced is left alone and not counted.
    """
    counts: Counter[Callable] = Counter()
    for sub, name in hook_sites(module):
        current = getattr(sub, name)
        if current in replacements:
            setattr(sub, name, replacements[current])
            counts[current] += 1
    return counts
