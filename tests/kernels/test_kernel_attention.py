"""fused_attention against a float64 nn.MultiheadAttention reference."""

from __future__ import annotations

import itertools
import zlib

import kernel_refs  # noqa: F401  # first: sets TRITON_INTERPRET before bindrt.kernels is imported
import pytest
import torch
from kernel_refs import DEVICE, INTERPRET, assert_close, case_param, randn, ref_attention

from bindrt.errors import BackendError, InputError
from bindrt.kernels import fused_attention, head_dim_parts

FP32, FP16, BF16 = torch.float32, torch.float16, torch.bfloat16


def _gpu_cases():
    """Full sweep on a GPU: every sequence length x head dim x dtype, cycling the rest."""
    seqs = [1, 2, 16, 33, 77, 197, 229, 251, 257]
    hds = [12, 16, 40, 48, 64, 80, 96, 112, 128, 200, 256]
    combos = list(itertools.product([1, 3], [False, True], [False, True]))  # batch, bias, causal
    cases = []
    for i, (n, hd, dt) in enumerate(itertools.product(seqs, hds, [FP32, FP16, BF16])):
        b, bias, causal = combos[i % len(combos)]
        heads = 3 if hd <= 64 else 2
        cases.append(case_param(b, n, heads, hd, bias, causal, dtype=dt))
    return cases


# (batch, seq, heads, head_dim, bias_kv, causal, dtype): every odd sequence length,
# every head dim of the issue, split (P + 16) and padded head dims, both batch sizes, bias_kv and
# causal (and both at once); small head counts keep the interpreter fast.
_INTERP_CASES = [
    case_param(1, 77, 2, 64, False, True, dtype=FP32, id="text-77-64-causal-fp32"),
    case_param(3, 77, 1, 16, False, True, dtype=FP16, id="b3-77-16-causal-fp16"),
    case_param(1, 197, 2, 48, True, False, dtype=FP16, id="depth-197-48-bkv-fp16"),
    case_param(3, 197, 1, 12, True, False, dtype=FP32, id="b3-197-12-bkv-fp32"),
    case_param(1, 229, 1, 64, True, False, dtype=FP32, id="audio-229-64-bkv-fp32"),
    case_param(1, 251, 1, 40, True, False, dtype=FP16, id="imu-251-40-bkv-fp16"),
    case_param(1, 257, 2, 80, False, False, dtype=FP16, id="vision-257-80-fp16"),
    case_param(3, 257, 1, 80, False, False, dtype=FP32, id="b3-257-80-fp32"),
    case_param(2, 33, 1, 112, True, True, dtype=FP32, id="33-112-bkv-causal-fp32"),
    case_param(1, 20, 1, 240, True, False, dtype=FP32, id="20-240-padded-fp32"),
    case_param(1, 65, 1, 200, True, False, dtype=FP16, id="65-200-padded-fp16"),
    case_param(3, 16, 2, 96, False, True, dtype=FP16, id="b3-16-96-causal-fp16"),
    case_param(2, 1, 2, 16, True, False, dtype=FP32, id="single-token-bkv"),
    # the real ImageBind-huge head layouts (full head count, batch 1)
    case_param(1, 257, 16, 80, False, False, dtype=FP16, id="vision-huge-16x80-fp16"),
    case_param(1, 197, 8, 48, True, False, dtype=FP16, id="depth-huge-8x48-fp16"),
    case_param(3, 251, 1, 64, True, True, dtype=FP16, id="b3-251-64-bkv-causal-fp16"),
    case_param(1, 2, 1, 256, False, True, dtype=FP32, id="2-256-causal"),
    # bf16: GPU only
    case_param(3, 257, 2, 80, False, False, dtype=BF16, id="vision-bf16"),
    case_param(1, 229, 2, 64, True, False, dtype=BF16, id="audio-bf16"),
    case_param(3, 77, 2, 64, False, True, dtype=BF16, id="text-bf16"),
]


@pytest.mark.parametrize(
    "batch,seq,heads,head_dim,bias_kv,causal,dtype", _gpu_cases() if not INTERPRET else _INTERP_CASES
)
def test_attention_matches_float64_reference(batch, seq, heads, head_dim, bias_kv, causal, dtype):
    D = heads * head_dim
    seed = zlib.crc32(repr((batch, seq, heads, head_dim, bias_kv, causal, dtype)).encode())
    qkv = randn(batch, seq, 3 * D, seed=seed, scale=1.5, dtype=dtype)
    bk = randn(1, 1, D, seed=seed + 1, dtype=dtype) if bias_kv else None
    bv = randn(1, 1, D, seed=seed + 2, dtype=dtype) if bias_kv else None
    out = fused_attention(qkv, bk, bv, heads, causal)
    assert out.shape == (batch, seq, D) and out.device.type == DEVICE and out.is_contiguous()
    assert_close(out, ref_attention(qkv, bk, bv, heads, causal), dtype, "fused_attention")


def test_matches_nn_multihead_attention_module():
    """End to end with the real torch module: projection + core + out_proj vs nn.MultiheadAttention."""
    torch.manual_seed(0)
    D, H, B, N = 48, 3, 2, 19
    mha = torch.nn.MultiheadAttention(D, H, add_bias_kv=True, batch_first=True).double()
    x = randn(B, N, D, seed=11, dtype=torch.float64, device="cpu")
    with torch.no_grad():
        ref, _ = mha(x, x, x, need_weights=False)
        w = {k: v.float().to(DEVICE) for k, v in mha.state_dict().items()}
        qkv = torch.nn.functional.linear(x.float().to(DEVICE), w["in_proj_weight"], w["in_proj_bias"])
        core = fused_attention(qkv, w["bias_k"], w["bias_v"], H, False)
        out = torch.nn.functional.linear(core, w["out_proj.weight"], w["out_proj.bias"])
    assert_close(out, ref, torch.float32, "MHA module")


def test_causal_matches_nn_multihead_attention_mask():
    torch.manual_seed(1)
    D, H, B, N = 32, 2, 1, 23
    mha = torch.nn.MultiheadAttention(D, H, batch_first=True).double()
    x = randn(B, N, D, seed=12, dtype=torch.float64, device="cpu")
    mask = torch.full((N, N), float("-inf"), dtype=torch.float64).triu(1)
    with torch.no_grad():
        ref, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
        w = {k: v.float().to(DEVICE) for k, v in mha.state_dict().items()}
        qkv = torch.nn.functional.linear(x.float().to(DEVICE), w["in_proj_weight"], w["in_proj_bias"])
        out = torch.nn.functional.linear(
            fused_attention(qkv, None, None, H, True), w["out_proj.weight"], w["out_proj.bias"]
        )
    assert_close(out, ref, torch.float32, "causal MHA")


def test_large_logits_are_stable():
    """Scores in the hundreds: online softmax must not overflow or lose the max."""
    qkv = randn(2, 70, 3 * 32, seed=5, scale=1.0)
    qkv[..., :32] *= 40.0
    bk = randn(1, 1, 32, seed=6, scale=40.0)
    bv = randn(1, 1, 32, seed=7)
    out = fused_attention(qkv, bk, bv, 2, False)
    assert_close(out, ref_attention(qkv, bk, bv, 2, False), torch.float32, "large logits")


def test_non_contiguous_inputs_read_in_place():
    D, H = 32, 2
    # qkv as a column slice of a wider buffer, and in (N, B, 3D) storage order
    wide = randn(3, 41, 3 * D + 9, seed=21)
    qkv_slice = wide[..., 5 : 5 + 3 * D]
    qkv_t = randn(41, 3, 3 * D, seed=22).transpose(0, 1)
    # bias vectors as strided views
    bk = randn(1, 1, 2 * D, seed=23)[..., ::2]
    bv = randn(1, 1, D, 2, seed=24)[..., 1]
    assert not qkv_slice.is_contiguous() and not qkv_t.is_contiguous() and not bk.is_contiguous()
    for qkv in (qkv_slice, qkv_t):
        out = fused_attention(qkv, bk, bv, H, False)
        assert_close(out, ref_attention(qkv, bk, bv, H, False), torch.float32, "strided qkv")


def test_head_dim_parts():
    assert head_dim_parts(80) == (64, 16, 0, 0)
    assert head_dim_parts(48) == (32, 16, 0, 0)
    assert head_dim_parts(40) == (32, 16, 0, 0)  # padded to 48, not 64
    assert head_dim_parts(12) == (16, 0, 0, 0)
    assert head_dim_parts(64) == (64, 0, 0, 0)
    assert head_dim_parts(144) == (128, 16, 0, 0)
    # splits wider than a 16 tail were miscompiled on an H200 (Triton 3.6): padded instead
    assert head_dim_parts(96) == (128, 0, 0, 0)
    assert head_dim_parts(112) == (128, 0, 0, 0)
    assert head_dim_parts(240) == (256, 0, 0, 0)
    assert head_dim_parts(256) == (256, 0, 0, 0)
    for hd in range(1, 257):
        parts = head_dim_parts(hd)
        assert sum(parts) >= hd
        assert parts[2:] == (0, 0) and parts[1] in (0, 16)
        assert parts[0] >= 16 and parts[0] & (parts[0] - 1) == 0


# ---------------------------------------------------------------------------
# bad inputs: typed, clear errors, never a silent wrong result
# ---------------------------------------------------------------------------


def test_rejects_head_dim_over_256():
    qkv = torch.zeros(1, 4, 3 * 2 * 264, device=DEVICE)
    with pytest.raises(BackendError, match="head_dim <= 256"):
        fused_attention(qkv, None, None, 2, False)


def test_rejects_dtype_mismatch():
    qkv = randn(1, 4, 3 * 32, seed=1)
    bk = randn(1, 1, 32, seed=2, dtype=torch.float16)
    bv = randn(1, 1, 32, seed=3, dtype=torch.float16)
    with pytest.raises(InputError, match="dtype"):
        fused_attention(qkv, bk, bv, 2, False)


def test_rejects_device_mismatch():
    qkv = randn(1, 4, 3 * 32, seed=1)
    bk = torch.empty(1, 1, 32, device="meta")
    bv = torch.empty(1, 1, 32, device="meta")
    with pytest.raises(InputError, match="device|is on"):
        fused_attention(qkv, bk, bv, 2, False)


@pytest.mark.parametrize(
    "shape,heads,bias,match",
    [
        ((4, 96), 2, False, r"\(B, N, 3\*D\)"),
        ((1, 4, 95), 1, False, "3\\*D"),
        ((1, 4, 96), 5, False, "divisible"),
        ((1, 4, 96), 0, False, "positive"),
        ((1, 4, 96), 2, "one", "together"),
        ((1, 4, 96), 2, "shape", "shape"),
        ((1, 0, 96), 2, False, "at least"),
    ],
)
def test_rejects_bad_shapes(shape, heads, bias, match):
    qkv = torch.ones(*shape, device=DEVICE)
    bk = bv = None
    if bias == "one":
        bk = torch.ones(1, 1, 32, device=DEVICE)
    elif bias == "shape":
        bk = bv = torch.ones(1, 1, 31, device=DEVICE)
    with pytest.raises(InputError, match=match):
        fused_attention(qkv, bk, bv, heads, False)


def test_rejects_integer_dtype():
    with pytest.raises(InputError, match="dtype"):
        fused_attention(torch.ones(1, 4, 96, dtype=torch.int32, device=DEVICE), None, None, 2, False)
