"""bindrt.roofline's analytic FLOP counts against torch's flop counter, and the roofline arithmetic.

``torch.utils.flop_counter.FlopCounterMode`` counts matmuls (mm, addmm, bmm), convolutions and
SDPA kernels only. LayerNorm, GELU, softmax, residual/bias adds, the position add, the embedding
lookup, the clip mean and the output normalisation are counted by neither side, so the GEMM and
convolution parts must agree exactly. On CPU tensors SDPA runs ``_scaled_dot_product_flash_attention_for_cpu``,
which the counter has no formula for: the attention core is run on the math path here
(``sdpa_kernel(MATH)``; on the meta device it is the math path anyway), whose Q K^T and P V bmms
the counter sees.
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import GOLDEN_DIR
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from bindrt.config import resolve_config
from bindrt.errors import ConfigError
from bindrt.layouts import INPUT_LAYOUTS, random_batch
from bindrt.model.checkpoint import read_state_dict
from bindrt.model.encoders import IMU_WINDOW, ModalityEncoder
from bindrt.model.imagebind import load_encoder
from bindrt.model.layers import Attention
from bindrt.roofline import (
    BIAS_KV,
    STEMS,
    encoder_flops,
    measure_peaks,
    roofline_row,
    tower_shape,
    trunk_flops,
)

KINDS = list(INPUT_LAYOUTS)  # vision, video, text, audio, depth, thermal, imu
BATCH = 2  # counts are per item: a batch of two checks the division too


@pytest.fixture(scope="module")
def golden_weights():
    return read_state_dict(GOLDEN_DIR / "weights.pth")


def counted(fn, x) -> dict[str, float]:
    """FLOPs per aten op (short name) of ``fn(x)``, per item of the batch."""
    with sdpa_kernel(SDPBackend.MATH), torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn(x)
    return {str(op).split(".")[-1]: v / BATCH for op, v in counter.get_flop_counts()["Global"].items()}


def expected_by_op(flops: dict[str, float], modality: str, pooled: bool = False) -> dict[str, float]:
    """encoder_flops' parts, grouped by the aten op the torch encoder runs them as.

    Biased linears (qkv, out_proj, fc1, fc2) are addmm; the bias-free head projection is mm, as is
    the IMU stem (a bias-free Linear over windows); the other stems are convolutions; Q K^T and P V are
    bmm. The pooled last block projects its one query row from a strided (B, 1, D) slice, which
    ``F.linear`` runs as bmm rather than addmm: there the matmuls are compared as one group.
    """
    ops = {
        "addmm": flops["qkv"] + flops["out_proj"] + flops["fc1"] + flops["fc2"],
        "bmm": flops["scores"] + flops["context"],
        "mm": flops["head"] + (flops["stem"] if modality == "imu" else 0.0),
    }
    if pooled:
        ops = {"matmul": sum(ops.values())}
    if modality not in ("imu", "text"):
        ops["convolution"] = flops["stem"]
    return ops


def grouped(ops: dict[str, float], pooled: bool) -> dict[str, float]:
    if not pooled:
        return ops
    out = {k: v for k, v in ops.items() if k not in ("addmm", "bmm", "mm")}
    return out | {"matmul": sum(v for k, v in ops.items() if k in ("addmm", "bmm", "mm"))}


def forward(encoder: ModalityEncoder, pooled: bool):
    if not pooled:
        return encoder
    # what export/torch_export.py traces: multi-clip items folded into the batch, the clip mean after
    return lambda x: encoder.embed_pooled(x.flatten(0, 1) if x.ndim == encoder.multi_clip_ndim else x)


def assert_same(counted_ops: dict[str, float], expected_ops: dict[str, float]) -> None:
    assert set(counted_ops) == set(expected_ops), (counted_ops, expected_ops)
    for op, value in expected_ops.items():
        assert math.isclose(counted_ops[op], value, rel_tol=1e-6), (op, counted_ops[op], value)
    total = sum(expected_ops.values())
    assert math.isclose(sum(counted_ops.values()), total, rel_tol=1e-6)


@pytest.mark.parametrize("pooled", [False, True], ids=["reference", "pooled_last_block"])
@pytest.mark.parametrize("kind", KINDS)
def test_golden_flops_match_torch_flop_counter(golden_weights, kind, pooled):
    """Real weights, real inputs, the golden model: every counted op equals the formula."""
    config = resolve_config(GOLDEN_DIR / "config.json")
    layout = INPUT_LAYOUTS[kind]
    encoder = load_encoder(layout.encoder, config, golden_weights)
    x = torch.from_numpy(random_batch(kind, BATCH))
    flops = encoder_flops(config, kind, pooled_last_block=pooled)
    assert_same(grouped(counted(forward(encoder, pooled), x), pooled), expected_by_op(flops, layout.encoder, pooled))
    assert flops["total"] == pytest.approx(sum(expected_by_op(flops, layout.encoder).values()), rel=1e-12)


@pytest.mark.parametrize("pooled", [False, True], ids=["reference", "pooled_last_block"])
@pytest.mark.parametrize("kind", KINDS)
def test_huge_flops_match_torch_flop_counter_on_meta(kind, pooled):
    """imagebind_huge at full width and depth, shape only: built and run on the meta device (no weights)."""
    layout = INPUT_LAYOUTS[kind]
    with torch.device("meta"):
        encoder = ModalityEncoder(layout.encoder, resolve_config("imagebind_huge")).eval()
        x = torch.empty((BATCH, *layout.item_shape), dtype=getattr(torch, layout.dtype))
    flops = encoder_flops("imagebind_huge", kind, pooled_last_block=pooled)
    assert_same(grouped(counted(forward(encoder, pooled), x), pooled), expected_by_op(flops, layout.encoder, pooled))


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_clips_scale_every_part(kind):
    one, default, two = (encoder_flops("imagebind_huge", kind, clips=c) for c in (1, None, 2))
    clips = INPUT_LAYOUTS[kind].default_clips
    for part, value in one.items():
        assert default[part] == pytest.approx(clips * value) and two[part] == pytest.approx(2 * value)
    layout = INPUT_LAYOUTS[kind]
    with torch.device("meta"):
        encoder = ModalityEncoder(layout.encoder, resolve_config("imagebind_huge")).eval()
        x = torch.empty((BATCH, 2, *layout.shape))
    assert_same(counted(encoder, x), expected_by_op(two, layout.encoder))


def test_images_and_one_clip_videos_cost_the_same():
    """Images are repeated to two frames, so an image is one video clip to the 3D stem."""
    assert encoder_flops("golden", "vision") == encoder_flops("golden", "video", clips=1)
    assert encoder_flops("golden", "vision_uint8") == encoder_flops("golden", "vision")  # preprocessing not counted
    assert encoder_flops("golden", "audio_waveform") == encoder_flops("golden", "audio")


@pytest.mark.parametrize("modality", ["vision", "text", "audio", "depth", "thermal", "imu"])
def test_stem_table_and_token_counts_match_the_torch_model(modality):
    with torch.device("meta"):
        encoder = ModalityEncoder(modality, resolve_config("golden"))
    shape = tower_shape("golden", modality)
    attn: Attention = encoder.trunk.blocks[0].attn
    assert (modality in BIAS_KV) == (attn.bias_k is not None)
    assert shape.keys == shape.tokens + (attn.bias_k is not None)
    if modality == "text":
        assert shape.tokens == encoder.preprocessor.pos_embed.shape[1]
        return
    assert shape.tokens == encoder.preprocessor.position.shape[1]  # patches + CLS
    proj = encoder.preprocessor.stem.proj
    proj = proj[-1] if isinstance(proj, torch.nn.Sequential) else proj
    stem = STEMS[modality]
    if modality == "imu":
        assert stem.kernel == stem.stride == (IMU_WINDOW,) and proj.in_features == stem.macs_per_patch_channel
    else:
        assert tuple(proj.kernel_size) == stem.kernel and tuple(proj.stride) == stem.stride
        assert proj.in_channels == stem.in_channels


def test_pooled_last_block_saves_about_one_block():
    for kind in KINDS:
        full, pooled = (
            encoder_flops("imagebind_huge", kind),
            encoder_flops("imagebind_huge", kind, pooled_last_block=True),
        )
        s = tower_shape("imagebind_huge", kind)
        saved = full["total"] - pooled["total"]
        one_block = s.clips * sum(trunk_flops(s.dim, s.tokens, s.keys, 1, False).values())
        assert 0.5 * one_block < saved < one_block, kind  # K and V still projected for every row
        assert pooled["stem"] == full["stem"] and pooled["head"] == full["head"]


def test_bad_kind_and_clips_are_config_errors():
    with pytest.raises(ConfigError, match="unknown input kind"):
        encoder_flops("golden", "smell")
    with pytest.raises(ConfigError, match="single-clip"):
        encoder_flops("golden", "depth", clips=2)
    with pytest.raises(ConfigError, match="positive"):
        encoder_flops("golden", "audio", clips=0)


def test_roofline_row_arithmetic():
    peaks = {"matmul_gflops": {"fp32": 500.0, "bf16": 2000.0}, "copy_gbs": 20.0}
    row = roofline_row(10e9, 25.0, peaks)  # 10 GFLOP x 25 items/s = 250 GFLOP/s = half the fp32 peak
    assert row == {
        "gflop_per_item": 10.0,
        "achieved_gflops": 250.0,
        "achieved_tflops": 0.25,
        "peak_gflops": 500.0,
        "percent_of_peak": 50.0,
    }
    assert roofline_row({"total": 10e9, "mlp": 1.0}, 25.0, peaks, "bf16")["percent_of_peak"] == 12.5
    no_peak = roofline_row(10e9, 25.0, peaks, "int8")
    assert no_peak["percent_of_peak"] is None and no_peak["peak_gflops"] is None and no_peak["achieved_gflops"] == 250


def test_measure_peaks_returns_positive_finite_rates():
    peaks = measure_peaks(0.01, precisions=("fp32", "bf16"), matmul_n=64, copy_bytes=1 << 16)
    assert peaks["device"] == "cpu" and peaks["matmul_n"] == 64 and peaks["copy_bytes"] == 1 << 16
    rates = [*peaks["matmul_gflops"].values(), peaks["copy_gbs"]]
    assert len(rates) == 3 and all(math.isfinite(r) and r > 0 for r in rates)
    with pytest.raises(ConfigError):
        measure_peaks(0.01, precisions=("int4",))
