"""bindrt.load + Embedder on the torch backend: batching, precisions, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import GOLDEN_DIR, GOLDEN_INPUTS, row_relative_error

import bindrt
from bindrt.errors import BackendError, ConfigError, InputError, UnknownModalityError


@pytest.fixture(scope="module")
def model(golden_bundle):
    return bindrt.load(golden_bundle)


@pytest.mark.parametrize("kind", list(GOLDEN_INPUTS))
def test_encode_matches_reference(model, golden, kind):
    out = model.encode(kind, golden[GOLDEN_INPUTS[kind]])
    assert out.dtype == np.float32
    assert row_relative_error(out, golden[f"emb_{kind}"]) <= 1e-5


def test_automatic_batching_is_invisible(golden_bundle):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 6, 2000)).astype(np.float32)
    whole = bindrt.load(golden_bundle, modalities=["imu"], batch_size=64).encode("imu", x)
    chunked = bindrt.load(golden_bundle, modalities=["imu"], batch_size=2).encode("imu", x)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_single_clip_audio_is_accepted(model):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 1, 128, 204)).astype(np.float32)
    np.testing.assert_array_equal(model.encode("audio", x), model.encode("audio", x[:, None]))


@pytest.mark.parametrize("precision, min_cos", [("fp16", 0.999), ("bf16", 0.99)])
def test_reduced_precisions_stay_close(golden_bundle, golden, precision, min_cos):
    low = bindrt.load(golden_bundle, precision=precision, modalities=["vision", "text"])
    for kind in ("vision", "text"):
        out = low.encode(kind, golden[GOLDEN_INPUTS[kind]])
        ref = golden[f"emb_{kind}"]
        cos = (out * ref).sum(-1) / np.linalg.norm(out, axis=-1) / np.linalg.norm(ref, axis=-1)
        assert cos.min() >= min_cos


@pytest.mark.parametrize(
    "kind, array, message",
    [
        (
            "vision",
            np.ones((2, 3, 224), np.float32),
            r"expected a batch of shape \('batch', 3, 224, 224\), got \(2, 3, 224\)",
        ),
        ("vision", np.ones((2, 3, 112, 112), np.float32), "got \\(2, 3, 112, 112\\)"),
        ("depth", np.ones((0, 1, 224, 224), np.float32), "empty batch"),
        ("imu", np.ones((1, 6, 2000), np.int32), "expected floating-point values"),
        ("text", np.ones((1, 77), np.float32), "expected integer token ids"),
        ("text", np.full((2, 77), 49408), "token id 49408 out of range"),
        ("text", np.full((2, 77), -1), "out of range"),
        ("video", np.ones((1, 3, 2, 224, 224), np.float32), "clips"),
        ("audio", np.ones((1, 0, 1, 128, 204), np.float32), "empty batch"),
    ],
)
def test_bad_batches(model, kind, array, message):
    with pytest.raises(InputError, match=message) as err:
        model.encode(kind, array)
    assert f"[{kind}" in str(err.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_the_item(model, bad):
    x = np.random.default_rng(0).standard_normal((3, 1, 224, 224)).astype(np.float32)
    x[2, 0, 5, 7] = bad
    with pytest.raises(InputError, match=r"\[thermal item 2\] contains NaN or Inf"):
        model.encode("thermal", x)


def test_unknown_and_unloaded_modalities(golden_bundle, model):
    with pytest.raises(UnknownModalityError, match="unknown input kind 'smell'"):
        model.encode("smell", np.ones((1, 3)))
    depth_only = bindrt.load(golden_bundle, modalities=["depth"])
    with pytest.raises(UnknownModalityError, match="loaded without the 'vision' encoder"):
        depth_only.encode("video", np.ones((1, 1, 3, 2, 224, 224), np.float32))
    with pytest.raises(UnknownModalityError, match="unknown modality 'smell'"):
        bindrt.load(golden_bundle, modalities=["smell"])
    with pytest.raises(ConfigError, match="empty modality list"):
        bindrt.load(golden_bundle, modalities=[])


def test_empty_inputs(model):
    with pytest.raises(InputError, match=r"\[text\] empty input list"):
        model.embed(text=[])
    with pytest.raises(InputError, match="no inputs given"):
        model.embed()


def test_load_errors(golden_bundle, tmp_path):
    with pytest.raises(ConfigError, match="pass config="):
        bindrt.load(GOLDEN_DIR / "weights.pth")
    with pytest.raises(ConfigError, match="does not exist"):
        bindrt.load(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="differs from the config stored in bundle"):
        bindrt.load(golden_bundle, config="tiny")
    with pytest.raises(BackendError, match="unknown backend 'tensorflow'"):
        bindrt.load(golden_bundle, backend="tensorflow")
    with pytest.raises(BackendError, match="runs precisions fp32, fp16, bf16, not 'fp8'"):
        bindrt.load(golden_bundle, precision="fp8")
    with pytest.raises(BackendError, match="unknown option"):
        bindrt.load(golden_bundle, threads=3)


def test_cuda_without_a_gpu_is_a_clear_error(golden_bundle):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(BackendError, match="no CUDA device"):
        bindrt.load(golden_bundle, device="cuda")


def test_importing_bindrt_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, bindrt, bindrt.bundle, bindrt.runtime, bindrt.preprocess, bindrt.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_embed_raw_media_reproduces_reference(model, golden, golden_inputs):
    from helpers import MEDIA_DIR

    out = model.embed(
        text=golden_inputs["texts"],
        vision=[str(MEDIA_DIR / f) for f in golden_inputs["images"]],
        audio=[str(MEDIA_DIR / f) for f in golden_inputs["audio"]],
    )
    assert row_relative_error(out["text"], golden["emb_text"]) <= 1e-5
    assert row_relative_error(out["vision"], golden["emb_vision"]) <= 1e-5
    # audio preprocessing matches the reference to ~1e-4 (float32 fbank), so embeddings agree closely
    assert row_relative_error(out["audio"], golden["emb_audio"]) <= 1e-3


def test_embed_errors_name_the_item_across_batches(golden_bundle, tmp_path):
    from helpers import MEDIA_DIR

    broken = tmp_path / "broken.jpg"
    broken.write_bytes((MEDIA_DIR / "photo.jpg").read_bytes()[:2000])
    small = bindrt.load(golden_bundle, modalities=["vision"], batch_size=2)
    good = str(MEDIA_DIR / "photo.jpg")
    with pytest.raises(InputError, match=r"\[vision item 2\]") as err:
        small.embed(vision=[good, good, str(broken)])
    assert "broken.jpg" in str(err.value)


def test_embed_single_items_and_audio_arrays(model):
    rng = np.random.default_rng(2)
    wave = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    out = model.embed(text="a single string", audio=(wave, 16000))
    assert out["text"].shape == (1, 32) and out["audio"].shape == (1, 32)
    with pytest.raises(InputError, match=r"\[audio item 0\].*400"):
        model.embed(audio=(wave[:100], 16000))
