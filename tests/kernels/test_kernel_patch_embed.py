"""Fused patch embedding (stem GEMM + LN + CLS + pos) against float64 reference stems."""

from __future__ import annotations

import math

import kernel_refs  # noqa: F401  # first: sets TRITON_INTERPRET before bindrt.kernels is imported
import pytest
import torch
from kernel_refs import INTERPRET, assert_close, case_param, randn, ref_stem

import bindrt.kernels.patch_embed as pe_mod
from bindrt.errors import InputError
from bindrt.kernels import (
    patch_embed_audio,
    patch_embed_conv,
    patch_embed_depth,
    patch_embed_imu,
    patch_embed_thermal,
    patch_embed_vision,
)

FP32, FP16, BF16 = torch.float32, torch.float16, torch.bfloat16


def _params(D, L, seed, dtype, ln: bool):
    cls = randn(1, 1, D, seed=seed + 1, dtype=dtype)
    pos = randn(1, 1 + L, D, seed=seed + 2, scale=0.5, dtype=dtype)
    nw = randn(D, seed=seed + 3, scale=0.2, dtype=torch.float64).add(1.0).to(dtype) if ln else None
    nb = randn(D, seed=seed + 4, scale=0.2, dtype=dtype) if ln else None
    return cls, pos, nw, nb


# Full-size geometry where the interpreter can afford it (the GEMM is tiny for
# 1-channel stems); vision uses a reduced image in the interpreter.
_VISION = [
    # batch, (H, W), D, frames (0 = image), dtype
    case_param(2, (56, 42), 40, 0, dtype=FP32, id="image-fp32"),
    case_param(1, (28, 56), 48, 0, dtype=FP16, id="image-fp16"),
    case_param(1, (224, 224), 64, 0, dtype=FP16, id="image224-fp16"),
    case_param(3, (28, 28), 24, 2, dtype=FP32, id="clip2-fp32"),
    case_param(1, (28, 42), 32, 1, dtype=FP16, id="clip1-fp16"),
    case_param(2, (224, 224), 96, 0, dtype=BF16, id="image224-bf16"),
]
if not INTERPRET:
    _VISION += [
        case_param(3, (224, 224), 1280, 0, dtype=dt, id=f"huge-{dt}".replace("torch.", "")) for dt in (FP32, FP16, BF16)
    ] + [case_param(2, (224, 224), 160, 2, dtype=FP16, id="clip224-fp16")]


@pytest.mark.parametrize("batch,hw,D,frames,dtype", _VISION)
def test_vision_stem(batch, hw, D, frames, dtype):
    H, W = hw
    L = (H // 14) * (W // 14)
    shape = (batch, 3, H, W) if frames == 0 else (batch, 3, frames, H, W)
    x = randn(*shape, seed=D, dtype=dtype)
    w = randn(D, 3, 2, 14, 14, seed=D + 7, scale=1 / math.sqrt(3 * 2 * 196), dtype=dtype)
    cls, pos, _, _ = _params(D, L, D, dtype, ln=False)
    out = patch_embed_vision(x, w, cls, pos)
    assert out.shape == (batch, 1 + L, D)
    assert_close(out, ref_stem("vision", x, w, cls, pos, None, None, 1e-5), dtype, "vision stem")


_CONV = [
    # fn, batch, (H, W), kernel, stride, D, dtype
    case_param("audio", 1, (128, 204), 16, 10, 48, dtype=FP32, id="audio-full-fp32"),
    case_param("audio", 3, (36, 56), 16, 10, 96, dtype=FP16, id="audio-b3-fp16"),
    case_param("depth", 1, (224, 224), 16, 16, 64, dtype=FP16, id="depth-full-fp16"),
    case_param("thermal", 3, (48, 80), 16, 16, 40, dtype=FP32, id="thermal-b3-fp32"),
    case_param("audio", 2, (128, 204), 16, 10, 96, dtype=BF16, id="audio-bf16"),
]
if not INTERPRET:
    _CONV += [
        case_param("audio", 3, (128, 204), 16, 10, 768, dtype=dt, id=f"audio-huge-{dt}".replace("torch.", ""))
        for dt in (FP32, FP16, BF16)
    ] + [
        case_param("depth", 3, (224, 224), 16, 16, 384, dtype=dt, id=f"depth-huge-{dt}".replace("torch.", ""))
        for dt in (FP32, FP16, BF16)
    ]

_FNS = {"audio": patch_embed_audio, "depth": patch_embed_depth, "thermal": patch_embed_thermal}


@pytest.mark.parametrize("kind,batch,hw,kernel,stride,D,dtype", _CONV)
def test_conv_stems_with_layernorm(kind, batch, hw, kernel, stride, D, dtype):
    H, W = hw
    L = ((H - kernel) // stride + 1) * ((W - kernel) // stride + 1)
    x = randn(batch, 1, H, W, seed=H + W, dtype=dtype)
    w = randn(D, 1, kernel, kernel, seed=D, scale=1 / kernel, dtype=dtype)
    cls, pos, nw, nb = _params(D, L, D + 100, dtype, ln=True)
    out = _FNS[kind](x, w, cls, pos, nw, nb, 1e-5)
    assert out.shape == (batch, 1 + L, D)
    ref = ref_stem("conv", x, w, cls, pos, nw, nb, 1e-5, stride=stride)
    assert_close(out, ref, dtype, f"{kind} stem")


_IMU = [
    case_param(1, 2000, 64, dtype=FP32, id="imu-full-fp32"),
    case_param(3, 203, 96, dtype=FP16, id="imu-b3-ragged-fp16"),
    case_param(2, 2000, 512, dtype=BF16, id="imu-bf16"),
]
if not INTERPRET:
    _IMU += [case_param(3, 2000, 512, dtype=dt, id=f"imu-huge-{dt}".replace("torch.", "")) for dt in (FP32, FP16)]


@pytest.mark.parametrize("batch,samples,D,dtype", _IMU)
def test_imu_stem(batch, samples, D, dtype):
    L = samples // 8
    x = randn(batch, 6, samples, seed=samples, dtype=dtype)
    w = randn(D, 48, seed=D, scale=1 / math.sqrt(48), dtype=dtype)
    cls, pos, nw, nb = _params(D, L, D + 200, dtype, ln=True)
    out = patch_embed_imu(x, w, cls, pos, nw, nb, 1e-5)
    assert out.shape == (batch, 1 + L, D)
    assert_close(out, ref_stem("imu", x, w, cls, pos, nw, nb, 1e-5), dtype, "imu stem")


@pytest.mark.parametrize("dtype", [case_param(dtype=FP32, id="fp32"), case_param(dtype=FP16, id="fp16")])
def test_layernorm_fallback_for_wide_rows(monkeypatch, dtype):
    """Rows too wide for the register-resident LN: GEMM kernel + LN kernel + pos add, same result."""
    monkeypatch.setattr(pe_mod, "LN_FUSED_MAX_BLOCK_D", 32)
    x = randn(2, 1, 48, 64, seed=3, dtype=dtype)
    D = 80
    w = randn(D, 1, 16, 16, seed=4, scale=1 / 16, dtype=dtype)
    L = 3 * 4
    cls, pos, nw, nb = _params(D, L, 9, dtype, ln=True)
    out = patch_embed_depth(x, w, cls, pos, nw, nb, 1e-5)
    assert_close(out, ref_stem("conv", x, w, cls, pos, nw, nb, 1e-5), dtype, "LN fallback")


def test_stem_with_layernorm_on_vision_and_no_layernorm_on_conv():
    """Both LN options work on every stem type (generic op), not only the reference pairing."""
    x = randn(1, 3, 28, 42, seed=1)
    w = randn(32, 3, 2, 14, 14, seed=2, scale=0.03)
    cls, pos, nw, nb = _params(32, 6, 3, FP32, ln=True)
    out = patch_embed_vision(x, w, cls, pos, nw, nb, 1e-6)
    assert_close(out, ref_stem("vision", x, w, cls, pos, nw, nb, 1e-6), FP32, "vision + LN")
    x = randn(2, 2, 40, 40, seed=4)
    w = randn(24, 2, 8, 8, seed=5, scale=0.1)
    L = 5 * 5
    cls, pos, _, _ = _params(24, L, 6, FP32, ln=False)
    out = patch_embed_conv(x, w, cls, pos, None, None, 1e-5, stride=8)
    assert_close(out, ref_stem("conv", x, w, cls, pos, None, None, 1e-5, stride=8), FP32, "2-ch conv, no LN")


def test_non_contiguous_inputs():
    # channels-last image, a sliced audio batch, a transposed IMU buffer, strided params
    x = randn(2, 3, 28, 28, seed=1).to(memory_format=torch.channels_last)
    w = randn(32, 3, 2, 14, 14, seed=2, scale=0.03)
    cls = randn(1, 1, 64, seed=3)[..., ::2]
    pos = randn(1, 5, 32, seed=4)
    out = patch_embed_vision(x, w, cls, pos)
    assert_close(out, ref_stem("vision", x, w, cls, pos, None, None, 1e-5), FP32, "channels_last vision")

    xa = randn(4, 1, 40, 60, seed=5)[::2, :, 2:38]
    wa = randn(16, 1, 16, 16, seed=6, scale=1 / 16)
    L = 3 * 5
    cls, pos, nw, nb = _params(16, L, 7, FP32, ln=True)
    nw = torch.stack([nw, nw], 1)[:, 0]
    assert not xa.is_contiguous() and not nw.is_contiguous()
    out = patch_embed_audio(xa, wa, cls, pos, nw, nb, 1e-5)
    assert_close(out, ref_stem("conv", xa, wa, cls, pos, nw, nb, 1e-5, stride=10), FP32, "sliced audio")

    xi = randn(80, 6, 2, seed=8).permute(2, 1, 0)  # (2, 6, 80), samples not contiguous
    wi = randn(48, 24, seed=9, scale=0.2).T  # (24, 48) transposed Linear weight
    cls, pos, nw, nb = _params(24, 10, 10, FP32, ln=True)
    out = patch_embed_imu(xi, wi, cls, pos, nw, nb, 1e-5)
    assert_close(out, ref_stem("imu", xi, wi, cls, pos, nw, nb, 1e-5), FP32, "strided imu")


# ---------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------


def _depth_args(**over):
    args = dict(
        x=randn(1, 1, 32, 32, seed=1),
        weight=randn(16, 1, 16, 16, seed=2),
        cls_token=randn(1, 1, 16, seed=3),
        pos_embed=randn(1, 5, 16, seed=4),
        norm_weight=randn(16, seed=5),
        norm_bias=randn(16, seed=6),
        eps=1e-5,
    )
    args.update(over)
    return args


@pytest.mark.parametrize(
    "over,match",
    [
        (dict(pos_embed=randn(1, 6, 16, seed=4)), "pos_embed"),
        (dict(cls_token=randn(1, 1, 15, seed=3)), "cls_token"),
        (dict(x=randn(1, 2, 32, 32, seed=1)), "channels"),
        (dict(x=randn(1, 1, 8, 8, seed=1)), "smaller"),
        (dict(weight=randn(16, 1, 16, 16, seed=2, dtype=FP16)), "dtype"),
        (dict(norm_bias=None), "together"),
        (dict(norm_weight=randn(15, seed=5)), "norm_weight"),
        (dict(eps=0.0), "eps"),
        (dict(x=randn(1, 32, 32, seed=1)), r"\(B, C, H, W\)"),
        (dict(cls_token=torch.empty(1, 1, 16, device="meta")), "is on"),
    ],
)
def test_rejects_bad_inputs(over, match):
    with pytest.raises(InputError, match=match):
        patch_embed_depth(**_depth_args(**over))


def test_rejects_bad_vision_and_imu_inputs():
    w = randn(8, 3, 2, 14, 14, seed=1)
    cls, pos = randn(1, 1, 8, seed=2), randn(1, 2, 8, seed=3)
    with pytest.raises(InputError, match="frames"):
        patch_embed_vision(randn(1, 3, 3, 14, 14, seed=4), w, cls, pos)
    with pytest.raises(InputError, match="Conv3d"):
        patch_embed_vision(randn(1, 3, 14, 14, seed=4), w[:, :, 0], cls, pos)
    with pytest.raises(InputError, match="48"):
        patch_embed_imu(randn(1, 6, 16, seed=5), randn(8, 40, seed=6), cls, randn(1, 3, 8, seed=7), None, None)
    with pytest.raises(InputError, match="dtype"):
        patch_embed_vision(randn(1, 3, 14, 14, seed=4, dtype=torch.float64), w.double(), cls.double(), pos.double())
