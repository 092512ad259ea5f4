"""Fused patch embedding: stem GEMM + LayerNorm + CLS row + position embedding.

Every ImageBind stem is a convolution without padding and without bias whose
output is flattened to tokens: vision ``Conv3d(3, D, (2,14,14), stride (2,14,14))``,
audio ``Conv2d(1, D, 16, stride 10)`` (overlapping patches), depth/thermal
``Conv2d(1, D, 16, stride 16)``, IMU ``Linear(48, D)`` over 250 windows of 8
samples (which is a ``(1, 8)`` convolution with stride 8 over a ``(6, 1, 2000)``
"image"). So one kernel covers all of them: a GEMM ``tokens x K @ K x D`` whose
A operand is gathered straight from the input through its strides (implicit
im2col: patch ``t`` and reduction index ``k = (c, kt, ky, kx)`` are decoded to an
address; nothing is unfolded into memory), followed in the same program by

1. the optional LayerNorm over ``D`` (audio, depth, thermal, IMU; eps 1e-5 in
   the reference), computed from the fp32 accumulator, i.e. BEFORE the CLS
   token is prepended (CLS is not normalised) -- exactly the reference order;
2. ``+ pos_embed[1 + t]`` and the store into row ``1 + t`` of the
   ``(B, 1 + L, D)`` output; the programs of the first token tile also write
   row 0 = ``cls_token + pos_embed[0]``.

So the output never makes a second trip through memory for the normalisation,
the ``torch.cat`` with CLS or the position add.

Design choices
--------------
* **Vision, two-frame kernel sum.** The reference repeats a still image to 2
  frames and applies a kernel spanning both: ``conv(x, W0) + conv(x, W1) =
  conv(x, W0 + W1)`` exactly (linearity), so the image path sums the weight over
  time (in fp32, then casts to the input dtype) and runs a 2-D ``3x14x14``
  reduction: K = 588 instead of 1176, half the FLOPs and no repeated input. A
  real 2-frame clip ``(B, 3, 2, 224, 224)`` uses the full 3-D kernel.
* **LayerNorm in registers.** When the stem has a LayerNorm, one program owns
  whole rows: its tile is ``BLOCK_M x next_pow2(D)`` (384, 512 -> no waste;
  768 -> 1024: the masked quarter costs nothing but idle MMA lanes in a GEMM
  that is < 1 % of an encoder's FLOPs). Mean (plus one correction pass for
  the rounding of the fp32 mean) and variance are computed over the fp32
  registers (no ``E[x^2] - E[x]^2`` cancellation). When
  ``next_pow2(D)`` exceeds :data:`LN_FUSED_MAX_BLOCK_D` the row no longer fits,
  and the op falls back to GEMM + CLS/pos kernel, then :func:`layer_norm`
  kernel, then the pos add -- slower, same result.
* **Without LayerNorm** (vision), ordinary 2-D ``BLOCK_M x BLOCK_N`` output
  tiles.
* fp32 accumulation always; fp32 inputs use IEEE dots (no TF32).

Public functions take ``(input, weight, cls_token, pos_embed, norm_weight,
norm_bias, eps)`` and return ``(B, 1 + L, D)`` in the input dtype. All inputs
are read through their strides (non-contiguous input is fine, nothing is
silently copied except the vision weight time-sum, which is a new tensor anyway).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from bindrt.errors import InputError

from ._common import check_dtype, check_finite_param, check_runnable, check_same, next_pow2

#: largest row tile (``next_pow2(D)``) kept in registers for the fused LayerNorm.
LN_FUSED_MAX_BLOCK_D = 1024


@triton.jit
def _patch_embed_kernel(
    X,
    W,
    CLS,
    POS,
    NW,
    NB,
    OUT,
    sxb,
    sxc,
    sxt,
    sxh,
    sxw,
    swd,
    swc,
    swt,
    swh,
    sww,
    s_cls,
    s_pos_n,
    s_pos_d,
    s_nw,
    s_nb,
    sob,
    son,
    sod,
    L,
    D,
    K,
    HO,
    WO,
    KT,
    KH,
    KW,
    ST,
    SH,
    SW,
    eps,
    HAS_LN: tl.constexpr,
    ADD_POS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    PRECISION: tl.constexpr,
):
    # axis 0 = (item, token tile): no 65535 limit on the batch
    n_m = tl.cdiv(L, BLOCK_M)
    pid0 = tl.program_id(0)
    pid_m = pid0 % n_m
    b = pid0 // n_m
    pid_n = tl.program_id(1)

    # token -> patch origin (implicit im2col)
    offs_t = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    t_mask = offs_t < L
    hw = HO * WO
    t_o = offs_t // hw
    t_r = offs_t % hw
    t_y = t_r // WO
    t_x = t_r % WO
    x_row = b.to(tl.int64) * sxb + t_o * (ST * sxt) + t_y * (SH * sxh) + t_x * (SW * sxw)

    offs_d = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    d_mask = offs_d < D

    khw = KH * KW
    kthw = KT * khw
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < K
        k_c = offs_k // kthw
        k_r = offs_k % kthw
        k_t = k_r // khw
        k_r2 = k_r % khw
        k_y = k_r2 // KW
        k_x = k_r2 % KW
        x_col = k_c * sxc + k_t * sxt + k_y * sxh + k_x * sxw
        a = tl.load(X + x_row[:, None] + x_col[None, :], mask=t_mask[:, None] & k_mask[None, :], other=0.0)
        w_col = k_c * swc + k_t * swt + k_y * swh + k_x * sww
        w = tl.load(W + w_col[:, None] + offs_d[None, :] * swd, mask=k_mask[:, None] & d_mask[None, :], other=0.0)
        acc = tl.dot(a, w, acc, input_precision=PRECISION)

    if HAS_LN:
        # the whole row is in this tile (BLOCK_N >= D, one column program)
        mean = tl.sum(acc, 1) / D  # masked columns are exactly 0
        xc = tl.where(d_mask[None, :], acc - mean[:, None], 0.0)
        xc = tl.where(d_mask[None, :], xc - (tl.sum(xc, 1) / D)[:, None], 0.0)  # mean rounding correction
        var = tl.sum(xc * xc, 1) / D
        rstd = 1.0 / tl.sqrt(var + eps)
        nw = tl.load(NW + offs_d * s_nw, mask=d_mask, other=0.0).to(tl.float32)
        nb = tl.load(NB + offs_d * s_nb, mask=d_mask, other=0.0).to(tl.float32)
        y = xc * rstd[:, None] * nw[None, :] + nb[None, :]
    else:
        y = acc

    out_ty = OUT.dtype.element_ty
    o_base = OUT + b.to(tl.int64) * sob
    if ADD_POS:
        pos = tl.load(
            POS + (1 + offs_t)[:, None] * s_pos_n + offs_d[None, :] * s_pos_d,
            mask=t_mask[:, None] & d_mask[None, :],
            other=0.0,
        ).to(tl.float32)
        y = y + pos
    tl.store(
        o_base + (1 + offs_t)[:, None] * son + offs_d[None, :] * sod,
        y.to(out_ty),
        mask=t_mask[:, None] & d_mask[None, :],
    )
    if pid_m == 0:
        cls = tl.load(CLS + offs_d * s_cls, mask=d_mask, other=0.0).to(tl.float32)
        if ADD_POS:
            cls = cls + tl.load(POS + offs_d * s_pos_d, mask=d_mask, other=0.0).to(tl.float32)
        tl.store(o_base + offs_d * sod, cls.to(out_ty), mask=d_mask)


def _conv_out(size: int, k: int, s: int) -> int:
    return (size - k) // s + 1


def _validate_common(x, weight, cls_token, pos_embed, norm_weight, norm_bias, eps, D: int, L: int):
    check_dtype(x, "input")
    check_same(
        x,
        "input",
        (
            (weight, "weight"),
            (cls_token, "cls_token"),
            (pos_embed, "pos_embed"),
            (norm_weight, "norm_weight"),
            (norm_bias, "norm_bias"),
        ),
    )
    if cls_token.numel() != D:
        raise InputError(f"cls_token must have D={D} elements (shape (1,1,{D})), got {tuple(cls_token.shape)}")
    if pos_embed.dim() not in (2, 3) or pos_embed.shape[-2:] != (1 + L, D) or pos_embed.numel() != (1 + L) * D:
        raise InputError(f"pos_embed must be (1, {1 + L}, {D}) for {L} patches + CLS, got {tuple(pos_embed.shape)}")
    if (norm_weight is None) != (norm_bias is None):
        raise InputError("norm_weight and norm_bias must be given together (or both None)")
    if norm_weight is not None:
        if norm_weight.numel() != D or norm_bias.numel() != D:
            raise InputError(
                f"norm_weight/norm_bias must have D={D} elements, got "
                f"{tuple(norm_weight.shape)} / {tuple(norm_bias.shape)}"
            )
        check_finite_param(float(eps), "eps")


def _geometry(x5: torch.Tensor, w5: torch.Tensor, stride: list[int]):
    B, C, T, H, W_ = x5.shape
    D, Cw, KT, KH, KW = w5.shape
    if Cw != C:
        raise InputError(f"input has {C} channels but the stem weight expects {Cw}")
    if len(stride) != 3 or min(stride) < 1:
        raise InputError(f"stride must be 3 positive ints (t, h, w), got {stride}")
    ST, SH, SW = stride
    if T < KT or H < KH or W_ < KW:
        raise InputError(f"input (T,H,W)=({T},{H},{W_}) is smaller than the stem kernel ({KT},{KH},{KW})")
    TO, HO, WO = _conv_out(T, KT, ST), _conv_out(H, KH, SH), _conv_out(W_, KW, SW)
    return B, C, D, KT, KH, KW, ST, SH, SW, TO, HO, WO


def _launch_patch_embed(x5, w5, cls_token, pos_embed, norm_weight, norm_bias, eps, stride, ln_max=None):
    B, C, D, KT, KH, KW, ST, SH, SW, TO, HO, WO = _geometry(x5, w5, stride)
    L = TO * HO * WO
    K = C * KT * KH * KW
    has_ln = norm_weight is not None
    out = torch.empty((B, 1 + L, D), device=x5.device, dtype=x5.dtype)
    pos3 = pos_embed.reshape(1 + L, D)  # a view for any (1,1+L,D) layout
    cls1 = cls_token.reshape(D)
    nw = norm_weight.reshape(D) if has_ln else cls1
    nb = norm_bias.reshape(D) if has_ln else cls1
    precision = "ieee" if x5.dtype == torch.float32 else "tf32"
    ln_max = LN_FUSED_MAX_BLOCK_D if ln_max is None else ln_max
    fused_ln = has_ln and next_pow2(D) <= ln_max

    if fused_ln:
        block_n = max(16, next_pow2(D))
        block_m = 16 if block_n >= 1024 else (32 if block_n >= 512 else 64)
        block_k = 16 if block_n >= 1024 else 32
        num_warps = 8 if block_n >= 512 else 4
    else:
        block_m, block_n, block_k, num_warps = 64, min(128, max(16, next_pow2(D))), 32, 8
    if x5.dtype == torch.float32:  # IEEE FMA dots: operand layouts need more registers;
        block_k = 16  # 16 is also the smallest K some Triton releases (3.6) accept for tl.dot
    grid = (triton.cdiv(L, block_m) * B, triton.cdiv(D, block_n))
    add_pos_in_kernel = not (has_ln and not fused_ln)
    _patch_embed_kernel[grid](
        x5,
        w5,
        cls1,
        pos3,
        nw,
        nb,
        out,
        *x5.stride(),
        *w5.stride(),
        cls1.stride(0),
        pos3.stride(0),
        pos3.stride(1),
        nw.stride(0),
        nb.stride(0),
        *out.stride(),
        L,
        D,
        K,
        HO,
        WO,
        KT,
        KH,
        KW,
        ST,
        SH,
        SW,
        float(eps),
        HAS_LN=fused_ln,
        ADD_POS=add_pos_in_kernel,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_K=block_k,
        PRECISION=precision,
        num_warps=num_warps,
        num_stages=2 if fused_ln else 3,
    )
    if has_ln and not fused_ln:
        # row too wide for registers: LayerNorm kernel on the token rows, then
        # the position add (CLS row already written without pos, add it too)
        from .layernorm import _launch_layer_norm

        tokens = out[:, 1:]
        normed = _launch_layer_norm(tokens, nw, nb, float(eps), None)[1]
        out[:, 1:] = normed + pos3[1:]
        out[:, 0] = out[:, 0] + pos3[0]
    return out


@torch.library.custom_op("bindrt::patch_embed", mutates_args=())
def _patch_embed_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    cls_token: torch.Tensor,
    pos_embed: torch.Tensor,
    norm_weight: torch.Tensor | None,
    norm_bias: torch.Tensor | None,
    eps: float,
    stride: list[int],
) -> torch.Tensor:
    """x: (B, C, T, H, W); weight: (D, C, KT, KH, KW); stride: (st, sh, sw)."""
    check_runnable(x, "input")
    return _launch_patch_embed(x, weight, cls_token, pos_embed, norm_weight, norm_bias, eps, stride)


@_patch_embed_op.register_fake
def _patch_embed_fake(x, weight, cls_token, pos_embed, norm_weight, norm_bias, eps, stride):
    B, C, D, KT, KH, KW, ST, SH, SW, TO, HO, WO = _geometry(x, weight, list(stride))
    return x.new_empty((B, 1 + TO * HO * WO, D))


def _run(x5, w5, cls_token, pos_embed, norm_weight, norm_bias, eps, stride):
    B, C, D, KT, KH, KW, ST, SH, SW, TO, HO, WO = _geometry(x5, w5, stride)
    _validate_common(x5, w5, cls_token, pos_embed, norm_weight, norm_bias, eps, D, TO * HO * WO)
    return torch.ops.bindrt.patch_embed(
        x5, w5, cls_token, pos_embed, norm_weight, norm_bias, float(eps), [int(s) for s in stride]
    )


def _need(x, ndim: tuple[int, ...], name: str, what: str):
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in ndim:
        raise InputError(f"{name} must be {what}, got shape {tuple(x.shape)}")


def patch_embed_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    cls_token: torch.Tensor,
    pos_embed: torch.Tensor,
    norm_weight: torch.Tensor | None = None,
    norm_bias: torch.Tensor | None = None,
    eps: float = 1e-5,
    stride: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """Generic 2-D stem: ``Conv2d(C, D, k, stride, bias=False)`` -> [LN] -> CLS + pos.

    ``x``: ``(B, C, H, W)``; ``weight``: ``(D, C, KH, KW)``; ``stride`` defaults to
    the kernel size. Returns ``(B, 1 + HO*WO, D)``.
    """
    _need(x, (4,), "input", "(B, C, H, W)")
    _need(weight, (4,), "weight", "(D, C, KH, KW)")
    KH, KW = weight.shape[2:]
    if stride is None:
        stride = (KH, KW)
    elif isinstance(stride, int):
        stride = (stride, stride)
    return _run(
        x.unsqueeze(2),
        weight.unsqueeze(2),
        cls_token,
        pos_embed,
        norm_weight,
        norm_bias,
        eps,
        [1, int(stride[0]), int(stride[1])],
    )


def patch_embed_vision(
    x: torch.Tensor,
    weight: torch.Tensor,
    cls_token: torch.Tensor,
    pos_embed: torch.Tensor,
    norm_weight: torch.Tensor | None = None,
    norm_bias: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Vision stem: ``Conv3d(3, D, (KT,KH,KW), stride=kernel, bias=False)`` + CLS + pos.

    ``x`` is an image batch ``(B, 3, H, W)`` (or a one-frame clip
    ``(B, 3, 1, H, W)``): the reference repeats it to ``KT`` frames, which equals
    convolving once with the weight summed over time (computed here in fp32).
    A ``(B, 3, KT, H, W)`` clip uses the full 3-D kernel. The reference vision
    stem has no LayerNorm (pass None); one is applied if given.
    """
    _need(x, (4, 5), "input", "(B, 3, H, W) or (B, 3, T, H, W)")
    _need(weight, (5,), "weight", "(D, C, KT, KH, KW) (Conv3d weight)")
    KT, KH, KW = weight.shape[2:]
    if x.dim() == 5 and x.shape[2] not in (1, KT):
        raise InputError(f"vision clip has {x.shape[2]} frames; the stem takes 1 (repeated) or {KT}")
    if x.dim() == 4 or x.shape[2] == 1:
        x5 = x.unsqueeze(2) if x.dim() == 4 else x
        check_same(x5, "input", ((weight, "weight"),))
        w5 = weight.sum(dim=2, keepdim=True, dtype=torch.float32).to(weight.dtype)
        stride = [1, KH, KW]
    else:
        x5, w5, stride = x, weight, [KT, KH, KW]
    return _run(x5, w5, cls_token, pos_embed, norm_weight, norm_bias, eps, stride)


def patch_embed_audio(
    x: torch.Tensor,
    weight: torch.Tensor,
    cls_token: torch.Tensor,
    pos_embed: torch.Tensor,
    norm_weight: torch.Tensor | None,
    norm_bias: torch.Tensor | None,
    eps: float = 1e-5,
    stride: int = 10,
) -> torch.Tensor:
    """Audio stem: ``(B, 1, 128, 204)`` mel -> Conv2d(k=16, stride 10) -> LN -> CLS + pos: ``(B, 229, D)``."""
    return patch_embed_conv(x, weight, cls_token, pos_embed, norm_weight, norm_bias, eps, stride)


def patch_embed_depth(
    x: torch.Tensor,
    weight: torch.Tensor,
    cls_token: torch.Tensor,
    pos_embed: torch.Tensor,
    norm_weight: torch.Tensor | None,
    norm_bias: torch.Tensor | None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Depth stem: ``(B, 1, 224, 224)`` -> Conv2d(k=stride=16) -> LN -> CLS + pos: ``(B, 197, D)``."""
    return patch_embed_conv(x, weight, cls_token, pos_embed, norm_weight, norm_bias, eps, None)


#: Thermal stem: same geometry as depth (single-channel 224x224, kernel=stride=16, LN).
patch_embed_thermal = patch_embed_depth


def patch_embed_imu(
    x: torch.Tensor,
    weight: torch.Tensor,
    cls_token: torch.Tensor,
    pos_embed: torch.Tensor,
    norm_weight: torch.Tensor | None,
    norm_bias: torch.Tensor | None,
    eps: float = 1e-5,
    window: int = 8,
) -> torch.Tensor:
    """IMU stem: ``(B, C=6, S=2000)`` -> windows of 8 -> Linear(C*8 -> D, no bias) -> LN -> CLS + pos.

    Token ``t`` is ``x[:, :, 8t:8t+8]`` flattened channel-major (the reference's
    ``x.unfold(-1, 8, 8).permute(0, 2, 1, 3).reshape(B, 250, 48)``), i.e. a
    ``(1, 8)`` convolution with stride 8 over a ``(C, 1, S)`` image whose weight
    is the Linear weight viewed as ``(D, C, 1, 1, 8)``. Trailing samples that do
    not fill a window are dropped, as ``unfold`` does.
    """
    _need(x, (3,), "input", "(B, channels, samples)")
    _need(weight, (2,), "weight", "(D, channels*window) (Linear weight)")
    B, C, S = x.shape
    D = weight.shape[0]
    if weight.shape[1] != C * window:
        raise InputError(f"IMU Linear weight must be (D, {C}*{window}={C * window}), got {tuple(weight.shape)}")
    if S < window:
        raise InputError(f"IMU input has {S} samples, fewer than one window of {window}")
    x5 = x.unsqueeze(2).unsqueeze(2)  # (B, C, 1, 1, S)
    w5 = weight.reshape(D, C, 1, 1, window)  # splitting one dim: always a view
    return _run(x5, w5, cls_token, pos_embed, norm_weight, norm_bias, eps, [1, 1, window])


__all__ = [
    "LN_FUSED_MAX_BLOCK_D",
    "patch_embed_audio",
    "patch_embed_conv",
    "patch_embed_depth",
    "patch_embed_imu",
    "patch_embed_thermal",
    "patch_embed_vision",
]
