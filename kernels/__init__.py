"""bindrt's custom Triton kernels (package ``bindrt.kernels``).

Public API (each a plain function wrapping a ``torch.library`` custom op in the
``bindrt`` namespace, so ``torch.compile`` and ``torch.export`` trace them as
single opaque nodes with fake/meta implementations):

* :func:`fused_attention` -- ``Attention.core`` replacement: packed ``(B,N,3D)``
  projection -> ``(B,N,D)``, bias_kv and causal supported
  (``torch.ops.bindrt.fused_attention``).
* :func:`patch_embed_vision`, :func:`patch_embed_audio`,
  :func:`patch_embed_depth`, :func:`patch_embed_thermal`, :func:`patch_embed_imu`
  and the generic :func:`patch_embed_conv` -- stem GEMM + LayerNorm + CLS +
  position embedding in one pass (``torch.ops.bindrt.patch_embed``).
* :func:`layer_norm`, :func:`add_layer_norm` -- LayerNorm, and residual add +
  LayerNorm returning both the sum and the normalised sum.
* :func:`bias_gelu` -- ``gelu_erf(x + bias)`` elementwise; :func:`linear_gelu` --
  a bias-free GEMM then :func:`bias_gelu` (the ``Mlp.linear_gelu`` hook's signature).
* :func:`patch_encoder` -- swap every attention core of a module for
  :func:`fused_attention`.
* :func:`available` -- ``(ok, reason)``: can the kernels run here?
* :func:`register_ops` -- import all kernel modules (registers every
  ``torch.ops.bindrt.*`` op, e.g. before loading an exported program).

``TRITON_INTERPRET=1`` must be set *before* the kernel submodules are imported
for the CPU interpreter to be used (tests do this in their conftest). The
submodules (and triton) are imported lazily, on first use of a kernel name, so
``import bindrt.kernels`` and :func:`available` work without triton.
"""

from __future__ import annotations

import importlib

from ._common import available, interpreting

_LAZY = {
    "fused_attention": "attention",
    "head_dim_parts": "attention",
    "attention_config": "attention",
    "AttentionConfig": "attention",
    "MAX_HEAD_DIM": "attention",
    "patch_embed_conv": "patch_embed",
    "patch_embed_vision": "patch_embed",
    "patch_embed_audio": "patch_embed",
    "patch_embed_depth": "patch_embed",
    "patch_embed_thermal": "patch_embed",
    "patch_embed_imu": "patch_embed",
    "layer_norm": "layernorm",
    "add_layer_norm": "layernorm",
    "bias_gelu": "gelu",
    "linear_gelu": "gelu",
    "patch_encoder": "patching",
}

_OP_MODULES = ("attention", "patch_embed", "layernorm", "gelu")

__all__ = ["available", "interpreting", "register_ops", *_LAZY]


def register_ops() -> None:
    """Import every kernel module so all ``torch.ops.bindrt.*`` custom ops exist.

    Needed before loading a ``torch.export``-ed program or FX graph that calls
    them (the public functions register their op on first use anyway).
    """
    for mod in _OP_MODULES:
        importlib.import_module(f".{mod}", __name__)


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f".{mod}", __name__)
    except ImportError as exc:
        from bindrt.errors import BackendError

        raise BackendError(f"bindrt.kernels.{name} needs torch and triton ({exc}); install bindrt[kernels]") from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
