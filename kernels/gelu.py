"""Bias + exact (erf) GELU, elementwise: ``y = gelu(x + bias)``.

The MLP of every block is ``Linear(D, 4D) -> GELU(erf) -> Linear(4D, D)``.
Eager torch runs ``addmm`` (bias in the cuBLAS epilogue) and then a separate
GELU pass, so against *that* this kernel saves nothing: ``F.linear(x, W)`` (no
bias) + ``bias_gelu`` moves the same bytes. It pays where the bias add would
otherwise be its own pass (a bias-less GEMM such as a TensorRT/cuBLASLt matmul
without epilogue, or ``x @ W.T`` written out) -- one read and one write of the
``(B*N, 4D)`` activation instead of two of each. The real win, folding the GELU
into the GEMM epilogue, is left to cuBLASLt / inductor (``torch.compile`` fuses
``addmm + gelu`` itself); a hand-written Triton GEMM would have to beat cuBLAS
on Hopper first. So: kept small, correct and tested; use it where the bias is
not already fused.

fp32 math in registers (``0.5 * z * (1 + erf(z / sqrt(2)))``), result in the
input dtype. ``x`` is read through its strides when it is (or views as) 2-D;
otherwise it is reshaped (an explicit copy), never misread.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from bindrt.errors import InputError

from ._common import check_dtype, check_runnable, check_same, next_pow2


@triton.jit
def _bias_gelu_kernel(
    X,
    BIAS,
    Y,
    sxr,
    sxc,
    sb,
    syr,
    syc,
    M,
    N,
    HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    c_mask = cols < N
    mask = (rows < M)[:, None] & c_mask[None, :]
    z = tl.load(X + rows[:, None] * sxr + cols[None, :] * sxc, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        z = z + tl.load(BIAS + cols * sb, mask=c_mask, other=0.0).to(tl.float32)[None, :]
    y = 0.5 * z * (1.0 + tl.erf(z * 0.7071067811865476))
    tl.store(Y + rows[:, None] * syr + cols[None, :] * syc, y.to(Y.dtype.element_ty), mask=mask)


def _launch_bias_gelu(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    N = x.shape[-1]
    x2 = x if x.dim() == 2 else x.reshape(-1, N)
    M = x2.shape[0]
    y = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    if M == 0 or N == 0:
        return y
    y2 = y.view(-1, N)
    block_n = min(1024, max(16, next_pow2(N)))
    block_m = max(1, min(64, 4096 // block_n))
    b = bias if bias is not None else x2
    grid = (triton.cdiv(M, block_m), triton.cdiv(N, block_n))
    _bias_gelu_kernel[grid](
        x2,
        b,
        y2,
        x2.stride(0),
        x2.stride(1),
        bias.stride(0) if bias is not None else 0,
        y2.stride(0),
        y2.stride(1),
        M,
        N,
        HAS_BIAS=bias is not None,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        num_warps=4,
    )
    return y


@torch.library.custom_op("bindrt::bias_gelu", mutates_args=())
def _bias_gelu_op(x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    check_runnable(x, "x")
    return _launch_bias_gelu(x, bias)


@_bias_gelu_op.register_fake
def _bias_gelu_fake(x, bias):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def bias_gelu(x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.gelu(x + bias)`` (exact erf form); ``bias`` is ``(N,)`` for ``x`` ``(..., N)``."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise InputError("x must have at least one dimension (..., N)")
    check_dtype(x, "x")
    if bias is not None:
        if bias.dim() != 1 or bias.shape[0] != x.shape[-1]:
            raise InputError(f"bias must be ({x.shape[-1]},), got {tuple(bias.shape)}")
        check_same(x, "x", ((bias, "bias"),))
    return torch.ops.bindrt.bias_gelu(x, bias)


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``gelu(F.linear(x, weight, bias))`` as a bias-free GEMM then :func:`bias_gelu` (``Mlp.linear_gelu``)."""
    return bias_gelu(torch.nn.functional.linear(x, weight), bias)


__all__ = ["bias_gelu", "linear_gelu"]
