"""Fused multi-head attention forward, reading the packed ``(B, N, 3D)`` projection.

``fused_attention(qkv, bias_k, bias_v, num_heads, causal)`` is a drop-in for the
``core`` callable of :class:`bindrt.model.layers.Attention`: it takes the output of
``F.linear(x, in_proj_weight, in_proj_bias)`` -- ``[q | k | v]`` packed along
the last dim, each ``D = num_heads * head_dim`` wide, head ``h`` occupying
columns ``h*hd:(h+1)*hd`` of its third -- and returns ``(B, N, D)`` with the
heads concatenated the same way, i.e. exactly what ``out_proj`` reads.
Semantics are ``torch.nn.MultiheadAttention``'s: scale ``1/sqrt(head_dim)``;
with ``bias_k``/``bias_v`` (``(1, 1, D)``, already in projected space) one extra
key/value position is appended at the END for every item and head (queries
``N``, keys ``N + 1``); ``causal`` lets query ``i`` see keys ``<= i``. If
``causal`` and ``bias_kv`` are both given, the extra key stays visible to every
query (``nn.MultiheadAttention`` pads the mask with a zero column for it).

Design choices
--------------
* **No copies.** Q, K and V tiles are loaded straight out of ``qkv`` through its
  strides (any strides work: a non-contiguous ``qkv`` is read in place, nothing
  is transposed or ``.contiguous()``-ed); the output is written with the heads
  concatenated, so there is no ``(B, H, N, hd)`` transpose on either side.
* **Head-dim split instead of padding, where it is safe.** ``tl.arange`` and
  ``tl.dot`` need power-of-two tile widths (>= 16 for the dot). Padding head dim
  80 (ImageBind vision) to 128 would waste 37.5 % of every Q.K^T and P.V product
  and of the accumulator registers. Instead a head dim that is a power of two
  plus 16 (rounded up to a multiple of 16) is split into that power of two and a
  16-wide tail (80 = 64 + 16, 48 = 32 + 16, 40 -> 48 = 32 + 16, 144 = 128 + 16);
  each part is its own Q tile, K/V tile and accumulator, ``S = sum_p Q_p K_p^T``
  and ``O_p += P V_p``. Every other head dim is padded to the next power of two
  and masked (96 -> 128, 112 -> 128, 200 -> 256). Wider splits (96 = 64 + 32,
  112 = 64 + 32 + 16) compile but were miscompiled on an H200 with Triton 3.6
  (out-of-range shared-memory access, wrong results; see
  ``benchmarks/results/2026-11-28-nvidia-h200/kernels/``), so they are not used. Head
  dims above 256 are rejected with :class:`~bindrt.errors.BackendError` (the
  register-resident accumulator would spill; use the SDPA backend).
* **Online softmax** (FlashAttention-2 style) in fp32 with ``exp2`` and the
  ``log2(e)/sqrt(hd)`` scale folded into the score (not into Q, so the fp16/bf16
  Q is never re-rounded). Q.K^T and P.V accumulate in fp32; P is cast to the
  input dtype for the P.V product exactly as FlashAttention does. fp32 inputs use
  ``input_precision="ieee"`` dots (no TF32), so fp32 results match a float64
  reference to ~1e-6.
* **bias_kv folded in, never concatenated.** After the key loop, the single
  extra key is one more online-softmax step computed with an fp32 row-wise dot
  product (``q . bias_k``) and a rank-1 update (``p * bias_v``); no ``(B, N+1, D)``
  K/V is ever built.
* **Causal** skips key tiles entirely above the diagonal of the query tile.
* **Column masks only when needed.** When the parts cover the head dim exactly
  (every ImageBind encoder: 80, 64, 48) loads and stores carry row masks only,
  so they vectorise; the ``< head_dim`` column mask is compiled in only for
  padded head dims.
* 64-bit batch offsets, so ``B * N * 3D`` beyond 2**31 elements is fine.

Tile sizes come from :func:`attention_config` (a heuristic table; the benchmark
``benchmarks/kernels/bench_attention.py --sweep`` measures the alternatives on a
GPU). They matter for speed only, never for results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from bindrt.errors import BackendError, InputError

from ._common import check_dtype, check_runnable, check_same

MAX_HEAD_DIM = 256


def head_dim_parts(head_dim: int) -> tuple[int, int, int, int]:
    """Tile widths covering ``head_dim``: ``(P, 0, 0, 0)`` or ``(P, 16, 0, 0)``, P a power of two >= 16.

    Returns a 4-tuple (the kernel takes up to four parts), unused parts are 0.
    ``(P, 16)`` is used when the head dim rounded up to a multiple of 16 is
    exactly ``P + 16`` (80, 48, 40, 144); otherwise a single part, the next
    power of two, with the extra columns masked.
    """
    if head_dim < 1:
        raise InputError(f"head_dim must be >= 1, got {head_dim}")
    if head_dim > MAX_HEAD_DIM:
        raise BackendError(
            f"fused_attention supports head_dim <= {MAX_HEAD_DIM}, got {head_dim}; "
            f"use the torch SDPA attention core for this model"
        )
    padded = -(-head_dim // 16) * 16
    main = padded - 16
    if main >= 16 and main & (main - 1) == 0:
        return (main, 16, 0, 0)
    return (max(16, 1 << (padded - 1).bit_length()), 0, 0, 0)


@dataclass(frozen=True)
class AttentionConfig:
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


def attention_config(seq_len: int, head_dim: int, dtype: torch.dtype) -> AttentionConfig:
    """Heuristic tile sizes (speed only; results do not depend on them).

    fp16/bf16: BLOCK_M 128 amortises K/V loads best, but the query count is not
    a multiple of it (257 = 2*128 + 1 would compute 384 rows), so take 64 when
    that pads less. fp32 uses IEEE (CUDA-core FMA) dots whose operand layouts
    need far more registers: small tiles. Every entry was compiled for sm_90
    with ``benchmarks/kernels/compile_check.py`` (no spills, shared memory
    within limits); speed still wants a GPU sweep (``bench_attention.py --sweep``).
    """
    padded = -(-head_dim // 16) * 16
    if dtype == torch.float32:
        return AttentionConfig(32, 32, 4, 2) if padded <= 128 else AttentionConfig(32, 16, 8, 2)
    if padded > 128:
        return AttentionConfig(64, 32, 8, 2)
    pad128 = -(-seq_len // 128) * 128
    pad64 = -(-seq_len // 64) * 64
    if pad128 <= pad64:
        return AttentionConfig(128, 64, 8 if padded > 64 else 4, 3)
    return AttentionConfig(64, 64, 4, 3)


@triton.jit
def _load_cols(base, rows, row_stride, row_mask, col0, DP: tl.constexpr, HD, col_stride, MASK_COLS: tl.constexpr):
    """Load a ``[len(rows), DP]`` tile: columns ``col0 .. col0+DP`` of the head.

    The column mask (``< HD``) is only emitted when the head dim is not a
    multiple of 16 (``MASK_COLS``): a mask that varies along the contiguous
    dimension stops the compiler from vectorising the load.
    """
    cols = col0 + tl.arange(0, DP)
    ptrs = base + rows[:, None] * row_stride + cols[None, :] * col_stride
    if MASK_COLS:
        mask = row_mask[:, None] & (cols[None, :] < HD)
    else:
        mask = row_mask[:, None]
    return tl.load(ptrs, mask=mask, other=0.0)


@triton.jit
def _load_vec(base, col0, DP: tl.constexpr, HD, col_stride, MASK_COLS: tl.constexpr):
    cols = col0 + tl.arange(0, DP)
    if MASK_COLS:
        v = tl.load(base + cols * col_stride, mask=cols < HD, other=0.0)
    else:
        v = tl.load(base + cols * col_stride)
    return v.to(tl.float32)


@triton.jit
def _store_cols(base, rows, row_stride, row_mask, col0, DP: tl.constexpr, HD, col_stride, val, MASK_COLS: tl.constexpr):
    cols = col0 + tl.arange(0, DP)
    ptrs = base + rows[:, None] * row_stride + cols[None, :] * col_stride
    if MASK_COLS:
        mask = row_mask[:, None] & (cols[None, :] < HD)
    else:
        mask = row_mask[:, None]
    tl.store(ptrs, val, mask=mask)


@triton.jit
def _attn_fwd_kernel(
    QKV,
    BK,
    BV,
    OUT,
    stride_b,
    stride_n,
    stride_d,
    stride_bk,
    stride_bv,
    stride_ob,
    stride_on,
    stride_od,
    N,
    H,
    HD,
    D,
    qk_scale,
    HAS_BIAS_KV: tl.constexpr,
    CAUSAL: tl.constexpr,
    D0: tl.constexpr,
    D1: tl.constexpr,
    D2: tl.constexpr,
    D3: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    PRECISION: tl.constexpr,
    MASK_COLS: tl.constexpr,
):
    # 1-D grid, query tiles of one (item, head) adjacent (K/V stay in L2); a
    # 1-D grid also has no 65535 limit on B*H
    n_m = tl.cdiv(N, BLOCK_M)
    pid = tl.program_id(0)
    pid_m = pid % n_m
    pid_bh = pid // n_m
    b = pid_bh // H
    h = pid_bh % H

    # column offsets of the parts inside the head
    C1: tl.constexpr = D0
    C2: tl.constexpr = D0 + D1
    C3: tl.constexpr = D0 + D1 + D2
    MC: tl.constexpr = MASK_COLS

    head_col = h * HD
    q_base = QKV + b.to(tl.int64) * stride_b + head_col * stride_d
    k_base = q_base + D * stride_d
    v_base = q_base + 2 * D * stride_d
    o_base = OUT + b.to(tl.int64) * stride_ob + head_col * stride_od

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = offs_m < N

    q0 = _load_cols(q_base, offs_m, stride_n, m_mask, 0, D0, HD, stride_d, MC)
    acc0 = tl.zeros([BLOCK_M, D0], dtype=tl.float32)
    if D1 > 0:
        q1 = _load_cols(q_base, offs_m, stride_n, m_mask, C1, D1, HD, stride_d, MC)
        acc1 = tl.zeros([BLOCK_M, D1], dtype=tl.float32)
    if D2 > 0:
        q2 = _load_cols(q_base, offs_m, stride_n, m_mask, C2, D2, HD, stride_d, MC)
        acc2 = tl.zeros([BLOCK_M, D2], dtype=tl.float32)
    if D3 > 0:
        q3 = _load_cols(q_base, offs_m, stride_n, m_mask, C3, D3, HD, stride_d, MC)
        acc3 = tl.zeros([BLOCK_M, D3], dtype=tl.float32)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)

    if CAUSAL:
        hi = tl.minimum(N, (pid_m + 1) * BLOCK_M)
    else:
        hi = N

    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_mask = offs_n < N
        k0 = _load_cols(k_base, offs_n, stride_n, n_mask, 0, D0, HD, stride_d, MC)
        s = tl.dot(q0, tl.trans(k0), input_precision=PRECISION)
        if D1 > 0:
            k1 = _load_cols(k_base, offs_n, stride_n, n_mask, C1, D1, HD, stride_d, MC)
            s = tl.dot(q1, tl.trans(k1), s, input_precision=PRECISION)
        if D2 > 0:
            k2 = _load_cols(k_base, offs_n, stride_n, n_mask, C2, D2, HD, stride_d, MC)
            s = tl.dot(q2, tl.trans(k2), s, input_precision=PRECISION)
        if D3 > 0:
            k3 = _load_cols(k_base, offs_n, stride_n, n_mask, C3, D3, HD, stride_d, MC)
            s = tl.dot(q3, tl.trans(k3), s, input_precision=PRECISION)
        s = s * qk_scale
        valid = n_mask[None, :]
        if CAUSAL:
            valid = valid & (offs_n[None, :] <= offs_m[:, None])
        s = tl.where(valid, s, float("-inf"))

        # every row has at least one valid key in the first tile (key 0), so
        # m_new is finite from the first iteration on and alpha is 0 there.
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        m_i = m_new

        v0 = _load_cols(v_base, offs_n, stride_n, n_mask, 0, D0, HD, stride_d, MC)
        p_in = p.to(v0.dtype)
        acc0 = tl.dot(p_in, v0, acc0 * alpha[:, None], input_precision=PRECISION)
        if D1 > 0:
            v1 = _load_cols(v_base, offs_n, stride_n, n_mask, C1, D1, HD, stride_d, MC)
            acc1 = tl.dot(p_in, v1, acc1 * alpha[:, None], input_precision=PRECISION)
        if D2 > 0:
            v2 = _load_cols(v_base, offs_n, stride_n, n_mask, C2, D2, HD, stride_d, MC)
            acc2 = tl.dot(p_in, v2, acc2 * alpha[:, None], input_precision=PRECISION)
        if D3 > 0:
            v3 = _load_cols(v_base, offs_n, stride_n, n_mask, C3, D3, HD, stride_d, MC)
            acc3 = tl.dot(p_in, v3, acc3 * alpha[:, None], input_precision=PRECISION)

    if HAS_BIAS_KV:
        # the extra key/value at position N: one more online-softmax step,
        # fp32 row dot-product + rank-1 update (no concatenated K/V).
        bk_base = BK + head_col * stride_bk
        bv_base = BV + head_col * stride_bv
        bk0 = _load_vec(bk_base, 0, D0, HD, stride_bk, MC)
        s_x = tl.sum(q0.to(tl.float32) * bk0[None, :], 1)
        if D1 > 0:
            bk1 = _load_vec(bk_base, C1, D1, HD, stride_bk, MC)
            s_x += tl.sum(q1.to(tl.float32) * bk1[None, :], 1)
        if D2 > 0:
            bk2 = _load_vec(bk_base, C2, D2, HD, stride_bk, MC)
            s_x += tl.sum(q2.to(tl.float32) * bk2[None, :], 1)
        if D3 > 0:
            bk3 = _load_vec(bk_base, C3, D3, HD, stride_bk, MC)
            s_x += tl.sum(q3.to(tl.float32) * bk3[None, :], 1)
        s_x = s_x * qk_scale
        m_new = tl.maximum(m_i, s_x)
        alpha = tl.exp2(m_i - m_new)
        p_x = tl.exp2(s_x - m_new)
        l_i = l_i * alpha + p_x
        bv0 = _load_vec(bv_base, 0, D0, HD, stride_bv, MC)
        acc0 = acc0 * alpha[:, None] + p_x[:, None] * bv0[None, :]
        if D1 > 0:
            bv1 = _load_vec(bv_base, C1, D1, HD, stride_bv, MC)
            acc1 = acc1 * alpha[:, None] + p_x[:, None] * bv1[None, :]
        if D2 > 0:
            bv2 = _load_vec(bv_base, C2, D2, HD, stride_bv, MC)
            acc2 = acc2 * alpha[:, None] + p_x[:, None] * bv2[None, :]
        if D3 > 0:
            bv3 = _load_vec(bv_base, C3, D3, HD, stride_bv, MC)
            acc3 = acc3 * alpha[:, None] + p_x[:, None] * bv3[None, :]

    inv_l = 1.0 / l_i
    out_ty = OUT.dtype.element_ty
    _store_cols(o_base, offs_m, stride_on, m_mask, 0, D0, HD, stride_od, (acc0 * inv_l[:, None]).to(out_ty), MC)
    if D1 > 0:
        _store_cols(o_base, offs_m, stride_on, m_mask, C1, D1, HD, stride_od, (acc1 * inv_l[:, None]).to(out_ty), MC)
    if D2 > 0:
        _store_cols(o_base, offs_m, stride_on, m_mask, C2, D2, HD, stride_od, (acc2 * inv_l[:, None]).to(out_ty), MC)
    if D3 > 0:
        _store_cols(o_base, offs_m, stride_on, m_mask, C3, D3, HD, stride_od, (acc3 * inv_l[:, None]).to(out_ty), MC)


# ---------------------------------------------------------------------------
# validation + launch
# ---------------------------------------------------------------------------


def _check_attention_inputs(qkv, bias_k, bias_v, num_heads: int) -> tuple[int, int, int, int]:
    """Validate; return ``(B, N, D, head_dim)``. Raises InputError / BackendError."""
    if not isinstance(qkv, torch.Tensor):
        raise InputError(f"qkv must be a torch.Tensor, got {type(qkv).__name__}")
    if qkv.dim() != 3:
        raise InputError(f"qkv must be (B, N, 3*D), got shape {tuple(qkv.shape)}")
    check_dtype(qkv, "qkv")
    B, N, three_d = qkv.shape
    if three_d % 3:
        raise InputError(f"qkv last dim must be 3*D (packed q|k|v), got {three_d}")
    D = three_d // 3
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise InputError(f"num_heads must be a positive int, got {num_heads!r}")
    if D % num_heads:
        raise InputError(f"model dim D={D} is not divisible by num_heads={num_heads}")
    if N < 1 or B < 1:
        raise InputError(f"qkv must have at least one item and one token, got shape {tuple(qkv.shape)}")
    head_dim = D // num_heads
    head_dim_parts(head_dim)  # raises BackendError beyond MAX_HEAD_DIM
    if (bias_k is None) != (bias_v is None):
        raise InputError("bias_k and bias_v must be given together (or both None)")
    for t, name in ((bias_k, "bias_k"), (bias_v, "bias_v")):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
        if t.numel() != D or t.shape[-1] != D:
            raise InputError(f"{name} must have shape (1, 1, {D}), got {tuple(t.shape)}")
    check_same(qkv, "qkv", ((bias_k, "bias_k"), (bias_v, "bias_v")))
    return B, N, D, head_dim


def _launch_attention(
    qkv: torch.Tensor,
    bias_k: torch.Tensor | None,
    bias_v: torch.Tensor | None,
    num_heads: int,
    causal: bool,
    config: AttentionConfig | None = None,
) -> torch.Tensor:
    B, N, D, head_dim = _check_attention_inputs(qkv, bias_k, bias_v, num_heads)
    parts = head_dim_parts(head_dim)
    cfg = config or attention_config(N, head_dim, qkv.dtype)
    out = torch.empty((B, N, D), device=qkv.device, dtype=qkv.dtype)
    has_bias = bias_k is not None
    # (1,1,D) or any view with D elements along the last dim: read with its last-dim stride
    bk = bias_k.reshape(-1) if has_bias else qkv
    bv = bias_v.reshape(-1) if has_bias else qkv
    stride_bk = bk.stride(0) if has_bias else 0
    stride_bv = bv.stride(0) if has_bias else 0
    qk_scale = (1.0 / math.sqrt(head_dim)) * 1.4426950408889634  # log2(e)
    grid = (triton.cdiv(N, cfg.block_m) * B * num_heads,)
    _attn_fwd_kernel[grid](
        qkv,
        bk,
        bv,
        out,
        qkv.stride(0),
        qkv.stride(1),
        qkv.stride(2),
        stride_bk,
        stride_bv,
        out.stride(0),
        out.stride(1),
        out.stride(2),
        N,
        num_heads,
        head_dim,
        D,
        qk_scale,
        HAS_BIAS_KV=has_bias,
        CAUSAL=bool(causal),
        D0=parts[0],
        D1=parts[1],
        D2=parts[2],
        D3=parts[3],
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        PRECISION="ieee" if qkv.dtype == torch.float32 else "tf32",
        MASK_COLS=sum(parts) != head_dim,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return out


# ---------------------------------------------------------------------------
# torch custom op (opaque to torch.compile / torch.export, with a fake impl)
# ---------------------------------------------------------------------------


@torch.library.custom_op("bindrt::fused_attention", mutates_args=())
def _fused_attention_op(
    qkv: torch.Tensor,
    bias_k: torch.Tensor | None,
    bias_v: torch.Tensor | None,
    num_heads: int,
    causal: bool,
) -> torch.Tensor:
    check_runnable(qkv, "qkv")
    return _launch_attention(qkv, bias_k, bias_v, num_heads, causal)


@_fused_attention_op.register_fake
def _fused_attention_fake(qkv, bias_k, bias_v, num_heads, causal):
    B, N, three_d = qkv.shape
    return qkv.new_empty((B, N, three_d // 3))


def fused_attention(
    qkv: torch.Tensor,
    bias_k: torch.Tensor | None,
    bias_v: torch.Tensor | None,
    num_heads: int,
    causal: bool = False,
) -> torch.Tensor:
    """Attention core on the packed projection: ``(B, N, 3D) -> (B, N, D)``.

    Same signature and semantics as ``Attention.core`` (see the module
    docstring). Inference only: no autograd formula is registered, so a
    backward through it raises.

    Raises:
        InputError: wrong shapes, unsupported or mismatched dtypes/devices.
        BackendError: head_dim > 256, or tensors where Triton cannot run
            (CPU without ``TRITON_INTERPRET=1``).
    """
    # validate eagerly (also under torch.compile tracing: shape/dtype checks
    # only) so errors carry bindrt types rather than surfacing from inside
    # the dispatcher
    _check_attention_inputs(qkv, bias_k, bias_v, num_heads)
    return torch.ops.bindrt.fused_attention(qkv, bias_k, bias_v, int(num_heads), bool(causal))


__all__ = [
    "MAX_HEAD_DIM",
    "AttentionConfig",
    "attention_config",
    "fused_attention",
    "head_dim_parts",
]
