"""Fused LayerNorm, optionally with the residual add in front of it.

``layer_norm(x, w, b, eps)`` normalises over the last dim. ``add_layer_norm(x,
residual, w, b, eps)`` returns ``(s, layer_norm(s))`` with ``s = x + residual``
from one read of ``x`` and ``residual``.

Where it pays: in a pre-norm block, ``x = x + attn(LN1(x)); x = x + mlp(LN2(x))``
costs eager torch a read-read-write for the add and a read-write for the next
LayerNorm; ``add_layer_norm`` does read-read-write-write in one kernel, saving a
full activation round trip per block boundary (memory-bound ops on (B*N, D)
activations). A lone ``layer_norm`` is on par with torch's own fused kernel; it is
here so the patch-embed fallback and the backend have one implementation.

Numerics: the sum ``s`` is rounded to the input dtype first and the statistics
are computed from that rounded value (what eager ``x + r`` followed by
``F.layer_norm`` computes, so the returned pair is self-consistent). Statistics
in fp32 over the registers: the mean, then the mean of the centred values as a
correction (when |mean| >> std the fp32 mean is itself rounded, e.g. ulp(1000)
= 6e-5, while ``x - mean`` is exact), then the variance as the mean of centred
squares (no ``E[x^2]-E[x]^2`` cancellation); biased variance like torch.

Layout: one program normalises ``ROWS`` whole rows held in registers
(``BLOCK_D = next_pow2(D)``, D <= :data:`MAX_D`). Inputs are read through their
row/column strides; a tensor with more than 2 dims whose leading dims cannot be
flattened into one stride is copied explicitly (``reshape``), never misread.
Outputs are contiguous.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from bindrt.errors import BackendError, InputError

from ._common import check_dtype, check_finite_param, check_runnable, check_same, next_pow2

MAX_D = 16384


@triton.jit
def _layer_norm_kernel(
    X,
    R,
    W,
    B,
    S,
    Y,
    sxr,
    sxd,
    srr,
    srd,
    sw,
    sb,
    ssr,
    ssd,
    syr,
    syd,
    M,
    D,
    eps,
    HAS_RES: tl.constexpr,
    HAS_W: tl.constexpr,
    HAS_B: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * ROWS + tl.arange(0, ROWS)
    r_mask = rows < M
    rows64 = rows.to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    c_mask = cols < D
    mask = r_mask[:, None] & c_mask[None, :]
    x = tl.load(X + rows64[:, None] * sxr + cols[None, :] * sxd, mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        r = tl.load(R + rows64[:, None] * srr + cols[None, :] * srd, mask=mask, other=0.0).to(tl.float32)
        s = (x + r).to(S.dtype.element_ty)
        tl.store(S + rows64[:, None] * ssr + cols[None, :] * ssd, s, mask=mask)
        x = s.to(tl.float32)
    mean = tl.sum(x, 1) / D
    xc = tl.where(mask, x - mean[:, None], 0.0)
    # the fp32 mean of large-offset rows is itself rounded (ulp(1000) = 6e-5);
    # x - mean is exact there, so one correction pass recovers the residual mean
    xc = tl.where(mask, xc - (tl.sum(xc, 1) / D)[:, None], 0.0)
    var = tl.sum(xc * xc, 1) / D
    rstd = 1.0 / tl.sqrt(var + eps)
    y = xc * rstd[:, None]
    if HAS_W:
        w = tl.load(W + cols * sw, mask=c_mask, other=0.0).to(tl.float32)
        y = y * w[None, :]
    if HAS_B:
        bias = tl.load(B + cols * sb, mask=c_mask, other=0.0).to(tl.float32)
        y = y + bias[None, :]
    tl.store(Y + rows64[:, None] * syr + cols[None, :] * syd, y.to(Y.dtype.element_ty), mask=mask)


def _as_rows(t: torch.Tensor, D: int) -> torch.Tensor:
    """(..., D) -> (M, D) with its own strides; copies only when not viewable."""
    if t.dim() == 2:
        return t
    return t.reshape(-1, D)


def _check_ln(x, residual, weight, bias, eps):
    if not isinstance(x, torch.Tensor):
        raise InputError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] < 1:
        raise InputError(f"x must be (..., D) with D >= 1, got shape {tuple(x.shape)}")
    check_dtype(x, "x")
    D = x.shape[-1]
    if D > MAX_D:
        raise BackendError(f"layer_norm kernel supports D <= {MAX_D}, got {D}; use torch.nn.functional.layer_norm")
    if residual is not None and residual.shape != x.shape:
        raise InputError(f"residual shape {tuple(residual.shape)} != x shape {tuple(x.shape)}")
    for t, name in ((weight, "weight"), (bias, "bias")):
        if t is not None and (t.dim() != 1 or t.shape[0] != D):
            raise InputError(f"{name} must be ({D},), got {tuple(t.shape)}")
    check_same(x, "x", ((residual, "residual"), (weight, "weight"), (bias, "bias")))
    check_finite_param(float(eps), "eps")
    return D


def _launch_layer_norm(x, weight, bias, eps: float, residual=None):
    """Returns ``(sum_or_None, normalised)`` shaped like ``x``."""
    D = x.shape[-1]
    x2 = _as_rows(x, D)
    M = x2.shape[0]
    y = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    y2 = y.view(-1, D)
    if residual is not None:
        r2 = _as_rows(residual, D)
        s = torch.empty(x.shape, device=x.device, dtype=x.dtype)
        s2 = s.view(-1, D)
    else:
        r2, s, s2 = x2, None, y2
    if M == 0:
        return s, y
    block_d = max(16, next_pow2(D))
    rows = max(1, min(16, 4096 // block_d))
    num_warps = min(16, max(1, rows * block_d // 512))
    w = weight if weight is not None else x2
    b = bias if bias is not None else x2
    grid = (triton.cdiv(M, rows),)
    _layer_norm_kernel[grid](
        x2,
        r2,
        w,
        b,
        s2,
        y2,
        x2.stride(0),
        x2.stride(1),
        r2.stride(0),
        r2.stride(1),
        w.stride(0) if weight is not None else 0,
        b.stride(0) if bias is not None else 0,
        s2.stride(0),
        s2.stride(1),
        y2.stride(0),
        y2.stride(1),
        M,
        D,
        float(eps),
        HAS_RES=residual is not None,
        HAS_W=weight is not None,
        HAS_B=bias is not None,
        ROWS=rows,
        BLOCK_D=block_d,
        num_warps=num_warps,
    )
    return s, y


@torch.library.custom_op("bindrt::layer_norm", mutates_args=())
def _layer_norm_op(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    check_runnable(x, "x")
    return _launch_layer_norm(x, weight, bias, eps)[1]


@_layer_norm_op.register_fake
def _layer_norm_fake(x, weight, bias, eps):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.custom_op("bindrt::add_layer_norm", mutates_args=())
def _add_layer_norm_op(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    check_runnable(x, "x")
    s, y = _launch_layer_norm(x, weight, bias, eps, residual)
    return s, y


@_add_layer_norm_op.register_fake
def _add_layer_norm_fake(x, residual, weight, bias, eps):
    return (
        torch.empty_like(x, memory_format=torch.contiguous_format),
        torch.empty_like(x, memory_format=torch.contiguous_format),
    )


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float = 1e-6
) -> torch.Tensor:
    """``F.layer_norm(x, (D,), weight, bias, eps)`` over the last dim (fp32 statistics)."""
    _check_ln(x, None, weight, bias, eps)
    return torch.ops.bindrt.layer_norm(x, weight, bias, float(eps))


def add_layer_norm(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``s = x + residual``; returns ``(s, F.layer_norm(s, (D,), weight, bias, eps))``."""
    _check_ln(x, residual, weight, bias, eps)
    s, y = torch.ops.bindrt.add_layer_norm(x, residual, weight, bias, float(eps))
    return s, y


__all__ = ["MAX_D", "add_layer_norm", "layer_norm"]
