"""layer_norm, add_layer_norm and bias_gelu against float64 torch references."""

from __future__ import annotations

import kernel_refs  # noqa: F401  # first: sets TRITON_INTERPRET before bindrt.kernels is imported
import pytest
import torch
import torch.nn.functional as F
from kernel_refs import INTERPRET, assert_close, case_param, randn

from bindrt.errors import BackendError, InputError
from bindrt.kernels import add_layer_norm, bias_gelu, layer_norm, linear_gelu

FP32, FP16, BF16 = torch.float32, torch.float16, torch.bfloat16

_SHAPES = [
    # shape, dtype
    case_param((3, 77, 96), dtype=FP32, id="b3-77-96-fp32"),
    case_param((1, 257, 80), dtype=FP16, id="b1-257-80-fp16"),
    case_param((2, 229, 768), dtype=FP32, id="b2-229-768-fp32"),
    case_param((1, 251, 1280), dtype=FP16, id="b1-251-1280-fp16"),
    case_param((197, 13), dtype=FP32, id="2d-197-13-fp32"),
    case_param((3, 197, 384), dtype=BF16, id="b3-197-384-bf16"),
]
if not INTERPRET:
    _SHAPES += [
        case_param((64, 257, 1280), dtype=dt, id=f"vision-huge-{dt}".replace("torch.", "")) for dt in (FP32, FP16, BF16)
    ]


def _ln_ref(x, w, b, eps):
    d = lambda t: None if t is None else t.detach().to("cpu", torch.float64)  # noqa: E731
    return F.layer_norm(d(x), (x.shape[-1],), d(w), d(b), eps)


@pytest.mark.parametrize("shape,dtype", _SHAPES)
def test_layer_norm(shape, dtype):
    D = shape[-1]
    x = randn(*shape, seed=D, scale=2.0, dtype=dtype).add_(0.5)
    w = randn(D, seed=D + 1, scale=0.3, dtype=torch.float64).add(1.0).to(dtype)
    b = randn(D, seed=D + 2, scale=0.3, dtype=dtype)
    out = layer_norm(x, w, b, 1e-6)
    assert out.shape == x.shape
    assert_close(out, _ln_ref(x, w, b, 1e-6), dtype, "layer_norm")


@pytest.mark.parametrize("shape,dtype", _SHAPES)
def test_add_layer_norm(shape, dtype):
    D = shape[-1]
    x = randn(*shape, seed=D + 3, dtype=dtype)
    r = randn(*shape, seed=D + 4, scale=3.0, dtype=dtype)
    w = randn(D, seed=D + 5, scale=0.3, dtype=torch.float64).add(1.0).to(dtype)
    b = randn(D, seed=D + 6, scale=0.3, dtype=dtype)
    s, y = add_layer_norm(x, r, w, b, 1e-5)
    # the sum is rounded to the dtype like eager x + r, and LN is taken of that rounded sum
    s_ref = x.detach().cpu().double() + r.detach().cpu().double()
    assert_close(s, s_ref, dtype, "residual sum")
    assert torch.equal(s.cpu(), (x + r).cpu()), "sum must be exactly eager x + r"
    assert_close(y, _ln_ref(s, w, b, 1e-5), dtype, "add_layer_norm")


def test_layer_norm_without_affine_and_offset_mean():
    """Large common offset (mean >> std): two-pass variance must not cancel."""
    x = randn(4, 33, 200, seed=1).add_(1000.0)
    out = layer_norm(x, None, None, 1e-5)
    assert_close(out, _ln_ref(x, None, None, 1e-5), FP32, "no-affine LN, offset")


def test_layer_norm_non_contiguous():
    x = randn(96, 2, 40, seed=1).transpose(0, 1)  # (2, 96, 40), rows not contiguous
    w = randn(80, seed=2)[::2]
    b = randn(40, seed=3)
    assert not x.is_contiguous() and not w.is_contiguous()
    assert_close(layer_norm(x, w, b, 1e-6), _ln_ref(x, w, b, 1e-6), FP32, "strided LN")
    r = randn(2, 40, 96, seed=4).transpose(1, 2)
    s, y = add_layer_norm(x, r, w, b, 1e-6)
    assert_close(y, _ln_ref(x.double() + r.double(), w, b, 1e-6), FP32, "strided add LN")


_GELU = [
    case_param((3, 77, 4 * 96), dtype=FP32, id="b3-77-384-fp32"),
    case_param((2, 257, 320), dtype=FP16, id="b2-257-320-fp16"),
    case_param((251, 2051), dtype=FP32, id="2d-251-2051-fp32"),
    case_param((3, 229, 3072), dtype=BF16, id="audio-mlp-bf16"),
]
if not INTERPRET:
    _GELU += [
        case_param((64, 257, 5120), dtype=dt, id=f"vision-huge-{dt}".replace("torch.", "")) for dt in (FP32, FP16, BF16)
    ]


@pytest.mark.parametrize("shape,dtype", _GELU)
def test_bias_gelu(shape, dtype):
    N = shape[-1]
    x = randn(*shape, seed=N, scale=3.0, dtype=dtype)
    b = randn(N, seed=N + 1, dtype=dtype)
    out = bias_gelu(x, b)
    ref = F.gelu(x.detach().cpu().double() + b.detach().cpu().double())
    assert_close(out, ref, dtype, "bias_gelu")
    out = bias_gelu(x)
    assert_close(out, F.gelu(x.detach().cpu().double()), dtype, "gelu without bias")


def test_bias_gelu_non_contiguous():
    x = randn(64, 3, 50, seed=1).transpose(0, 2)  # (50, 3, 64)
    b = randn(128, seed=2)[1::2]
    out = bias_gelu(x, b)
    assert_close(out, F.gelu(x.double() + b.double()), FP32, "strided gelu")


def test_linear_gelu_matches_the_mlp_hook_signature():
    x, w, b = randn(2, 9, 24, seed=1), randn(96, 24, seed=2, scale=0.2), randn(96, seed=3)
    ref = F.gelu(F.linear(x.double(), w.double(), b.double()))
    assert_close(linear_gelu(x, w, b), ref, FP32, "linear_gelu")


def test_rejects_bad_inputs():
    x = randn(2, 8, 16, seed=1)
    with pytest.raises(InputError, match="dtype"):
        layer_norm(x, randn(16, seed=2, dtype=FP16), None, 1e-5)
    with pytest.raises(InputError, match="weight"):
        layer_norm(x, randn(15, seed=2), None, 1e-5)
    with pytest.raises(InputError, match="residual shape"):
        add_layer_norm(x, randn(2, 8, 15, seed=3), None, None, 1e-5)
    with pytest.raises(InputError, match="eps"):
        layer_norm(x, None, None, -1.0)
    with pytest.raises(InputError, match="is on"):
        add_layer_norm(x, torch.empty(2, 8, 16, device="meta"), None, None, 1e-5)
    with pytest.raises(BackendError, match="D <="):
        layer_norm(torch.empty(1, 20000), None, None, 1e-5)
    with pytest.raises(InputError, match="bias"):
        bias_gelu(x, randn(8, seed=4))
    with pytest.raises(InputError, match="dtype"):
        bias_gelu(x, randn(16, seed=4, dtype=FP16))
    with pytest.raises(InputError, match="dtype"):
        bias_gelu(x.to(torch.int64))
