"""The torch encoders against the reference implementation's own embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import GOLDEN_DIR, GOLDEN_INPUTS, row_relative_error

from bindrt.config import ImageBindConfig, resolve_config
from bindrt.model import ImageBind
from bindrt.model.checkpoint import read_state_dict


@pytest.fixture(scope="module")
def model() -> ImageBind:
    config = resolve_config(GOLDEN_DIR / "config.json")
    return ImageBind.from_state_dict(read_state_dict(GOLDEN_DIR / "weights.pth"), config)


@pytest.mark.parametrize("kind", list(GOLDEN_INPUTS))
def test_embeddings_match_reference(model, golden, kind):
    encoder = model.encoders["vision" if kind == "video" else kind]
    with torch.inference_mode():
        out = encoder(torch.from_numpy(golden[GOLDEN_INPUTS[kind]])).numpy()
    assert out.shape == golden[f"emb_{kind}"].shape
    assert row_relative_error(out, golden[f"emb_{kind}"]) <= 1e-5


def test_golden_config_is_the_golden_preset():
    assert resolve_config(GOLDEN_DIR / "config.json") == resolve_config("golden")


def test_inference_is_deterministic_eval(model, golden):
    """Eval semantics: IMU head dropout must be inactive, two runs identical."""
    x = torch.from_numpy(golden["in_imu"])
    with torch.inference_mode():
        a, b = model.encoders["imu"](x), model.encoders["imu"](x)
    assert not model.encoders["imu"].training
    assert torch.equal(a, b)


def test_output_scales_come_from_checkpoint(model, golden):
    """Text scale exp(5.01)=150 must be clipped at 100; audio scale is the stored buffer."""
    with torch.inference_mode():
        text = model.encoders["text"](torch.from_numpy(golden["pre_text"])).numpy()
        audio = model.encoders["audio"](torch.from_numpy(golden["pre_audio"][:, 0])).numpy()
        vision = model.encoders["vision"](torch.from_numpy(golden["pre_vision"])).numpy()
    np.testing.assert_allclose(np.linalg.norm(text, axis=-1), 100.0, rtol=1e-5)
    stored = float(read_state_dict(GOLDEN_DIR / "weights.pth")["modality_postprocessors.audio.1.log_logit_scale"].exp())
    np.testing.assert_allclose(np.linalg.norm(audio, axis=-1), stored, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vision, axis=-1), 1.0, rtol=1e-5)


def test_multi_clip_is_the_mean_of_single_clips(model):
    rng = np.random.default_rng(7)
    clips = torch.from_numpy(rng.standard_normal((2, 3, 1, 128, 204)).astype(np.float32))
    enc = model.encoders["audio"]
    with torch.inference_mode():
        folded = enc(clips)
        single = torch.stack([enc(clips[:, s]) for s in range(3)], dim=1).mean(dim=1)
    torch.testing.assert_close(folded, single, rtol=1e-5, atol=1e-5)


def test_single_image_equals_two_identical_frames(model):
    rng = np.random.default_rng(3)
    image = torch.from_numpy(rng.standard_normal((2, 3, 224, 224)).astype(np.float32))
    enc = model.encoders["vision"]
    with torch.inference_mode():
        as_image = enc(image)
        as_clip = enc(image.unsqueeze(2).repeat(1, 1, 2, 1, 1))
    torch.testing.assert_close(as_image, as_clip, rtol=1e-5, atol=1e-6)


def test_bad_config_values_are_rejected():
    from bindrt.errors import ConfigError

    with pytest.raises(ConfigError, match="vision_embed_dim=100 is not divisible by vision_num_heads=16"):
        ImageBindConfig(vision_embed_dim=100)
    with pytest.raises(ConfigError, match="unknown config field"):
        ImageBindConfig.from_dict({"visoin_embed_dim": 4})
    with pytest.raises(ConfigError, match="unknown config"):
        resolve_config("imagebind_gigantic")


@pytest.mark.parametrize("kind", list(GOLDEN_INPUTS))
def test_pooled_last_block_matches_reference(model, golden, kind):
    """embed_pooled (last block for the pooled token only; what the ONNX export traces) vs the reference."""
    encoder = model.encoders["vision" if kind == "video" else kind]
    x = torch.from_numpy(golden[GOLDEN_INPUTS[kind]])
    with torch.inference_mode():
        if x.ndim == encoder.multi_clip_ndim:
            out = encoder.embed_pooled(x.flatten(0, 1)).reshape(x.shape[0], x.shape[1], -1).mean(dim=1).numpy()
        else:
            out = encoder.embed_pooled(x).numpy()
    assert row_relative_error(out, golden[f"emb_{kind}"]) <= 1e-5


def test_pooled_last_block_text_is_causal_at_each_eot_position(model):
    """Fresh token ids with the end-of-text token at different positions: the pooled row sees keys 0..eot only."""
    rng = np.random.default_rng()
    ids = torch.from_numpy(rng.integers(1, 49000, size=(6, 77)))
    for row, eot in enumerate((1, 5, 20, 40, 70, 76)):
        ids[row, eot] = 49407
        ids[row, eot + 1 :] = 0
    enc = model.encoders["text"]
    with torch.inference_mode():
        full, pooled = enc.embed(ids), enc.embed_pooled(ids)
        # the tokens after EOT must not matter (they would through a missing causal mask)
        noisy = ids.clone()
        noisy[0, 2:] = torch.from_numpy(rng.integers(1, 49000, size=75))
        moved = enc.embed_pooled(noisy)
    torch.testing.assert_close(pooled, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(moved[0], pooled[0], rtol=1e-5, atol=1e-5)
