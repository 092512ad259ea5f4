"""Swap the Triton attention core into a model.

:func:`patch_encoder` walks a module tree and sets ``core = fused_attention``
on every submodule that has both ``in_proj_weight`` and ``core`` attributes
(``bindrt.model.layers.Attention``). ``core`` is an instance attribute there, so
patching one model never affects another instance. It sets the same hook the
triton backend sets through ``bindrt.model.hooks.install_hooks`` (which covers the
stems, norms and MLPs too); this duck-typed form serves modules outside
``bindrt.model`` and keeps the kernels package free of model imports.
"""

from __future__ import annotations

import torch

from .attention import fused_attention


def patch_encoder(encoder: torch.nn.Module) -> int:
    """Set ``core = fused_attention`` on every attention module; return how many were patched.

    Idempotent: an already patched module is counted again but not changed.
    Also validates what it can up front: head dims beyond the kernel's limit
    raise :class:`~bindrt.errors.BackendError` here rather than at first call.
    """
    from .attention import head_dim_parts

    count = 0
    for module in encoder.modules():
        if hasattr(module, "in_proj_weight") and hasattr(module, "core"):
            heads = getattr(module, "num_heads", None)
            if isinstance(heads, int) and heads > 0:
                dim = module.in_proj_weight.shape[0] // 3
                if dim % heads == 0:
                    head_dim_parts(dim // heads)
            if "core" in getattr(module, "_modules", {}):
                # a core registered as a child nn.Module cannot be overwritten
                # by a plain function through nn.Module.__setattr__
                del module._modules["core"]
            module.core = fused_attention
            count += 1
    return count


__all__ = ["patch_encoder"]
