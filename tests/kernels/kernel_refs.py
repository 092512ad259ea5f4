"""float64 references, shared helpers and the interpreter switch for the kernel tests.

Every test module of this folder imports this module FIRST: without a CUDA
device it sets ``TRITON_INTERPRET=1``, which Triton reads when a kernel is
decorated, i.e. when the ``bindrt.kernels`` submodules are first imported
(``bindrt.kernels`` imports them lazily, on first use of a kernel name).

There is deliberately no ``conftest.py`` in this folder: the other test modules
do ``from helpers import GOLDEN_DIR`` and pytest (rootless, prepend import
mode) rebinds ``sys.modules["conftest"]`` to the most recently loaded
conftest, so a second conftest here would break their imports.

Every reference is plain torch in float64, computed from the *same* (already
rounded) inputs the kernel sees.
"""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton", reason="triton is not installed (pip install bindrt[kernels])")


def _check_not_imported_too_early():
    mod = sys.modules.get("bindrt.kernels.attention")
    if mod is None or torch.cuda.is_available():
        return
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(getattr(mod, "_attn_fwd_kernel", None), InterpretedFunction):
        raise pytest.UsageError(
            "bindrt.kernels was imported before TRITON_INTERPRET=1 was set, so its kernels cannot run "
            "on this machine without a GPU; run with TRITON_INTERPRET=1 in the environment"
        )


_check_not_imported_too_early()

HAS_CUDA = torch.cuda.is_available()
INTERPRET = not HAS_CUDA
DEVICE = "cuda" if HAS_CUDA else "cpu"

#: max |out - ref| / max |ref| per dtype (the issue's tolerances)
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}

_BF16_SKIP = pytest.mark.skipif(
    INTERPRET, reason="bf16 tl.dot / loads are not supported by the Triton CPU interpreter (GPU only)"
)


def dtype_param(dt: torch.dtype):
    """pytest.param for a dtype; bf16 is marked gpu and skipped in the interpreter."""
    if dt == torch.bfloat16:
        return pytest.param(dt, marks=[pytest.mark.gpu, _BF16_SKIP], id="bf16")
    return pytest.param(dt, id={torch.float32: "fp32", torch.float16: "fp16"}[dt])


ALL_DTYPES = [dtype_param(d) for d in (torch.float32, torch.float16, torch.bfloat16)]


def case_param(*values, dtype: torch.dtype, id: str | None = None):
    """pytest.param whose last value is a dtype, with the bf16 marks applied."""
    marks = [pytest.mark.gpu, _BF16_SKIP] if dtype == torch.bfloat16 else []
    return pytest.param(*values, dtype, marks=marks, id=id)


def gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def randn(*shape, seed: int, scale: float = 1.0, dtype=torch.float32, device=DEVICE) -> torch.Tensor:
    """Seeded normal tensor built on the CPU (reproducible everywhere), then moved."""
    t = torch.randn(*shape, generator=gen(seed), dtype=torch.float64) * scale
    return t.to(dtype).to(device)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out = out.detach().to("cpu", torch.float64)
    ref = ref.detach().to("cpu", torch.float64)
    assert out.shape == ref.shape, (tuple(out.shape), tuple(ref.shape))
    assert torch.isfinite(out).all(), "non-finite values in kernel output"
    return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str = ""):
    assert out.dtype == dtype, f"{what}: output dtype {out.dtype}, expected {dtype}"
    err = rel_err(out, ref)
    assert err <= TOL[dtype], f"{what}: relative error {err:.3e} > {TOL[dtype]:.0e} ({dtype})"
    return err


# ---------------------------------------------------------------------------
# references
# ---------------------------------------------------------------------------


def ref_attention(qkv, bias_k, bias_v, num_heads: int, causal: bool) -> torch.Tensor:
    """nn.MultiheadAttention core math in float64 on the packed projection (CPU)."""
    x = qkv.detach().to("cpu", torch.float64)
    B, N, three_d = x.shape
    D = three_d // 3
    hd = D // num_heads
    q, k, v = x.split(D, dim=-1)
    if bias_k is not None:
        k = torch.cat([k, bias_k.detach().to("cpu", torch.float64).reshape(1, 1, D).expand(B, 1, D)], 1)
        v = torch.cat([v, bias_v.detach().to("cpu", torch.float64).reshape(1, 1, D).expand(B, 1, D)], 1)
    M = k.shape[1]
    q = q.reshape(B, N, num_heads, hd).transpose(1, 2)
    k = k.reshape(B, M, num_heads, hd).transpose(1, 2)
    v = v.reshape(B, M, num_heads, hd).transpose(1, 2)
    s = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if causal:
        # MHA pads attn_mask with a zero column for bias_k: the extra key stays visible
        mask = torch.ones(N, M, dtype=torch.bool).triu(1)
        mask[:, N:] = False
        s = s.masked_fill(mask, float("-inf"))
    o = s.softmax(-1) @ v
    return o.transpose(1, 2).reshape(B, N, D)


def ref_stem(kind: str, x, weight, cls_token, pos_embed, norm_weight, norm_bias, eps, stride=None):
    """The reference stems in float64: conv / unfold+linear, [LN], cat CLS, + pos."""
    d = lambda t: None if t is None else t.detach().to("cpu", torch.float64)  # noqa: E731
    x, w = d(x), d(weight)
    if kind == "vision":
        if x.dim() == 4:
            x = x.unsqueeze(2)
        if x.shape[2] == 1:
            x = x.repeat(1, 1, w.shape[2], 1, 1)  # PadIm2Video(repeat)
        y = F.conv3d(x, w, stride=tuple(w.shape[2:]))
    elif kind == "conv":
        y = F.conv2d(x, w, stride=stride if stride is not None else tuple(w.shape[2:]))
    elif kind == "imu":
        B = x.shape[0]
        win = w.shape[1] // x.shape[1]
        tokens = x.unfold(-1, win, win).permute(0, 2, 1, 3).reshape(B, -1, w.shape[1])
        y = tokens @ w.T
    else:
        raise ValueError(kind)
    if kind != "imu":
        y = y.flatten(2).transpose(1, 2)
    if norm_weight is not None:
        y = F.layer_norm(y, (y.shape[-1],), d(norm_weight), d(norm_bias), eps)
    B, _, D = y.shape
    y = torch.cat([d(cls_token).reshape(1, 1, D).expand(B, 1, D), y], 1)
    return y + d(pos_embed).reshape(1, -1, D)
